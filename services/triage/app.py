"""The triage service's FastAPI app."""

from pathlib import Path

from fastapi import FastAPI

from kit.app import build_service_app
from kit.auth import TokenSource
from kit.client import ServiceClient
from kit.database import Database
from services.triage.config import TriageSettings, get_settings
from services.triage.models import OutboxEvent
from services.triage.router import router


def create_app(settings: TriageSettings | None = None) -> FastAPI:
    settings = settings or get_settings()

    def open_registration(app: FastAPI, _database: Database) -> None:
        """One pooled registration client for the app's lifetime, closed at shutdown."""
        tokens = TokenSource(settings.internal_secret, "service:triage", set())
        client = ServiceClient("registration", settings.registration_url, tokens)
        app.state.registration = client
        app.state.closers.append(client.close)

    return build_service_app(
        settings=settings,
        title="patientflow triage",
        description="Emergency triage levels and department waiting queues (分诊叫号).",
        routers=[router],
        outbox_model=OutboxEvent,
        migrations_dir=Path(__file__).parent / "migrations",
        on_startup=open_registration,
    )
