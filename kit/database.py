"""Engines and sessions, with SQLite made safe for money and for concurrent writers.

SQLite: WAL, `synchronous=FULL`, `foreign_keys=ON`, `busy_timeout`, and every write transaction opened
with `BEGIN IMMEDIATE` on a single pooled connection, so writers queue in-process instead of failing
with "database is locked". PostgreSQL: one schema per service, selected through `search_path`.

On PostgreSQL every round trip counts: under load a thread waits its turn at the GIL after each one
(up to the 5 ms switch interval on a busy process), so a statement costs far more than the server's
work. Reads therefore run in autocommit (`Database.reader`, a view of the one pool): at READ COMMITTED
each statement takes its own snapshot inside a transaction too, so a read's `BEGIN` and `ROLLBACK` were
two round trips that bought nothing. And a pooled connection is pinged before use only after it sat
idle `PING_IDLE_SECONDS` (a restart or an idle timeout happens then, not between two statements of a
busy service); a connection lost anyway fails its one statement, SQLAlchemy discards every pooled
connection as old, and the caller gets 503 `database-unavailable` with `Retry-After` (`kit.errors`).

A unit of work that recorded outbox events (`kit.outbox.record_event` marks its session) bumps the
database's `outbox_commits` once it commits, whichever way it was opened, so this process's long-polled
`/events` readers wake at once.

Requests wait for a database connection in the event loop (an asyncio gate sized to the pool), never
in a worker thread: threads parked on an exhausted pool would starve the very requests that hold the
connections and need a thread to finish, and the service would hang.

A request's unit of work (`SessionDep`) costs one worker-thread hop: `in_one_hop` runs a plain `def`
endpoint, its commit (or rollback) and the session's close in the same worker call, after the gate was
taken in the event loop and before the response is sent. An endpoint not wrapped (an `async def` one,
or an app not built by `kit.app.build_service_app`) commits and closes in one hop of its own.

A hot read may take `read_access(scope)` instead: SQLAlchemy Core statements without the ORM session's
transaction bookkeeping (a third of the session's cost), run by `await access.reader.run(read, ...)`
from an `async def` endpoint; the scope check, the caller and the reader come from that one dependency.
On SQLite the read runs on the event loop, with no hop at all (a primary-key read from the page cache
costs less than the hop), on a reader connection of the loop's own: reads on the loop never overlap,
so it needs no gate and no pool. On PostgreSQL, whose round trips must not stall the loop, it is
admitted by the read gate and runs and closes in one worker-thread call.

On PostgreSQL a service may run as a *runtime role* apart from the schema's owner (`runtime_role`):
every pooled connection starts as that role (the `role` startup parameter, next to `search_path`, so no
statement, rollback or `RESET ROLE` on it returns to the owner), while migrations take an owner
connection (`Database.owner`) and the test wipe a `Database` without a runtime role. Its migrations
create the role and grant it what the service needs, and no more: on append-only tables only SELECT and
INSERT (`kit.migrations.grant_runtime_role`), so a DELETE there is refused by the privilege check before
any trigger is asked, whatever the connection says about itself. One URL and one credential, the
owner's, is all a deployment needs, with passwords as with trust; that guards the rows from everything
the service's code runs, but a connection whose login is the owner could still `SET ROLE` back. Where
that matters, give the service a login of its own that is only a member of the runtime role (its
`database_url`) and the owner's URL to migrations alone (`migration_database_url`).
"""

import asyncio
import functools
import inspect
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence, Set
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar, cast

import anyio
from fastapi import Depends, Request
from sqlalchemy import Connection, CursorResult, Engine, Executable, create_engine, event, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session as OrmSession
from sqlalchemy.pool import NullPool, QueuePool
from sqlmodel import Session

from kit.auth import Caller, ScopeCheck
from kit.config import ServiceSettings
from kit.wakeups import Wakeup

T = TypeVar("T")
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SQLITE_READERS = 8
# No overflow: an overflow connection is closed when it is returned, and with it the statements prepared
# on it; a busy service opened a new server backend every second or two that way.
POSTGRES_POOL, POSTGRES_OVERFLOW = 20, 0
PING_IDLE_SECONDS = 10.0
"""A pooled PostgreSQL connection idle longer than this is pinged at check-out (and replaced if dead)."""
SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    "synchronous": "2",  # FULL: an acknowledged charge survives power loss.
    "foreign_keys": "1",
    "busy_timeout": "30000",
}
OUTBOX_WRITTEN = "patientflow.outbox_written"
"""`Session.info` key: the event types this transaction recorded (set by `mark_outbox_written`)."""


class OutboxCommits(Wakeup):
    """Bumped when outbox events commit: here (after_commit) or, on PostgreSQL, in another replica of
    this service (`kit.outbox.OutboxListener`). `on_local_commit` hooks run only for commits made here."""

    def __init__(self) -> None:
        super().__init__()
        self.on_local_commit: list[Callable[[], None]] = []

    def committed_here(self, event_types: Set[str] | None = None) -> None:
        self.bump(event_types)
        for hook in self.on_local_commit:
            hook()


# Engine -> its database's OutboxCommits; weak, so a disposed and dropped Database leaves nothing behind.
_OUTBOX_COMMITS: "weakref.WeakKeyDictionary[Engine, OutboxCommits]" = weakref.WeakKeyDictionary()


def mark_outbox_written(session: Session, event_type: str | None = None) -> None:
    """The session's transaction recorded an outbox event (of `event_type`; None: of any), or changed
    what a held read waits on (a tag of the service's own): wake the readers of it once it commits."""
    session.info.setdefault(OUTBOX_WRITTEN, set()).add(event_type)


@event.listens_for(OrmSession, "after_commit")
def _wake_feed_readers(session: OrmSession) -> None:
    if session.in_nested_transaction():
        return  # SQLAlchemy calls after_commit for a released SAVEPOINT too: that is not the commit
    written: set[str | None] | None = session.info.pop(OUTBOX_WRITTEN, None)
    if written and isinstance(session.bind, Engine):
        commits = _OUTBOX_COMMITS.get(session.bind)
        if commits is not None:
            commits.committed_here(None if None in written else cast("set[str]", written))


@event.listens_for(OrmSession, "after_rollback")
def _forget_outbox_written(session: OrmSession) -> None:
    session.info.pop(OUTBOX_WRITTEN, None)


# Session.info key of a read's session (`Database.session(write=False)`, a GET's `SessionDep`).
_READS_ONLY = "kit.reads_only"


@event.listens_for(OrmSession, "before_flush")
def _refuse_writes_in_reads(session: OrmSession, _context: Any, _instances: Any) -> None:
    """A read's session writes nothing: on PostgreSQL it runs in autocommit, where its statements would
    commit one by one, and on SQLite on a reader connection, past the one writer's queue."""
    if not session.info.get(_READS_ONLY):
        return
    if session.new or session.deleted or any(session.is_modified(row) for row in session.dirty):
        raise RuntimeError("a write in a read session (use a write session: WriteSessionDep, write=True)")


# SQLite's name for "this connection is the test wipe" (kit.testing.wipe registers it answering 1);
# PostgreSQL's is the setting `patientflow.wipe`. Triggers of append-only tables let only that delete.
WIPE_FUNCTION = "patientflow_wipe"
WIPE_SETTING = "patientflow.wipe"


def _not_a_wipe() -> int:
    return 0


def _sqlite_engine(url: str, *, writer: bool, pool_size: int = SQLITE_READERS) -> Engine:
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": 30},
        poolclass=QueuePool,
        # One writer connection: writers wait for the pool, never for the file lock.
        pool_size=1 if writer else pool_size,
        max_overflow=0,
        pool_timeout=60,
    )
    begin = "BEGIN IMMEDIATE" if writer else "BEGIN"

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (SQLAlchemy's pysqlite recipe)
        cursor = dbapi_conn.cursor()
        for pragma, value in SQLITE_PRAGMAS.items():
            cursor.execute(f"PRAGMA {pragma}={value}")
        cursor.close()
        # Append-only tables' delete triggers ask this; only the test wipe's own connection says 1.
        dbapi_conn.create_function(WIPE_FUNCTION, 0, _not_a_wipe)

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Straight to the driver: `exec_driver_sql` would run SQLAlchemy's whole statement machinery
        # (events, an execution context, a result) for a BEGIN, a fifth of a primary-key read's cost.
        conn.connection.driver_connection.execute(begin)

    return engine


@dataclass(frozen=True, slots=True)
class CommitStatement:
    """A statement sent with a transaction's COMMIT (`send_with_commit`): driver SQL with the driver's
    parameters, and what to do with the one row it returns, if it returns one."""

    sql: str
    parameters: Mapping[str, Any] | None = None
    on_row: Callable[[tuple[Any, ...]], None] | None = None


def send_with_commit(connection: Connection, statements: Sequence[CommitStatement]) -> None:
    """On PostgreSQL: run `statements` just before this transaction's COMMIT, in the same round trip
    (psycopg's pipeline mode): statements, COMMIT and its answer leave and come back together.

    So a lock the first statement takes is held only while the server runs the rest and commits,
    never while this process waits for its turn at the GIL between round trips: under load that wait
    (up to the interpreter's 5 ms switch interval per round trip, on a busy process) is what made one
    service's committing writers queue on its outbox lock. A rollback drops them."""
    if connection.get_execution_options().get("isolation_level") == "AUTOCOMMIT":
        # Autocommit would run the staged statements one by one, the outbox lock released at once.
        raise RuntimeError("send_with_commit in a read session, which commits statement by statement")
    driver = connection.connection.driver_connection
    _WITH_COMMIT.setdefault(driver, []).extend(statements)


# A driver connection -> the statements staged for its COMMIT (weak: a closed connection leaves none).
_WITH_COMMIT: "weakref.WeakKeyDictionary[Any, list[CommitStatement]]" = weakref.WeakKeyDictionary()


def _driver(dbapi_connection: Any) -> Any:
    """The driver's connection, whether SQLAlchemy hands the dialect its pool proxy or the connection."""
    return getattr(dbapi_connection, "driver_connection", None) or dbapi_connection


def _commit_in_one_round_trip(engine: Engine) -> None:
    """Make `engine`'s COMMIT send the statements `send_with_commit` staged, pipelined with it.

    The dialect's `do_commit` is the hook because SQLAlchemy wraps what it raises as every other
    statement's error (a lost connection is seen and invalidated, `kit.errors` answers 503)."""
    dialect = engine.dialect
    commit, rollback = dialect.do_commit, dialect.do_rollback

    def do_commit(dbapi_connection: Any) -> None:
        driver = _driver(dbapi_connection)
        staged = _WITH_COMMIT.pop(driver, None)
        if not staged:
            commit(dbapi_connection)
            return
        with driver.pipeline():
            cursors = []
            for statement in staged:
                cursor = driver.cursor()
                cursor.execute(statement.sql, statement.parameters)
                cursors.append(cursor)
            driver.commit()  # the pipeline's sync: everything above has run, or it raises here
        for statement, cursor in zip(staged, cursors, strict=True):
            if statement.on_row is not None:
                row = cursor.fetchone()
                assert row is not None, statement.sql
                statement.on_row(row)
            cursor.close()

    def do_rollback(dbapi_connection: Any) -> None:
        _WITH_COMMIT.pop(_driver(dbapi_connection), None)
        rollback(dbapi_connection)

    dialect.do_commit = do_commit  # type: ignore[method-assign]
    dialect.do_rollback = do_rollback  # type: ignore[method-assign]


def _postgres_options(schema: str, role: str | None) -> dict[str, Any]:
    # application_name: `pg_stat_activity` and the server's log say which service a connection serves.
    # prepare_threshold: a statement is prepared on its connection the second time it runs there, not
    # the sixth (psycopg's default), so the server parses a service's few dozen statements once per
    # pooled connection instead of on most executions (a bench run parsed 47% of them).
    return {
        "options": f"-csearch_path={schema}" + (f" -crole={role}" if role else ""),
        "application_name": f"patientflow-{schema}"[:63],
        "prepare_threshold": 1,
    }


def _postgres_engine(url: str, schema: str, role: str | None) -> Engine:
    engine = create_engine(
        url,
        pool_size=POSTGRES_POOL,
        max_overflow=POSTGRES_OVERFLOW,
        connect_args=_postgres_options(schema, role),
    )
    _commit_in_one_round_trip(engine)
    _ping_after_idle(engine)
    _drop_stale_plans(engine)
    if role is not None:
        return engine  # the role may not exist before the first migration; `owner` creates the schema
    try:
        _create_schema(engine, schema)
    except BaseException:
        engine.dispose()  # its pooled connection would otherwise stay open until garbage-collected
        raise
    return engine


def _ping_after_idle(engine: Engine) -> None:
    """Ping a pooled connection at check-out only if it sat idle past `PING_IDLE_SECONDS`; a dead one is
    replaced before anyone uses it (SQLAlchemy's pessimistic recipe, `DisconnectionError`)."""
    returned_at = "kit.returned_at"

    @event.listens_for(engine, "checkin")
    def _returned(_dbapi_connection: Any, record: Any) -> None:
        if record is not None:
            record.info[returned_at] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get(returned_at)
        if idle_since is None or time.monotonic() - idle_since < PING_IDLE_SECONDS:
            return  # new, or in steady use
        driver = _driver(dbapi_connection)
        try:
            driver.execute("SELECT 1").close()
            # The ping's own transaction ended (check-out hands on an idle connection) by COMMIT: psycopg
            # drops a connection's prepared statements at every ROLLBACK.
            driver.commit()
        except Exception as exc:
            raise sa_exc.DisconnectionError("a connection idle past the ping interval is dead") from exc


STALE_PLAN = "cached plan must not change result type"


def _drop_stale_plans(engine: Engine) -> None:
    """A statement prepared on a pooled connection fails on every later run there once another
    connection's DDL changed its result's columns (a migration while replicas serve): such a connection
    is dropped as a lost one is, so its request answers 503 (`kit.errors`) and the next gets a new one."""

    @event.listens_for(engine, "handle_error")
    def _stale_plan(context: Any) -> None:
        error = context.original_exception
        if getattr(error, "sqlstate", None) == "0A000" and STALE_PLAN in str(error):
            context.is_disconnect = True


def _create_schema(engine: Engine, schema: str) -> None:
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))


class Database:
    """A service's database: a writer engine and a reader engine (the same one on PostgreSQL).

    On PostgreSQL, `runtime_role` is the role every pooled connection acts as (None: the URL's own
    login), and `owner_url` where migrations then connect (default: `url`); both are ignored on SQLite.
    """

    def __init__(
        self,
        url: str,
        schema: str | None = None,
        *,
        runtime_role: str | None = None,
        owner_url: str | None = None,
    ) -> None:
        self.url = url
        self.schema = schema
        self.is_sqlite = make_url(url).get_backend_name() == "sqlite"
        self.runtime_role = None if self.is_sqlite else runtime_role
        self._owner_url = owner_url or url
        if self.is_sqlite:
            self.writer = _sqlite_engine(url, writer=True)
            self.reader = _sqlite_engine(url, writer=False)
            self._capacity = {True: 1, False: SQLITE_READERS}
        else:
            self.writer = _postgres_engine(url, schema or "public", self.runtime_role)
            # The same pool; a read's connection in autocommit (module docstring: no BEGIN, no ROLLBACK).
            self.reader = self.writer.execution_options(isolation_level="AUTOCOMMIT")
            self._capacity = {True: POSTGRES_POOL + POSTGRES_OVERFLOW}
        self._gates: dict[bool, asyncio.Semaphore] = {}
        # SQLite: the event loop's own reader connection (`ReadConnection.run`), outside the pool.
        self._loop_engine: Engine | None = None
        self._loop_connection: Connection | None = None
        self.outbox_commits = OutboxCommits()
        for engine in (self.writer, self.reader):
            _OUTBOX_COMMITS[engine] = self.outbox_commits

    @property
    def engines(self) -> tuple[Engine, ...]:
        """The engines to listen on for connection and statement events, each connection's once: on
        PostgreSQL the reader is a view of the writer, whose listeners it runs too."""
        return (self.writer, self.reader) if self.is_sqlite else (self.writer,)

    @contextmanager
    def owner(self) -> Iterator[Connection]:
        """A transaction as the schema's owner, for migrations and the test wipe: the writer's own
        connection unless the service runs as a runtime role, else a connection of its own (created
        schema and all), closed with the block."""
        if self.runtime_role is None:
            with self.writer.begin() as connection:
                yield connection
            return
        schema = self.schema or "public"
        engine = create_engine(
            self._owner_url, poolclass=NullPool, connect_args=_postgres_options(schema, None)
        )
        try:
            _create_schema(engine, schema)
            with engine.begin() as connection:
                yield connection
        finally:
            engine.dispose()

    def gate(self, *, write: bool) -> asyncio.Semaphore:
        """Admission to the engine a request will use: at most as many requests as it has connections."""
        key = write if self.is_sqlite else True  # PostgreSQL: one engine, one gate
        if key not in self._gates:
            self._gates[key] = asyncio.Semaphore(self._capacity[key])
        return self._gates[key]

    @contextmanager
    def session(self, *, write: bool = True) -> Iterator[Session]:
        """One unit of work: commits if the block succeeds, rolls back if it raises."""
        engine = self.writer if write else self.reader
        with Session(engine, expire_on_commit=False, info={} if write else {_READS_ONLY: True}) as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    async def read(self, read: Callable[[Session], T]) -> T:
        """A short read outside any request's unit of work (a long poll's page, the feed head, a look-up
        before a unit of work opens): admitted by the read gate in the event loop, then run, committed
        and closed in one worker-thread call, so no thread ever waits on the pool."""
        async with self.gate(write=False):
            return await anyio.to_thread.run_sync(self._read_in_session, read)

    def _read_in_session(self, read: Callable[[Session], T]) -> T:
        with self.session(write=False) as session:
            return read(session)

    def check(self) -> None:
        """Raise if the database cannot answer a trivial query (used by /readyz)."""
        with self.reader.connect() as conn:
            conn.execute(text("SELECT 1"))

    def pragmas(self) -> dict[str, str]:
        """The SQLite pragmas as a connection actually sees them (a start-up self-check)."""
        with self.writer.connect() as conn:
            return {p: str(conn.exec_driver_sql(f"PRAGMA {p}").scalar()) for p in SQLITE_PRAGMAS}

    def loop_connection(self) -> Connection:
        """SQLite: the reader connection only the event loop uses, kept open. Reads on the loop never
        overlap (each runs to its end without awaiting), so one connection serves them all, with no
        gate, no pool check-out and no reset on return; it holds no transaction between reads."""
        if self._loop_connection is None:
            if self._loop_engine is None:
                self._loop_engine = _sqlite_engine(self.url, writer=False, pool_size=1)
            self._loop_connection = self._loop_engine.connect()
        return self._loop_connection

    def drop_loop_connection(self) -> None:
        """Close the event loop's reader connection (after an error left it unusable); the next read
        opens a new one."""
        connection, self._loop_connection = self._loop_connection, None
        if connection is not None:
            connection.invalidate()
            connection.close()

    def dispose(self) -> None:
        """Close the pooled connections. Call it once nothing uses the database any more: a connection
        still checked out goes back to the discarded pool afterwards and stays open until collected."""
        if self._loop_connection is not None:
            self._loop_connection.close()
            self._loop_connection = None
        if self._loop_engine is not None:
            self._loop_engine.dispose()
        self.writer.dispose()
        if self.is_sqlite:  # on PostgreSQL the reader is a view of the writer's pool
            self.reader.dispose()


def service_database(settings: ServiceSettings) -> Database:
    """The database a service runs on, as its settings say: URL, schema, runtime role, migrations' URL."""
    return Database(
        settings.resolved_database_url,
        settings.resolved_schema,
        runtime_role=settings.resolved_runtime_role,
        owner_url=settings.migration_database_url,
    )


# Session.info keys: a session a request's SessionDep opened, and one whose unit of work has ended.
_REQUEST_SESSION, _FINISHED = "kit.request_session", "kit.finished"
_ONE_HOP = "__kit_in_one_hop__"


def _finish(session: Session, *, commit: bool) -> None:
    """End a request's unit of work in the calling thread: commit (or roll back), then close."""
    session.info[_FINISHED] = True
    try:
        if commit:
            session.commit()
        else:
            session.rollback()
    finally:
        session.close()  # rolls back whatever a failed commit left open and returns the connection


def _finish_all(sessions: list[Session], *, commit: bool) -> None:
    """Finish each session; once one fails to commit, the others roll back; the first failure is raised."""
    failure: BaseException | None = None
    for session in sessions:
        try:
            _finish(session, commit=commit and failure is None)
        except BaseException as exc:
            failure = failure or exc
    if failure is not None:
        raise failure


class ReadConnection:
    """A request's read-only access for Core statements (`read_access`): `await reader.run(read,
    ...)` calls `read(reader, ...)`, whose `reader.execute(...)` calls run on a connection held for that
    call only. Nothing is taken before `run`: the dependency is a plain object, with nothing to clean up.
    """

    def __init__(self, database: Database) -> None:
        self._database = database
        self._connection: Connection | None = None

    async def run(self, read: Callable[..., T], /, **arguments: Any) -> T:
        """`read(self, **arguments)`: on SQLite on the event loop, on its own connection
        (`Database.loop_connection`); on PostgreSQL behind the read gate, in one worker call."""
        database = self._database
        if database.is_sqlite:
            self._connection = database.loop_connection()
            try:
                return read(self, **arguments)
            finally:
                self._end_loop_read()
        async with database.gate(write=False):
            return await anyio.to_thread.run_sync(functools.partial(self._run_and_close, read, arguments))

    def _end_loop_read(self) -> None:
        connection, self._connection = self._connection, None
        try:
            assert connection is not None
            connection.rollback()  # a read: ends the snapshot, so the WAL can be checkpointed
        except BaseException:
            self._database.drop_loop_connection()
            raise

    def _run_and_close(self, read: Callable[..., T], arguments: dict[str, Any]) -> T:
        self._connection = self._database.reader.connect()
        try:
            return read(self, **arguments)
        finally:
            connection, self._connection = self._connection, None
            connection.close()  # back to the pool, which rolls the read transaction back

    def execute(self, statement: Executable, parameters: dict[str, Any] | None = None) -> CursorResult[Any]:
        """Run a statement of this read; only inside `run`."""
        if self._connection is None:
            raise RuntimeError("ReadConnection.execute is for the function given to ReadConnection.run.")
        return self._connection.execute(statement, parameters)


def _unfinished(values: dict[str, Any]) -> list[Session]:
    """The request sessions among an endpoint's arguments, not yet finished."""
    return [
        value
        for value in values.values()
        if isinstance(value, Session) and value.info.get(_REQUEST_SESSION) and not value.info.get(_FINISHED)
    ]


def _run_and_finish(endpoint: Callable[..., Any], values: dict[str, Any]) -> Any:
    sessions = _unfinished(values)
    succeeded = False
    try:
        result = endpoint(**values)
        succeeded = True
    finally:
        _finish_all(sessions, commit=succeeded)
    return result


def _plain_function(endpoint: Callable[..., Any]) -> bool:
    return not (
        inspect.iscoroutinefunction(endpoint)
        or inspect.isgeneratorfunction(endpoint)
        or inspect.isasyncgenfunction(endpoint)
    )


def in_one_hop(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    """A plain `def` endpoint as an `async def` that runs it, then commits and closes the request sessions
    (and read connections) it was given, in one worker-thread call; FastAPI would otherwise spend a hop
    on the endpoint, one on validating its answer, and one each on commit and close.

    An exception, or a failed commit, propagates after the rollback: the client gets an error, never a
    2xx for work that was not saved. `async def` and generator (streaming) endpoints are returned as
    they are.
    """
    if getattr(endpoint, _ONE_HOP, False) or not _plain_function(endpoint):
        return endpoint

    @functools.wraps(endpoint)  # FastAPI reads the parameters through __wrapped__
    async def run_in_one_hop(**values: Any) -> Any:
        return await anyio.to_thread.run_sync(_run_and_finish, endpoint, values)

    setattr(run_in_one_hop, _ONE_HOP, True)
    return run_in_one_hop


@asynccontextmanager
async def _gated_session(request: Request, *, write: bool) -> AsyncIterator[Session]:
    """A request's unit of work: admitted by the gate, committed (or rolled back) before the response."""
    database: Database = request.app.state.database
    async with database.gate(write=write):
        engine = database.writer if write else database.reader
        info: dict[str, Any] = {_REQUEST_SESSION: True} | ({} if write else {_READS_ONLY: True})
        session = Session(engine, expire_on_commit=False, info=info)
        try:
            yield session
        except BaseException:
            if not session.info.get(_FINISHED):
                await anyio.to_thread.run_sync(functools.partial(_finish, session, commit=False))
            raise
        if not session.info.get(_FINISHED):  # not an `in_one_hop` endpoint's own session
            await anyio.to_thread.run_sync(functools.partial(_finish, session, commit=True))


async def _request_session(request: Request) -> AsyncIterator[Session]:
    async with _gated_session(request, write=request.method not in READ_METHODS) as session:
        yield session


async def _write_session(request: Request) -> AsyncIterator[Session]:
    async with _gated_session(request, write=True) as session:
        yield session


# scope="function": commit before the response is sent, so a failed commit is never reported as success.
SessionDep = Annotated[Session, Depends(_request_session, scope="function")]
# For reads that must also write, such as a lookup that records who looked (GETs are read-only otherwise).
WriteSessionDep = Annotated[Session, Depends(_write_session, scope="function")]


@dataclass(frozen=True, slots=True)
class ReadAccess:
    """What a hot read's endpoint gets from `read_access`: the checked caller and a `ReadConnection`."""

    caller: Caller
    reader: ReadConnection


@dataclass(frozen=True, slots=True)
class ReadAccessCheck(ScopeCheck):
    """`ScopeCheck` that also hands over the reader: one dependency where a caller, a scope check and a
    reader were three, each a pass of FastAPI's solver per request (`kit.routing.lean_app` then skips
    the solver altogether)."""

    async def __call__(self, request: Request) -> ReadAccess:  # type: ignore[override]
        # Not a generator dependency: FastAPI's exit-stack machinery for one costs more than the read.
        return ReadAccess(self.check(request), ReadConnection(request.app.state.database))


def read_access(scope: str, *, patients: bool = False) -> Any:
    """A hot read below the ORM (GETs only): `access: Annotated[ReadAccess, read_access("x:read")]`, then
    `await access.reader.run(read, ...)` runs SQLAlchemy Core statements. The route's scope check as
    `kit.auth.require_scope(scope, patients=...)` gives it (so no `dependencies=` entry for it)."""
    return Depends(ReadAccessCheck(scope, patients))


def upsert(
    session: Session,
    model: type[Any],
    values: dict[str, Any],
    *,
    keys: Sequence[str],
    update: Sequence[str],
) -> None:
    """Insert the row, or overwrite its `update` columns where a row with the same `keys` exists, in one
    statement (`INSERT … ON CONFLICT`), so two first writes racing never collide: a read-then-insert makes
    the loser's INSERT an IntegrityError, a 500. `values` names every column the insert needs (Core does not
    run the model's defaults)."""
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    statement = insert(model.__table__).values(**values)
    statement = statement.on_conflict_do_update(
        index_elements=list(keys), set_={column: statement.excluded[column] for column in update}
    )
    session.execute(statement)
