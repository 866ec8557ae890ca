"""Test helpers shared by every service's tests: settings on the test database, clean tables, credentials.

`PATIENTFLOW_TEST_DATABASE_URL` selects the server (unset: SQLite files in a temporary directory).
On PostgreSQL each service gets its own `test_<service>` schema.
"""

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import httpx
import uvicorn
from fastapi import FastAPI, Query
from fastapi.testclient import TestClient
from sqlalchemy import MetaData, Table, delete, func, inspect, select, text
from sqlalchemy import event as sa_event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session as OrmSession
from sqlmodel import Session
from starlette.types import ASGIApp

from kit.auth import mint_internal_token
from kit.config import ServiceSettings
from kit.database import WIPE_FUNCTION, WIPE_SETTING, Database
from kit.params import CursorQuery, page_size
from kit.serving import OneSendHttpToolsProtocol
from kit.wakeups import Wakeup

TEST_SECRET = "test-internal-secret-not-for-production"
S = TypeVar("S", bound=ServiceSettings)
T = TypeVar("T")


STARTUP_DEADLINE_SECONDS = 30.0
HTTP_TIMEOUT_SECONDS = 60.0
"""How long a test's own HTTP client waits for an answer: a guard against a hang, not a deadline. On a
loaded shared host one request can stall for seconds (httpx's default 5 s once failed CI on a ticket that
took 5.8 s), and no test asserts a wall-clock time."""


def eventually(
    probe: Callable[[], T | None],
    *,
    what: str,
    deadline_seconds: float = 30.0,
    interval_seconds: float = 0.02,
) -> T:
    """Poll until `probe` returns something truthy: the one wait for an asynchronous condition in tests
    (a feed read, a cache refresh, an event delivered). The deadline only keeps a broken test from hanging.
    """
    deadline = time.monotonic() + deadline_seconds
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval_seconds)


def run_together(jobs: Sequence[Callable[[], T]]) -> list[T]:
    """Each job on its own thread, all released at the same moment by a barrier: the one race in tests
    (loops or clients contending for a row); the answers in the jobs' order."""
    start = threading.Barrier(len(jobs))

    def run(job: Callable[[], T]) -> T:
        start.wait()
        return job()

    with ThreadPoolExecutor(len(jobs)) as pool:
        return list(pool.map(run, jobs))


def database_url_under_test() -> str | None:
    return os.environ.get("PATIENTFLOW_TEST_DATABASE_URL") or None


def make_test_settings(settings_cls: type[S], data_dir: Path, **overrides: Any) -> S:
    """Settings for one service on the test database, with the test secret and no env leakage."""
    url = database_url_under_test()
    name = settings_cls.model_fields["service_name"].default
    values: dict[str, Any] = {
        "environment": "test",
        "data_dir": data_dir,
        "internal_secret": TEST_SECRET,
        "database_url": url or f"sqlite:///{data_dir / f'{name}.db'}",
        "database_schema": f"test_{name}" if url else None,
        "feed_poll_seconds": 0.05,
    }
    values.update(overrides)
    return settings_cls.model_validate(values)


def wipe(database_url: str, schema: str | None, metadata: MetaData) -> None:
    """Delete every row of a service's tables (children first), keeping the migrated schema.

    Before a service's first start there are no tables yet (its start migrates them), so only the
    tables that exist are wiped. Anything else fails loudly, naming the table: a delete the database
    refuses, a row that survives it (a trigger, a foreign key from a table the models do not know),
    or such a table itself. One test's rows left behind would otherwise surface as another's failure.
    """
    database = Database(database_url, schema)
    where = f"{make_url(database_url).render_as_string()}" + (f" schema {schema}" if schema else "")
    try:
        with database.session() as session:
            present = set(inspect(session.connection()).get_table_names())
            unknown = present - set(metadata.tables) - {"alembic_version"}
            if unknown:
                raise AssertionError(f"wipe of {where}: tables the models do not declare: {sorted(unknown)}")
            tables = [table for table in reversed(metadata.sorted_tables) if table.name in present]
            _declare_wipe(session)
            for table in tables:
                try:
                    session.execute(delete(table))
                except DBAPIError as error:
                    raise AssertionError(
                        f"wipe of {where}: deleting from {table.name} failed: {error}"
                    ) from error
            left = {table.name: count for table in tables if (count := _row_count(session, table))}
            if left:
                raise AssertionError(f"wipe of {where}: rows survived the delete: {left}")
    finally:
        database.dispose()


def _declare_wipe(session: Session) -> None:
    """Say, on this transaction's connection only, that it is the test wipe: append-only tables' triggers
    (the results audit) let exactly this delete through; a service's own connections never say it."""
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        connection.execute(text(f"SET LOCAL {WIPE_SETTING} = 'on'"))
    else:
        raw = connection.connection.driver_connection
        raw.create_function(WIPE_FUNCTION, 0, lambda: 1)  # type: ignore[union-attr]


def _row_count(session: Session, table: Table) -> int:
    return session.execute(select(func.count()).select_from(table)).scalar_one()


# Every scope a route of a service checks (tests/test_route_scopes.py keeps it equal to the gateway's).
TEST_SCOPES = frozenset(
    {
        "registration:read",
        "registration:write",
        "triage:read",
        "triage:write",
        "board:read",
        "results:read",
        "results:write",
        "orders:write",
        "audit:read",
        "billing:read",
        "billing:write",
        "catalogue:write",
        "events:read",
        "events:subscribe",
        "directory:read",
        "schedules:write",
        "appointments:write",
        "checkin:write",
        "stats:read",
        "metrics:read",
        "critical:ack",
    }
)


def internal_headers(
    subject: str = "test-client",
    scopes: set[str] | frozenset[str] | None = None,
    *,
    audience: str,
    patient: str | None = None,
    kind: str | None = None,
) -> dict[str, str]:
    """Headers the service `audience` accepts, as if the gateway had forwarded the call (by default
    with every scope; pass `scopes` to test a refusal, `patient` to act for one patient, `kind` for a
    gateway client of that kind)."""
    held = TEST_SCOPES if scopes is None else scopes
    token = mint_internal_token(TEST_SECRET, subject, held, audience=audience, patient=patient, kind=kind)
    return {"authorization": f"Bearer {token}"}


def http_client(base_url: str, *, audience: str) -> httpx.Client:
    """A real HTTP client of a served service `audience`, calling as the gateway would (every scope),
    waiting `HTTP_TIMEOUT_SECONDS` for each answer."""
    headers = internal_headers(audience=audience)
    return httpx.Client(base_url=base_url, headers=headers, timeout=HTTP_TIMEOUT_SECONDS)


def feed_headers(audience: str) -> dict[str, str]:
    """Headers of a sibling service, the only kind of caller a service's own `/events` feed answers."""
    return internal_headers("service:test", set(), audience=audience)


@contextmanager
def orm_sessions_begun() -> Iterator[list[str]]:
    """The threads that begin an ORM session while the block runs, the app's own feed consumers aside:
    how a test shows that a hot read took the lean Core path (an empty list) and not a unit of work."""
    begun: list[str] = []

    def note(_session: OrmSession, _transaction: Any, _connection: Any) -> None:
        if not threading.current_thread().name.startswith("feed-"):
            begun.append(threading.current_thread().name)

    sa_event.listen(OrmSession, "after_begin", note)
    try:
        yield begun
    finally:
        sa_event.remove(OrmSession, "after_begin", note)


@contextmanager
def service_client(app: FastAPI, metadata: MetaData) -> Iterator[TestClient]:
    """A started app (lifespan run, migrations applied) on wiped tables, calling as the gateway would."""
    settings: ServiceSettings = app.state.settings
    wipe(settings.resolved_database_url, settings.resolved_schema, metadata)
    headers = internal_headers(audience=settings.service_name)
    with TestClient(app, headers=headers, raise_server_exceptions=False) as client:
        yield client


class ServedApp:
    """An app served by uvicorn in a thread on a local port; a context manager, or `start()` / `stop()`.

    The socket is bound before uvicorn starts, so there is no race for the port; pass one bound
    beforehand when two apps must know each other's URL before either starts.
    """

    def __init__(self, app: ASGIApp, sock: socket.socket | None = None) -> None:
        if sock is None:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
        self._sock, self._app = sock, app
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        # ws="none": websockets are not used, and importing them warns. The protocol is the one
        # `patientflow serve` runs (each answer in one send).
        config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            ws="none",
            lifespan="on",
            timeout_graceful_shutdown=2,
            http=OneSendHttpToolsProtocol,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)

    def start(self) -> "ServedApp":
        self._thread.start()
        try:
            eventually(
                self._started,
                what="the test server to start",
                deadline_seconds=STARTUP_DEADLINE_SECONDS,
                interval_seconds=0.01,
            )
        except BaseException:
            self.stop()
            raise
        return self

    def _started(self) -> bool:
        if not self._thread.is_alive():
            raise RuntimeError("the test server stopped while starting")
        return self._server.started

    def stop(self) -> None:
        """Stop serving (idempotent): connections to the port are refused from then on."""
        # uvicorn waits for open responses before its lifespan shutdown: end the long polls first.
        for wakeup in _long_poll_wakeups(self._app):
            wakeup.close()
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(STARTUP_DEADLINE_SECONDS)
        self._sock.close()

    def __enter__(self) -> "ServedApp":
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


@contextmanager
def serve(app: ASGIApp, sock: socket.socket | None = None) -> Iterator[str]:
    """Serve an app over real HTTP until the block ends; yields its base URL."""
    with ServedApp(app, sock) as served:
        yield served.url


def _long_poll_wakeups(app: ASGIApp) -> list[Wakeup]:
    if not isinstance(app, FastAPI):
        return []
    database = getattr(app.state, "database", None)
    found = [database.outbox_commits] if isinstance(database, Database) else []
    published = getattr(app.state, "published", None)
    return found + ([published] if isinstance(published, Wakeup) else [])


class FakeFeed:
    """A sibling service's `GET /events` (and `/events/head`), serving whatever events a test publishes,
    with the real feed's type filter, `next_after` and long poll."""

    def __init__(self) -> None:
        self.url = ""
        self._events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self.head_requests = 0  # how often a reader asked how far the feed goes
        self.reads = 0  # how many pages were asked for
        self.published = Wakeup()
        self.app = FastAPI()
        self.app.state.published = self.published
        self.app.get("/events")(self._read)
        self.app.get("/events/head")(self._head)

    def _page(self, after: int, limit: int, types: list[str] | None) -> tuple[list[dict[str, Any]], int]:
        with self._lock:
            head = len(self._events)
            page = [e for e in self._events[after:] if not types or e["type"] in types][:limit]
        return page, (page[-1]["position"] if len(page) == limit else max(after, head))

    async def _read(
        self,
        after: CursorQuery = 0,
        limit: Annotated[int, page_size(500)] = 100,
        type: Annotated[list[str] | None, Query()] = None,
        wait: Annotated[float, Query(ge=0, le=25)] = 0,
    ) -> dict[str, Any]:
        self.reads += 1
        deadline = time.monotonic() + wait
        while True:
            seen = self.published.version
            page, after = self._page(after, limit, type)
            remaining = deadline - time.monotonic()
            if page or remaining <= 0 or self.published.closed:
                return {"events": page, "next_after": after}
            if not await self.published.wait_async(seen, remaining):
                return {"events": [], "next_after": after}

    def _head(self, type: Annotated[list[str] | None, Query()] = None) -> dict[str, int]:
        with self._lock:
            self.head_requests += 1
            matching = [e["position"] for e in self._events if not type or e["type"] in type]
            return {"position": max(matching, default=0)}

    @property
    def events(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._events)

    def publish(self, event: dict[str, Any]) -> dict[str, Any]:
        """Append a copy at the next position; publishing the same event twice is a redelivery."""
        with self._lock:
            stored = {**event, "position": len(self._events) + 1}
            self._events.append(stored)
        self.published.bump()
        return stored

    def clear(self) -> None:
        with self._lock:
            self._events.clear()
            self.head_requests = 0
            self.reads = 0


@contextmanager
def served_feed() -> Iterator[FakeFeed]:
    """A `FakeFeed` served over real HTTP (its `url` set) until the block ends."""
    feed = FakeFeed()
    with serve(feed.app) as url:
        feed.url = url
        yield feed
