"""Ingestion: the four services' feeds merged into one log whose order respects cause and effect.

Each source has its own reader, which long-polls `GET /events?after=<read_to>&wait=` and appends what it
gets, in feed order, to that source's *backlog* (read, not yet logged). After every read the merge
(`plan`, pure) picks what may enter the log, and the hub logs it in one transaction with the cursor moves:

- a source's events enter the log in its own feed order, so only the head of a backlog can be taken;
- a head is *ready* when each of its `causes` is met: `logged_to(cause.source) >= cause.position`, where
  `logged_to(s)` is the position up to which every event of `s` is in the log (just before the head of
  s's backlog, or as far as s was read when its backlog is empty);
- among the ready heads, the smallest (`occurred_at`, source rank, position) is taken first; taking it
  may make other heads ready, and the merge ends when no head is ready.

`logged_to` says what it claims. The backlog holds exactly the events of `s` read and not yet logged, in
feed order, so everything of `s` below its head was read earlier and logged. With an empty backlog,
everything read is logged, and a reader that has read up to `read_to` has seen every event of `s` at or
below it: feed positions become visible in commit order (`kit/outbox.py` proves it), so none can appear
there later. The log's transaction stores `logged_to` as the source's cursor, so the claim survives a
restart too.

Why the log is causal: an event `e` naming the cause `(s, p)` is taken only once `logged_to(s) >= p`,
that is once every event of `s` up to `p`, the cause among them, is in the log, and the log is appended
in merge order. So the cause is logged first, and so, by induction on the log, are the causes of the
cause. Within a source the log keeps feed order, which is that source's commit order. A cause in
the event's own source is met by feed order; one in a source the hub does not read could never be met
and does not hold the event back. No clock is trusted for any of this, so hosts may drift as they like:
`occurred_at` only orders events that are ready at the same time — catching up after a restart, when
many are, the log comes out in the old time order as far as the causes allow.

What counts as a cause is what `kit.causes` carries: the event a feed consumer applied, and the feed head
of a sibling a unit of work called. An order that passes only through a client (one service answered,
then the client wrote to another, with no sibling call between) carries no cause and is not kept.

A source that is down holds back only what depends on it. Its reader backs off (`kit.worker.Backoff`)
while the others go on: an event of another source is logged as soon as its causes are met, and no cause
can be in the down source's unread part unless the event names it — such an event waits, and with it the
rest of its own feed (feed order), but nothing else. Causes cannot form a cycle (each committed before
its effect's unit of work read it), so a wait always ends when the source is back. A cause the source will
never reach (its database was reset under a running system) would hold its event back for good; the
`patientflow_events_ingest_lag_seconds` gauge shows it growing.

Cursors live in memory; the log's transaction also stores `logged_to` per source, which is where reading
resumes after a restart. Re-read events are skipped by id (`service.log_batch`), so each is logged once.
Idle, each reader wakes once per long-poll (`wait_seconds`) and the merge not at all; against a feed that
ignores `wait` (it answers an empty page at once) a reader asks again after `poll_seconds`. The merge logs on
the ingest loop itself (no executor hop per transaction); what the readers bring while it logs joins
the next transaction, and `merge_interval_seconds`, when set, paces it to one per interval.
"""

import asyncio
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kit.auth import TokenSource
from kit.database import Database
from kit.feed import FeedReader, FeedUnavailable
from kit.worker import Backoff, ThreadWorker
from services.events import metrics, repository, service
from services.events.notifier import LogNotifier

logger = logging.getLogger("patientflow.events.ingest")
SourceEvent = tuple[str, dict[str, Any]]


@dataclass(slots=True)
class Backlog:
    """One source as the hub has read it: `events` read but not yet logged (feed order), and `read_to`,
    the position reading resumes after."""

    read_to: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)

    def logged_to(self, taken: int = 0) -> int:
        """Every event of the source at or below this position is in the log (once `taken` more are)."""
        return self.events[taken]["position"] - 1 if taken < len(self.events) else self.read_to


def occurred(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(event["occurred_at"])


def plan(backlogs: Mapping[str, Backlog]) -> list[SourceEvent]:
    """The events to log now, in log order: the ready heads of the backlogs, smallest first (sources
    ranked in `backlogs` order), until none is ready. Pure, so the causal rule is tested without servers."""
    taken = dict.fromkeys(backlogs, 0)

    def ready(source: str, event: dict[str, Any]) -> bool:
        return all(
            cause["source"] == source
            or cause["source"] not in backlogs
            or backlogs[cause["source"]].logged_to(taken[cause["source"]]) >= cause["position"]
            for cause in event.get("causes") or ()
        )

    order: list[SourceEvent] = []
    while True:
        heads = [
            ((occurred(event), rank, event["position"]), source, event)
            for rank, source in enumerate(backlogs)
            if taken[source] < len(backlogs[source].events)
            and ready(source, event := backlogs[source].events[taken[source]])
        ]
        if not heads:
            return order
        _, source, event = min(heads, key=lambda head: head[0])
        order.append((source, event))
        taken[source] += 1


class Ingestor(ThreadWorker):
    """The worker thread that moves events from the four feeds into the log (its own asyncio loop: one
    task per source reader, one for the merge)."""

    def __init__(
        self,
        *,
        database: Database,
        feeds: dict[str, str],
        tokens: TokenSource,
        notifier: LogNotifier,
        poll_seconds: float,
        wait_seconds: float,
        page_size: int = 500,
        merge_interval_seconds: float = 0.0,
    ) -> None:
        super().__init__("events-ingest")
        self.database, self.tokens, self.notifier = database, tokens, notifier
        self.feeds = {source: url.rstrip("/") for source, url in feeds.items()}
        self.poll_seconds, self.wait_seconds, self.page_size = poll_seconds, wait_seconds, page_size
        self.merge_interval_seconds = merge_interval_seconds
        self.transactions = 0  # log transactions so far (the merge's pace shows in it)
        self.backlogs: dict[str, Backlog] = {}
        self._stored: dict[str, int] = {}  # the cursors as the log's last transaction stored them
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped, self._read, self._room = asyncio.Event(), asyncio.Event(), asyncio.Condition()

    def wake(self) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stopped.set)

    def run(self) -> None:
        backoff = Backoff(self.poll_seconds)
        while not self.stopping.is_set():
            try:
                asyncio.run(self._ingest_until_stopped())
            except Exception:
                logger.exception("ingestion failed; will retry")
                self.stopping.wait(backoff.failed())

    async def _ingest_until_stopped(self) -> None:
        self._stopped = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        if self.stopping.is_set():
            return
        with self.database.session(write=False) as session:
            cursors = repository.source_cursors(session)
        self.backlogs = {source: Backlog(read_to=cursors.get(source, 0)) for source in self.feeds}
        self._stored = {source: backlog.read_to for source, backlog in self.backlogs.items()}
        self._read, self._room = asyncio.Event(), asyncio.Condition()
        async with FeedReader(wait_seconds=self.wait_seconds) as reader:
            tasks: list[asyncio.Task[Any]] = [
                asyncio.create_task(self._follow(reader, source)) for source in self.feeds
            ]
            tasks += [asyncio.create_task(self._merge()), asyncio.create_task(self._stopped.wait())]
            try:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    task.result()  # a task that failed ends the loop, and run() starts it again
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

    async def _follow(self, reader: FeedReader, source: str) -> None:
        """Read one source into its backlog for as long as the hub runs; it may be down meanwhile."""
        backlog, backoff = self.backlogs[source], Backoff(self.poll_seconds)
        loop = asyncio.get_running_loop()
        while True:
            async with self._room:  # the merge makes room by logging
                await self._room.wait_for(lambda: len(backlog.events) < self.page_size)
            asked = loop.time()
            try:
                page = await reader.page(
                    self.feeds[source],
                    after=backlog.read_to,
                    limit=self.page_size - len(backlog.events),
                    authorization=self.tokens.header(source),
                )
            except FeedUnavailable as exc:
                logger.warning("feed %s unavailable: %s", source, exc)
                await asyncio.sleep(backoff.failed())
                continue
            backoff.succeeded()
            backlog.events += [event for event in page.events if event["position"] > backlog.read_to]
            backlog.read_to = max(backlog.read_to, page.next_after)
            if page.events:
                self._read.set()
            elif not self.wait_seconds or loop.time() - asked < self.wait_seconds / 2:
                await asyncio.sleep(self.poll_seconds)  # the feed did not wait: it predates long polls

    async def _merge(self) -> None:
        """Log what the causal rule allows each time a reader brought something, at most once per
        `merge_interval_seconds`: a read within the interval after a transaction waits for the rest
        of it, and whatever else is read meanwhile is logged with it."""
        backoff = Backoff(self.poll_seconds)
        loop = asyncio.get_running_loop()
        logged_at = -math.inf
        while True:
            await self._read.wait()
            if (pause := logged_at + self.merge_interval_seconds - loop.time()) > 0:
                await asyncio.sleep(pause)
            self._read.clear()
            logged_at = loop.time()
            try:
                await self.log_ready()
                backoff.succeeded()
            except Exception:
                logger.exception("logging ingested events failed; will retry")
                self._read.set()
                await asyncio.sleep(backoff.failed())

    async def log_ready(self) -> list[SourceEvent]:
        """Plan, log in one transaction with the cursors, then drop the logged heads of the backlogs."""
        taken = plan(self.backlogs)
        counts = dict.fromkeys(self.backlogs, 0)
        for source, _ in taken:
            counts[source] += 1
        cursors = {source: backlog.logged_to(counts[source]) for source, backlog in self.backlogs.items()}
        cursors = {source: at for source, at in cursors.items() if at > self._stored[source]}
        if taken or cursors:
            # On this loop, not a worker thread: the loop is the ingest thread's own, and the readers
            # lose only the milliseconds of one local transaction (no network call happens in it),
            # while a hop to an executor thread and back cost about as much CPU as the transaction.
            logged = self._log(taken, cursors)
            self._stored |= cursors
            for source, count in counts.items():
                del self.backlogs[source].events[:count]
            async with self._room:
                self._room.notify_all()
            if logged.events:
                self.notifier.bump()
            if logged.deliveries:
                self.notifier.deliveries.bump()
        waiting = [occurred(backlog.events[0]) for backlog in self.backlogs.values() if backlog.events]
        metrics.observe_ingest_lag(min(waiting, default=None))
        return taken

    def _log(self, taken: list[SourceEvent], cursors: dict[str, int]) -> service.Logged:
        self.transactions += 1
        with self.database.session() as session:
            return service.log_batch(session, taken, cursors=cursors)
