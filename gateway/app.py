"""The gateway's ASGI app: health routes plus one catch-all `/v1/...` route that forwards."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.routing import Route

from gateway.config import GatewaySettings, get_settings
from gateway.keys import KeyRing
from gateway.proxy import Proxy, Upstreams
from gateway.routes import API_PREFIX
from kit.errors import install_error_handlers, problem, problem_response
from kit.logging import configure_logging
from kit.requestid import RequestIdMiddleware

logger = logging.getLogger("patientflow.gateway")
PROXIED_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def load_key_ring(settings: GatewaySettings) -> KeyRing:
    """The API keys; production refuses to start with none (development starts, denying everyone)."""
    if settings.api_keys_file is None:
        keys = KeyRing({})
    else:
        keys = KeyRing.from_file(settings.api_keys_file, settings.internal_secret)
    if not keys:
        if settings.environment == "production":
            raise ValueError("The API keys file holds no keys; production refuses to start")
        logger.warning("No API keys loaded: every /v1 request will be refused")
    return keys


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    settings = settings or get_settings()
    if settings.environment != "test":
        configure_logging(settings.service_name)
    keys = load_key_ring(settings)
    upstreams = Upstreams(settings)
    proxy = Proxy(settings, keys, upstreams)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        upstreams.open()
        try:
            yield
        finally:
            await upstreams.aclose()

    app = FastAPI(
        title="patientflow gateway",
        description="The public API: every service route under `/v1`, behind API keys and scopes.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.upstreams = upstreams
    install_error_handlers(app)
    app.add_middleware(RequestIdMiddleware)

    @app.get("/healthz", tags=["health"], summary="Liveness")
    async def healthz() -> dict[str, str]:
        """200 while the gateway process is up, whatever the services do."""
        return {"status": "ok", "service": settings.service_name}

    @app.get("/readyz", tags=["health"], summary="Readiness", response_model=None)
    async def readyz(request: Request) -> dict[str, Any] | JSONResponse:
        """200 when every service answers its own `/readyz`; 503 problem+json naming those that don't."""
        upstream_states = await request.app.state.upstreams.readiness()
        if all(state == "ready" for state in upstream_states.values()):
            return {"status": "ready", "service": settings.service_name, "upstreams": upstream_states}
        down = sorted(name for name, state in upstream_states.items() if state != "ready")
        body = problem(
            503, "Not ready", f"Not ready: {', '.join(down)}.", slug="not-ready", upstreams=upstream_states
        )
        return problem_response(body, {"Retry-After": str(settings.retry_after_seconds)})

    # A plain Starlette route: no FastAPI dependency or validation layer on the hot path.
    app.router.routes.append(
        Route(f"{API_PREFIX}/{{path:path}}", proxy.forward, methods=PROXIED_METHODS, include_in_schema=False)
    )
    return app
