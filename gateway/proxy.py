"""Forwarding to the services: one long-lived client each, an allow-list of headers, bounded waits.

Every upstream failure becomes a problem+json the client can act on: the service could not be
reached -> 503 with Retry-After; it took the request but did not answer in time -> 504; it answered
something unusable -> 502. A service's own problem+json passes through unchanged. Nothing is retried
here: a POST that may have reached the service must not run twice behind the caller's back. (aiohttp
itself resends an idempotent request once when a kept-alive connection turns out closed, RFC 9112
§9.3.1.1; never a POST.)
"""

import asyncio
import logging

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport
from starlette.requests import Request
from starlette.responses import Response

from gateway.config import GatewaySettings
from gateway.errors import (
    BadGateway,
    MethodNotAllowed,
    PayloadTooLarge,
    RouteNotFound,
    ScopeMissing,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from gateway.keys import KeyRing, presented_key
from gateway.routes import API_PREFIX, RouteTable
from kit.errors import PROBLEM_MEDIA_TYPE, ProblemError
from kit.requestid import current_request_id

logger = logging.getLogger("patientflow.gateway")

# What a client may tell a service. Everything else (cookies, X-Forwarded-*, the client's own API key)
# stops here; the service learns who is calling from the internal token alone.
FORWARDED_REQUEST_HEADERS = frozenset({b"content-type", b"accept", b"idempotency-key", b"if-match"})
# What a service may tell a client. X-Request-ID is added by the gateway's own middleware.
RETURNED_RESPONSE_HEADERS = frozenset(
    {"content-type", "location", "retry-after", "etag", "idempotent-replayed"}
)
UPSTREAM_HEADERS = {"accept-encoding": "identity", "user-agent": "patientflow-gateway"}
UpstreamError = (httpx.HTTPError, aiohttp.ClientError, OSError)  # OSError includes TimeoutError


def open_client(base_url: str, settings: GatewaySettings) -> httpx.AsyncClient:
    """A pooled client for one service; `aiohttp` underneath unless the settings ask for httpcore."""
    timeout = httpx.Timeout(
        connect=settings.connect_timeout,
        read=settings.read_timeout,
        write=settings.write_timeout,
        pool=settings.pool_timeout,
    )
    limits = httpx.Limits(
        max_connections=settings.pool_size,
        max_keepalive_connections=settings.pool_size,
        keepalive_expiry=settings.keepalive_seconds,
    )
    transport = AiohttpTransport(limits=limits) if settings.upstream_transport == "aiohttp" else None
    return httpx.AsyncClient(
        base_url=base_url.rstrip("/"),
        timeout=timeout,
        limits=limits,
        transport=transport,
        headers=UPSTREAM_HEADERS,
        follow_redirects=False,
        trust_env=False,
    )


class Upstreams:
    """The services' clients, opened in the gateway's lifespan and closed with it."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.clients: dict[str, httpx.AsyncClient] = {}

    def open(self) -> None:
        urls = self.settings.upstream_urls()
        self.clients = {name: open_client(url, self.settings) for name, url in urls.items()}

    async def aclose(self) -> None:
        for client in self.clients.values():
            await client.aclose()
        self.clients = {}

    async def readiness(self) -> dict[str, str]:
        """Each service's answer to its own `/readyz`: `ready`, `not ready (<status>)` or `unreachable`."""
        names = list(self.clients)
        answers = await asyncio.gather(*(self._probe(self.clients[name]) for name in names))
        return dict(zip(names, answers, strict=True))

    async def _probe(self, client: httpx.AsyncClient) -> str:
        try:
            async with asyncio.timeout(self.settings.readiness_timeout):
                response = await client.get("/readyz")
        except UpstreamError:
            return "unreachable"
        return "ready" if response.status_code == 200 else f"not ready ({response.status_code})"


def root_cause(exc: BaseException) -> BaseException:
    """The aiohttp exception under an httpx one, when there is one.

    httpx-aiohttp 0.2 reports a refused or reset connection as `httpx.ConnectTimeout` (and lets some
    protocol errors through unwrapped), so only the original says what happened.
    """
    return exc.__cause__ if isinstance(exc.__cause__, aiohttp.ClientError) else exc


def upstream_failure(service: str, exc: BaseException, *, retry_after: int) -> ProblemError:
    """The problem for a call that got no usable answer."""
    root = root_cause(exc)
    # The request never reached the service: no connection in time, or none to be had.
    if isinstance(root, aiohttp.ConnectionTimeoutError | httpx.ConnectTimeout | httpx.PoolTimeout):
        return UpstreamUnavailable(
            f"The {service} service did not accept a connection in time.",
            service=service,
            retry_after=retry_after,
        )
    if isinstance(root, aiohttp.ServerTimeoutError | httpx.TimeoutException | TimeoutError):
        return UpstreamTimeout(f"The {service} service did not answer in time.", service=service)
    if isinstance(
        root,
        aiohttp.ClientConnectorError
        | aiohttp.ServerDisconnectedError
        | aiohttp.ClientOSError
        | httpx.ConnectError
        | httpx.ReadError
        | httpx.WriteError
        | ConnectionError,
    ):
        return UpstreamUnavailable(
            f"The {service} service is unavailable.", service=service, retry_after=retry_after
        )
    return BadGateway(f"The {service} service sent an invalid response.", service=service)


class Proxy:
    """The `/v1/...` endpoint: authenticate, route, check the scope, forward, relay the answer."""

    def __init__(
        self, settings: GatewaySettings, keys: KeyRing, upstreams: Upstreams, table: RouteTable | None = None
    ) -> None:
        self.settings = settings
        self.keys = keys
        self.upstreams = upstreams
        self.table = table or RouteTable()
        self._upstream_urls = {name: url.rstrip("/") for name, url in settings.upstream_urls().items()}

    async def forward(self, request: Request) -> Response:
        scope = request.scope
        authorization = api_key = declared_length = None
        headers: list[tuple[bytes, bytes]] = []
        for name, value in scope["headers"]:  # one pass over the raw headers
            if name in FORWARDED_REQUEST_HEADERS:
                headers.append((name, value))
            elif name == b"authorization":
                authorization = value.decode("latin-1")
            elif name == b"x-api-key":
                api_key = value.decode("latin-1")
            elif name == b"content-length":
                declared_length = value
        client = self.keys.identify(presented_key(authorization, api_key))

        path = scope["path"][len(API_PREFIX) :]
        route = self.table.match(request.method, path)
        if route is None:
            allowed = self.table.allowed_methods(path)
            raise MethodNotAllowed(allowed) if allowed else RouteNotFound()
        if route.scope not in client.scopes:
            raise ScopeMissing(route.scope)

        headers.append((b"authorization", client.tokens.header().encode("latin-1")))
        headers.append((b"x-request-id", (current_request_id() or "").encode("latin-1")))
        body = await self._read_body(request, declared_length)
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        target = route.upstream_target(raw_path[len(API_PREFIX) :].decode("latin-1"))
        if scope["query_string"]:
            target += "?" + scope["query_string"].decode("latin-1")
        upstream = await self._send(route.service, request.method, target, headers, body)
        return self._relay(route.service, upstream)

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

    async def _send(
        self, service: str, method: str, target: str, headers: list[tuple[bytes, bytes]], body: bytes | None
    ) -> httpx.Response:
        client = self.upstreams.clients[service]
        try:
            async with asyncio.timeout(self.settings.deadline_seconds):
                return await client.request(method, target, content=body, headers=headers)
        except UpstreamError as exc:
            problem = upstream_failure(service, exc, retry_after=self.settings.retry_after_seconds)
            cause = type(root_cause(exc)).__name__
            logger.warning("%s to %s answered %s: %s", method, service, problem.status, cause)
            raise problem from exc

    def _relay(self, service: str, upstream: httpx.Response) -> Response:
        content_type = upstream.headers.get("content-type", "")
        if upstream.status_code >= 500 and not content_type.startswith(PROBLEM_MEDIA_TYPE):
            # Not one of our services' problems (a crash page, a proxy in between): don't relay it.
            raise BadGateway(f"The {service} service failed ({upstream.status_code}).", service=service)
        headers = {}
        for name, value in upstream.headers.multi_items():
            if name in RETURNED_RESPONSE_HEADERS:
                headers[name] = self._public_location(service, value) if name == "location" else value
        return Response(upstream.content, status_code=upstream.status_code, headers=headers)

    def _public_location(self, service: str, location: str) -> str:
        """Keep a redirect inside the public API: service-local paths get the `/v1` prefix back."""
        base = self._upstream_urls[service]
        if location.startswith(base + "/"):
            location = location[len(base) :]
        if location.startswith("/") and not location.startswith(API_PREFIX + "/"):
            location = API_PREFIX + location
        return location
