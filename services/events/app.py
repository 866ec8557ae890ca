"""The event hub's FastAPI app: the log API and its workers (ingest, webhooks, optional JetStream)."""

from pathlib import Path

from fastapi import FastAPI

from kit.app import Worker, WorkerFactory, build_service_app
from kit.database import Database
from services.events.config import EventsSettings, get_settings
from services.events.delivery import DeliveryWorker
from services.events.ingest import Ingestor
from services.events.jetstream import JetStreamPublisher
from services.events.models import OutboxEvent
from services.events.notifier import LogNotifier
from services.events.router import router
from services.events.stream import close_streams_on_exit_signal


class StreamCloser:
    """Ends the SSE streams when the server stops, so they never hold up a shutdown."""

    def __init__(self, notifier: LogNotifier) -> None:
        self.notifier = notifier

    def start(self) -> None:
        close_streams_on_exit_signal(self.notifier)

    def stop(self) -> None:
        self.notifier.close()


def create_app(settings: EventsSettings | None = None) -> FastAPI:
    settings = settings or get_settings()

    def ingestor(app: FastAPI, database: Database) -> Worker:
        return Ingestor(
            database=database,
            feeds=settings.feed_urls(),
            tokens=app.state.tokens,
            notifier=app.state.notifier,
            poll_seconds=min(settings.ingest_poll_seconds, settings.feed_poll_seconds),
            wait_seconds=settings.ingest_wait_seconds,
            page_size=settings.ingest_page_size,
            merge_interval_seconds=settings.ingest_merge_interval_seconds,
        )

    def webhooks(app: FastAPI, database: Database) -> Worker:
        return DeliveryWorker(database=database, settings=settings, notifier=app.state.notifier)

    def jetstream(app: FastAPI, database: Database) -> Worker:
        return JetStreamPublisher(database=database, settings=settings, notifier=app.state.notifier)

    def stream_closer(app: FastAPI, _database: Database) -> Worker:
        return StreamCloser(app.state.notifier)

    workers: list[WorkerFactory] = [stream_closer, ingestor, webhooks]
    if settings.nats_url:
        workers.append(jetstream)
    return build_service_app(
        settings=settings,
        title="patientflow events",
        description="The event hub (事件中心): every service's events in one causal log, as pages, "
        "Server-Sent Events, signed webhooks and (optionally) NATS JetStream.",
        routers=[router],
        outbox_model=OutboxEvent,
        migrations_dir=Path(__file__).parent / "migrations",
        on_startup=_open_notifier,
        workers=workers,
    )


def _open_notifier(app: FastAPI, _database: Database) -> None:
    app.state.notifier = LogNotifier()
