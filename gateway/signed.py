"""Signed claims for the tokens the gateway mints itself: patient tokens and board sessions.

`<prefix>.<base64url JSON claims>.<base64url HMAC-SHA256>`, keyed by the internal secret through a
purpose of each token's own, so no token of one kind (nor any other token signed with that secret)
passes as another. What the claims mean, and when they expire, is for each token's module.
"""

import base64
import binascii
import hashlib
import hmac
import json
from typing import Any


class TokenMalformed(ValueError):
    """Not a token of this kind at all."""


class TokenForged(ValueError):
    """Shaped like one, but not signed by us for this purpose."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def sign(secret: str, purpose: bytes, payload: str) -> str:
    """The signature of a token's payload (its middle part) for `purpose`."""
    key = hmac.new(secret.encode(), purpose, hashlib.sha256).digest()
    return _b64(hmac.new(key, payload.encode("ascii"), hashlib.sha256).digest())


def seal(secret: str, *, purpose: bytes, prefix: str, claims: dict[str, Any]) -> str:
    """A token carrying `claims`, signed for `purpose`."""
    payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
    return f"{prefix}.{payload}.{sign(secret, purpose, payload)}"


def unseal(secret: str, token: str, *, purpose: bytes, prefix: str) -> Any:
    """The claims of a token we signed for `purpose` (any JSON value: check its shape); TokenMalformed or
    TokenForged otherwise."""
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != prefix or not token.isascii():  # compare_digest needs ASCII
        raise TokenMalformed()
    _, payload, signature = parts
    if not hmac.compare_digest(signature, sign(secret, purpose, payload)):
        raise TokenForged()
    try:
        return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (ValueError, binascii.Error):
        raise TokenMalformed() from None
