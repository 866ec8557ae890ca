"""Settlement never drops a charge: it waits for what its sources committed before it, and a charge read
after it goes onto the supplementary bill (补费) instead of being refused."""

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from kit.testing import FakeFeed, eventually, service_client
from patientflow.supervisor import free_port
from services.billing.app import create_app
from services.billing.models import BillingTable
from tests.billing.conftest import billing_settings, order_placed
from tests.billing.factories import (
    CBC,
    INFUSION,
    OUTPATIENT_FEE_FEN,
    account,
    billing_events,
    consumer,
    keyed,
    new_visit,
    open_visit,
    post_charge,
    post_payment,
    register_unidentified,
    rejections,
)

CBC_FEN = 2000
BillingFactory = Callable[..., Any]


@pytest.fixture
def billing(
    data_dir: Path, registration: httpx.Client, registration_url: str, results_feed: FakeFeed
) -> Iterator[BillingFactory]:
    """Start billing with settings overridden (`with billing(feed_poll_seconds=30) as client:`)."""
    results_feed.clear()

    @contextmanager
    def start(**overrides: Any) -> Iterator[TestClient]:
        urls = {"registration_url": registration_url, "results_url": results_feed.url}
        settings = billing_settings(data_dir, **(urls | overrides))
        with service_client(create_app(settings), BillingTable.metadata) as client:
            yield client

    yield start


def settle(client: TestClient, visit_id: str) -> httpx.Response:
    return client.post(f"/visits/{visit_id}/settlement", json={"method": "insurance"}, headers=keyed())


def assert_nothing_settled(client: TestClient, visit_id: str) -> None:
    response = client.get(f"/visits/{visit_id}/account")
    assert response.status_code in (200, 404), response.text
    if response.status_code == 200:
        assert (response.json()["status"], response.json()["payments"]) == ("open", [])
    assert billing_events(client, "visit.settled") == []


def test_settlement_includes_the_charges_committed_before_it(
    billing: BillingFactory, registration: httpx.Client, results_feed: FakeFeed
) -> None:
    """Order placed, then settle at once: the fee and the order are both on the settled bill, though
    billing's consumers would not have polled for half a minute."""
    with billing(feed_poll_seconds=30) as client:
        patient = register_unidentified(registration)
        visit = open_visit(registration, patient["id"], payment_mode="settle_later")
        placed = order_placed(results_feed, visit, CBC)

        response = settle(client, visit["id"])

        assert response.status_code == 201, response.text
        assert response.json()["total_fen"] == OUTPATIENT_FEE_FEN + CBC_FEN
        assert response.json()["payment"]["amount_fen"] == OUTPATIENT_FEE_FEN + CBC_FEN
        state = account(client, visit["id"])
        assert [c["order_id"] for c in state["charges"] if c["origin"] == "order"] == [
            placed["data"]["order_id"]
        ]
        assert (state["balance_fen"], state["supplementary_due_fen"]) == (0, 0)
        assert not any(c["supplementary"] for c in state["charges"])


def test_settlement_refuses_while_a_committed_charge_has_not_arrived(
    billing: BillingFactory, registration: httpx.Client, results_feed: FakeFeed
) -> None:
    with billing(settlement_wait_seconds=0.3) as client:
        visit = new_visit(registration, client, payment_mode="settle_later")
        consumer(client, "results").stop()  # results' feed stalls: its order cannot arrive
        order_placed(results_feed, visit, CBC)

        response = settle(client, visit["id"])

        assert response.status_code == 503, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["type"].endswith("/charges-still-arriving")
        assert response.json()["sources"] == ["results"]
        assert int(response.headers["retry-after"]) >= 1
        assert_nothing_settled(client, visit["id"])


def test_settlement_refuses_when_a_source_cannot_be_asked(
    billing: BillingFactory, registration: httpx.Client
) -> None:
    with billing(results_url=f"http://127.0.0.1:{free_port()}") as client:  # nobody listens there
        visit = new_visit(registration, client, payment_mode="settle_later")

        response = settle(client, visit["id"])

        assert response.status_code == 503, response.text
        assert response.json()["type"].endswith("/charges-still-arriving")
        assert "results" in response.json()["detail"]
        assert int(response.headers["retry-after"]) >= 1
        assert_nothing_settled(client, visit["id"])


def test_a_charge_read_after_settlement_is_a_supplementary_bill_paid_later(
    registration: httpx.Client, client: TestClient, results_feed: FakeFeed
) -> None:
    visit = new_visit(registration, client, payment_mode="settle_later")
    assert settle(client, visit["id"]).status_code == 201

    late = order_placed(results_feed, visit, CBC)
    eventually(lambda: account(client, visit["id"])["supplementary_due_fen"], what="the late order's charge")

    state = account(client, visit["id"])
    [extra] = [c for c in state["charges"] if c["supplementary"]]
    assert (extra["order_id"], extra["amount_fen"], extra["status"]) == (
        late["data"]["order_id"],
        CBC_FEN,
        "unpaid",
    )
    assert state["status"] == "settled"
    assert (state["supplementary_total_fen"], state["supplementary_due_fen"]) == (CBC_FEN, CBC_FEN)
    assert state["balance_fen"] == CBC_FEN
    assert rejections(client, visit["id"]) == []
    [announced] = billing_events(client, "charge.supplementary")
    assert announced["data"] == {
        "charge_id": extra["id"],
        "item_code": CBC,
        "amount_fen": CBC_FEN,
        "order_id": late["data"]["order_id"],
        "supplementary_due_fen": CBC_FEN,
    }

    payment = post_payment(client, visit["id"], amount_fen=CBC_FEN)

    assert payment["charge_ids"] == [extra["id"]]
    paid = account(client, visit["id"])
    assert (paid["balance_fen"], paid["supplementary_due_fen"], paid["status"]) == (0, 0, "settled")
    again = client.post("/payments", json={"visit_id": visit["id"], "method": "cash"}, headers=keyed())
    assert again.status_code == 409 and again.json()["type"].endswith("/nothing-due")


def test_settlement_waits_without_holding_the_database(
    billing: BillingFactory, registration: httpx.Client, results_feed: FakeFeed
) -> None:
    """While settlement waits for an order's charge, other writes go on; once the charge is applied the
    settlement goes ahead with it."""
    with billing(settlement_wait_seconds=30) as client, ThreadPoolExecutor(max_workers=1) as pool:
        visit = new_visit(registration, client, payment_mode="settle_later")
        reader = consumer(client, "results")
        reader.stop()
        placed = order_placed(results_feed, visit, CBC)

        settling = pool.submit(settle, client, visit["id"])
        eventually(lambda: results_feed.head_requests, what="settlement to ask results how far its feed goes")
        charge = post_charge(client, visit["id"], INFUSION)  # the one SQLite writer is free
        assert not settling.done()
        reader.apply(placed)  # the order's charge arrives
        response = settling.result(timeout=30)

        assert response.status_code == 201, response.text
        assert response.json()["total_fen"] == OUTPATIENT_FEE_FEN + charge["amount_fen"] + CBC_FEN
