"""Optional fan-out to NATS JetStream, for deployments that already run a broker.

Each log event is published to `<prefix>.<type>` on the stream (created if missing) with
`Nats-Msg-Id` = the event id, and the publisher's cursor moves only after JetStream acknowledged it:
at least once from here, and JetStream's duplicate window drops the repeats a restart may cause.
"""

import asyncio
import json
import logging
from typing import Any

import nats
from nats.js.errors import NotFoundError

from kit.database import Database
from kit.worker import Backoff, ThreadWorker
from services.events import repository, service
from services.events.config import EventsSettings
from services.events.notifier import LogNotifier

logger = logging.getLogger("patientflow.events.jetstream")
CURSOR_NAME = "nats"
BATCH = 200
IDLE_WAKE_SECONDS = 30.0  # a safety net only: the ingestor bumps the notifier whenever it logs


class JetStreamPublisher(ThreadWorker):
    """Pushes the log to JetStream from a thread running its own event loop."""

    def __init__(self, *, database: Database, settings: EventsSettings, notifier: LogNotifier) -> None:
        assert settings.nats_url, "JetStreamPublisher needs EVENTS_NATS_URL"
        super().__init__("events-jetstream")
        self.database, self.settings, self.notifier = database, settings, notifier
        self.url: str = settings.nats_url
        self.backoff = Backoff(settings.feed_poll_seconds)

    def wake(self) -> None:
        self.notifier.bump()  # the publishing loop waits on the notifier

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                asyncio.run(self._publish_until_stopped())
            except Exception as exc:  # the broker is down or restarting: routine, back off
                logger.warning("NATS publishing paused: %s", type(exc).__name__)
                self.stopping.wait(self.backoff.failed())

    async def _publish_until_stopped(self) -> None:
        client = await nats.connect(self.url, connect_timeout=2, max_reconnect_attempts=0)
        try:
            js = client.jetstream()
            await self._ensure_stream(js)
            self.backoff.succeeded()
            while not self.stopping.is_set():
                seen = self.notifier.version
                if not await self.publish_batch(js):
                    await asyncio.to_thread(self.notifier.wait, seen, IDLE_WAKE_SECONDS)
        finally:
            await client.close()

    async def _ensure_stream(self, js: nats.js.JetStreamContext) -> None:
        try:
            await js.stream_info(self.settings.nats_stream)
        except NotFoundError:
            subjects = [f"{self.settings.nats_subject_prefix}.>"]
            await js.add_stream(name=self.settings.nats_stream, subjects=subjects)

    async def publish_batch(self, js: nats.js.JetStreamContext) -> int:
        """Publish the next events after the cursor, waiting for each ack; returns how many."""
        events = await asyncio.to_thread(self._next_events)
        for event in events:
            body = json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()
            subject = f"{self.settings.nats_subject_prefix}.{event['type']}"
            await js.publish(
                subject, body, stream=self.settings.nats_stream, headers={"Nats-Msg-Id": event["id"]}
            )
        if events:
            await asyncio.to_thread(self._move_cursor, events[-1]["position"])
        return len(events)

    def _next_events(self) -> list[dict[str, Any]]:
        with self.database.session(write=False) as session:
            after = repository.publisher_cursor(session, CURSOR_NAME)
            upto = repository.last_position(session)
            rows = repository.read_log(
                session, after=after, upto=upto, limit=BATCH, types=None, sources=None, patient_id=None
            )
        return [service.event_json(row) for row in rows]

    def _move_cursor(self, position: int) -> None:
        with self.database.session() as session:
            repository.move_publisher_cursor(session, CURSOR_NAME, position)
