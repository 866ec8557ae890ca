"""Results asks registration about a visit before its unit of work opens, never while holding the database."""

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from kit.testing import FakeFeed, eventually, serve, service_client
from services.results.app import create_app
from services.results.models import ResultsTable
from tests.registration_stub import SlowRegistration
from tests.results.conftest import results_settings
from tests.results.factories import CBC


def registered_visit(registration: SlowRegistration) -> str:
    visit_id = str(uuid.uuid4())
    registration.visits[visit_id] = {
        "id": visit_id,
        "patient_id": str(uuid.uuid4()),
        "payment_mode": "prepay",
    }
    return visit_id


@pytest.fixture
def slow_registration() -> Iterator[SlowRegistration]:
    registration = SlowRegistration()
    with serve(registration.app) as url:
        registration.url = url
        yield registration
        registration.release()


def test_an_order_waiting_on_registration_blocks_no_other_order(
    results_data_dir: Path, billing: FakeFeed, slow_registration: SlowRegistration
) -> None:
    slow_visit, other_visit = registered_visit(slow_registration), registered_visit(slow_registration)
    slow_registration.held = slow_visit
    settings = results_settings(results_data_dir, slow_registration.url, billing.url)
    with service_client(create_app(settings), ResultsTable.metadata) as client:
        answers: dict[str, httpx.Response] = {}

        def order(visit_id: str) -> None:
            answers[visit_id] = client.post("/orders", json={"visit_id": visit_id, "test_code": CBC})

        slow = threading.Thread(target=order, args=(slow_visit,))
        slow.start()
        eventually(slow_registration.arrived.is_set, what="the slow visit look-up")
        other = threading.Thread(target=order, args=(other_visit,))
        other.start()
        try:
            # Before the fix the slow order held SQLite's one writer while it waited on registration.
            eventually(lambda: other_visit in answers, what="the other visit's order")
            assert answers[other_visit].status_code == 201, answers[other_visit].text
            assert slow_visit not in answers  # still waiting on registration
        finally:
            slow_registration.release()
            slow.join()
            other.join()
        assert answers[slow_visit].status_code == 201, answers[slow_visit].text
