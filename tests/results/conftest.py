"""Results runs against a real registration (uvicorn in a thread) and a fake billing feed we control.

Registration gets its own data dir and PostgreSQL schema (`test_results_registration`), so a concurrent
run of tests/registration or tests/triage never shares its tables.
"""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from kit.testing import FakeFeed, make_test_settings, served_feed, service_client
from patientflow.supervisor import free_port
from services.results.app import create_app
from services.results.config import ResultsSettings
from services.results.models import ResultsTable
from tests.fixtures import registration, registration_settings, registration_url

__all__ = ["registration", "registration_settings", "registration_url"]  # tests.fixtures: fixtures of ours


def results_settings(
    data_dir: Path, registration_url: str, billing_url: str, **overrides: Any
) -> ResultsSettings:
    """Without the PDF pre-rendering loop unless asked (`prerender_seconds`): tests that print render
    on demand, and no background render races a test's wipe."""
    values = {"prerender_seconds": 0.0} | overrides
    return make_test_settings(
        ResultsSettings, data_dir, registration_url=registration_url, billing_url=billing_url, **values
    )


@pytest.fixture(scope="session")
def billing_feed() -> Iterator[FakeFeed]:
    with served_feed() as feed:
        yield feed


@pytest.fixture
def billing(billing_feed: FakeFeed) -> FakeFeed:
    billing_feed.clear()
    return billing_feed


@pytest.fixture(scope="session")
def results_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("results")


@pytest.fixture
def client(
    results_data_dir: Path,
    registration_url: str,
    registration: httpx.Client,
    billing: FakeFeed,
) -> Iterator[TestClient]:
    """The results app on wiped tables, calling the live registration and reading the fake billing feed."""
    settings = results_settings(results_data_dir, registration_url, billing.url)
    with service_client(create_app(settings), ResultsTable.metadata) as client:
        yield client


@pytest.fixture
def paying_client(
    results_data_dir: Path, registration_url: str, registration: httpx.Client, billing: FakeFeed
) -> Iterator[TestClient]:
    """Results in a hospital that hands out a report only once its order is paid."""
    settings = results_settings(
        results_data_dir, registration_url, billing.url, release_requires_payment=True
    )
    with service_client(create_app(settings), ResultsTable.metadata) as client:
        yield client


@pytest.fixture
def dead_url() -> str:
    """A local URL nobody listens on (the port was free a moment ago)."""
    return f"http://127.0.0.1:{free_port()}"
