"""Ingestion: the four services' feeds merged into one log whose order respects cause and effect.

Each cycle takes `cutoff = now - margin` first, then reads every source's feed after its cursor and
keeps, per source, only the *prefix* of events with `occurred_at <= cutoff` (the first later event and
everything behind it wait for the next cycle). The taken events of all sources are merged by
`occurred_at` (ties: registration, triage, results, billing, then source position), keeping each
source's own order, and logged in one transaction together with the cursor moves.

Why the log is causal: an effect is written by a transaction that started after its cause committed
(a service reacts to a feed it read, or a client to an answer it got), so
`cause.commit < effect.occurred_at <= cutoff < read time`. The cause was therefore visible when its
source was read, and it precedes the effect in the taken prefix: every event before it in its feed
committed earlier still, so its `occurred_at` is earlier than the cutoff too. And `occurred_at` puts it
first in the merge. The margin absorbs clock skew between the hub and the services, which all stamp
`occurred_at` from their own clocks (on one host, or NTP-synchronised ones).

A source that cannot be read stops the whole cycle: logging the others' events without it could log an
effect before a cause that the missing source holds. When a source has more than a page waiting, the
cycle lowers its cutoff to the newest `occurred_at` on the page it read (everything unread from that
source committed after that instant, so none of it is a cause of anything taken), and runs again at once.
"""

import heapq
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx

from kit.auth import TokenSource
from kit.clock import utcnow
from kit.database import Database
from kit.worker import ThreadWorker
from services.events import metrics, repository, service
from services.events.notifier import LogNotifier

logger = logging.getLogger("patientflow.events.ingest")
MAX_BACKOFF_SECONDS = 5.0
SourceEvent = tuple[str, dict[str, Any]]


@dataclass(slots=True)
class Cycle:
    """What one cycle took, and whether the feeds hold more than it took."""

    taken: list[SourceEvent] = field(default_factory=list)
    cursors: dict[str, int] = field(default_factory=dict)
    truncated: bool = False  # a full page was read: read again at once
    # When the oldest event the feeds hold beyond this cycle occurred (None: the log is caught up).
    waiting_since: datetime | None = None

    def note_waiting(self, instant: datetime) -> None:
        self.waiting_since = instant if self.waiting_since is None else min(self.waiting_since, instant)


def occurred(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(event["occurred_at"])


def prefix_until(events: Sequence[dict[str, Any]], cutoff: datetime) -> list[dict[str, Any]]:
    """The leading events that occurred by `cutoff` (a later one stops the prefix)."""
    taken: list[dict[str, Any]] = []
    for event in events:
        if occurred(event) > cutoff:
            break
        taken.append(event)
    return taken


def plan_cycle(pages: dict[str, list[dict[str, Any]]], *, cutoff: datetime, page_size: int) -> Cycle:
    """Choose and order the events to log from one page per source (in tie-break order), all read after
    `cutoff` was taken. Pure, so the causal rule can be tested without servers."""
    cycle = Cycle()
    for events in pages.values():
        if len(events) >= page_size and occurred(events[-1]) <= cutoff:
            # More may wait behind a full page: nothing unread there is a cause of anything older
            # than the newest event read (see the module docstring).
            cutoff = min(cutoff, max(occurred(e) for e in events))
            cycle.truncated = True
            cycle.note_waiting(occurred(events[-1]))
    ranked: list[list[tuple[tuple[datetime, int, int], SourceEvent]]] = []
    for rank, (source, events) in enumerate(pages.items()):
        prefix = prefix_until(events, cutoff)
        if len(prefix) < len(events):
            cycle.note_waiting(occurred(events[len(prefix)]))
        if prefix:
            cycle.cursors[source] = prefix[-1]["position"]
        ranked.append([((occurred(e), rank, e["position"]), (source, e)) for e in prefix])
    # heapq.merge keeps each source's feed order, even if its clock ever stepped back.
    cycle.taken = [item for _, item in heapq.merge(*ranked, key=lambda pair: pair[0])]
    return cycle


class Ingestor(ThreadWorker):
    """The worker thread that moves events from the four feeds into the log."""

    def __init__(
        self,
        *,
        database: Database,
        feeds: dict[str, str],
        tokens: TokenSource,
        notifier: LogNotifier,
        margin_seconds: float,
        poll_seconds: float,
        page_size: int = 500,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        super().__init__("events-ingest")
        self.database, self.tokens, self.notifier = database, tokens, notifier
        self.feeds = {source: url.rstrip("/") for source, url in feeds.items()}
        self.margin = timedelta(seconds=margin_seconds)
        self.poll_seconds, self.page_size, self.clock = poll_seconds, page_size, clock

    def run(self) -> None:
        backoff = self.poll_seconds
        with httpx.Client(timeout=httpx.Timeout(10.0, connect=2.0)) as client:
            while not self.stopping.is_set():
                try:
                    cycle = self.run_cycle(client)
                    backoff = self.poll_seconds
                    if cycle.truncated:
                        continue
                except (httpx.HTTPError, ValueError, KeyError) as exc:
                    # One source down holds back every source: see the module docstring.
                    logger.warning("ingest cycle skipped, a feed is unavailable: %s", type(exc).__name__)
                    backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
                except Exception:
                    logger.exception("ingest cycle failed; will retry")
                    backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
                self.stopping.wait(backoff)

    def run_cycle(self, client: httpx.Client) -> Cycle:
        """Read every feed, log what the causal rule allows, wake the readers; raises if a feed fails."""
        cutoff = self.clock() - self.margin
        with self.database.session(write=False) as session:
            cursors = repository.source_cursors(session)
        pages = {source: self._read(client, source, cursors.get(source, 0)) for source in self.feeds}
        cycle = plan_cycle(pages, cutoff=cutoff, page_size=self.page_size)
        if cycle.taken or cycle.cursors:
            with self.database.session() as session:
                logged = service.log_batch(session, cycle.taken, cursors=cycle.cursors)
            if logged:
                self.notifier.bump()
        metrics.observe_ingest_lag(cycle.waiting_since)
        return cycle

    def _read(self, client: httpx.Client, source: str, after: int) -> list[dict[str, Any]]:
        response = client.get(
            f"{self.feeds[source]}/events",
            params={"after": after, "limit": self.page_size},
            headers={"authorization": self.tokens.header(source)},
        )
        response.raise_for_status()
        events: list[dict[str, Any]] = response.json()["events"]
        return events
