"""Triage tests run against a real registration served over HTTP, so triage's own client is exercised."""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from kit import testing
from services.registration.app import create_app as create_registration_app
from services.registration.config import RegistrationSettings
from services.registration.models import RegistrationTable
from services.triage.app import create_app
from services.triage.config import TriageSettings
from services.triage.models import TriageTable


@pytest.fixture(scope="session")
def registration_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real registration service for the whole session, on its own database.

    Its own directory and PostgreSQL schema, so registration's own tests (which wipe their tables)
    never pull visits out from under triage's.
    """
    overrides = {"database_schema": "test_triage_registration"} if testing.database_url_under_test() else {}
    data_dir = tmp_path_factory.mktemp("triage-registration")
    settings = testing.make_test_settings(RegistrationSettings, data_dir, **overrides)
    testing.wipe(settings.resolved_database_url, settings.resolved_schema, RegistrationTable.metadata)
    with testing.serve(create_registration_app(settings)) as url:
        yield url


@pytest.fixture(scope="session")
def registration(registration_url: str) -> Iterator[httpx.Client]:
    """A client of the served registration, calling as the gateway would."""
    with httpx.Client(
        base_url=registration_url, headers=testing.internal_headers(audience="registration")
    ) as client:
        yield client


@pytest.fixture
def settings(data_dir: Path, registration_url: str) -> TriageSettings:
    return testing.make_test_settings(TriageSettings, data_dir, registration_url=registration_url)


@pytest.fixture
def client(settings: TriageSettings) -> Iterator[TestClient]:
    with testing.service_client(create_app(settings), TriageTable.metadata) as client:
        yield client


@pytest.fixture
def served_triage(settings: TriageSettings) -> Iterator[str]:
    """Triage itself under uvicorn on clean tables, for tests that need truly concurrent requests."""
    testing.wipe(settings.resolved_database_url, settings.resolved_schema, TriageTable.metadata)
    with testing.serve(create_app(settings)) as url:
        yield url


class FrozenClock:
    """Triage's clock, held still until a test moves it."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def set(self, now: datetime) -> None:
        self.now = now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FrozenClock:
    """Freeze triage's clock at 2026-11-27 08:00 in Beijing (00:00 UTC)."""
    frozen = FrozenClock(datetime(2026, 11, 27, 0, 0, tzinfo=UTC))
    monkeypatch.setattr("services.triage.service.utcnow", frozen)
    return frozen
