"""The registration service's FastAPI app."""

from pathlib import Path

from fastapi import FastAPI

from kit.app import Worker, build_service_app
from kit.database import Database
from kit.feed import Feed
from services.registration import consumers, green_channel, statistics_router, stays_router
from services.registration.appointments import AppointmentSweep
from services.registration.closing import VisitCloser
from services.registration.config import RegistrationSettings, get_settings
from services.registration.models import ConsumedEvent, FeedCursor, OutboxEvent
from services.registration.router import router


def create_app(settings: RegistrationSettings | None = None) -> FastAPI:
    settings = settings or get_settings()

    def appointment_sweep(_app: FastAPI, database: Database) -> Worker:
        return AppointmentSweep(database, settings)

    return build_service_app(
        settings=settings,
        title="patientflow registration",
        description="Patients, identity and visits (挂号).",
        routers=[router, stays_router.router, statistics_router.router],
        outbox_model=OutboxEvent,
        migrations_dir=Path(__file__).parent / "migrations",
        # A visit is marked settled when billing says so.
        feeds=[
            Feed(
                source="billing",
                url=settings.billing_url,
                handle=consumers.apply_billing_event,
                event_types=consumers.BILLING_EVENTS,
            ),
            Feed(
                source="triage",
                url=settings.triage_url,
                handle=green_channel.apply_triage_event,
                event_types=green_channel.TRIAGE_EVENTS,
            ),
        ],
        feed_models=(FeedCursor, ConsumedEvent),
        # Lapsed holds released and no-shows marked; visits nobody else closes closed at the end of the
        # day (closing.py). An interval of 0 turns either off.
        workers=[
            *([appointment_sweep] if settings.appointment_sweep_seconds > 0 else []),
            *([_visit_closer] if settings.visit_close_check_seconds > 0 else []),
        ],
    )


def _visit_closer(app: FastAPI, database: Database) -> Worker:
    return VisitCloser(database, app.state.settings)
