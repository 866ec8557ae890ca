"""`build_service_app`: the wiring every service shares, so each `create_app` only names its parts."""

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Protocol

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute

from kit.auth import TokenSource, route_guards, service_subject
from kit.client import ServiceClient
from kit.config import ServiceSettings
from kit.database import Database, in_one_hop, service_database
from kit.docs import install_docs
from kit.errors import install_error_handlers
from kit.feed import Feed, FeedConsumer
from kit.feedhead import FeedHeadMiddleware
from kit.health import router as health_router
from kit.logging import configure_process_logging
from kit.metrics import RequestObserver, service_metrics_router
from kit.migrations import upgrade
from kit.models import ConsumedEventBase, FeedCursorBase, OutboxEventBase
from kit.nul import NulGuard
from kit.outbox import OutboxListener, feed_router
from kit.requestid import RequestIdMiddleware
from kit.routing import include_flat, install_lean_routes, install_route_index
from kit.wakeups import close_on_exit_signal

Startup = Callable[[FastAPI, Database], None]


class Worker(Protocol):
    """A background job the app runs for its lifetime (a feed consumer, a delivery loop)."""

    def start(self) -> None: ...
    def stop(self) -> None: ...


WorkerFactory = Callable[[FastAPI, Database], Worker]
FeedModels = tuple[type[FeedCursorBase], type[ConsumedEventBase]]


def build_service_app(
    *,
    settings: ServiceSettings,
    title: str,
    description: str,
    routers: Sequence[APIRouter],
    outbox_model: type[OutboxEventBase],
    migrations_dir: Path,
    siblings: Mapping[str, str] = {},
    feeds: Sequence[Feed] = (),
    feed_models: FeedModels | None = None,
    on_startup: Startup | None = None,
    workers: Sequence[WorkerFactory] = (),
) -> FastAPI:
    """A FastAPI app with the database, migrations, auth, errors, health, request ids and event feed.

    Siblings (name → base URL) and feeds are opened at start-up and closed at shutdown here, so a service
    only names them; `workers` are built once the database is ready, started after the feeds and stopped
    before them. Both use one `service:<name>` token source (`app.state.tokens`), holding `<sibling>:read`
    for each sibling (what `ServiceClient.get` needs); routes reach a client with
    `kit.client.sibling(name)`; `feed_models` (cursor, consumed) record each applied event.
    Every route of `routers` must declare its scope (`kit.auth.require_scope`) or be for sibling
    services only (`require_service_caller`): a route that forgets is refused here, at build time. Both
    guards check the internal credentials first (`kit.auth.internal_caller`): 401 without them.
    Each plain `def` endpoint runs with its commit and close in one worker-thread hop (`include_in_one_hop`).
    """
    if feeds and feed_models is None:
        raise ValueError("Reading feeds needs feed_models: the cursor and consumed-event tables.")
    for router in routers:
        require_guards(router)
    sibling_scopes = {f"{name}:read" for name in siblings}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        database = service_database(settings)
        app.state.database = database
        close_on_exit_signal(database.outbox_commits)  # end the feed's long polls when told to stop
        try:  # even when start-up fails half-way: an engine left to the garbage collector leaks
            async with serving(app, database):
                yield
        finally:
            database.outbox_commits.close()
            database.dispose()

    @asynccontextmanager
    async def serving(app: FastAPI, database: Database) -> AsyncIterator[None]:
        if settings.migrate_on_start:
            upgrade(database, migrations_dir)
        tokens = TokenSource(settings.internal_secret, service_subject(settings.service_name), sibling_scopes)
        app.state.tokens = tokens
        clients = {name: ServiceClient(name, url, tokens) for name, url in siblings.items()}
        app.state.siblings = clients
        if on_startup:
            on_startup(app, database)
        running: list[Worker] = []
        if feed_models:
            cursor_model, consumed_model = feed_models
            running = [
                FeedConsumer(
                    source=feed.source,
                    base_url=feed.url,
                    database=database,
                    cursor_model=cursor_model,
                    consumed_model=consumed_model,
                    handle=feed.bind(app),
                    tokens=tokens,
                    poll_seconds=settings.feed_poll_seconds,
                    event_types=feed.event_types,
                    consumer=settings.service_name,
                    resolve=feed.bind_resolver(app),
                )
                for feed in feeds
            ]
        app.state.consumers = list(running)
        running += [factory(app, database) for factory in workers]
        if not database.is_sqlite:  # other replicas' commits wake this one's feed readers
            app.state.outbox_listener = OutboxListener(database)
            running.insert(0, app.state.outbox_listener)
        for consumer in running:
            consumer.start()
        try:
            yield
        finally:
            for consumer in reversed(running):
                consumer.stop()
            for client in clients.values():
                await client.aclose()

    configure_process_logging(settings)
    app = FastAPI(
        title=title,
        description=description,
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        # No OpenTelemetry (services have their own metrics): FastAPI's check for it costs per request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    install_route_index(app)
    app.state.settings = settings
    app.state.siblings = {}
    install_error_handlers(app)
    app.add_middleware(NulGuard)  # innermost: a NUL in a path, query or JSON body is a 4xx on both databases
    app.add_middleware(FeedHeadMiddleware, outbox=outbox_model)  # sibling callers learn the feed head
    app.add_middleware(RequestObserver, service=settings.service_name)  # inside: sees the request id
    app.add_middleware(RequestIdMiddleware)
    install_docs(app)  # Swagger UI without a CDN
    include_in_one_hop(app, health_router)
    include_in_one_hop(app, service_metrics_router(settings.service_name, outbox_model))
    # No router-wide credential check: every route's guard (required above) checks the credentials
    # itself, and one more dependency would cost each request another pass of FastAPI's solver.
    feed = feed_router(outbox_model)
    require_guards(feed)
    include_in_one_hop(app, feed)
    for router in routers:
        include_in_one_hop(app, router)
    install_lean_routes(app)
    return app


def include_in_one_hop(app: FastAPI, router: APIRouter, dependencies: Sequence[Any] = ()) -> None:
    """Include `router`'s routes (flat, `kit.routing.include_flat`) with each plain `def` endpoint run,
    committed and closed in one worker-thread hop (`kit.database.in_one_hop`); the router is left as is."""
    include_flat(app, router, wrap=in_one_hop, dependencies=dependencies)


def require_guards(router: APIRouter) -> None:
    """ValueError naming any route that checks no scope (deny by default, in each service too)."""
    unguarded = [
        f"{sorted(route.methods or ())} {route.path}"
        for route in router.routes
        if isinstance(route, APIRoute) and not route_guards(route.dependant)
    ]
    if unguarded:
        raise ValueError(f"Routes without a scope (kit.auth.require_scope): {', '.join(unguarded)}")
