"""The gateway's ASGI app: health routes plus one catch-all `/v1/...` route that forwards."""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.admin import router as admin_router
from gateway.api_clients import open_api_client_store
from gateway.board import board_router
from gateway.board_feed import BoardFeed
from gateway.config import GatewaySettings, get_settings
from gateway.journey import journey_router
from gateway.keys import KeyCache
from gateway.metrics import ROUTE_KEY, gateway_route_template, metrics_endpoint, watch_circuits
from gateway.openapi import install_openapi
from gateway.proxy import Forwarder, Proxy, Upstreams
from gateway.routes import API_PREFIX, RouteTable
from gateway.sessions import router as patient_sessions_router
from kit.errors import install_error_handlers, problem, problem_response
from kit.logging import configure_process_logging
from kit.metrics import RequestObserver
from kit.requestid import RequestIdMiddleware
from kit.wakeups import close_on_exit_signal

logger = logging.getLogger("patientflow.gateway")
PROXIED_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


class GatewayApp(FastAPI):
    """FastAPI, with a lean path for the requests of the route table (nearly every request): the
    server-error handler, request ids, metrics and access log, then `Proxy.forward`; the same layers
    and order as FastAPI's own stack, where the route table's requests met nothing else that acts.

    Through FastAPI they also went through `FastAPI.__call__`'s telemetry check, `Starlette.__call__`,
    FastAPI's exception-telemetry and body-limit middleware (neither on here) and a middleware that
    sent them on to the proxy before the router: a coroutine frame or two each per request. Anything
    the table does not have (the gateway's own routes, 404, 405) takes FastAPI's stack.
    """

    lean: ASGIApp | None = None  # set by `create_app`, once the error handlers are installed
    table: RouteTable

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.lean is not None and scope["path"].startswith(LEAN_PREFIX):
            route = self.table.match(scope["method"], scope["path"][len(API_PREFIX) :])
            if route is not None:
                scope["app"] = self
                scope[ROUTE_KEY] = route
                await self.lean(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


LEAN_PREFIX = API_PREFIX + "/"


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_process_logging(settings)
    keys = KeyCache(settings.internal_secret)  # filled from the API clients table at start-up
    upstreams = Upstreams(settings)
    proxy = Proxy(settings, keys, upstreams)
    board_feed = BoardFeed(
        upstreams, settings.internal_secret, retry_seconds=settings.board_feed_retry_seconds
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        api_clients = await anyio.to_thread.run_sync(
            open_api_client_store, settings, settings.api_keys_file, keys
        )
        app.state.api_clients = api_clients
        refresher = asyncio.create_task(api_clients.refresh_forever(settings.keys_refresh_seconds))
        upstreams.open()
        close_on_exit_signal(board_feed.changes)  # end the board streams as soon as we are told to stop
        try:
            yield
        finally:
            await board_feed.aclose()
            await upstreams.aclose()
            refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await refresher
            await anyio.to_thread.run_sync(api_clients.close)

    app = GatewayApp(
        title="patientflow gateway",
        description="The public API: every service route under `/v1`, behind API keys and scopes.",
        version="0.1.0",
        lifespan=lifespan,
        openapi_url=None,  # gateway/openapi.py serves the aggregated document and /docs instead
        docs_url=None,
        redoc_url=None,
        # No OpenTelemetry here (the gateway has its own metrics): FastAPI's check for it costs per request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.state.upstreams = upstreams
    app.state.proxy = proxy
    app.state.board_feed = board_feed
    install_error_handlers(app)
    watch_circuits(upstreams)
    app.add_middleware(RequestObserver, service=settings.service_name, route_template=gateway_route_template)
    app.add_middleware(RequestIdMiddleware)
    app.table = proxy.table
    observed = RequestObserver(
        Forwarder(proxy), service=settings.service_name, route_template=gateway_route_template
    )
    app.lean = ServerErrorMiddleware(
        RequestIdMiddleware(observed),
        handler=app.exception_handlers[Exception],
        debug=app.debug,
    )
    app.add_route("/metrics", metrics_endpoint(proxy.authenticate), methods=["GET"], include_in_schema=False)
    install_openapi(app, upstreams, proxy.table, settings.internal_secret)

    @app.get("/healthz", tags=["health"], summary="Liveness")
    async def healthz() -> dict[str, str]:
        """200 while the gateway process is up, whatever the services do."""
        return {"status": "ok", "service": settings.service_name}

    @app.get("/readyz", tags=["health"], summary="Readiness", response_model=None)
    async def readyz(request: Request) -> dict[str, Any] | JSONResponse:
        """200 when every service answers its own `/readyz`; 503 problem+json naming those that don't."""
        upstream_states = await upstreams.readiness()
        circuits = upstreams.circuit_states()  # what the gateway does with each service's calls now
        if all(state == "ready" for state in upstream_states.values()):
            return {
                "status": "ready",
                "service": settings.service_name,
                "upstreams": upstream_states,
                "circuits": circuits,
            }
        down = sorted(name for name, state in upstream_states.items() if state != "ready")
        detail = f"Not ready: {', '.join(down)}."
        body = problem(
            503, "Not ready", detail, slug="not-ready", upstreams=upstream_states, circuits=circuits
        )
        return problem_response(body, {"Retry-After": str(settings.retry_after_seconds)})

    app.include_router(admin_router)
    app.include_router(patient_sessions_router)
    app.include_router(journey_router(settings, proxy, upstreams))  # before the catch-all
    app.include_router(board_router(settings, proxy, upstreams, board_feed))
    # A plain Starlette route: no FastAPI dependency or validation layer on the hot path.
    app.router.routes.append(
        Route(f"{API_PREFIX}/{{path:path}}", proxy.forward, methods=PROXIED_METHODS, include_in_schema=False)
    )
    return app
