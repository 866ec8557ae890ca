"""Triage tests run against a real registration served over HTTP, so triage's own client is exercised."""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from kit import testing
from services.triage.app import create_app
from services.triage.config import TriageSettings
from services.triage.models import TriageTable
from tests.fixtures import registration, registration_settings, registration_url

__all__ = ["registration", "registration_settings", "registration_url"]  # tests.fixtures: fixtures of ours


@pytest.fixture
def settings(data_dir: Path, registration_url: str) -> TriageSettings:
    # No re-triage timer on the real clock: tests run `OverdueTimer.run_once` with theirs.
    return testing.make_test_settings(
        TriageSettings, data_dir, registration_url=registration_url, overdue_check_seconds=0
    )


@pytest.fixture
def client(settings: TriageSettings, registration: httpx.Client) -> Iterator[TestClient]:
    """Triage on wiped tables, started after registration's are wiped: its consumer of registration's
    feed must not read the previous test's events and then miss this test's at the same positions."""
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
    monkeypatch.setattr("services.triage.stations.utcnow", frozen)
    return frozen
