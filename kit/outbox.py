"""The transactional outbox and the event feed every service serves.

A state change and its event rows commit together or not at all. Consumers page through
`GET /events?after=<position>&limit=&type=&wait=` and de-duplicate by `id`. Each event carries the `causes`
its unit of work noted (`kit.causes`): the hub merges the feeds by them.

**Positions become visible in commit order, so a reader paging by position never skips an event.**
`record_event` only builds the row; the rows enter the database at COMMIT. On PostgreSQL they go under a
transaction-level advisory lock (one per schema), and lock, INSERTs and COMMIT leave in one pipelined round
trip after the session's own flush (`kit.database.send_with_commit`): the business part of concurrent
writers runs in parallel, and only the server's "insert the events, COMMIT" is serialised, never a
writer's Python (a thread waiting for the GIL between round trips held the lock for milliseconds: under
the journey bench a dozen writers queued on it). On SQLite they are inserted in `before_commit`.
Proof: every position is drawn by an INSERT made while holding the lock, and the lock is released only after
COMMIT has made the transaction visible (PostgreSQL releases locks after the commit record and the
proc-array update) or after it rolled back. So if writer A holds position p and writer B holds q > p, A drew
p before B took the lock, hence A's transaction ended (visible, or rolled back leaving p a gap for good)
before B drew q. A reader that sees q therefore already sees every committed position below q, and a cursor
that moved past q never leaves a committed event behind it. (A transaction that writes no event takes no
lock.) On SQLite the writer connection already serialises whole write transactions (`BEGIN IMMEDIATE`).

**`sequence` per aggregate is gap-free and in commit order.** It is `max(sequence) + 1` of the aggregate,
read under the same lock (on PostgreSQL by the INSERT itself) with a fresh READ COMMITTED statement
snapshot: every earlier holder of the lock has committed (its sequences are seen) or rolled back (none were
kept), and no later writer can draw until this one ends. Several events of one aggregate in one
transaction count up in `record_event` order. So the sequences of an aggregate are 1, 2, 3, … in position
order, whatever the writers overlap.

The row returned by `record_event` is the one inserted: its `position` is set once the session commits.

The feed is pushed, not polled: `wait=` holds the request (never a session or the database gate) until
an event it wants commits. A commit in this process wakes it through `Database.outbox_commits`, and only
a reader of a type the commit wrote (`kit.wakeups`); on PostgreSQL, a commit in another replica of the
service reaches it through `OutboxListener`, one LISTEN connection per process, and wakes every reader
(the notification does not say what committed).
"""

import asyncio
import contextlib
import logging
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from select import select as wait_readable
from typing import Annotated, Any, Protocol, TypeVar

import psycopg
from fastapi import APIRouter, Depends, Query, Request
from psycopg import sql
from sqlalchemy import Table, bindparam, func, insert, literal_column, text
from sqlalchemy import event as sa_event
from sqlalchemy import select as sa_select
from sqlalchemy.dialects.postgresql import psycopg as psycopg_dialect
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session as OrmSession
from sqlalchemy.orm import SessionTransaction
from sqlmodel import Session, col, select

from kit import causes
from kit.auth import require_service_caller
from kit.clock import as_utc
from kit.database import (
    CommitStatement,
    Database,
    ReadConnection,
    SessionDep,
    mark_outbox_written,
    send_with_commit,
)
from kit.models import OutboxEventBase
from kit.params import CursorQuery, page_size
from kit.worker import Backoff, ThreadWorker

logger = logging.getLogger("patientflow.outbox")
T = TypeVar("T")
MAX_FEED_WAIT = 25.0
"""The longest `wait=` a feed reader may ask for: below every proxy's and client's idle timeout."""
NOTIFY_CHANNEL_PREFIX = "patientflow_outbox_"
WaitQuery = Annotated[
    float, Query(ge=0, le=MAX_FEED_WAIT, description="Seconds to hold an empty page (0 to 25)")
]
EventTypesQuery = Annotated[
    list[str] | None, Query(description="Only events of these types (repeat for several; absent: all)")
]

MAX_FEED_PAGE = 500
EVENT_VERSION = 1
"""The version of every event type's `data` shape (`services/events/catalogue/<type>.v<N>.json`).

Adding an optional field is not a new version; a breaking change to a type's data (a field removed,
renamed, retyped or newly required) becomes a new version with a new schema file.
"""
OUTBOX_LOCK = text("SELECT pg_advisory_xact_lock(hashtext('patientflow.outbox.' || current_schema()))")
_PENDING = "patientflow.outbox.pending"  # session.info key: events recorded, not yet inserted
_SAVEPOINTS = "patientflow.outbox.savepoints"  # open savepoint → how many events were pending at its start


def record_event(
    session: Session,
    outbox: type[OutboxEventBase],
    *,
    event_type: str,
    aggregate_type: str,
    aggregate_id: str,
    payload: dict[str, Any],
    visit_id: str | None = None,
    patient_id: str | None = None,
) -> OutboxEventBase:
    """Add an event to the current transaction; it is published only if the transaction commits.

    The row is inserted (position and `sequence` drawn) just before COMMIT: see the module docstring.
    """
    event = outbox(
        event_id=str(uuid.uuid4()),
        event_type=event_type,
        aggregate_type=aggregate_type,
        aggregate_id=aggregate_id,
        sequence=0,  # drawn in _insert_pending
        visit_id=visit_id,
        patient_id=patient_id,
        payload=payload,
        causes=[cause.to_json() for cause in causes.current()],
    )
    if not session.in_transaction():
        session.begin()  # the events belong to this unit of work, ended by commit, rollback or close
    session.info.setdefault(_PENDING, []).append(event)
    mark_outbox_written(session, event_type)
    return event


@sa_event.listens_for(OrmSession, "before_commit")
def _insert_pending(session: OrmSession) -> None:
    """Draw positions and sequences for the events recorded in this session, under the outbox lock."""
    if session.in_nested_transaction():
        return  # a savepoint released: the events wait for the real COMMIT
    pending: list[OutboxEventBase] = session.info.pop(_PENDING, [])
    session.info.pop(_SAVEPOINTS, None)
    if not pending:
        return
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        # Lock, INSERTs and COMMIT in one round trip, after the session's own flush: the lock is held
        # only while the server inserts and commits (`kit.database.send_with_commit`).
        send_with_commit(connection, [_LOCK_STATEMENT, *(_pipelined_insert(event) for event in pending)])
        return
    drawn: dict[tuple[type[OutboxEventBase], str, str], int] = {}
    for event in pending:
        outbox = type(event)
        table: Table = outbox.__table__  # type: ignore[attr-defined]
        key = (outbox, event.aggregate_type, event.aggregate_id)
        if key not in drawn:
            last = connection.execute(
                _last_sequence(table),
                {"aggregate_type": event.aggregate_type, "aggregate_id": event.aggregate_id},
            )
            drawn[key] = last.scalar_one() or 0
        drawn[key] += 1
        event.sequence = drawn[key]
        # One Core INSERT per event, in record_event order, so positions follow that order (the ORM's
        # add-and-flush per event cost a seventh of a write request's CPU). The statements are built once
        # per table with bound parameters: building them per event (values baked in) cost ~1 ms each.
        values = {
            column.name: getattr(event, column.name) for column in table.columns if column.name != "position"
        }
        event.position = connection.execute(_insert_event(table), values).scalar_one()


_LOCK_STATEMENT = CommitStatement(str(OUTBOX_LOCK))


@dataclass(frozen=True, slots=True)
class _DriverInsert:
    """An outbox table's INSERT as psycopg runs it: the SQL SQLAlchemy compiles for PostgreSQL, whose
    `sequence` is the aggregate's `max + 1` read by the statement itself (so under the lock, after
    every earlier holder committed), and each parameter's SQLAlchemy bind processing."""

    sql: str
    columns: tuple[str, ...]
    processors: dict[str, Callable[[Any], Any]]


_DRIVER_INSERTS: dict[Table, _DriverInsert] = {}


def _driver_insert(table: Table) -> _DriverInsert:
    if table not in _DRIVER_INSERTS:
        dialect = psycopg_dialect.dialect()
        of_aggregate = (table.c.aggregate_type == bindparam("of_type")) & (
            table.c.aggregate_id == bindparam("of_id")
        )
        next_sequence = sa_select(
            func.coalesce(func.max(table.c.sequence), literal_column("0")) + literal_column("1")
        ).where(of_aggregate)
        columns = tuple(c.name for c in table.columns if c.name not in ("position", "sequence"))
        statement = (
            insert(table)
            .values(sequence=next_sequence.scalar_subquery())
            .returning(table.c.position, table.c.sequence)
        )
        compiled = statement.compile(dialect=dialect, column_keys=list(columns))
        processors: dict[str, Callable[[Any], Any]] = {}
        for name, parameter in compiled.binds.items():
            processor = parameter.type.dialect_impl(dialect).bind_processor(dialect)
            if processor is not None:
                processors[name] = processor
        _DRIVER_INSERTS[table] = _DriverInsert(str(compiled), columns, processors)
    return _DRIVER_INSERTS[table]


def _pipelined_insert(event: OutboxEventBase) -> CommitStatement:
    """The INSERT of one event, sent with the COMMIT; it sets the event's position and sequence."""
    insert_of = _driver_insert(type(event).__table__)  # type: ignore[attr-defined]
    parameters = {name: getattr(event, name) for name in insert_of.columns}
    parameters |= {"of_type": event.aggregate_type, "of_id": event.aggregate_id}
    for name, process in insert_of.processors.items():
        parameters[name] = process(parameters[name])

    def drawn(row: tuple[Any, ...]) -> None:
        event.position, event.sequence = row

    return CommitStatement(insert_of.sql, parameters, drawn)


_STATEMENTS: dict[tuple[str, Table], Any] = {}


def _last_sequence(table: Table) -> Any:
    """`SELECT max(sequence)` of one aggregate, with bound parameters (built once per outbox table)."""
    key = ("last", table)
    if key not in _STATEMENTS:
        _STATEMENTS[key] = sa_select(func.max(table.c.sequence)).where(
            table.c.aggregate_type == bindparam("aggregate_type"),
            table.c.aggregate_id == bindparam("aggregate_id"),
        )
    return _STATEMENTS[key]


def _head(table: Table) -> Any:
    """`SELECT max(position)`: the newest committed event (built once per outbox table)."""
    key = ("head", table)
    if key not in _STATEMENTS:
        _STATEMENTS[key] = sa_select(func.max(table.c.position))
    return _STATEMENTS[key]


def _page(table: Table, *, filtered: bool) -> Any:
    """A page of the feed in (after, head], of some types if `filtered`, with bound parameters (built
    once per outbox table: every reader reads after every commit of a type it wants)."""
    key = ("page-of-types" if filtered else "page", table)
    if key not in _STATEMENTS:
        position = table.c.position
        query = sa_select(table).where(position > bindparam("after"), position <= bindparam("head"))
        if filtered:
            query = query.where(table.c.event_type.in_(bindparam("types", expanding=True)))
        _STATEMENTS[key] = query.order_by(position).limit(bindparam("limit"))
    return _STATEMENTS[key]


def _insert_event(table: Table) -> Any:
    """The INSERT of one event, returning its position (built once per outbox table)."""
    key = ("insert", table)
    if key not in _STATEMENTS:
        _STATEMENTS[key] = insert(table).returning(table.c.position)
    return _STATEMENTS[key]


@sa_event.listens_for(OrmSession, "after_transaction_create")
def _mark_savepoint(session: OrmSession, transaction: SessionTransaction) -> None:
    if transaction.nested:  # events recorded inside it vanish if it rolls back
        session.info.setdefault(_SAVEPOINTS, {})[transaction] = len(session.info.get(_PENDING, []))


@sa_event.listens_for(OrmSession, "after_soft_rollback")
def _forget_savepoint_events(session: OrmSession, rolled_back: SessionTransaction) -> None:
    """Events recorded inside a savepoint that rolled back vanish with its change."""
    mark = session.info.get(_SAVEPOINTS, {}).pop(rolled_back, None)
    if rolled_back.nested and mark is not None:
        del session.info.get(_PENDING, [])[mark:]


@sa_event.listens_for(OrmSession, "after_transaction_end")
def _forget_pending(session: OrmSession, transaction: SessionTransaction) -> None:
    """The unit of work ended (committed, rolled back or closed): nothing recorded in it is left over."""
    if transaction.parent is None and not transaction.nested:
        session.info.pop(_PENDING, None)
        session.info.pop(_SAVEPOINTS, None)


class EventRow(Protocol):
    """What the wire form reads of an outbox event: an `OutboxEventBase` or a Core row of its table."""

    position: int | None
    event_id: str
    event_type: str
    aggregate_type: str
    aggregate_id: str
    sequence: int
    occurred_at: datetime
    visit_id: str | None
    patient_id: str | None
    payload: dict[str, Any]
    causes: list[dict[str, Any]]


def event_to_json(event: EventRow, source: str) -> dict[str, Any]:
    """The wire form of an event, identical in every service's feed."""
    return {
        "id": event.event_id,
        "type": event.event_type,
        "version": EVENT_VERSION,
        "source": source,
        "position": event.position,
        "aggregate": {"type": event.aggregate_type, "id": event.aggregate_id},
        "sequence": event.sequence,
        "occurred_at": as_utc(event.occurred_at).isoformat(),
        "visit_id": event.visit_id,
        "patient_id": event.patient_id,
        "data": event.payload,
        "causes": event.causes or [],
    }


def read_page(
    session: Session | ReadConnection,
    outbox: type[OutboxEventBase],
    *,
    after: int,
    limit: int,
    types: Sequence[str] | None,
) -> tuple[list[EventRow], int]:
    """Events after `after` (of `types`, if given), oldest first, and the position to resume from.

    `next_after` passes over skipped events of other types, but only up to the head read first: on
    SQLite the single writer commits positions in order; on PostgreSQL this rests on the outbox's rule
    that every visible position is in commit order (see the module docstring). So nothing at or below
    that head can still commit, and a filtered reader that resumes from it never re-scans nor misses.

    Core rows, not ORM objects: every sibling and the hub read every feed after every commit.
    """
    table: Table = outbox.__table__  # type: ignore[attr-defined]
    connection = session.connection() if isinstance(session, Session) else session
    head = connection.execute(_head(table)).scalar() or 0
    parameters: dict[str, Any] = {"after": after, "head": head, "limit": limit}
    if types:
        parameters["types"] = list(types)
    rows: list[Any] = list(connection.execute(_page(table, filtered=bool(types)), parameters))
    full = len(rows) == limit
    next_after = (rows[-1].position or after) if full else max(after, head)
    return rows, next_after


async def _disconnected(request: Request) -> None:
    """Returns once the client has gone (its long poll need not wait any more)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def hold_read(
    request: Request,
    read: Callable[[ReadConnection], T],
    *,
    ready: Callable[[T], bool],
    wait: float,
    wanted: frozenset[str] | None,
) -> T:
    """A long poll: `read`, and again after each commit here of a `wanted` event type (None: any),
    until `ready(answer)`, `wait` seconds pass, the client goes or the server stops; the last answer.

    The request holds no session, connection or database gate while it waits; a commit of a type it
    does not read never wakes it (`kit.wakeups`)."""
    database: Database = request.app.state.database
    commits = database.outbox_commits
    deadline = time.monotonic() + wait
    gone: asyncio.Task[None] | None = None
    woken: asyncio.Future[bool] | None = None
    try:
        while True:
            seen = commits.version
            # A reader connection, not a session: on SQLite read on the event loop (no thread hop
            # between the commit that woke the poll and its answer), on PostgreSQL behind the read
            # gate in one worker call (`ReadConnection.run`).
            answer = await ReadConnection(database).run(read)
            remaining = deadline - time.monotonic()
            if ready(answer) or remaining <= 0 or commits.closed:
                return answer
            gone = gone or asyncio.ensure_future(_disconnected(request))
            woken = asyncio.ensure_future(commits.wait_async(seen, remaining, wanted=wanted))
            await asyncio.wait({woken, gone}, return_when=asyncio.FIRST_COMPLETED)
            if not woken.done():
                return answer  # the reader went away
            if not woken.result():
                return answer  # waited `wait` seconds
    finally:  # a cancelled request leaves no waiter behind
        for task in (gone, woken):
            if task is not None:
                task.cancel()


def feed_router(outbox: type[OutboxEventBase]) -> APIRouter:
    """`GET /events`: this service's events after a cursor, oldest first; for sibling services only."""
    router = APIRouter(tags=["events"], dependencies=[Depends(require_service_caller)])

    @router.get("/events", summary="Read this service's event feed")
    async def read_feed(
        request: Request,
        after: CursorQuery = 0,
        limit: Annotated[int, page_size(MAX_FEED_PAGE)] = 100,
        type: EventTypesQuery = None,
        wait: WaitQuery = 0,
    ) -> dict[str, Any]:
        """Events committed after `after`, at most `limit`, only of the `type`s given; pass `next_after`
        back to continue (it passes over events of other types too). With `wait`, an empty answer waits
        until a matching event commits, or `wait` seconds (then `events` is empty).

        Delivery is at least once: de-duplicate by event `id`.
        """
        source: str = request.app.state.settings.service_name
        types = sorted(set(type)) if type else None

        def read(reader: ReadConnection) -> tuple[list[dict[str, Any]], int]:
            rows, next_after = read_page(reader, outbox, after=after, limit=limit, types=types)
            return [event_to_json(row, source) for row in rows], next_after

        events, next_after = await hold_read(
            request,
            read,
            ready=lambda page: bool(page[0]),
            wait=wait,
            wanted=frozenset(types) if types else None,  # woken only by a commit of a type asked for
        )
        return {"events": events, "next_after": next_after}

    @router.get("/events/head", summary="The position of this service's last committed event")
    def read_feed_head(session: SessionDep, type: EventTypesQuery = None) -> dict[str, int]:
        """`position` of the newest committed event (of the `type`s given; 0 when none): a reader whose
        cursor has reached it has applied everything (of those types) this service committed before
        the call, e.g. before billing settles."""
        query = select(func.max(outbox.position))
        if type:
            query = query.where(col(outbox.event_type).in_(sorted(set(type))))
        head = session.exec(query).one()
        return {"position": head or 0}

    return router


class OutboxListener(ThreadWorker):
    """On PostgreSQL, one LISTEN connection per process: wakes this process's feed readers when another
    replica of the service (same schema) commits outbox events, and tells the others of ours.

    Ours are announced just after they commit, from this connection (coalesced, in a transaction of
    their own), not by a NOTIFY inside the writing transaction: PostgreSQL serialises the commits of
    notifying transactions on one cluster-wide lock held through the WAL flush, which cut 8 concurrent
    writers from ~3,000 to 250-700 commits/s here (pgbench). A process that dies between its commit and
    the announcement only delays the others' readers until their `wait` ends.
    """

    def __init__(self, database: Database) -> None:
        super().__init__("outbox-listener")
        self.database = database
        self.commits = database.outbox_commits
        self.listening = False  # tests wait for it before committing elsewhere
        self._pending = False  # a commit of ours not yet announced
        self._wake_r, self._wake_w = socket.socketpair()  # pokes the thread out of its select()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)

    def announce(self) -> None:
        """A unit of work here committed outbox events: tell the other replicas (from any thread)."""
        self._pending = True
        self._poke()

    def wake(self) -> None:
        self._poke()

    def _poke(self) -> None:
        with contextlib.suppress(OSError):  # already poked (the buffer is full), or closed at shutdown
            self._wake_w.send(b"x")

    def conninfo(self) -> str:
        url = make_url(self.database.url).set(drivername="postgresql")
        return url.render_as_string(hide_password=False)

    def run(self) -> None:
        backoff = Backoff(0.2, limit=5.0)
        self.commits.on_local_commit.append(self.announce)
        try:
            while not self.stopping.is_set():
                try:
                    self._listen(backoff)
                except psycopg.Error as exc:
                    logger.warning("outbox listener disconnected: %s", type(exc).__name__)
                except Exception:
                    logger.exception("outbox listener failed; reconnecting")
                finally:
                    self.listening = False
                self.stopping.wait(backoff.failed())
        finally:
            self.commits.on_local_commit.remove(self.announce)
            self.close()

    def close(self) -> None:
        """Release the wake-up sockets (`run` does, as it ends; call it for a listener never started)."""
        self._wake_r.close()
        self._wake_w.close()

    def _listen(self, backoff: Backoff) -> None:
        schema = self.database.schema or "public"
        options = f"-csearch_path={schema}"
        with psycopg.connect(self.conninfo(), autocommit=True, options=options, connect_timeout=5) as conn:
            row = conn.execute("SELECT %s || md5(current_schema())", [NOTIFY_CHANNEL_PREFIX]).fetchone()
            channel: str = row[0] if row else NOTIFY_CHANNEL_PREFIX
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
            own_pid = conn.info.backend_pid
            self.listening = True
            backoff.succeeded()
            self.commits.bump()  # whatever the others committed while we were not listening
            while not self.stopping.is_set():
                if self._pending:
                    self._pending = False
                    conn.execute("SELECT pg_notify(%s, '')", [channel])
                # Notices that arrived with a query's answer wait in psycopg's backlog, not the socket.
                notices = list(conn.notifies(timeout=0))
                if any(notice.pid != own_pid for notice in notices):
                    self.commits.bump()
                wait_readable([conn.fileno(), self._wake_r.fileno()], [], [])
                self._drain()

    def _drain(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while self._wake_r.recv(4096):
                pass
