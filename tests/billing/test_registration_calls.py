"""Billing asks registration about a visit it has not read yet outside every transaction: from the results
feed's resolve hook, or a dependency before a request's unit of work, never while holding the database."""

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from kit.clock import utcnow
from kit.testing import FakeFeed, eventually, serve, service_client
from services.billing.app import create_app
from services.billing.models import BillingTable
from tests.billing.conftest import billing_settings, order_placed
from tests.billing.factories import CBC, INFUSION, account, keyed, wait_for_account
from tests.registration_stub import SlowRegistration


@pytest.fixture
def slow_registration() -> Iterator[SlowRegistration]:
    registration = SlowRegistration()
    with serve(registration.app) as url:
        registration.url = url
        yield registration
        registration.release()


def registered_visit(registration: SlowRegistration) -> dict[str, Any]:
    """A visit registration knows (and answers about) but has not published: billing has not read it."""
    visit_id = str(uuid.uuid4())
    visit = {
        "id": visit_id,
        "patient_id": str(uuid.uuid4()),
        "kind": "outpatient",
        "payment_mode": "settle_later",
        "opened_at": utcnow().isoformat(),
    }
    registration.visits[visit_id] = visit
    return visit


def opened(registration: SlowRegistration) -> dict[str, Any]:
    """A visit registration knows and has published (`visit.opened`, no fee): billing opens its account."""
    visit = registered_visit(registration)
    registration.publish(
        {
            "id": str(uuid.uuid4()),
            "type": "visit.opened",
            "source": "registration",
            "aggregate": {"type": "visit", "id": visit["id"]},
            "sequence": 1,
            "occurred_at": visit["opened_at"],
            "visit_id": visit["id"],
            "patient_id": visit["patient_id"],
            "data": {"kind": visit["kind"], "payment_mode": visit["payment_mode"], "department": "internal"},
        }
    )
    return visit


@contextmanager
def billing_held_on(
    registration: SlowRegistration, data_dir: Path, results_feed: FakeFeed
) -> Iterator[tuple[TestClient, dict[str, Any], dict[str, Any]]]:
    """Billing reading `registration`, with a visit it has an account for (`known`) and one registration
    will be slow to answer about (`unseen`, held until `registration.release()`)."""
    results_feed.clear()
    settings = billing_settings(data_dir, registration_url=registration.url, results_url=results_feed.url)
    with service_client(create_app(settings), BillingTable.metadata) as client:
        known = opened(registration)
        wait_for_account(client, known["id"])
        unseen = registered_visit(registration)
        registration.held = unseen["id"]
        yield client, known, unseen


def test_an_order_for_an_unseen_visit_waiting_on_registration_blocks_no_charge(
    data_dir: Path, results_feed: FakeFeed, slow_registration: SlowRegistration
) -> None:
    with billing_held_on(slow_registration, data_dir, results_feed) as (client, known, unseen):
        order_placed(results_feed, unseen, CBC)
        eventually(
            slow_registration.arrived.is_set, what="billing asking registration about the unseen visit"
        )
        answers: list[httpx.Response] = []
        body = {"visit_id": known["id"], "item_code": INFUSION, "quantity": 1}
        charge = threading.Thread(
            target=lambda: answers.append(client.post("/charges", json=body, headers=keyed()))
        )
        charge.start()
        try:
            # Before the fix the consumer asked inside its write transaction: SQLite's one writer waited.
            eventually(lambda: answers, what="the charge to the known visit")
            assert answers[0].status_code == 201, answers[0].text
        finally:
            slow_registration.release()
            charge.join()
        charged = wait_for_account(client, unseen["id"], charges=1)
        assert [c["item_code"] for c in charged["charges"]] == [CBC]
        assert account(client, known["id"])["charges_total_fen"] == answers[0].json()["amount_fen"]


def test_a_charge_waiting_on_registration_blocks_no_other_charge(
    data_dir: Path, results_feed: FakeFeed, slow_registration: SlowRegistration
) -> None:
    with billing_held_on(slow_registration, data_dir, results_feed) as (client, known, unseen):
        answers: dict[str, httpx.Response] = {}

        def charge(visit_id: str) -> None:
            body = {"visit_id": visit_id, "item_code": INFUSION, "quantity": 1}
            answers[visit_id] = client.post("/charges", json=body, headers=keyed())

        slow = threading.Thread(target=charge, args=(unseen["id"],))
        slow.start()
        eventually(
            slow_registration.arrived.is_set, what="billing asking registration about the unseen visit"
        )
        other = threading.Thread(target=charge, args=(known["id"],))
        other.start()
        try:
            eventually(lambda: known["id"] in answers, what="the charge to the known visit")
            assert answers[known["id"]].status_code == 201, answers[known["id"]].text
            assert unseen["id"] not in answers  # still waiting on registration
        finally:
            slow_registration.release()
            slow.join()
            other.join()
        assert answers[unseen["id"]].status_code == 201, answers[unseen["id"]].text
        assert account(client, unseen["id"])["payment_mode"] == "settle_later"
