"""Internal credentials: how a service knows a call came through the gateway or a sibling service.

The gateway (or a service) mints a short-lived token signed with the shared internal secret; it names
the calling client, its scopes and the one service it is for (`aud`), so a token sent to registration
cannot be replayed against results. Services accept nothing else, and each route checks its own scope
(`require_scope`). Format: `pf1.<payload>.<signature>`, both base64url, the signature HMAC-SHA256 over
the payload.
"""

import base64
import binascii
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request

from kit.errors import Forbidden, Unauthorized

INTERNAL_AUTH_HEADER = "authorization"
TOKEN_PREFIX = "pf1"
TOKEN_LIFETIME_SECONDS = 300
MAX_SUBJECT_LENGTH = 64  # services store the subject (audit rows, idempotency keys)
# Services call each other as `service:<name>`; gateway client names cannot contain a colon.
SERVICE_SUBJECT_PREFIX = "service:"
SERVICE_ONLY = "service-only"  # what `route_guards` reports for a route only sibling services may call


def service_subject(name: str) -> str:
    """The subject a service's own calls carry."""
    return SERVICE_SUBJECT_PREFIX + name


def visible_to(acting_for: str | None, owner: str | None) -> bool:
    """Whether a record of patient `owner` may be shown to a caller acting for patient `acting_for`:
    always when it acts for nobody (staff, services), else only that patient's own records."""
    return acting_for is None or owner == acting_for


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling: the gateway client (e.g. `his-dev`) or a service (`service:billing`).

    `patient` is set when an app or kiosk acts for one patient (a patient token at the gateway): the
    caller may then see that patient's records only. `kind` is the gateway client's kind (`his`,
    `nurse`, `cashier`, ...), for what a service shows each kind (registration masks phones and names
    by it); None for a service.
    """

    subject: str
    scopes: frozenset[str]
    patient: str | None = None
    kind: str | None = None

    @property
    def is_service(self) -> bool:
        """A sibling service (or the gateway acting for itself), not an outside client."""
        return self.subject.startswith(SERVICE_SUBJECT_PREFIX)

    def require(self, scope: str) -> None:
        if scope not in self.scopes:
            raise Forbidden(f"This call needs the scope {scope!r}.", slug="scope-missing")

    def sees(self, patient_id: str | None) -> bool:
        """Whether a record of `patient_id` is this caller's to see (`visible_to`)."""
        return visible_to(self.patient, patient_id)


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
    audience: str,
    now: float | None = None,
    patient: str | None = None,
    kind: str | None = None,
) -> str:
    """A token the service named `audience` (and no other) will accept for TOKEN_LIFETIME_SECONDS."""
    issued = time.time() if now is None else now
    claims: dict[str, object] = {
        "sub": subject,
        "aud": audience,
        "scp": sorted(scopes),
        "exp": int(issued) + TOKEN_LIFETIME_SECONDS,
    }
    if patient is not None:
        claims["pat"] = patient
    if kind is not None:
        claims["knd"] = kind
    payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
    return f"{TOKEN_PREFIX}.{payload}.{_sign(secret, payload)}"


def _is_text(value: object, max_length: int = MAX_SUBJECT_LENGTH) -> bool:
    return isinstance(value, str) and 0 < len(value) <= max_length


def _claims(payload: str) -> dict[str, Any]:
    """The signed claims, each present and of its type; Unauthorized otherwise.

    The signature was valid, so a bad payload means a bug or a leaked secret, never a client's typo:
    refuse it like a forgery rather than let a KeyError or TypeError become a 500.
    """
    try:
        claims = json.loads(_unb64(payload))
    except (ValueError, binascii.Error):  # not base64, not UTF-8 or not JSON
        raise Unauthorized("Malformed internal credentials.") from None
    valid = (
        isinstance(claims, dict)
        and _is_text(claims.get("sub"))
        and _is_text(claims.get("aud"))
        and isinstance(claims.get("scp"), list)
        and all(isinstance(scope, str) for scope in claims["scp"])
        and type(claims.get("exp")) is int
        and (claims.get("pat") is None or _is_text(claims["pat"]))
        and (claims.get("knd") is None or _is_text(claims["knd"]))
    )
    if not valid:
        raise Unauthorized("Internal credentials name no valid client, service or scopes.")
    return claims


def verify_internal_token(secret: str, token: str, *, audience: str, now: float | None = None) -> Caller:
    """The caller named by a valid token for service `audience`; Unauthorized for anything forged,
    malformed, expired or meant for another service."""
    return _verify(secret, token, audience=audience, now=time.time() if now is None else now)[0]


def _verify(secret: str, token: str, *, audience: str, now: float) -> tuple[Caller, int]:
    """`verify_internal_token`, with the token's expiry (seconds since the epoch)."""
    parts = token.split(".")
    if len(parts) != 3 or not token.isascii():  # a signature is ASCII; compare_digest refuses other text
        raise Unauthorized("Malformed internal credentials.")
    prefix, payload, signature = parts
    if prefix != TOKEN_PREFIX or not hmac.compare_digest(signature, _sign(secret, payload)):
        raise Unauthorized("Invalid internal credentials.")
    claims = _claims(payload)
    if claims["exp"] < now:
        raise Unauthorized("Expired internal credentials.")
    if claims["aud"] != audience:
        raise Unauthorized("These internal credentials are for another service.")
    caller = Caller(
        subject=claims["sub"],
        scopes=frozenset(claims["scp"]),
        patient=claims.get("pat"),
        kind=claims.get("knd"),
    )
    return caller, claims["exp"]


class TokenSource:
    """Mints one caller's tokens, one per target service, each re-used until shortly before it expires
    (minting costs an HMAC and JSON)."""

    def __init__(
        self,
        secret: str,
        subject: str,
        scopes: frozenset[str] | set[str],
        *,
        patient: str | None = None,
        kind: str | None = None,
    ) -> None:
        self._secret, self._subject, self._scopes = secret, subject, frozenset(scopes)
        self._patient, self._kind = patient, kind
        self._minted: dict[str, tuple[str, float]] = {}  # audience -> (token, renew at)

    def header(self, audience: str) -> str:
        """`Bearer <token>` for a call to the service named `audience`."""
        now = time.time()
        token, renew_at = self._minted.get(audience, ("", 0.0))
        if now >= renew_at:
            token = mint_internal_token(
                self._secret,
                self._subject,
                self._scopes,
                audience=audience,
                now=now,
                patient=self._patient,
                kind=self._kind,
            )
            self._minted[audience] = (token, now + TOKEN_LIFETIME_SECONDS / 2)
        return f"Bearer {token}"


class VerifiedTokens:
    """Tokens already verified, each kept until it expires: a service sees the same few tokens again and
    again (one per calling client or service, re-used for minutes), so each is checked once.

    Bounded: when full, the oldest entry goes. Keyed by the raw token and the (secret, audience) it was
    checked against, so a changed secret or another service's check never sees another's verdict.
    Only successes are kept; a forged or expired token is refused by the full check every time.
    """

    def __init__(self, limit: int = 1024) -> None:
        self._limit = limit
        self._verified: dict[tuple[str, str, str], tuple[Caller, int]] = {}  # key -> (caller, exp)

    def verify(self, secret: str, token: str, *, audience: str, now: float | None = None) -> Caller:
        """`verify_internal_token`, from the cache while the token lives."""
        key = (token, audience, secret)
        found = self._verified.get(key)
        now = time.time() if now is None else now
        if found is not None and found[1] >= now:
            return found[0]
        if found is not None:
            del self._verified[key]
        caller, expiry = _verify(secret, token, audience=audience, now=now)
        if len(self._verified) >= self._limit:
            del self._verified[next(iter(self._verified))]
        self._verified[key] = (caller, expiry)
        return caller

    def __len__(self) -> int:
        return len(self._verified)


_verified_tokens = VerifiedTokens()


def internal_caller(request: Request) -> Caller:
    """The request's caller, its credentials checked once per request (kept in `request.state.caller`,
    where `kit.feedhead` finds it too); Unauthorized without valid ones."""
    caller: Caller | None = getattr(request.state, "caller", None)
    if caller is not None:
        return caller
    header = request.headers.get(INTERNAL_AUTH_HEADER, "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("This service only accepts calls from the gateway or another service.")
    settings = request.app.state.settings
    caller = _verified_tokens.verify(settings.internal_secret, token, audience=settings.service_name)
    request.state.caller = caller
    return caller


async def require_internal_caller(request: Request) -> Caller:
    """Dependency on every service route: refuse calls that did not come through the gateway or a service.

    `async def`, like every dependency here: the check is a dictionary look-up (an HMAC the first time a
    token is seen), far cheaper than the worker-thread hop a plain `def` dependency costs.
    """
    return internal_caller(request)


CallerDep = Annotated[Caller, Depends(require_internal_caller)]


async def require_service_caller(caller: CallerDep) -> Caller:
    """Dependency for what only sibling services may call (a service's own event feed, the hub's
    clean-up on revocation): outside clients, even through the gateway, are refused."""
    if not caller.is_service:
        raise Forbidden("Only patientflow services may call this route.")
    return caller


@dataclass(frozen=True, slots=True)
class ScopeCheck:
    """The dependency `require_scope` builds; `build_service_app` finds it on every route."""

    scope: str
    patients: bool = False

    async def __call__(self, request: Request) -> Caller:
        return self.check(request)

    def check(self, request: Request) -> Caller:
        """The request's caller, if it holds the scope (and may act for a patient here)."""
        # The caller read here, not through CallerDep: each dependency FastAPI solves costs a pass of
        # its solver per request, and this one runs on every route.
        caller = internal_caller(request)
        caller.require(self.scope)
        if caller.patient is not None and not self.patients:
            raise Forbidden(
                "This route is not available to a client acting for a patient.",
                slug="patient-route-forbidden",
            )
        return caller


def require_scope(scope: str, *, patients: bool = False) -> Any:
    """A route's own scope check, so a service decides for itself whatever the gateway let through.

    `@router.get(..., dependencies=[require_scope("results:read")])`, with the scope the gateway's
    route table gives the same route; a route that also needs the caller adds `caller: CallerDep`
    (FastAPI resolves the caller once per request). 403 `scope-missing` without it.
    A caller acting for one patient (an app or kiosk) is refused (403) unless `patients=True`: the
    routes the gateway table gives an `owner`, which then show only that patient's records (`Caller.sees`).
    """
    return Depends(ScopeCheck(scope, patients))


def route_guards(dependant: Any) -> set[str]:
    """The scopes (and `service-only`) a route's dependencies demand, its sub-dependencies included."""
    found: set[str] = set()
    for sub in dependant.dependencies:
        if isinstance(sub.call, ScopeCheck):
            found.add(sub.call.scope)
        elif sub.call is require_service_caller:
            found.add(SERVICE_ONLY)
        found |= route_guards(sub)
    return found
