"""The registration service's FastAPI app."""

from pathlib import Path

from fastapi import FastAPI

from kit.app import build_service_app
from services.registration.config import RegistrationSettings, get_settings
from services.registration.models import OutboxEvent
from services.registration.router import router


def create_app(settings: RegistrationSettings | None = None) -> FastAPI:
    settings = settings or get_settings()
    return build_service_app(
        settings=settings,
        title="patientflow registration",
        description="Patients, identity and visits (挂号).",
        routers=[router],
        outbox_model=OutboxEvent,
        migrations_dir=Path(__file__).parent / "migrations",
    )
