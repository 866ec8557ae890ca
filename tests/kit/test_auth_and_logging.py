"""Internal credentials and log masking."""

import base64
import hashlib
import hmac
import logging

import pytest

from kit.auth import (
    TOKEN_LIFETIME_SECONDS,
    TokenSource,
    VerifiedTokens,
    mint_internal_token,
    verify_internal_token,
)
from kit.errors import Unauthorized
from kit.logging import MaskingFilter, mask_identifiers


def test_a_minted_token_names_its_client_and_scopes() -> None:
    token = mint_internal_token("s3cret", "his-dev", {"billing:read"}, audience="billing")
    caller = verify_internal_token("s3cret", token, audience="billing")
    assert caller.subject == "his-dev" and caller.scopes == {"billing:read"}


def test_a_token_carries_the_gateway_clients_kind_and_a_services_none() -> None:
    source = TokenSource("s3cret", "nurse-dev", {"registration:read"}, kind="nurse")
    token = source.header("registration").removeprefix("Bearer ")
    assert verify_internal_token("s3cret", token, audience="registration").kind == "nurse"
    service = mint_internal_token("s3cret", "service:triage", set(), audience="registration")
    assert verify_internal_token("s3cret", service, audience="registration").kind is None


def test_a_token_for_one_service_is_refused_by_another() -> None:
    token = mint_internal_token("s3cret", "his-dev", {"results:read"}, audience="billing")
    with pytest.raises(Unauthorized, match="another service"):
        verify_internal_token("s3cret", token, audience="results")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _signed_text(text: str, secret: str = "s3cret") -> str:
    """A token over any payload text, validly signed: what a leaked secret or a minting bug would produce."""
    signature = _b64(hmac.new(secret.encode(), text.encode(), hashlib.sha256).digest())
    return f"pf1.{text}.{signature}"


def _signed(payload: bytes) -> str:
    return _signed_text(_b64(payload))


@pytest.mark.parametrize(
    "token",
    [
        mint_internal_token("another-secret", "his-dev", set(), audience="x"),  # signed with the wrong secret
        mint_internal_token("s3cret", "his-dev", set(), audience="x", now=0),  # long expired
        "pf1.e30.AAAA",
        "not-a-token",
        "pf1.é.ü",  # not ASCII: compare_digest raises TypeError on such text
        _signed(b"not json"),
        _signed(b"\xff\xfe"),  # not UTF-8
        _signed(b"[1, 2]"),  # JSON, not an object
        _signed(b'{"sub": "his-dev", "scp": [], "exp": 99999999999}'),  # no audience
        _signed(b'{"aud": "x", "scp": [], "exp": 99999999999}'),  # no subject
        _signed(b'{"sub": "his-dev", "aud": "x", "exp": 99999999999}'),  # no scopes
        _signed(b'{"sub": "his-dev", "aud": "x", "scp": []}'),  # no expiry
        _signed(b'{"sub": 7, "aud": "x", "scp": [], "exp": 99999999999}'),
        _signed(b'{"sub": "his-dev", "aud": "x", "scp": "a", "exp": 99999999999}'),
        _signed(b'{"sub": "his-dev", "aud": "x", "scp": [1], "exp": 99999999999}'),
        _signed(b'{"sub": "his-dev", "aud": "x", "scp": [], "exp": "soon"}'),
        _signed(b'{"sub": "his-dev", "aud": "x", "scp": [], "exp": 1e30}'),
        _signed(b'{"sub": "his-dev", "aud": "x", "scp": [], "exp": 99999999999, "pat": ["p"]}'),
        _signed(b'{"sub": "his-dev", "aud": "x", "scp": [], "exp": 99999999999, "knd": 3}'),
        _signed_text("a"),  # not base64: one character left over
    ],
)
def test_forged_expired_or_malformed_tokens_are_refused(token: str) -> None:
    with pytest.raises(Unauthorized):
        verify_internal_token("s3cret", token, audience="x")


def test_tokens_expire_after_their_lifetime() -> None:
    token = mint_internal_token("s3cret", "x", set(), audience="x", now=1_000_000)
    verify_internal_token("s3cret", token, audience="x", now=1_000_000 + TOKEN_LIFETIME_SECONDS - 1)
    with pytest.raises(Unauthorized):
        verify_internal_token("s3cret", token, audience="x", now=1_000_000 + TOKEN_LIFETIME_SECONDS + 1)


def test_a_verified_token_is_remembered_only_while_it_lives_and_only_for_its_service() -> None:
    verified = VerifiedTokens(limit=2)
    token = mint_internal_token("s3cret", "his-dev", {"billing:read"}, audience="billing", now=1000.0)

    assert verified.verify("s3cret", token, audience="billing", now=1001.0).subject == "his-dev"
    assert verified.verify("s3cret", token, audience="billing", now=1002.0).subject == "his-dev"
    with pytest.raises(Unauthorized, match="another service"):
        verified.verify("s3cret", token, audience="results", now=1002.0)
    with pytest.raises(Unauthorized, match="Invalid"):
        verified.verify("another secret", token, audience="billing", now=1002.0)
    with pytest.raises(Unauthorized, match="Expired"):
        verified.verify("s3cret", token, audience="billing", now=1001.0 + TOKEN_LIFETIME_SECONDS)


def test_the_verified_token_cache_is_bounded() -> None:
    verified = VerifiedTokens(limit=2)
    tokens = [mint_internal_token("s3cret", f"client-{n}", set(), audience="billing") for n in range(3)]
    for token in tokens:
        verified.verify("s3cret", token, audience="billing")
    assert len(verified) == 2


def test_a_token_source_mints_one_token_per_target_service() -> None:
    tokens = TokenSource("s3cret", "service:billing", {"registration:read"})
    for audience in ("registration", "results", "registration"):
        token = tokens.header(audience).removeprefix("Bearer ")
        assert verify_internal_token("s3cret", token, audience=audience).subject == "service:billing"
    assert tokens.header("registration") == tokens.header("registration")  # re-used, not re-minted
    assert tokens.header("registration") != tokens.header("results")


def test_identity_and_phone_numbers_are_masked() -> None:
    text = "patient 11010519491231002X phone 13800138000 visit 42"
    assert mask_identifiers(text) == "patient 110105********002X phone 138****8000 visit 42"


def test_log_records_are_masked_before_formatting() -> None:
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "lookup %s", ("440524188001010014",), None)
    MaskingFilter().filter(record)
    assert record.getMessage() == "lookup 440524********0014"
