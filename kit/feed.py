"""Reading a sibling service's event feed: at least once, applied exactly once, a page at a time.

A consumer thread long-polls the source's `/events` after its cursor, asking only for the types it
handles, and applies each page in one transaction: the handlers' work, one consumed-event record per
applied event and one cursor move commit together. A crash therefore replays at most the page in
flight, and the cursor makes that replay a no-op. The records are kept because the cursor alone cannot
catch an event seen again *behind* it: one a source redelivers at a new position, a cursor moved back
by hand, or a replica of this service that applied the page first (its cursor move is also why the
stored cursor is re-read, locked, inside each page's transaction).

The cursor is read from the database once, at start, and kept in memory after that. An empty page
(nothing of our types arrived while the source held the request) moves only the cursor in memory:
after a restart the skipped positions are re-read, filtered by the source, at the cost of one query.

A page that fails is applied again event by event: the events before the one at fault are kept, that
one is logged with its position, and the consumer retries it with backoff, never skipping it.

A feed's `resolve` hook sees each page before its transaction, outside any transaction, so a handler
that needs a sibling's data (e.g. a visit it has not read about) has it fetched first.

`caught_up` lets a request wait until the consumers have applied everything their sources had committed
when it arrived (each source's `/events/head`), e.g. so billing never settles before a charge is read.
"""

import asyncio
import contextlib
import contextvars
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import aiohttp
import httpx
import sqlalchemy as sa
from fastapi import FastAPI
from pydantic import BaseModel, StrictInt
from sqlalchemy import Table
from sqlmodel import Session

from kit.auth import TokenSource
from kit.causes import Cause, caused_by
from kit.client import ServiceClient
from kit.clock import utcnow
from kit.database import Database
from kit.errors import BadGateway
from kit.metrics import FEED_CURSOR, FEED_LAG
from kit.models import ConsumedEventBase, FeedCursorBase
from kit.worker import Backoff, ThreadWorker

logger = logging.getLogger("patientflow.feed")
Event = dict[str, Any]
EventHandler = Callable[[Session, Event], None]
HandlerFactory = Callable[[FastAPI], EventHandler]
PageResolver = Callable[[Sequence[Event]], None]
ResolverFactory = Callable[[FastAPI], PageResolver]
MAX_BACKOFF_SECONDS = 5.0
MIN_HEAD_TIMEOUT = 0.1
PAGE_SIZE = 100
LONG_POLL_SECONDS = 20.0
"""How long the source holds an empty read (`wait=`; at most `kit.outbox.MAX_FEED_WAIT`)."""
READ_MARGIN_SECONDS = 10.0  # the read timeout is the long poll plus this


class PageFailed(Exception):
    """A page of a feed could not be applied (logged where it failed); it is retried with backoff."""


class FeedUnavailable(Exception):
    """A source's `/events` did not answer with a page: down, refusing, or a body that is not one."""


@dataclass(frozen=True, slots=True)
class FeedPage:
    """One page of a source's feed: its events, and the position to read after next (past the
    positions the source skipped, events of types not asked for)."""

    events: list[Event]
    next_after: int


class FeedReader:
    """Long-polls sources' `/events` over one pooled aiohttp session, opened and closed inside the
    reading loop (`async with`). Every feed reader uses it: billing's, results' and registration's
    consumers and the event hub (httpx's layers over the transport cost the hub a fifth of its CPU)."""

    def __init__(self, *, wait_seconds: float) -> None:
        self.wait_seconds = wait_seconds
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> "FeedReader":
        timeout = aiohttp.ClientTimeout(total=self.wait_seconds + READ_MARGIN_SECONDS, connect=2.0)
        self._session = aiohttp.ClientSession(timeout=timeout)
        return self

    async def __aexit__(self, *_exc: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def page(
        self, base_url: str, *, after: int, limit: int, authorization: str, types: Sequence[str] = ()
    ) -> FeedPage:
        """The source's events after `after` (the source holds the read up to `wait_seconds`)."""
        assert self._session is not None, "use the reader inside `async with`"
        params = [("after", str(after)), ("limit", str(limit)), ("wait", f"{self.wait_seconds:g}")]
        params += [("type", event_type) for event_type in types]
        headers = {"authorization": authorization}
        try:
            async with self._session.get(
                f"{base_url.rstrip('/')}/events", params=params, headers=headers
            ) as answer:
                if answer.status >= 400:
                    raise FeedUnavailable(f"HTTP {answer.status}")
                body = await answer.json(content_type=None)
            events: list[Event] = body["events"]
            default = events[-1]["position"] if events else after  # a source that predates next_after
            return FeedPage(events, int(body.get("next_after", default)))
        except (aiohttp.ClientError, TimeoutError, ValueError, KeyError, TypeError, IndexError) as exc:
            raise FeedUnavailable(type(exc).__name__) from exc


@dataclass(frozen=True, slots=True, kw_only=True)
class Feed:
    """A sibling's event feed an app reads; `build_service_app` turns each into a running FeedConsumer.

    Give `handle`, or `handle_factory` when the handler needs the started app (e.g. a sibling client
    from `app.state.siblings`): it is called once at start-up. `event_types` None means every type.

    `resolve`, also called once with the started app, gives the function that sees each page's events
    before the page is applied: outside any transaction and the database gate, so it may call siblings
    (fetch a visit not seen yet) and keep what it found where the handler will read it (a short
    transaction of its own, or an object both factories take from `app.state`). If it raises, the page
    is retried with backoff, like a failing handler.
    """

    source: str
    url: str
    handle: EventHandler | None = None
    handle_factory: HandlerFactory | None = None
    event_types: frozenset[str] | None = None
    resolve: ResolverFactory | None = None

    def __post_init__(self) -> None:
        if (self.handle is None) == (self.handle_factory is None):
            raise ValueError(f"Feed {self.source!r} needs exactly one of handle and handle_factory.")

    def bind(self, app: FastAPI) -> EventHandler:
        """The handler for this app's consumer."""
        if self.handle_factory is not None:
            return self.handle_factory(app)
        assert self.handle is not None  # __post_init__ guarantees one of the two
        return self.handle

    def bind_resolver(self, app: FastAPI) -> PageResolver | None:
        """The page resolver for this app's consumer, if the feed has one."""
        return self.resolve(app) if self.resolve is not None else None


class FeedHead(BaseModel):
    """`GET /events/head`: the source's newest committed position."""

    position: StrictInt


class FeedConsumer(ThreadWorker):
    """Applies one source service's events to this service's database, in feed order, a page at a time.

    The thread runs its own event loop, so `stop()` cancels a long poll at once instead of waiting it out.
    """

    def __init__(
        self,
        *,
        source: str,
        base_url: str,
        database: Database,
        cursor_model: type[FeedCursorBase],
        consumed_model: type[ConsumedEventBase],
        handle: EventHandler,
        tokens: TokenSource,
        poll_seconds: float = 0.3,
        event_types: frozenset[str] | None = None,
        consumer: str = "unnamed",
        resolve: PageResolver | None = None,
        wait_seconds: float = LONG_POLL_SECONDS,
    ) -> None:
        super().__init__(f"feed-{source}")
        self.source, self.base_url, self.database = source, base_url.rstrip("/"), database
        # Metrics label: `consumer` is the reading service (build_service_app passes its name).
        self._lag, self._position = FEED_LAG.labels(consumer, source), FEED_CURSOR.labels(consumer, source)
        self.cursor_model, self.consumed_model = cursor_model, consumed_model
        self.handle, self.resolve, self.tokens = handle, resolve, tokens
        self.poll_seconds, self.wait_seconds = poll_seconds, wait_seconds
        self.event_types = event_types
        self._cursor: int | None = None  # None until read from the database, at start
        # `_apply`'s statements, built once: they run for every page (building one costs about as much).
        cursors: Table = cursor_model.__table__  # type: ignore[attr-defined]
        consumed: Table = consumed_model.__table__  # type: ignore[attr-defined]
        mine = cursors.c.source == source
        self._lock_cursor = sa.select(cursors.c.position).where(mine).with_for_update()
        self._add_cursor = sa.insert(cursors).values(source=source, position=sa.bindparam("position"))
        self._move_cursor = sa.update(cursors).where(mine).values(position=sa.bindparam("position"))
        self._record_consumed = sa.insert(consumed)
        self._applied_ids = sa.select(consumed.c.event_id).where(
            consumed.c.event_id.in_(sa.bindparam("ids", expanding=True))
        )
        self._moved = threading.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._nudged: asyncio.Event | None = None
        self._main: asyncio.Task[None] | None = None

    # --- the cursor, in memory

    def cursor(self) -> int:
        """How far this consumer has applied its source's feed (0 before its first read)."""
        return self._cursor or 0

    def wait_until(self, position: int, *, timeout: float) -> bool:
        """Block until the cursor reaches `position` (True) or `timeout` passes (False)."""
        with self._moved:
            return self._moved.wait_for(lambda: self.cursor() >= position, timeout)

    def _move(self, position: int) -> None:
        with self._moved:
            if self._cursor is None or position > self._cursor:
                self._cursor = position
            self._moved.notify_all()
        self._position.set(self.cursor())

    def _load_cursor(self) -> None:
        with self.database.session(write=False) as session:
            stored = session.get(self.cursor_model, self.source)
            self._move(stored.position if stored else 0)

    # --- the loop

    def wake(self) -> None:
        """Cut a backoff short and read now (`stop()` calls it too, to cancel a long poll)."""
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has already ended
                loop.call_soon_threadsafe(self._interrupt)

    def _interrupt(self) -> None:
        if self._nudged is not None:
            self._nudged.set()
        if self.stopping.is_set() and self._main is not None:
            self._main.cancel()

    def run(self) -> None:
        with contextlib.suppress(asyncio.CancelledError):  # stop() cancels it
            asyncio.run(self._consume())

    async def _consume(self) -> None:
        self._loop, self._nudged = asyncio.get_running_loop(), asyncio.Event()
        self._main = asyncio.current_task()
        backoff = Backoff(self.poll_seconds, MAX_BACKOFF_SECONDS)
        async with FeedReader(wait_seconds=self.wait_seconds) as reader:
            while not self.stopping.is_set():
                pause = await self._step(reader, backoff)
                if pause > 0:
                    await self._pause(pause)

    async def _step(self, reader: FeedReader, backoff: Backoff) -> float:
        """Read one page and apply it; returns how long to pause before the next read."""
        assert self._nudged is not None
        self._nudged.clear()  # a wake() from now on cuts the next pause short
        try:
            applied = await self.poll_once(reader)
        except FeedUnavailable as exc:
            # The source being down is routine (billing restarts, results deploys): back off.
            logger.warning("feed %s unavailable: %s", self.source, exc)
            return backoff.failed()
        except PageFailed:
            return backoff.failed()  # apply_page logged what failed
        except Exception:
            logger.exception("feed %s: cannot read the cursor; will retry", self.source)
            return backoff.failed()
        backoff.succeeded()
        # An empty page came after the source held the read `wait_seconds`: read again after a breath
        # (a source that cannot hold reads, or is stopping, would otherwise be asked in a tight loop).
        return 0.0 if applied else self.poll_seconds

    async def poll_once(self, reader: FeedReader) -> int:
        """Read one page (held by the source up to `wait_seconds`) and apply it; returns its length.
        Raises PageFailed if it could not be applied."""
        if self._cursor is None:
            self._load_cursor()
        page = await reader.page(
            self.base_url,
            after=self.cursor(),
            limit=PAGE_SIZE,
            authorization=self.tokens.header(self.source),
            types=sorted(self.event_types or ()),
        )
        events, next_after = page.events, page.next_after
        try:
            # A fresh context per page: the causes its `resolve` noted (sibling heads) stay with it.
            contextvars.copy_context().run(self.apply_page, events, next_after)
        except Exception as exc:
            raise PageFailed(self.source) from exc
        self._observe(events[-1] if len(events) >= PAGE_SIZE else None)
        return len(events)

    async def _pause(self, seconds: float) -> None:
        assert self._nudged is not None
        try:
            async with asyncio.timeout(seconds):
                await self._nudged.wait()
        except TimeoutError:
            pass

    # --- applying

    def apply_page(self, events: Sequence[Event], next_after: int) -> None:
        """Apply a page exactly once, in one transaction with one cursor move to `next_after`; if that
        fails, event by event, so the one at fault is logged and those before it are kept. Raises if an
        event could not be applied (the caller retries the page with backoff)."""
        if not events:
            self._move(next_after)
            return
        if self.resolve is not None:
            try:
                self.resolve(events)
            except Exception:
                logger.exception("feed %s: resolving a page failed; will retry", self.source)
                raise
        try:
            self._apply(events, next_after)
            return
        except Exception:
            if len(events) == 1:
                self._log_failure(events[0])
                raise
            logger.warning("feed %s: a page failed; applying it event by event", self.source)
        for event in events:
            try:
                self._apply([event], event["position"])
            except Exception:
                self._log_failure(event)
                raise
        self._move(next_after)

    def apply(self, event: Event) -> None:
        """Apply one event as a page of its own (a replay by hand, in tests and tools)."""
        self.apply_page([event], event["position"])

    def _log_failure(self, event: Event) -> None:
        logger.exception(
            "feed %s: event %s (%s) at position %s failed to apply; will retry it",
            self.source,
            event.get("id"),
            event.get("type"),
            event.get("position"),
        )

    def _apply(self, events: Sequence[Event], cursor_to: int) -> None:
        # The cursor and the consumed-event records in Core: they are written for every page, and the
        # ORM's identity map and flush cost more than the handlers' own work for most events.
        with self.database.session(write=True) as session:
            connection = session.connection()
            stored: int | None = connection.execute(self._lock_cursor).scalar()
            fresh = [e for e in events if e["position"] > (stored or 0) and self._wanted(e)]
            applied = self._already_applied(connection, [e["id"] for e in fresh])
            records: list[dict[str, Any]] = []
            for event in fresh:
                if event["id"] in applied:
                    continue
                with caused_by(Cause(self.source, event["position"])):
                    self.handle(session, event)
                records.append({"event_id": event["id"], "source": self.source, "consumed_at": utcnow()})
                applied.add(event["id"])
            if records:
                connection.execute(self._record_consumed, records)
            position = max(stored or 0, cursor_to)
            if stored is None:
                connection.execute(self._add_cursor, {"position": position})
            elif position > stored:
                connection.execute(self._move_cursor, {"position": position})
        self._move(position)

    def _wanted(self, event: Event) -> bool:
        # The source filters by type already; a source that ignores `type=` is filtered here.
        return self.event_types is None or event["type"] in self.event_types

    def _already_applied(self, connection: sa.Connection, event_ids: list[str]) -> set[str]:
        if not event_ids:
            return set()
        return set(connection.execute(self._applied_ids, {"ids": event_ids}).scalars())

    def _observe(self, last: Event | None) -> None:
        """Lag = age of the last applied event of a full page (more may wait); a page that was not full
        had everything the source had committed, so the consumer is caught up (0)."""
        if last is None:
            self._lag.set(0)
            return
        occurred = datetime.fromisoformat(last["occurred_at"])
        self._lag.set(max((datetime.now(UTC) - occurred).total_seconds(), 0.0))

    # --- asking the source

    def source_head(self, *, timeout_seconds: float = 5.0) -> int:
        """The position of the source's newest committed event of our types now; ServiceUnavailable or
        BadGateway if it can't say."""
        # A client per call: heads are asked once per settlement-like request, not per poll.
        timeout = httpx.Timeout(timeout_seconds, connect=min(timeout_seconds, 1.0))
        source = ServiceClient(self.source, self.base_url, self.tokens, timeout=timeout)
        query = urlencode([("type", event_type) for event_type in sorted(self.event_types or ())])
        try:
            head = source.get_sync(FeedHead, f"/events/head?{query}" if query else "/events/head")
        finally:
            source.close()
        if head is None:
            raise BadGateway(f"The {self.source} service serves no feed head.", slug="upstream-error")
        return head.position


def caught_up(
    consumers: Sequence[FeedConsumer],
    *,
    within_seconds: float,
    clock: Callable[[], float] = time.monotonic,
) -> list[str]:
    """Wait until every consumer has applied its source's events (of its types) committed before this
    call.

    Returns the sources still behind when `within_seconds` ran out (empty: all caught up); asking the
    heads counts against it too. A source that cannot tell its head raises ServiceUnavailable or
    BadGateway (kit.errors): nothing it committed can then be known to have arrived. Call it outside
    any transaction and the database gate: it does HTTP and waits (on the consumers' cursors, in memory).
    """
    deadline = clock() + within_seconds
    heads = {
        consumer.source: consumer.source_head(timeout_seconds=max(deadline - clock(), MIN_HEAD_TIMEOUT))
        for consumer in consumers
    }
    for consumer in consumers:
        consumer.wake()  # one backing off after a failure reads again now
    return [
        consumer.source
        for consumer in consumers
        if not consumer.wait_until(heads[consumer.source], timeout=max(deadline - clock(), 0.0))
    ]
