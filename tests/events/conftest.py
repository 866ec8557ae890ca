"""The hub against four fake feeds (registration, triage, results, billing) served over real HTTP.

`start_hub(**settings)` serves a hub on wiped tables; `hub` is one with the test defaults. The hub
reads the feeds with quick retries, so tests wait milliseconds, not seconds.
"""

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from kit.database import Database
from kit.migrations import upgrade
from kit.testing import (
    HTTP_TIMEOUT_SECONDS,
    FakeFeed,
    internal_headers,
    make_test_settings,
    serve,
    served_feed,
    wipe,
)
from services.events.app import create_app
from services.events.config import EventsSettings
from services.events.models import EventsTable
from services.events.service import SOURCES
from tests.events.receiver import WebhookReceiver, served_receiver

MIGRATIONS = Path(__file__).resolve().parents[2] / "services" / "events" / "migrations"
HubStarter = Callable[..., AbstractContextManager[httpx.Client]]


@pytest.fixture(scope="session")
def served_feeds() -> Iterator[dict[str, FakeFeed]]:
    with ExitStack() as stack:
        yield {source: stack.enter_context(served_feed()) for source in SOURCES}


@pytest.fixture
def feeds(served_feeds: dict[str, FakeFeed]) -> dict[str, FakeFeed]:
    for feed in served_feeds.values():
        feed.clear()
    return served_feeds


@pytest.fixture(scope="session")
def hub_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("events")


def hub_settings(data_dir: Path, feeds: dict[str, FakeFeed], **overrides: Any) -> EventsSettings:
    values: dict[str, Any] = {f"{source}_url": feed.url for source, feed in feeds.items()}
    values |= {
        "webhook_retry_base_seconds": 0.05,
        "webhook_retry_cap_seconds": 0.2,
        "webhook_timeout_seconds": 5.0,
    }
    return make_test_settings(EventsSettings, data_dir, **(values | overrides))


@pytest.fixture
def settings(hub_data_dir: Path, feeds: dict[str, FakeFeed]) -> EventsSettings:
    return hub_settings(hub_data_dir, feeds)


@pytest.fixture
def database(settings: EventsSettings) -> Iterator[Database]:
    """The hub's database, migrated and empty, without a running hub (for driving the ingestor by hand)."""
    database = Database(settings.resolved_database_url, settings.resolved_schema)
    upgrade(database, MIGRATIONS)
    wipe(settings.resolved_database_url, settings.resolved_schema, EventsTable.metadata)
    yield database
    database.dispose()


@pytest.fixture
def start_hub(hub_data_dir: Path, feeds: dict[str, FakeFeed]) -> HubStarter:
    """Serve a hub with these setting overrides; yields a client calling it as a sibling service would."""

    @contextmanager
    def start(**overrides: Any) -> Iterator[httpx.Client]:
        settings = hub_settings(hub_data_dir, feeds, **overrides)
        wipe(settings.resolved_database_url, settings.resolved_schema, EventsTable.metadata)
        with (
            serve(create_app(settings)) as url,
            httpx.Client(
                base_url=url,
                headers=internal_headers("service:test", audience="events"),
                timeout=HTTP_TIMEOUT_SECONDS,
            ) as client,
        ):
            yield client

    return start


@pytest.fixture
def hub(start_hub: HubStarter) -> Iterator[httpx.Client]:
    with start_hub() as client:
        yield client


@pytest.fixture(scope="session")
def session_receiver() -> Iterator[WebhookReceiver]:
    with served_receiver() as receiver:
        yield receiver


@pytest.fixture
def receiver(session_receiver: WebhookReceiver) -> WebhookReceiver:
    session_receiver.reset()
    return session_receiver
