"""The triage service's FastAPI app."""

from pathlib import Path

from fastapi import FastAPI

from kit.app import build_service_app
from services.triage.config import TriageSettings, get_settings
from services.triage.models import OutboxEvent
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
    )
