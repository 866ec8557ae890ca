"""The billing service's FastAPI app."""

from datetime import date
from functools import partial
from pathlib import Path

from fastapi import FastAPI

from kit.app import Worker, build_service_app
from kit.database import Database
from kit.feed import EventHandler, Feed, PageResolver
from kit.pdf import prepare_font_in_background
from services.billing import catalogue, consumers
from services.billing.catalogue_router import router as catalogue_router
from services.billing.config import BillingSettings, get_settings
from services.billing.deposits_router import router as deposits_router
from services.billing.models import ConsumedEvent, FeedCursor, OutboxEvent
from services.billing.router import router
from services.billing.service import daily_bill, insurance, rules
from services.billing.service.inpatient_days import DayItems, NightlyJob


def create_app(settings: BillingSettings | None = None) -> FastAPI:
    settings = settings or get_settings()
    return build_service_app(
        settings=settings,
        title="patientflow billing",
        description="Price catalogue, charges, payments, settlement and the daily bill (收费 / 一日清单).",
        routers=[router, catalogue_router, deposits_router],
        outbox_model=OutboxEvent,
        migrations_dir=Path(__file__).parent / "migrations",
        siblings={"registration": settings.registration_url},
        # Accounts and registration fees come from registration's feed; order charges from results'.
        feeds=[
            Feed(
                source="registration",
                url=settings.registration_url,
                handle=consumers.apply_registration_event,
                event_types=consumers.REGISTRATION_EVENTS,
            ),
            Feed(
                source="results",
                url=settings.results_url,
                handle_factory=_results_handler,
                resolve=_results_resolver,
                event_types=consumers.RESULTS_EVENTS,
            ),
        ],
        feed_models=(FeedCursor, ConsumedEvent),
        on_startup=_load_catalogue,
        # The nightly job (inpatient_days.py): bed and nursing days up to yesterday, then its daily bills.
        workers=[_nightly_job] if settings.inpatient_days_check_seconds > 0 else [],
    )


def _nightly_job(app: FastAPI, database: Database) -> Worker:
    settings: BillingSettings = app.state.settings
    return NightlyJob(
        database,
        items=DayItems.of(settings),
        every_seconds=settings.inpatient_days_check_seconds,
        after=partial(_issue_bills, database),
    )


def _issue_bills(database: Database, day: date) -> None:
    daily_bill.issue_daily_bills(database, day=day)


def _load_catalogue(app: FastAPI, database: Database) -> None:
    settings: BillingSettings = app.state.settings
    with database.session() as session:
        catalogue.load_file(session, settings.catalogue_path)
    with database.session() as session:  # checked against the catalogue just loaded
        rules.load_file(session, settings.charge_rules_path)
    app.state.insurance_split = insurance.load_split_table(settings.insurance_split_path)
    # Patients print their daily bill: have the PDF font ready before the first one asks (kit.pdf).
    prepare_font_in_background()


def _unseen_visits(app: FastAPI) -> consumers.UnseenVisits:
    """The one `UnseenVisits` the results feed's resolve hook fills and its handler reads (per start)."""
    found: consumers.UnseenVisits | None = getattr(app.state, "unseen_visits", None)
    if found is None or found.database is not app.state.database:
        found = consumers.UnseenVisits(app.state.database, app.state.siblings["registration"])
        app.state.unseen_visits = found
    return found


def _results_handler(app: FastAPI) -> EventHandler:
    settings: BillingSettings = app.state.settings
    return partial(
        consumers.apply_results_event,
        unseen=_unseen_visits(app),
        credit_limit_fen=settings.settle_later_credit_limit_fen,
    )


def _results_resolver(app: FastAPI) -> PageResolver:
    """Before a page of orders is applied, ask registration about the visits billing has not read yet."""
    return _unseen_visits(app).resolve
