"""Triage tests run against a real registration served over HTTP, so triage's own client is exercised."""

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from kit import testing
from services.registration.app import create_app as create_registration_app
from services.registration.config import RegistrationSettings
from services.registration.models import RegistrationTable
from services.triage.app import create_app
from services.triage.config import TriageSettings
from services.triage.models import TriageTable

STARTUP_DEADLINE_SECONDS = 30


@contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """Run an app under uvicorn in a background thread on a free local port; yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", ws="none", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + STARTUP_DEADLINE_SECONDS
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(STARTUP_DEADLINE_SECONDS)
        sock.close()


def unused_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


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
    with serve(create_registration_app(settings)) as url:
        yield url


@pytest.fixture(scope="session")
def registration(registration_url: str) -> Iterator[httpx.Client]:
    """A client of the served registration, calling as the gateway would."""
    with httpx.Client(base_url=registration_url, headers=testing.internal_headers()) as client:
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
    with serve(create_app(settings)) as url:
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
