"""The problems only the gateway raises: authentication, routing and upstream failures."""

from typing import Any

from kit.errors import Forbidden, NotFound, ProblemError, ServiceUnavailable, Unauthorized


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


class ScopeMissing(Forbidden):
    slug = "scope-missing"

    def __init__(self, scope: str) -> None:
        super().__init__(f"This route needs the scope {scope!r}, which your API key lacks.", scope=scope)


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


class UpstreamUnreachable(ProblemError):
    """The service refused the connection or dropped it before answering."""

    status, title, slug = 502, "Bad gateway", "upstream-unreachable"


class UpstreamTimeout(ProblemError):
    """The service took the request but did not answer in time; its effect is unknown."""

    status, title, slug = 504, "Gateway timeout", "upstream-timeout"


class BadGateway(ProblemError):
    """The service answered something that is not a usable HTTP response."""

    status, title, slug = 502, "Bad gateway", "bad-gateway"
