"""Prometheus metrics and the access log: one pure-ASGI middleware observes every request.

Metrics live in prometheus_client's default registry, defined once here (a test process builds many
apps; defining them per app would raise "Duplicated timeseries") and told apart by the `service` label.
Requests are labelled by route template, never the raw path: ids in paths would make a new series per
patient. Requests that match no route are labelled `other`.
"""

import logging
import time
from collections.abc import Callable

from fastapi import APIRouter
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest
from sqlalchemy import func
from sqlmodel import select
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kit.database import Database
from kit.logging import ACCESS_LOGGER, log_plain
from kit.models import OutboxEventBase

UNMATCHED = "other"
# Routes machines poll several times a second (feeds, health checks, scrapes): a good answer is logged
# at DEBUG, or they would fill the log (3 MB per service in 16 minutes at INFO); a failed one at INFO.
POLLED_ROUTES = frozenset({"/events", "/healthz", "/readyz", "/metrics"})
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_LABELS = ("service", "route", "method", "status")

HTTP_REQUESTS = Counter("patientflow_http_requests", "HTTP requests answered, by route template.", _LABELS)
HTTP_DURATION = Histogram(
    "patientflow_http_request_duration_seconds",
    "Time from request to the end of the response, by route template.",
    _LABELS,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
FEED_LAG = Gauge(
    "patientflow_feed_lag_seconds",
    "Age of the last event a feed consumer applied (0 when caught up).",
    ("consumer", "source"),
)
FEED_CURSOR = Gauge(
    "patientflow_feed_cursor",
    "The source position a feed consumer has applied up to.",
    ("consumer", "source"),
)
OUTBOX_POSITION = Gauge(
    "patientflow_outbox_position",
    "The highest position in a service's outbox (its event feed).",
    ("service",),
)

RouteTemplate = Callable[[Scope], str | None]
access_logger = logging.getLogger(ACCESS_LOGGER)


def starlette_route_template(scope: Scope) -> str | None:
    """The template of the route Starlette matched (`/visits/{visit_id}`), set in the scope by the router."""
    route = scope.get("route")
    return getattr(route, "path_format", None) if route is not None else None


class RequestObserver:
    """Counts each request, times it and writes one access-log line, by route template.

    Pure ASGI (no BaseHTTPMiddleware): per request, one closure and two clock reads. The (counter,
    histogram) children are cached per label set, skipping prometheus_client's locked label lookup.
    Install it inside RequestIdMiddleware so the access line carries the request id. `route_template`
    lets an app name routes the router cannot see (the gateway's catch-all forwards every `/v1` path).
    """

    def __init__(self, app: ASGIApp, *, service: str, route_template: RouteTemplate | None = None) -> None:
        self.app = app
        self.service = service
        self.route_template = route_template
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets if the app raises before answering

        async def observe_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observe_status)
        finally:
            self._record(scope, status, time.perf_counter() - started)

    def _record(self, scope: Scope, status: int, seconds: float) -> None:
        route = (self.route_template and self.route_template(scope)) or starlette_route_template(scope)
        route = route or UNMATCHED
        method = scope["method"] if scope["method"] in KNOWN_METHODS else UNMATCHED
        key = (route, method, status)
        children = self._children.get(key)
        if children is None:
            labels = (self.service, route, method, str(status))
            children = self._children[key] = (HTTP_REQUESTS.labels(*labels), HTTP_DURATION.labels(*labels))
        children[0].inc()
        children[1].observe(seconds)
        level = logging.DEBUG if route in POLLED_ROUTES and status < 400 else logging.INFO
        if access_logger.isEnabledFor(level):
            # Never the query string or a body: either may hold an identity number or a name. A route
            # template, a method and a status hold no personal data: written without the masking pass.
            milliseconds = seconds * 1000
            log_plain(
                access_logger,
                level,
                f"{method} {route} {status} {milliseconds:.1f} ms",
                {"method": method, "route": route, "status": status, "duration_ms": round(milliseconds, 2)},
            )


def metrics_response() -> Response:
    """The default registry in Prometheus' text format."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def service_metrics_router(service: str, outbox: type[OutboxEventBase]) -> APIRouter:
    """`GET /metrics` for a service: open, as services listen on the internal network only.

    The outbox position is read at scrape time (the max of an indexed key), not on every commit.
    """
    router = APIRouter()

    @router.get("/metrics", include_in_schema=False)
    def read_metrics(request: Request) -> Response:
        database: Database = request.app.state.database
        with database.session(write=False) as session:
            position = session.exec(select(func.max(outbox.position))).one()
        OUTBOX_POSITION.labels(service).set(position or 0)
        return metrics_response()

    return router
