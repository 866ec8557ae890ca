"""The billing service's FastAPI app."""

from functools import partial
from pathlib import Path

from fastapi import FastAPI

from kit.app import build_service_app
from kit.auth import TokenSource
from kit.client import ServiceClient
from kit.database import Database
from kit.feed import FeedConsumer
from services.billing import service
from services.billing.catalogue import read_catalogue
from services.billing.config import BillingSettings, get_settings
from services.billing.models import ConsumedEvent, FeedCursor, OutboxEvent
from services.billing.router import router

SUBJECT = "service:billing"


def create_app(settings: BillingSettings | None = None) -> FastAPI:
    settings = settings or get_settings()
    return build_service_app(
        settings=settings,
        title="patientflow billing",
        description="Price catalogue, charges, payments, settlement and the daily bill (收费 / 一日清单).",
        routers=[router],
        outbox_model=OutboxEvent,
        migrations_dir=Path(__file__).parent / "migrations",
        on_startup=_start,
        consumers=_consumers,
    )


def _start(app: FastAPI, database: Database) -> None:
    """Load the price list, then open the one registration client requests and the results feed share."""
    settings: BillingSettings = app.state.settings
    rows = read_catalogue(settings.catalogue_path)
    with database.session() as session:
        service.load_catalogue(session, rows=rows)
    app.state.tokens = TokenSource(settings.internal_secret, SUBJECT, set())
    app.state.registration = ServiceClient("registration", settings.registration_url, app.state.tokens)
    app.state.closers.append(app.state.registration.close)


def _consumers(app: FastAPI, database: Database) -> list[FeedConsumer]:
    """Accounts and registration fees come from registration's feed; order charges from results'."""
    settings: BillingSettings = app.state.settings
    common = {
        "database": database,
        "cursor_model": FeedCursor,
        "consumed_model": ConsumedEvent,
        "tokens": app.state.tokens,
        "poll_seconds": settings.feed_poll_seconds,
    }
    return [
        FeedConsumer(
            source="registration",
            base_url=settings.registration_url,
            handle=service.apply_registration_event,
            event_types=service.REGISTRATION_EVENTS,
            **common,
        ),
        FeedConsumer(
            source="results",
            base_url=settings.results_url,
            handle=partial(service.apply_results_event, registration=app.state.registration),
            event_types=service.RESULTS_EVENTS,
            **common,
        ),
    ]
