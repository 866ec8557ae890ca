from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from kit.testing import FakeFeed, make_test_settings, serve, served_feed, service_client, wipe
from services.registration.app import create_app
from services.registration.config import RegistrationSettings
from services.registration.models import RegistrationTable


@pytest.fixture(scope="session")
def billing_feed() -> Iterator[FakeFeed]:
    """Billing's feed as registration reads it, serving the events each test publishes."""
    with served_feed() as feed:
        yield feed


@pytest.fixture(scope="session")
def triage_feed() -> Iterator[FakeFeed]:
    """Triage's feed as registration reads it (test_green_channel.py)."""
    with served_feed() as feed:
        yield feed


@pytest.fixture
def client(data_dir: Path, billing_feed: FakeFeed, triage_feed: FakeFeed) -> Iterator[TestClient]:
    billing_feed.clear()
    triage_feed.clear()
    # The end-of-day job is run by tests on an injected clock (test_closing.py), never by the real one.
    settings = make_test_settings(
        RegistrationSettings,
        data_dir,
        billing_url=billing_feed.url,
        triage_url=triage_feed.url,
        visit_close_check_seconds=0,
    )
    with service_client(create_app(settings), RegistrationTable.metadata) as client:
        yield client


@pytest.fixture
def served_registration(tmp_path: Path) -> Iterator[str]:
    """Registration served over real HTTP on wiped tables, for races between real clients (its URL);
    no end-of-day close by the real clock, as for `client`."""
    settings = make_test_settings(RegistrationSettings, tmp_path, visit_close_check_seconds=0)
    wipe(settings.resolved_database_url, settings.resolved_schema, RegistrationTable.metadata)
    with serve(create_app(settings)) as url:
        yield url
