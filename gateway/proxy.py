"""Forwarding to the services: an allow-list of headers each way, buffered or streamed relays.

The calls themselves (pooled clients, deadlines, safe retries, circuit breakers, and the mapping of
upstream failures to 502/503/504 problems) are `gateway.upstreams`. A service's own problem+json
passes through unchanged; routes flagged `stream` (server-sent events) are relayed as bytes arrive.
"""

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from gateway.config import GatewaySettings
from gateway.errors import (
    BadGateway,
    MethodNotAllowed,
    PatientTokenMissing,
    PayloadTooLarge,
    RouteNotFound,
)
from gateway.keys import Caller, KeyCache, KnownKey, presented_key
from gateway.limits import RateLimiter, check_page_size, requested_hold, route_burst
from gateway.metrics import ROUTE_KEY
from gateway.models import PATIENT_BOUND_KINDS
from gateway.patients import PATIENT_TOKEN_HEADER, PatientBinding, verify_patient_token
from gateway.resilience import UpstreamError, root_cause
from gateway.routes import API_PREFIX, GatewayRoute, RouteTable
from gateway.upstreams import UpstreamResponse, Upstreams
from kit.auth import TokenSource, service_subject
from kit.errors import ProblemError, problem_response
from kit.requestid import current_request_id

logger = logging.getLogger("patientflow.gateway")

# What a client may tell a service. Everything else (cookies, X-Forwarded-*, the client's own API key)
# stops here; the service learns who is calling from the internal token alone, and where the call
# came from from the X-Forwarded-For the gateway writes itself (`client_address`).
# `last-event-id` and `cache-control` are for event streams (resume point; `no-cache`).
FORWARDED_REQUEST_HEADERS = frozenset(
    {b"content-type", b"accept", b"idempotency-key", b"if-match", b"last-event-id", b"cache-control"}
)
# What a service may tell a client. X-Request-ID is added by the gateway's own middleware.
RETURNED_RESPONSE_HEADERS = frozenset(
    {"content-type", "content-disposition", "location", "retry-after", "etag", "idempotent-replayed"}
)
# An event stream must reach the client as it is written: no caching, no buffering proxy in between.
STREAM_RESPONSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}
NO_BODY_STATUSES = frozenset({204, 304})  # answered without a Content-Length (RFC 9110 §8.6)


class RelayedResponse(Response):
    """A service's buffered answer as the client gets it: the body as it came, the returned headers as
    bytes, and a Content-Length, without Starlette's header-building pass over a dict (`Response`'s
    `init_headers`, a tenth of the gateway's own path per forwarded request)."""

    def __init__(self, body: bytes, status_code: int, headers: list[tuple[bytes, bytes]]) -> None:
        self.body, self.status_code, self.background = body, status_code, None
        if status_code >= 200 and status_code not in NO_BODY_STATUSES:
            headers.append((b"content-length", str(len(body)).encode("ascii")))
        self.raw_headers = headers


def client_address(peer: tuple[str, int] | None) -> bytes:
    """The X-Forwarded-For a service sees: the one address the gateway trusts as the client's. uvicorn
    already resolved it (its `forwarded_allow_ips` decide which proxies' X-Forwarded-For count); what
    the client itself claimed never reaches a service."""
    return (peer[0] if peer else "unknown").encode("latin-1")


def relay_stream(service: str, upstream: UpstreamResponse, headers: dict[str, str]) -> StreamingResponse:
    """Relay an upstream response chunk by chunk; the upstream is closed however the relay ends.

    Starlette stops iterating when the client disconnects and then runs the background task; a cancelled
    relay (the gateway shutting down) closes it in the generator's `finally`.
    """

    async def chunks() -> AsyncIterator[bytes]:
        try:
            async for chunk in upstream.aiter_raw():
                yield chunk
        except UpstreamError as exc:  # the client sees the stream end, and resumes with Last-Event-ID
            logger.info("stream from %s ended: %s", service, type(root_cause(exc)).__name__)
        finally:
            await upstream.aclose()

    return StreamingResponse(
        chunks(),
        status_code=upstream.status_code,
        headers=headers | STREAM_RESPONSE_HEADERS,
        background=BackgroundTask(upstream.aclose),
    )


class Proxy:
    """The `/v1/...` endpoint: authenticate, route, check the scope, forward, relay the answer."""

    def __init__(
        self, settings: GatewaySettings, keys: KeyCache, upstreams: Upstreams, table: RouteTable | None = None
    ) -> None:
        self.settings = settings
        self.keys = keys
        self.upstreams = upstreams
        self.table = table or RouteTable()
        self.limiter = RateLimiter()
        self.patients = PatientBinding(
            self._registration_get, visit_cache_seconds=settings.visit_owner_cache_seconds
        )
        # The gateway's own identity towards registration, for patient and visit look-ups.
        self._lookup_tokens = TokenSource(
            settings.internal_secret, service_subject("gateway"), {"registration:read"}
        )
        self._upstream_urls = {name: url.rstrip("/") for name, url in settings.upstream_urls().items()}

    async def authenticate(self, request: Request, *, act_for_patient: bool = True) -> Caller:
        """Who is calling, counted against the client's rate limit; 401/403/429 problem otherwise.

        For routes the gateway serves itself (journey, metrics, admin); `forward` does the same. An app
        or kiosk must send its patient token (`caller.patient` is then set), unless
        `act_for_patient` is False (starting a patient session). Check the scope with `require`.
        """
        headers = request.headers
        return self._identify(
            headers.get("authorization"),
            headers.get("x-api-key"),
            headers.get(PATIENT_TOKEN_HEADER),
            act_for_patient=act_for_patient,
        )

    def _identify(
        self,
        authorization: str | None,
        api_key: str | None,
        patient_token: str | None,
        *,
        act_for_patient: bool = True,
    ) -> Caller:
        caller = self.admit(self.keys.identify(presented_key(authorization, api_key)))
        settings = self.settings
        if not act_for_patient or caller.kind not in PATIENT_BOUND_KINDS:
            return caller
        if not patient_token:
            raise PatientTokenMissing()
        patient = verify_patient_token(settings.internal_secret, patient_token, client=caller.name)
        return self.keys.for_patient(caller, patient)

    def admit(self, known: KnownKey) -> Caller:
        """A known key's caller, counted against the client's rate limit (429 past it)."""
        caller = known.caller
        rate = known.rate_per_second or self.settings.rate_limit_per_second
        burst = known.rate_burst or self.settings.rate_burst
        self.limiter.check((caller.name, ""), rate, burst, what="this client")
        return caller

    def limit_route(self, caller: Caller, route_key: str) -> None:
        """Count a request against the client's bucket for one route, if that route has a limit."""
        rate = self.settings.route_rate_limits.get(route_key)
        if rate is not None:
            self.limiter.check((caller.name, route_key), rate, route_burst(rate), what=route_key)

    async def call_registration(
        self, method: str, path: str, *, tokens: TokenSource, body: dict[str, Any] | None = None
    ) -> UpstreamResponse:
        """A call of the gateway's own to registration (look-ups, patient-session proofs), as `tokens`
        names it. A GET may be retried; a POST is sent once (a proof tried twice would count twice)."""
        headers = [
            (b"authorization", tokens.header("registration").encode("latin-1")),
            (b"x-request-id", (current_request_id() or "").encode("latin-1")),
            (b"accept", b"application/json"),
        ]
        content = None
        if body is not None:
            headers.append((b"content-type", b"application/json"))
            content = json.dumps(body).encode()
        return await self.upstreams.send("registration", method, path, headers=headers, content=content)

    async def _registration_get(self, path: str) -> dict[str, Any] | None:
        """A registration record for binding a request to a patient; None when there is none (404)."""
        upstream = await self.call_registration("GET", path, tokens=self._lookup_tokens)
        if upstream.status_code == 404:
            return None
        if upstream.status_code != 200:
            raise BadGateway(
                f"The registration service answered {upstream.status_code}.", service="registration"
            )
        body: dict[str, Any] = upstream.json()
        return body

    async def forward(self, request: Request, route: GatewayRoute | None = None) -> Response:
        """Forward one `/v1` request (`route`: the table's match, when the caller made it already)."""
        scope = request.scope
        authorization = api_key = declared_length = patient_token = None
        has_body = False
        headers: list[tuple[bytes, bytes]] = []
        for name, value in scope["headers"]:  # one pass over the raw headers
            if name in FORWARDED_REQUEST_HEADERS:
                headers.append((name, value))
            elif name == b"authorization":
                authorization = value.decode("latin-1")
            elif name == b"x-api-key":
                api_key = value.decode("latin-1")
            elif name == b"content-length":
                declared_length, has_body = value, True
            elif name == b"transfer-encoding":
                has_body = True
            elif name == b"x-patient-token":
                patient_token = value.decode("latin-1")
        caller = self._identify(authorization, api_key, patient_token)

        path = scope["path"][len(API_PREFIX) :]
        route = route or self.table.match(request.method, path)
        scope[ROUTE_KEY] = route  # the metrics and access log label requests by its public template
        if route is None:
            allowed = self.table.allowed_methods(path)
            raise MethodNotAllowed(allowed) if allowed else RouteNotFound()
        caller.require(route.scope)
        self.limit_route(caller, route.key)
        if caller.patient is not None:
            await self.patients.check_request(caller, route, path)
        check_page_size(scope["query_string"], self.settings.max_page_size)

        headers.append((b"authorization", caller.tokens.header(route.service).encode("latin-1")))
        headers.append((b"x-request-id", (current_request_id() or "").encode("latin-1")))
        headers.append((b"x-forwarded-for", client_address(scope.get("client"))))
        # Without Content-Length or Transfer-Encoding a request has no body (RFC 9112 §6.3).
        body = await self._read_body(request, declared_length) if has_body else None
        if caller.patient is not None:
            self.patients.check_body(caller, route, body)
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        raw_target = raw_path[len(API_PREFIX) :].decode("latin-1")
        if route.upstream is not None and not raw_target.startswith(route.upstream[0]):
            # `/v1/%65vents` matched `/events` once decoded, but could not be mapped to `/log`: sent on
            # as it is, it would reach the hub's `/events`, a route nobody checked.
            raise RouteNotFound()
        target = route.upstream_target(raw_target)
        query: bytes = scope["query_string"]
        if query:
            target += "?" + query.decode("latin-1")
        hold = requested_hold(query) if route.holds else 0.0
        upstream = await self.upstreams.send(
            route.service,
            request.method,
            target,
            headers=headers,
            content=body,
            stream=route.stream,
            deadline_seconds=self.settings.deadline_for(route.method, route.key, route.deadline_seconds),
            honours_idempotency_key=route.idempotency_key,
            hold_seconds=hold,
        )
        if caller.patient is not None and not route.stream:
            self.patients.check_response(caller, route, upstream.status_code, upstream.content)
        return await self._relay(route.service, upstream)

    async def _read_body(self, request: Request, declared_length: bytes | None) -> bytes | None:
        limit = self.settings.max_body_bytes
        too_large = PayloadTooLarge(f"Request bodies are limited to {limit} bytes.")
        if declared_length is not None and declared_length.isdigit() and int(declared_length) > limit:
            raise too_large
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise too_large
        return bytes(body) or None

    async def _relay(self, service: str, upstream: UpstreamResponse) -> Response:
        if upstream.stream is None:  # buffered: the whole body is in hand
            raw = [
                (name.encode("latin-1"), self._returned(service, name, value).encode("latin-1"))
                for name, value in upstream.headers
                if name in RETURNED_RESPONSE_HEADERS
            ]
            return RelayedResponse(upstream.content, upstream.status_code, raw)
        headers = {
            name: self._returned(service, name, value)
            for name, value in upstream.headers
            if name in RETURNED_RESPONSE_HEADERS
        }
        if upstream.status_code != 200:  # a stream route's refusal is a small problem body: relay it whole
            try:
                async with asyncio.timeout(self.settings.read_timeout):
                    content = await upstream.aread()
            finally:
                await upstream.aclose()
            return Response(content, status_code=upstream.status_code, headers=headers)
        return relay_stream(service, upstream, headers)

    def _returned(self, service: str, name: str, value: str) -> str:
        return self._public_location(service, value) if name == "location" else value

    def _public_location(self, service: str, location: str) -> str:
        """Keep a redirect inside the public API: service-local paths get the `/v1` prefix back."""
        base = self._upstream_urls[service]
        if location.startswith(base + "/"):
            location = location[len(base) :]
        if location.startswith("/") and not location.startswith(API_PREFIX + "/"):
            location = API_PREFIX + location
        return location


class Forwarder:
    """The innermost ASGI app of the gateway's lean path (`gateway.app.GatewayApp`): `Proxy.forward`
    for the route the app already matched, its problems rendered as the error handlers would."""

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            response = await self.proxy.forward(Request(scope, receive), scope[ROUTE_KEY])
        except ProblemError as exc:
            response = problem_response(exc.to_problem(), exc.headers)
        await response(scope, receive, send)
