from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from kit.testing import FakeFeed, make_test_settings, served_feed, service_client
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
