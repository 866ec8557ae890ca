"""The triage service's FastAPI app."""

from functools import partial
from pathlib import Path

from fastapi import FastAPI

from kit.app import Worker, build_service_app
from kit.database import Database
from kit.feed import EventHandler, Feed, PageResolver
from services.triage import consumers, positions
from services.triage.config import TriageSettings, get_settings
from services.triage.models import ConsumedEvent, FeedCursor, OutboxEvent
from services.triage.positions_router import router as positions_router
from services.triage.router import router
from services.triage.timers import OverdueTimer


def _arrival_names(app: FastAPI) -> consumers.ArrivalNames:
    """One name look-up per app, shared by the registration feed's resolver and handler."""
    if getattr(app.state, "arrival_names", None) is None:
        app.state.arrival_names = consumers.ArrivalNames(app.state.siblings["registration"])
    names: consumers.ArrivalNames = app.state.arrival_names
    return names


def _registration_handler(app: FastAPI) -> EventHandler:
    return partial(consumers.apply_registration_event, names=_arrival_names(app))


def _registration_resolver(app: FastAPI) -> PageResolver:
    return _arrival_names(app).resolve


def create_app(settings: TriageSettings | None = None) -> FastAPI:
    settings = settings or get_settings()
    return build_service_app(
        settings=settings,
        title="patientflow triage",
        description="Emergency triage levels and department waiting queues (分诊叫号).",
        routers=[router, positions_router],
        outbox_model=OutboxEvent,
        migrations_dir=Path(__file__).parent / "migrations",
        siblings={"registration": settings.registration_url},
        # Patients checked in for an appointment join the department's queue; merges re-point
        # assessments and tickets to the surviving patient.
        feeds=[
            Feed(
                source="registration",
                url=settings.registration_url,
                handle_factory=_registration_handler,
                resolve=_registration_resolver,
                event_types=consumers.REGISTRATION_EVENTS,
            )
        ],
        feed_models=(FeedCursor, ConsumedEvent),
        # The re-triage timer (timers.py) flags patients waiting past their level's limit.
        workers=[_overdue_timer] if settings.overdue_check_seconds > 0 else [],
        # Every queue change checks the queue's front for `queue.nearly_up` (positions.py).
        on_startup=lambda _app, database: positions.watch(database, settings),
    )


def _overdue_timer(app: FastAPI, database: Database) -> Worker:
    return OverdueTimer(database, app.state.settings)
