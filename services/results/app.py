"""The results service's FastAPI app."""

from pathlib import Path

from fastapi import FastAPI

from kit.app import build_service_app
from kit.auth import TokenSource
from kit.client import ServiceClient
from kit.database import Database
from kit.feed import FeedConsumer
from services.results import service
from services.results.config import ResultsSettings, get_settings
from services.results.models import ConsumedEvent, FeedCursor, OutboxEvent
from services.results.router import router

SUBJECT = "service:results"
SCOPES = frozenset({"visits:read", "events:read"})


def create_app(settings: ResultsSettings | None = None) -> FastAPI:
    settings = settings or get_settings()

    def tokens() -> TokenSource:
        return TokenSource(settings.internal_secret, SUBJECT, SCOPES)

    def on_startup(app: FastAPI, database: Database) -> None:
        with database.session() as session:
            service.load_orderable_tests(session)
        registration = ServiceClient("registration", settings.registration_url, tokens())
        app.state.registration = registration
        app.state.closers.append(registration.close)

    def consumers(app: FastAPI, database: Database) -> list[FeedConsumer]:
        feeds = [
            ("billing", settings.billing_url, service.apply_billing_event, "charge.paid"),
            ("registration", settings.registration_url, service.apply_registration_event, "patient.merged"),
        ]
        return [
            FeedConsumer(
                source=source,
                base_url=url,
                database=database,
                cursor_model=FeedCursor,
                consumed_model=ConsumedEvent,
                handle=handle,
                tokens=tokens(),
                poll_seconds=settings.feed_poll_seconds,
                event_types=frozenset({event_type}),
            )
            for source, url, handle, event_type in feeds
        ]

    return build_service_app(
        settings=settings,
        title="patientflow results",
        description="Orderable tests, orders behind the payment gate, reports and audited lookup (检查检验).",
        routers=[router],
        outbox_model=OutboxEvent,
        migrations_dir=Path(__file__).parent / "migrations",
        on_startup=on_startup,
        consumers=consumers,
    )
