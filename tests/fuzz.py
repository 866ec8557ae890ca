"""Deterministic bad input for the fuzz tests: raw header bytes, tampered tokens, numbers out of range.

A fixed seed and a fixed count: the same cases every run, so a failure reproduces, and the run stays
short. Values avoid only what HTTP itself forbids in a header (CR, LF, NUL and other controls).
"""

import base64
import random
from typing import Any

import httpx

PROBLEM_MEDIA_TYPE = "application/problem+json"
SEED = 20261201
# Bytes an HTTP/1.1 header value may carry (h11 refuses the rest before sending): visible ASCII,
# space and tab inside, and obs-text 0x80-0xFF.
_HEADER_BYTES = bytes(range(0x21, 0x7F)) + bytes(range(0x80, 0x100))
FIXED_HEADER_VALUES: tuple[bytes, ...] = (
    b"\xff",
    b"Bearer \xff\xfe",
    "Bearer 中文密钥".encode(),
    "Bearer pf1.é.ü".encode(),
    "pt1.é.ü".encode(),
    b"Bearer pf1.e30.\xe9",
    b"Bearer " + b"k" * 300,
    b"Bearer " + b"\xc3\xa9" * 200,
    b"bearer",
    b"Basic dXNlcjpwYXNz",
    b"pt1.e30.AAAA",
    b"pt1.a.b.c",
    b"...",
)
# Integer query parameters: past BIGINT either way, not integers at all, digits Python reads but the
# API does not promise to ("١٢", "²"), and a valid one for contrast.
BAD_INTEGERS: tuple[str, ...] = (
    "9223372036854775808",
    "-9223372036854775809",
    "99999999999999999999999999999999999999",
    "-1",
    "1e3",
    "0x10",
    "1.5",
    "NaN",
    "inf",
    "١٢",
    "²",
    "",
    " ",
    "9223372036854775807",
)


def header_values(count: int = 40, *, seed: int = SEED) -> list[bytes]:
    """The fixed cases, then `count` random byte strings (half of them after `Bearer `)."""
    rng = random.Random(seed)
    values = list(FIXED_HEADER_VALUES)
    for index in range(count):
        raw = bytes(rng.choice(_HEADER_BYTES) for _ in range(rng.randint(1, 60)))
        values.append(b"Bearer " + raw if index % 2 else raw)
    return values


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


# Payloads a signer could put in a token: not JSON, not UTF-8, not an object, claims missing or mistyped.
BAD_PAYLOADS: tuple[bytes, ...] = (
    b"not json",
    b"\xff\xfe",
    b"[1, 2]",
    b"null",
    b"{}",
    b'{"cli": "app", "pat": "p"}',
    b'{"cli": "app", "exp": 99999999999}',
    b'{"cli": "app", "pat": 7, "exp": 99999999999}',
    b'{"cli": "app", "pat": "p", "exp": "later"}',
    b'{"cli": "app", "pat": "p", "exp": 1e300}',
    b'{"sub": "his-dev", "scp": [], "exp": 99999999999}',
    b'{"sub": "his-dev", "aud": "results", "exp": 99999999999}',
    b'{"sub": ["his-dev"], "aud": "results", "scp": [], "exp": 99999999999}',
    b'{"sub": "his-dev", "aud": "results", "scp": [null], "exp": 99999999999}',
)


def assert_client_error(response: httpx.Response, what: Any = "") -> None:
    """A 4xx problem+json with an `instance`: never a 5xx, never a bare body."""
    assert 400 <= response.status_code < 500, (what, response.status_code, response.text)
    assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE, (what, response.text)
    body = response.json()
    assert body["status"] == response.status_code and body.get("instance"), (what, body)


def assert_bad_parameter(response: httpx.Response, what: Any = "") -> None:
    """A refused query, path or header value: 400 problem+json (422 is for bodies), never a 5xx."""
    assert_client_error(response, what)
    assert response.status_code == 400, (what, response.status_code, response.text)
