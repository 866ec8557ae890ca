"""The triage service's FastAPI app."""

from pathlib import Path

from fastapi import FastAPI

from kit.app import build_service_app
from kit.feed import Feed
from services.triage import consumers
from services.triage.config import TriageSettings, get_settings
from services.triage.models import ConsumedEvent, FeedCursor, OutboxEvent
from services.triage.router import router


def create_app(settings: TriageSettings | None = None) -> FastAPI:
    settings = settings or get_settings()
    return build_service_app(
        settings=settings,
        title="patientflow triage",
        description="Emergency triage levels and department waiting queues (分诊叫号).",
        routers=[router],
        outbox_model=OutboxEvent,
        migrations_dir=Path(__file__).parent / "migrations",
        siblings={"registration": settings.registration_url},
        # Registration's merges re-point assessments and tickets to the surviving patient.
        feeds=[
            Feed(
                source="registration",
                url=settings.registration_url,
                handle=consumers.apply_registration_event,
                event_types=consumers.REGISTRATION_EVENTS,
            )
        ],
        feed_models=(FeedCursor, ConsumedEvent),
    )
