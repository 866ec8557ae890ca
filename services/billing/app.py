"""The billing service's FastAPI app."""

from functools import partial
from pathlib import Path

from fastapi import FastAPI

from kit.app import build_service_app
from kit.database import Database
from kit.feed import EventHandler, Feed
from services.billing import service
from services.billing.catalogue import read_catalogue
from services.billing.config import BillingSettings, get_settings
from services.billing.models import ConsumedEvent, FeedCursor, OutboxEvent
from services.billing.router import router


def create_app(settings: BillingSettings | None = None) -> FastAPI:
    settings = settings or get_settings()
    return build_service_app(
        settings=settings,
        title="patientflow billing",
        description="Price catalogue, charges, payments, settlement and the daily bill (收费 / 一日清单).",
        routers=[router],
        outbox_model=OutboxEvent,
        migrations_dir=Path(__file__).parent / "migrations",
        siblings={"registration": settings.registration_url},
        # Accounts and registration fees come from registration's feed; order charges from results'.
        feeds=[
            Feed(
                source="registration",
                url=settings.registration_url,
                handle=service.apply_registration_event,
                event_types=service.REGISTRATION_EVENTS,
            ),
            Feed(
                source="results",
                url=settings.results_url,
                handle_factory=_results_handler,
                event_types=service.RESULTS_EVENTS,
            ),
        ],
        feed_models=(FeedCursor, ConsumedEvent),
        on_startup=_load_catalogue,
    )


def _load_catalogue(app: FastAPI, database: Database) -> None:
    settings: BillingSettings = app.state.settings
    rows = read_catalogue(settings.catalogue_path)
    with database.session() as session:
        service.load_catalogue(session, rows=rows)


def _results_handler(app: FastAPI) -> EventHandler:
    """Charging an order may ask registration about a visit not read yet, with the app's one client."""
    return partial(service.apply_results_event, registration=app.state.siblings["registration"])
