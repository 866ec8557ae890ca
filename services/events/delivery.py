"""Webhook delivery: at least once, signed, retried with backoff for a long window, in per-visit order.

Delivery rows are written with the events they carry (services/events/service.py `log_batch`), so an
event is never logged without being owed to its subscribers. This worker sends the due ones: a batch
holds at most one delivery per (subscription, visit) — the oldest pending one — so a failing receiver
holds back later events of that visit only, while other visits and subscribers proceed in parallel.

Only a *pending* delivery holds its visit back. One parked as dead stops blocking, so the visit's later
events go on without it, and if it is replayed it arrives after them: receivers order a visit's events
by `visit_sequence` (docs/events.md says so), not by arrival.

Between rounds the worker sleeps until the soonest retry falls due or the log (or a replay) bumps the
notifier's `deliveries` wakeup; idle, it wakes every `IDLE_WAKE_SECONDS` at most.

Each attempt first resolves the receiver's host and refuses forbidden addresses
(services/events/destinations.py), then connects to the address it checked.
"""

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import httpx

from kit.clock import utcnow
from kit.database import Database
from kit.worker import Backoff, ThreadWorker
from services.events import metrics, repository, service
from services.events.config import EventsSettings
from services.events.destinations import RefusedDestination
from services.events.models import LogEvent, Subscription
from services.events.notifier import LogNotifier
from services.events.signing import signed_headers

logger = logging.getLogger("patientflow.events.delivery")
USER_AGENT = "patientflow-webhooks/1"
IDLE_WAKE_SECONDS = 30.0  # a safety net only: new events and replays bump the notifier


def delivery_body(event: LogEvent) -> bytes:
    """The exact bytes that are signed and sent: the event's JSON, compact."""
    return json.dumps(service.event_json(event), separators=(",", ":"), ensure_ascii=False).encode()


class DeliveryWorker(ThreadWorker):
    """Sends due webhook deliveries from a thread, a few at a time."""

    def __init__(self, *, database: Database, settings: EventsSettings, notifier: LogNotifier) -> None:
        super().__init__("events-webhooks")
        self.database, self.settings, self.notifier = database, settings, notifier
        self.destinations = settings.webhook_destinations()
        self.join_seconds = settings.webhook_timeout_seconds + 5  # a delivery in flight may finish

    def wake(self) -> None:
        self.notifier.deliveries.bump()  # the loop waits on it between rounds

    def run(self) -> None:
        timeout = httpx.Timeout(self.settings.webhook_timeout_seconds, connect=3.0)
        headers = {"user-agent": USER_AGENT, "content-type": "application/json"}
        with (
            httpx.Client(timeout=timeout, headers=headers, follow_redirects=False) as client,
            ThreadPoolExecutor(self.settings.webhook_concurrency, "events-webhook") as pool,
        ):
            backoff = Backoff(self.settings.feed_poll_seconds)
            while not self.stopping.is_set():
                seen = self.notifier.deliveries.version
                now = utcnow()
                try:
                    sent, idle_seconds = self.send_due(client, pool, now), self.until_next_retry(now)
                except Exception:
                    logger.exception("webhook delivery round failed; will retry")
                    sent, idle_seconds = 0, backoff.failed()
                else:
                    backoff.succeeded()
                if not sent:
                    self.notifier.deliveries.wait(seen, idle_seconds)

    def until_next_retry(self, now: datetime) -> float:
        """Seconds from `now` (the round's instant) until the soonest retry falls due after it, at most
        `IDLE_WAKE_SECONDS`; one already due at `now` but held back by its visit is sent after that one."""
        with self.database.session(write=False) as session:
            due = repository.next_retry_at(session, now)
        return IDLE_WAKE_SECONDS if due is None else min(IDLE_WAKE_SECONDS, (due - now).total_seconds())

    def send_due(self, client: httpx.Client, pool: ThreadPoolExecutor, now: datetime) -> int:
        """Send one batch of due deliveries concurrently and record the outcomes; returns how many."""
        with self.database.session(write=False) as session:
            due = repository.due_deliveries(session, now, self.settings.webhook_batch_size)
            events = repository.events_at(session, {d.position for d in due})
            subscriptions = repository.subscriptions_by_id(session, {d.subscription_id for d in due})
            metrics.observe_backlog(repository.pending_count(session))
        if not due:
            return 0
        jobs = [
            pool.submit(self._attempt, client, subscriptions[d.subscription_id], events[d.position])
            for d in due
        ]
        outcomes = {d.id: job.result() for d, job in zip(due, jobs, strict=True)}
        with self.database.session() as session:
            for delivery in repository.lock_deliveries(session, [d.id for d in due if d.id is not None]):
                if delivery.status != "pending":
                    continue  # replayed or deleted meanwhile
                at, status_code, error = outcomes[delivery.id]
                service.record_attempt(
                    delivery, settings=self.settings, at=at, status_code=status_code, error=error
                )
                session.add(delivery)
        return len(due)

    def _attempt(
        self, client: httpx.Client, subscription: Subscription, event: LogEvent
    ) -> tuple[datetime, int | None, str | None]:
        """POST one event to the checked address; (when, HTTP status or None, error text or None).

        Never raises: a refused or unresolvable destination is a failed attempt like a refused connection.
        """
        try:
            target = self.destinations.pin(subscription.url)
        except RefusedDestination as exc:
            return utcnow(), None, f"refused destination: {exc}"
        except OSError as exc:
            return utcnow(), None, f"cannot resolve the host: {exc}"
        body = delivery_body(event)
        headers = signed_headers(subscription.secret, event.event_id, body) | target.headers
        try:
            response = client.post(target.url, content=body, headers=headers, extensions=target.extensions)
        except httpx.HTTPError as exc:
            return utcnow(), None, f"{type(exc).__name__}: {exc}"
        return utcnow(), response.status_code, None
