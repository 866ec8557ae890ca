"""Every problem the gateway raises itself: authentication, API clients, patient binding, routing, limits
and upstream failures. A service's own problem+json passes through the gateway unchanged instead."""

from typing import Any

from kit.errors import BadGateway as BadGateway
from kit.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    ProblemError,
    ServiceUnavailable,
    Unauthorized,
    UnprocessableContent,
)

# --- API keys and scopes (gateway/keys.py) ---------------------------------------------------------


class MissingApiKey(Unauthorized):
    slug = "api-key-missing"

    def __init__(self, detail: str = "Send your API key as `Authorization: Bearer <key>`.") -> None:
        super().__init__(detail)
        self.headers["WWW-Authenticate"] = "Bearer"


class InvalidApiKey(Unauthorized):
    slug = "api-key-invalid"

    def __init__(self) -> None:
        super().__init__("The API key is not valid.")
        self.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'


class ApiKeyExpired(Unauthorized):
    slug = "api-key-expired"

    def __init__(self) -> None:
        super().__init__("The API key has expired; ask for a new one.")
        self.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'


class ApiKeyRevoked(Unauthorized):
    slug = "api-key-revoked"

    def __init__(self) -> None:
        super().__init__("The API key has been revoked.")
        self.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'


class ScopeMissing(Forbidden):
    slug = "scope-missing"

    def __init__(self, scope: str) -> None:
        super().__init__(f"This route needs the scope {scope!r}, which your API key lacks.", scope=scope)


# --- API clients (the admin API and `patientflow keys`) --------------------------------------------


class ClientNotFound(NotFound):
    slug = "client-not-found"


class ClientExists(Conflict):
    slug = "client-exists"


class ClientRevoked(Conflict):
    slug = "client-revoked"


class SubscriptionsNotDropped(ServiceUnavailable):
    slug = "subscriptions-not-dropped"

    def __init__(self, name: str, *, retry_after: int) -> None:
        super().__init__(
            f"The event hub could not stop the webhook subscriptions of {name!r}, so nothing was revoked "
            "and its key still works. Retry the revocation.",
            retry_after=retry_after,
            client=name,
        )


# --- patient tokens and sessions (gateway/patients.py, the patient-session routes) ----------------


class PatientTokenMissing(Forbidden):
    slug = "patient-token-missing"

    def __init__(self) -> None:
        super().__init__(
            "Clients of this kind act for one patient: send `X-Patient-Token` from POST /v1/patient-sessions."
        )


class PatientTokenInvalid(Forbidden):
    slug = "patient-token-invalid"

    def __init__(self, detail: str = "The patient token is not valid for this client.") -> None:
        super().__init__(detail)


class PatientTokenExpired(Forbidden):
    slug = "patient-token-expired"

    def __init__(self) -> None:
        super().__init__("The patient token has expired; start a new patient session.")


class PatientRouteForbidden(Forbidden):
    slug = "patient-route-forbidden"

    def __init__(self) -> None:
        super().__init__("This route is not available to a client acting for a patient.")


class PatientSessionForbidden(Forbidden):
    slug = "patient-session-forbidden"

    def __init__(self, kind: str) -> None:
        super().__init__(
            f"Only app, kiosk and phone clients start patient sessions; this client is a {kind}."
        )


class ChallengeForbidden(Forbidden):
    slug = "patient-session-forbidden"

    def __init__(self, kind: str) -> None:
        super().__init__(f"Only app and phone clients ask for one-time codes; this client is a {kind}.")


class PatientProofRefused(Forbidden):
    """The one answer to every failed proof: nothing in it tells a wrong code from a locked patient."""

    slug = "patient-proof-refused"

    def __init__(self) -> None:
        super().__init__("The patient could not be verified.")


class ProofNotForKind(UnprocessableContent):
    slug = "proof-not-for-client-kind"

    def __init__(self, kind: str) -> None:
        wanted = "slip_code with birth_date or phone_last4" if kind == "kiosk" else "id_number with otp"
        super().__init__(f"A {kind} client opens a patient session with {wanted}.")


# --- the calling board (gateway/board.py) ----------------------------------------------------------


class BoardSessionMissing(Unauthorized):
    """No board session cookie, or one that no longer works (forged, expired, its key revoked)."""

    slug = "board-session-missing"

    def __init__(
        self, detail: str = "This screen has no board session: provision it with a board key."
    ) -> None:
        super().__init__(detail)


class BoardSessionForbidden(Forbidden):
    slug = "board-session-forbidden"

    def __init__(self, kind: str) -> None:
        super().__init__(
            f"Only board clients holding 'board:read' open board sessions; this client is a {kind}."
        )


class KeyInUrlRefused(BadRequest):
    """A board URL with a query string: keys never travel in URLs (logs, history, Referer keep them)."""

    slug = "key-in-url-refused"

    def __init__(self) -> None:
        super().__init__(
            "Board URLs take no query string: never put an API key in a URL. Provision the screen from "
            "the board page's form, which sends the key in the Authorization header once."
        )


# A record of another patient answers exactly as a missing one does (registration's own 404s say the
# same), so a patient-bound client cannot probe which ids exist.


class PatientNotFound(NotFound):
    slug, title = "patient-not-found", "Patient not found"

    def __init__(self) -> None:
        super().__init__("No such patient.")


class VisitNotFound(NotFound):
    """No such visit, or another patient's (the patient binding and the journey view)."""

    slug, title = "visit-not-found", "Visit not found"

    def __init__(self) -> None:
        super().__init__("No such visit.")


class RecordNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__("No such record.")


# --- routing and limits (gateway/proxy.py, gateway/limits.py) --------------------------------------


class RouteNotFound(NotFound):
    slug = "route-not-found"

    def __init__(self) -> None:
        super().__init__("No such route.")


class MethodNotAllowed(ProblemError):
    status, title, slug = 405, "Method not allowed", "method-not-allowed"

    def __init__(self, allowed: list[str]) -> None:
        super().__init__(f"This route accepts {', '.join(allowed)}.")
        self.headers["Allow"] = ", ".join(allowed)


class PayloadTooLarge(ProblemError):
    status, title, slug = 413, "Content too large", "payload-too-large"


class RateLimited(ProblemError):
    """429: the client sent more than its limit allows; `Retry-After` says when a request will pass."""

    status, title, slug = 429, "Too many requests", "rate-limited"

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail, retry_after=retry_after)
        self.headers["Retry-After"] = str(retry_after)


class PageTooLarge(BadRequest):
    slug = "page-size-too-large"

    def __init__(self, cap: int) -> None:
        super().__init__(f"`limit` may be at most {cap}.", max_page_size=cap)


# --- upstream failures (gateway/upstreams.py; the table at its top) --------------------------------


class UpstreamUnavailable(ServiceUnavailable):
    """The gateway will not call the service now: safe to retry after `Retry-After` seconds."""

    slug = "upstream-unavailable"

    def __init__(self, detail: str, *, service: str, retry_after: int, **extra: Any) -> None:
        super().__init__(detail, retry_after=retry_after, service=service, **extra)


class CircuitOpen(UpstreamUnavailable):
    """The service failed repeatedly; calls fail fast until a health check sees it ready again."""

    slug = "circuit-open"

    def __init__(self, service: str, *, retry_after: int) -> None:
        detail = f"The {service} service is failing; the gateway stopped calling it for now."
        super().__init__(detail, service=service, retry_after=retry_after)


class RegistrationUnavailable(UpstreamUnavailable):
    """The journey view cannot answer without registration's visit."""

    slug = "journey-unavailable"

    def __init__(self, retry_after: int) -> None:
        detail = "The journey needs the registration service, which did not answer."
        super().__init__(detail, service="registration", retry_after=retry_after)


class UpstreamUnreachable(ProblemError):
    """The service refused the connection or dropped it before answering."""

    status, title, slug = 502, "Bad gateway", "upstream-unreachable"


class UpstreamTimeout(ProblemError):
    """The service took the request but did not answer in time; its effect is unknown."""

    status, title, slug = 504, "Gateway timeout", "upstream-timeout"
