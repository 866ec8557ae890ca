"""`build_service_app`: the wiring every service shares, so each `create_app` only names its parts."""

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import APIRouter, Depends, FastAPI

from kit.auth import require_internal_caller
from kit.config import ServiceSettings
from kit.database import Database
from kit.errors import install_error_handlers
from kit.feed import FeedConsumer
from kit.health import router as health_router
from kit.logging import configure_logging
from kit.migrations import upgrade
from kit.models import OutboxEventBase
from kit.outbox import feed_router
from kit.requestid import RequestIdMiddleware

Startup = Callable[[FastAPI, Database], None]
ConsumersFactory = Callable[[FastAPI, Database], list[FeedConsumer]]


def build_service_app(
    *,
    settings: ServiceSettings,
    title: str,
    description: str,
    routers: Sequence[APIRouter],
    outbox_model: type[OutboxEventBase],
    migrations_dir: Path,
    on_startup: Startup | None = None,
    consumers: ConsumersFactory | None = None,
) -> FastAPI:
    """A FastAPI app with the database, migrations, auth, errors, health, request ids and event feed."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        database = Database(settings.resolved_database_url, settings.resolved_schema)
        app.state.database = database
        if settings.migrate_on_start:
            upgrade(database, migrations_dir)
        if on_startup:
            on_startup(app, database)
        running = consumers(app, database) if consumers else []
        for consumer in running:
            consumer.start()
        app.state.consumers = running
        try:
            yield
        finally:
            for consumer in running:
                consumer.stop()
            for close in getattr(app.state, "closers", []):
                close()
            database.dispose()

    if settings.environment != "test":
        configure_logging(settings.service_name)
    app = FastAPI(title=title, description=description, version="0.1.0", lifespan=lifespan)
    app.state.settings = settings
    app.state.closers = []
    install_error_handlers(app)
    app.add_middleware(RequestIdMiddleware)
    app.include_router(health_router)
    protected = [Depends(require_internal_caller)]
    app.include_router(feed_router(outbox_model), dependencies=protected)
    for router in routers:
        app.include_router(router, dependencies=protected)
    return app
