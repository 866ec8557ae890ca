"""The settle-later credit limit at results: billing's credit check before an order is placed, and its
`charge.held` afterwards; a held order waits for payment and says why, a green-channel one never waits.

Billing here is the fake feed, which also answers `GET /visits/{id}/credit/{item_code}` from what each
test sets in `credit` (404 for a visit it was told nothing of, as billing before it opened the account).
"""

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import Response
from fastapi.testclient import TestClient

from kit.testing import FakeFeed, eventually, service_client
from services.results.app import create_app
from services.results.models import ResultsTable
from tests.results.conftest import results_settings
from tests.results.factories import (
    CBC,
    charge_paid,
    create_emergency_visit,
    create_patient,
    create_visit,
    events,
    place_order,
    report_body,
)
from tests.results.test_payment import billing_consumer, status_of

PRICE_FEN = 2000
LIMIT_FEN = 5000


class CreditAnswers:
    """What the fake billing says of each visit's credit; `asked` records the visits it was asked about."""

    def __init__(self) -> None:
        self.remaining: dict[str, int] = {}
        self.asked: list[str] = []

    def answer(self, visit_id: str, item_code: str) -> Any:
        self.asked.append(visit_id)
        if visit_id not in self.remaining:
            return Response(status_code=404)
        remaining = self.remaining[visit_id]
        return {
            "visit_id": visit_id,
            "payment_mode": "settle_later",
            "item_code": item_code,
            "price_fen": PRICE_FEN,
            "credit_limit_fen": LIMIT_FEN,
            "remaining_credit_fen": remaining,
            "fits": remaining >= PRICE_FEN,
        }


@pytest.fixture
def credit(billing: FakeFeed) -> Iterator[CreditAnswers]:
    answers: CreditAnswers | None = getattr(billing.app.state, "credit", None)
    if answers is None:  # the feed lives for the session: its route is added once
        answers = CreditAnswers()
        billing.app.state.credit = answers
        billing.app.get("/visits/{visit_id}/credit/{item_code}")(
            lambda visit_id, item_code: billing.app.state.credit.answer(visit_id, item_code)
        )
    billing.app.state.credit = CreditAnswers()
    yield billing.app.state.credit


def settle_later_visit(registration: httpx.Client, index: int = 0) -> dict[str, Any]:
    return create_visit(registration, create_patient(registration, index)["id"], payment_mode="settle_later")


def charge_held(position: int, order: dict[str, Any], *, amount_fen: int = PRICE_FEN) -> dict[str, Any]:
    """A billing `charge.held` event as billing's feed would serve it."""
    held = charge_paid(position, order) | {"type": "charge.held"}
    held["data"] = {
        "charge_id": str(uuid.uuid4()),
        "order_id": order["id"],
        "amount_fen": amount_fen,
        "reason": "credit_limit",
        "credit_limit_fen": LIMIT_FEN,
        "credit_used_fen": LIMIT_FEN + amount_fen,
    }
    return held


def test_a_settle_later_order_within_the_credit_is_released_at_once(
    client: TestClient, registration: httpx.Client, credit: CreditAnswers
) -> None:
    visit = settle_later_visit(registration)
    credit.remaining[visit["id"]] = PRICE_FEN  # exactly its price: within the limit

    order = place_order(client, visit["id"])

    assert (order["status"], order["hold_reason"]) == ("released", None)
    assert credit.asked == [visit["id"]]
    assert [e["data"]["reason"] for e in events(client, "order.released")] == ["payment_mode"]
    assert events(client, "order.held") == []


def test_the_order_past_the_credit_limit_waits_and_payment_releases_it(
    client: TestClient, registration: httpx.Client, credit: CreditAnswers, billing: FakeFeed
) -> None:
    visit = settle_later_visit(registration)
    credit.remaining[visit["id"]] = PRICE_FEN - 1

    order = place_order(client, visit["id"])

    assert (order["status"], order["hold_reason"], order["released_at"]) == (
        "awaiting_payment",
        "credit_limit",
        None,
    )
    assert client.get(f"/orders/{order['id']}").json()["hold_reason"] == "credit_limit"
    assert client.post(f"/orders/{order['id']}/collection").status_code == 402  # the lab may not start
    [held] = events(client, "order.held")
    assert held["data"] == {
        "order_id": order["id"],
        "test_code": CBC,
        "reason": "credit_limit",
        "charge_id": None,
        "amount_fen": PRICE_FEN,
        "credit_limit_fen": LIMIT_FEN,
    }
    assert events(client, "order.released") == []

    billing.publish(charge_paid(1, order))
    eventually(lambda: status_of(client, order) == "released", what="the payment to release the order")
    released = client.get(f"/orders/{order['id']}").json()
    assert released["hold_reason"] is None and released["released_at"] is not None
    assert [e["data"]["reason"] for e in events(client, "order.released")] == ["paid"]


def test_a_green_channel_order_never_waits_and_billing_is_not_asked(
    client: TestClient, registration: httpx.Client, credit: CreditAnswers
) -> None:
    visit = create_emergency_visit(registration, create_patient(registration)["id"])
    credit.remaining[visit["id"]] = 0  # were it asked, nothing would fit

    order = place_order(client, visit["id"])

    assert (order["status"], order["hold_reason"]) == ("released", None)
    assert credit.asked == []


def test_a_prepay_order_says_it_waits_for_prepayment(
    client: TestClient, registration: httpx.Client, credit: CreditAnswers
) -> None:
    order = place_order(client, create_visit(registration, create_patient(registration)["id"])["id"])
    assert (order["status"], order["hold_reason"]) == ("awaiting_payment", "prepay")
    assert credit.asked == [] and events(client, "order.held") == []


def test_an_account_billing_has_not_opened_yet_releases_the_order(
    client: TestClient, registration: httpx.Client, credit: CreditAnswers
) -> None:
    visit = settle_later_visit(registration)  # billing answers 404 for it
    assert place_order(client, visit["id"])["status"] == "released"
    assert credit.asked == [visit["id"]]


def test_with_billing_down_a_settle_later_order_is_released(
    results_data_dir: Path, registration_url: str, registration: httpx.Client, dead_url: str
) -> None:
    app = create_app(results_settings(results_data_dir, registration_url, dead_url))
    with service_client(app, ResultsTable.metadata) as client:
        order = place_order(client, settle_later_visit(registration)["id"])
    assert (order["status"], order["hold_reason"]) == ("released", None)


def test_charge_held_takes_an_uncollected_order_back_from_the_lab_once(
    client: TestClient, registration: httpx.Client, credit: CreditAnswers
) -> None:
    visit = settle_later_visit(registration)  # the check passed (billing had not charged the others yet)
    order = place_order(client, visit["id"])
    consumer = billing_consumer(client)
    held = charge_held(1, order)

    consumer.apply(held)
    consumer.apply(held | {"position": 2})  # redelivered: applied once

    waiting = client.get(f"/orders/{order['id']}").json()
    assert (waiting["status"], waiting["hold_reason"], waiting["released_at"]) == (
        "awaiting_payment",
        "credit_limit",
        None,
    )
    [event] = events(client, "order.held")
    assert event["data"]["charge_id"] == held["data"]["charge_id"]
    assert event["data"]["amount_fen"] == PRICE_FEN
    assert client.post(f"/orders/{order['id']}/collection").status_code == 402

    consumer.apply(charge_paid(3, order))
    consumer.apply(charge_paid(4, order))  # a second payment event: the order is released once
    assert status_of(client, order) == "released"
    assert [e["data"]["reason"] for e in events(client, "order.released")] == ["payment_mode", "paid"]


def test_charge_held_leaves_an_order_whose_specimen_was_collected_and_one_already_held(
    client: TestClient, registration: httpx.Client, credit: CreditAnswers
) -> None:
    collected = place_order(client, settle_later_visit(registration)["id"])
    assert client.post(f"/orders/{collected['id']}/collection").status_code == 200
    over = settle_later_visit(registration, 1)
    credit.remaining[over["id"]] = 0
    already_held = place_order(client, over["id"])
    consumer = billing_consumer(client)

    consumer.apply(charge_held(1, collected))
    consumer.apply(charge_held(2, already_held))

    assert status_of(client, collected) == "released"  # the lab started: a specimen is not taken back
    assert status_of(client, already_held) == "awaiting_payment"
    assert [e["data"]["order_id"] for e in events(client, "order.held")] == [already_held["id"]]


def charge_reversed(position: int, order: dict[str, Any]) -> dict[str, Any]:
    """A billing `charge.reversed` event for the order's charge, as billing's feed would serve it."""
    reversal = charge_paid(position, order) | {"type": "charge.reversed"}
    reversal["data"] = {
        "charge_id": str(uuid.uuid4()),
        "reversal_of": str(uuid.uuid4()),
        "item_code": CBC,
        "quantity": -1,
        "amount_fen": -PRICE_FEN,
        "service_date": "2026-11-27",
        "reason": "患者不做了",
        "operator": "收费员",
        "order_id": order["id"],
    }
    return reversal


def test_a_reversed_charge_cancels_a_held_order_which_then_never_reaches_the_lab(
    client: TestClient, registration: httpx.Client, credit: CreditAnswers
) -> None:
    visit = settle_later_visit(registration)
    credit.remaining[visit["id"]] = 0
    held = place_order(client, visit["id"])
    prepaid = place_order(client, create_visit(registration, create_patient(registration, 1)["id"])["id"])
    consumer = billing_consumer(client)
    reversal = charge_reversed(1, held)

    consumer.apply(reversal)
    consumer.apply(reversal | {"position": 2})  # redelivered: cancelled once
    consumer.apply(charge_reversed(3, prepaid))

    for order in (held, prepaid):
        found = client.get(f"/orders/{order['id']}").json()
        assert (found["status"], found["hold_reason"], found["released_at"]) == ("cancelled", None, None)
        for step in ("collection", "receipt"):
            refused = client.post(f"/orders/{order['id']}/{step}")
            assert refused.status_code == 409, refused.text
            assert refused.json()["type"].endswith("/order-cancelled")
        report = client.post(f"/orders/{order['id']}/reports", json=report_body())
        assert report.status_code == 409 and report.json()["type"].endswith("/order-cancelled")
    cancelled = events(client, "order.cancelled")
    assert [e["data"]["order_id"] for e in cancelled] == [held["id"], prepaid["id"]]
    assert cancelled[0]["data"] == {
        "order_id": held["id"],
        "test_code": CBC,
        "reason": "charge_reversed",
        "charge_id": reversal["data"]["reversal_of"],
        "reversal_id": reversal["data"]["charge_id"],
        "reversal_reason": "患者不做了",
    }
    consumer.apply(charge_paid(4, held))  # a payment read later does not bring it back
    assert status_of(client, held) == "cancelled"
    assert [e["data"]["reason"] for e in events(client, "order.released")] == []
    listed = client.get("/orders", params={"status": "cancelled"}).json()
    assert {o["id"] for o in listed} >= {held["id"], prepaid["id"]}


def test_a_reversed_charge_leaves_an_order_the_lab_started(
    client: TestClient, registration: httpx.Client, credit: CreditAnswers
) -> None:
    collected = place_order(client, settle_later_visit(registration)["id"])
    assert client.post(f"/orders/{collected['id']}/collection").status_code == 200
    consumer = billing_consumer(client)

    consumer.apply(charge_reversed(1, collected))

    assert status_of(client, collected) == "released"  # the specimen is taken: billing's correction stands
    assert events(client, "order.cancelled") == []
