"""Billing runs against a real registration service (uvicorn in a thread, its own database) and a fake
results feed whose events each test publishes itself."""

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from kit.clock import utcnow
from kit.testing import FakeFeed, make_test_settings, served_feed, service_client
from services.billing.app import create_app
from services.billing.config import BillingSettings
from services.billing.models import BillingTable
from tests.fixtures import registration, registration_settings, registration_url

__all__ = ["registration", "registration_settings", "registration_url"]  # tests.fixtures: fixtures of ours


def order_placed(
    feed: FakeFeed,
    visit: dict[str, Any],
    test_code: str,
    *,
    quantity: Any = 1,
    order_id: str | None = None,
    department: str | None = None,
) -> dict[str, Any]:
    """Publish an `order.placed` on the fake results feed; returns the stored copy (its real position)."""
    event = order_placed_event(visit, test_code, quantity=quantity, order_id=order_id, department=department)
    return feed.publish(event)


def order_placed_event(
    visit: dict[str, Any],
    test_code: str,
    *,
    quantity: Any = 1,
    order_id: str | None = None,
    department: str | None = None,
) -> dict[str, Any]:
    """An `order.placed` event as results publishes it (contracts.md), at position 1."""
    order_id = order_id or str(uuid.uuid4())
    return {
        "id": str(uuid.uuid4()),
        "type": "order.placed",
        "source": "results",
        "position": 1,
        "aggregate": {"type": "order", "id": order_id},
        "sequence": 1,
        "occurred_at": utcnow().isoformat(),
        "visit_id": visit["id"],
        "patient_id": visit["patient_id"],
        "data": {
            "order_id": order_id,
            "test_code": test_code,
            "quantity": quantity,
            "payment_mode": visit.get("payment_mode", "prepay"),
            "status": "awaiting_payment",
            "department": department or visit.get("department"),  # the ordering department (开单科室)
        },
    }


@pytest.fixture(scope="session")
def results_feed() -> Iterator[FakeFeed]:
    with served_feed() as feed:
        yield feed


def billing_settings(data_dir: Path, **overrides: Any) -> BillingSettings:
    # The nightly job off: tests run it themselves, for the dates they choose. Each test's billing starts
    # on wiped tables and so reads registration's feed from the start — every visit the session opened
    # so far — before it is caught up: a settlement's bounded wait for that backlog gets the longest
    # bound the setting allows (tests of the refusal set a short one), not the 3 s meant for a
    # consumer that is merely keeping up.
    defaults = {"inpatient_days_check_seconds": 0, "settlement_wait_seconds": 30}
    return make_test_settings(BillingSettings, data_dir, **(defaults | overrides))


@pytest.fixture
def client(
    data_dir: Path, registration: httpx.Client, registration_url: str, results_feed: FakeFeed
) -> Iterator[TestClient]:
    """The billing app, started on wiped tables and reading both feeds."""
    results_feed.clear()
    settings = billing_settings(data_dir, registration_url=registration_url, results_url=results_feed.url)
    with service_client(create_app(settings), BillingTable.metadata) as client:
        yield client
