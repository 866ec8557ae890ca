"""Reading a sibling service's event feed: at least once, applied exactly once.

A consumer thread pages through the source's `/events` from a stored cursor. Each event is applied in
its own transaction together with the cursor move and a consumed-event record, so a crash at any point
replays at most the event in flight, and the record makes that replay a no-op.

`caught_up` lets a request wait until the consumers have applied everything their sources had committed
when it arrived (each source's `/events/head`), e.g. so billing never settles before a charge is read.
"""

import contextvars
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from fastapi import FastAPI
from pydantic import BaseModel, StrictInt
from sqlmodel import Session

from kit.auth import TokenSource
from kit.client import ServiceClient
from kit.database import Database
from kit.errors import BadGateway
from kit.metrics import FEED_CURSOR, FEED_LAG
from kit.models import ConsumedEventBase, FeedCursorBase
from kit.worker import ThreadWorker

logger = logging.getLogger("patientflow.feed")
EventHandler = Callable[[Session, dict[str, Any]], None]
HandlerFactory = Callable[[FastAPI], EventHandler]
Resolver = Callable[[Sequence[dict[str, Any]]], None]
ResolverFactory = Callable[[FastAPI], Resolver]
MAX_BACKOFF_SECONDS = 5.0
CATCH_UP_POLL_SECONDS = 0.02
MIN_HEAD_TIMEOUT = 0.1


@dataclass(frozen=True, slots=True, kw_only=True)
class Feed:
    """A sibling's event feed an app reads; `build_service_app` turns each into a running FeedConsumer.

    Give `handle`, or `handle_factory` when the handler needs the started app (e.g. a sibling client
    from `app.state.siblings`): it is called once at start-up. `event_types` None means every type.
    `resolve` (a factory like `handle_factory`) gives a hook called with each page's events outside
    any transaction, before they are applied: where a handler needs a sibling's data, fetch it there.
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


class FeedHead(BaseModel):
    """`GET /events/head`: the source's newest committed position."""

    position: StrictInt


class FeedConsumer(ThreadWorker):
    """Applies one source service's events to this service's database, in feed order."""

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
        resolve: Resolver | None = None,
        poll_seconds: float = 0.3,
        event_types: frozenset[str] | None = None,
        consumer: str = "unnamed",
    ) -> None:
        super().__init__(f"feed-{source}")
        self.source, self.base_url, self.database = source, base_url.rstrip("/"), database
        # Metrics label: `consumer` is the reading service (build_service_app passes its name).
        self._lag, self._position = FEED_LAG.labels(consumer, source), FEED_CURSOR.labels(consumer, source)
        self.cursor_model, self.consumed_model = cursor_model, consumed_model
        self.handle, self.tokens, self.poll_seconds = handle, tokens, poll_seconds
        self.event_types, self.resolve = event_types, resolve
        self._nudged = threading.Event()

    def wake(self) -> None:
        """Read the next page now instead of after the poll interval (or the backoff)."""
        self._nudged.set()

    def source_head(self, *, timeout_seconds: float = 5.0) -> int:
        """The source's newest committed position now; ServiceUnavailable or BadGateway if it can't say."""
        # A client per call: heads are asked once per settlement-like request, not per poll.
        timeout = httpx.Timeout(timeout_seconds, connect=min(timeout_seconds, 1.0))
        source = ServiceClient(self.source, self.base_url, self.tokens, timeout=timeout)
        try:
            head = source.get_sync(FeedHead, "/events/head")
        finally:
            source.close()
        if head is None:
            raise BadGateway(f"The {self.source} service serves no feed head.", slug="upstream-error")
        return head.position

    def run(self) -> None:
        backoff = self.poll_seconds
        timeout = httpx.Timeout(10.0, connect=2.0)
        with httpx.Client(base_url=self.base_url, timeout=timeout) as client:
            while not self.stopping.is_set():
                try:
                    # A fresh context per page: causes its `resolve` noted stay with that page.
                    applied = contextvars.copy_context().run(self.poll_once, client)
                    backoff = self.poll_seconds
                    if applied:
                        continue  # more may be waiting: read the next page at once
                except (httpx.HTTPError, ValueError) as exc:
                    # The source being down is routine (billing restarts, results deploys): back off.
                    logger.warning("feed %s unavailable: %s", self.source, type(exc).__name__)
                    backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
                except Exception:
                    logger.exception("feed %s: failed to apply an event; will retry", self.source)
                    backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
                self._nudged.wait(backoff)
                self._nudged.clear()

    def cursor(self) -> int:
        with self.database.session(write=False) as session:
            row = session.get(self.cursor_model, self.source)
            return row.position if row else 0

    def poll_once(self, client: httpx.Client) -> int:
        """Read one page and apply it; returns how many events were read."""
        cursor = self.cursor()
        response = client.get(
            "/events",
            params={"after": cursor, "limit": 100},
            headers={"authorization": self.tokens.header(self.source)},
        )
        response.raise_for_status()
        events = response.json()["events"]
        if self.resolve is not None and events:
            self.resolve(events)  # sibling calls here, before any transaction opens
        for event in events:
            self.apply(event)
        self._observe(events[-1] if events else None, cursor)
        return len(events)

    def _observe(self, last: dict[str, Any] | None, cursor: int) -> None:
        """Lag = age of the last applied event; an empty page means caught up."""
        if last is None:
            self._lag.set(0)
            self._position.set(cursor)
            return
        occurred = datetime.fromisoformat(last["occurred_at"])
        self._lag.set(max((datetime.now(UTC) - occurred).total_seconds(), 0.0))
        self._position.set(last["position"])

    def apply(self, event: dict[str, Any]) -> None:
        """Apply one event exactly once and move the cursor past it, in one transaction."""
        with self.database.session(write=True) as session:
            cursor = session.get(self.cursor_model, self.source) or self.cursor_model(source=self.source)
            if event["position"] <= cursor.position:
                return
            already = session.get(self.consumed_model, event["id"]) is not None
            wanted = self.event_types is None or event["type"] in self.event_types
            if wanted and not already:
                self.handle(session, event)
                session.add(self.consumed_model(event_id=event["id"], source=self.source))
            cursor.position = event["position"]
            session.add(cursor)


def caught_up(
    consumers: Sequence[FeedConsumer],
    *,
    within_seconds: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> list[str]:
    """Wait until every consumer has applied its source's events committed before this call.

    Returns the sources still behind when `within_seconds` ran out (empty: all caught up); asking the
    heads counts against it too. A source that cannot tell its head raises ServiceUnavailable or
    BadGateway (kit.errors): nothing it committed can then be known to have arrived. Call it outside
    any transaction and the database gate: it does HTTP and waits.
    """
    deadline = clock() + within_seconds
    heads = {
        consumer.source: consumer.source_head(timeout_seconds=max(deadline - clock(), MIN_HEAD_TIMEOUT))
        for consumer in consumers
    }
    for consumer in consumers:
        consumer.wake()  # don't wait out a poll interval
    behind = list(consumers)
    while True:
        behind = [c for c in behind if c.cursor() < heads[c.source]]
        if not behind or clock() >= deadline:
            return [c.source for c in behind]
        sleep(CATCH_UP_POLL_SECONDS)
