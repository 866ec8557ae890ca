"""Internal credentials: how a service knows a call came through the gateway or a sibling service.

The gateway (or a service) mints a short-lived token signed with the shared internal secret; it names
the calling client and its scopes. Services accept nothing else. Format: `pf1.<payload>.<signature>`,
both base64url, the signature HMAC-SHA256 over the payload.
"""

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from kit.errors import Forbidden, Unauthorized

INTERNAL_AUTH_HEADER = "authorization"
TOKEN_PREFIX = "pf1"
TOKEN_LIFETIME_SECONDS = 300
MAX_SUBJECT_LENGTH = 64  # services store the subject (audit rows, idempotency keys)
# Services call each other as `service:<name>`; gateway client names cannot contain a colon.
SERVICE_SUBJECT_PREFIX = "service:"


def service_subject(name: str) -> str:
    """The subject a service's own calls carry."""
    return SERVICE_SUBJECT_PREFIX + name


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling: the gateway client (e.g. `his-dev`) or a service (`service:billing`).

    `patient` is set when an app or kiosk acts for one patient (a patient token at the gateway): the
    caller may then see that patient's records only.
    """

    subject: str
    scopes: frozenset[str]
    patient: str | None = None

    @property
    def is_service(self) -> bool:
        """A sibling service (or the gateway acting for itself), not an outside client."""
        return self.subject.startswith(SERVICE_SUBJECT_PREFIX)

    def require(self, scope: str) -> None:
        if scope not in self.scopes:
            raise Forbidden(f"This call needs the scope {scope!r}.")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(secret: str, payload: str) -> str:
    return _b64(hmac.new(secret.encode(), payload.encode("ascii"), hashlib.sha256).digest())


def mint_internal_token(
    secret: str,
    subject: str,
    scopes: frozenset[str] | set[str] | list[str],
    *,
    now: float | None = None,
    patient: str | None = None,
) -> str:
    """A token a service will accept for TOKEN_LIFETIME_SECONDS."""
    issued = time.time() if now is None else now
    claims: dict[str, object] = {
        "sub": subject,
        "scp": sorted(scopes),
        "exp": int(issued) + TOKEN_LIFETIME_SECONDS,
    }
    if patient is not None:
        claims["pat"] = patient
    payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
    return f"{TOKEN_PREFIX}.{payload}.{_sign(secret, payload)}"


def verify_internal_token(secret: str, token: str, *, now: float | None = None) -> Caller:
    """The caller named by a valid token; Unauthorized for anything forged, malformed or expired."""
    try:
        prefix, payload, signature = token.split(".")
    except ValueError:
        raise Unauthorized("Malformed internal credentials.") from None
    if prefix != TOKEN_PREFIX or not hmac.compare_digest(signature, _sign(secret, payload)):
        raise Unauthorized("Invalid internal credentials.")
    claims = json.loads(_unb64(payload))
    if claims["exp"] < (time.time() if now is None else now):
        raise Unauthorized("Expired internal credentials.")
    if not 0 < len(claims["sub"]) <= MAX_SUBJECT_LENGTH:
        raise Unauthorized("Internal credentials name no valid client.")
    return Caller(subject=claims["sub"], scopes=frozenset(claims["scp"]), patient=claims.get("pat"))


class TokenSource:
    """Re-uses one minted token until shortly before it expires (minting costs an HMAC and JSON)."""

    def __init__(
        self, secret: str, subject: str, scopes: frozenset[str] | set[str], *, patient: str | None = None
    ) -> None:
        self._secret, self._subject, self._scopes = secret, subject, frozenset(scopes)
        self._patient = patient
        self._token, self._renew_at = "", 0.0

    def header(self) -> str:
        now = time.time()
        if now >= self._renew_at:
            self._token = mint_internal_token(
                self._secret, self._subject, self._scopes, now=now, patient=self._patient
            )
            self._renew_at = now + TOKEN_LIFETIME_SECONDS / 2
        return f"Bearer {self._token}"


def require_internal_caller(request: Request) -> Caller:
    """Dependency on every service route: refuse calls that did not come through the gateway or a service."""
    header = request.headers.get(INTERNAL_AUTH_HEADER, "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("This service only accepts calls from the gateway or another service.")
    caller = verify_internal_token(request.app.state.settings.internal_secret, token)
    request.state.caller = caller
    return caller


CallerDep = Annotated[Caller, Depends(require_internal_caller)]


def require_service_caller(caller: CallerDep) -> Caller:
    """Dependency for what only sibling services may call (a service's own event feed, the hub's
    clean-up on revocation): outside clients, even through the gateway, are refused."""
    if not caller.is_service:
        raise Forbidden("Only patientflow services may call this route.")
    return caller
