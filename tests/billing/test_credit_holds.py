"""The settle-later credit limit at billing: an order's charge past it is still posted and announced as
held (`charge.held`, once), and results may ask beforehand whether an order would still fit."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from kit.testing import FakeFeed, feed_headers, service_client
from services.billing.app import create_app
from services.billing.models import BillingTable
from tests.billing.conftest import billing_settings, order_placed
from tests.billing.factories import (
    CBC,
    OUTPATIENT_FEE_FEN,
    account,
    billing_events,
    new_visit,
    post_payment,
    wait_until_consumed,
)
from tests.billing.inpatients import deposit

LIMIT_FEN = 5_000  # the visit's fee (2000) and one CBC (2000) fit; a second CBC does not
CBC_FEN = 2000


@pytest.fixture
def tight_client(
    data_dir: Path, registration: httpx.Client, registration_url: str, results_feed: FakeFeed
) -> Iterator[TestClient]:
    """Billing with a settle-later credit limit of 50 yuan."""
    results_feed.clear()
    overrides = {"registration_url": registration_url, "results_url": results_feed.url}
    settings = billing_settings(data_dir, settle_later_credit_limit_fen=LIMIT_FEN, **overrides)
    with service_client(create_app(settings), BillingTable.metadata) as client:
        yield client


def order_charge(client: TestClient, visit_id: str, order_id: str) -> dict[str, Any]:
    [charge] = [c for c in account(client, visit_id)["charges"] if c["order_id"] == order_id]
    return charge


def test_the_order_charge_past_the_credit_limit_is_posted_and_held_once(
    registration: httpx.Client, tight_client: TestClient, results_feed: FakeFeed
) -> None:
    client = tight_client
    visit = new_visit(registration, client, payment_mode="settle_later")
    within = order_placed(results_feed, visit, CBC)  # 4000 of 5000
    beyond = order_placed(results_feed, visit, CBC)  # 6000: past it
    redelivered = results_feed.publish(beyond)
    wait_until_consumed(client, "results", redelivered["position"])

    held_charge = order_charge(client, visit["id"], beyond["data"]["order_id"])
    [held] = billing_events(client, "charge.held")
    assert held["data"] == {
        "charge_id": held_charge["id"],
        "order_id": beyond["data"]["order_id"],
        "amount_fen": CBC_FEN,
        "reason": "credit_limit",
        "credit_limit_fen": LIMIT_FEN,
        "credit_used_fen": OUTPATIENT_FEE_FEN + 2 * CBC_FEN,
    }
    assert held["visit_id"] == visit["id"]
    assert order_charge(client, visit["id"], within["data"]["order_id"])["amount_fen"] == CBC_FEN
    standing = client.get(f"/visits/{visit['id']}/standing").json()
    assert standing["held_charge_ids"] == [held_charge["id"]]  # the same reckoning as the standing's


def test_a_deposit_counts_towards_the_credit(
    registration: httpx.Client, tight_client: TestClient, results_feed: FakeFeed
) -> None:
    visit = new_visit(registration, tight_client, payment_mode="settle_later")
    deposit(tight_client, visit["id"], CBC_FEN)
    order_placed(results_feed, visit, CBC)
    last = order_placed(results_feed, visit, CBC)  # 6000 of 5000 + the 2000 deposit
    wait_until_consumed(tight_client, "results", last["position"])
    assert billing_events(tight_client, "charge.held") == []


def test_green_channel_and_prepay_charges_are_never_held(
    registration: httpx.Client, tight_client: TestClient, results_feed: FakeFeed
) -> None:
    green = new_visit(
        registration, tight_client, kind="emergency", department="emergency", payment_mode="green_channel"
    )
    prepay = new_visit(registration, tight_client)
    for _ in range(3):
        order_placed(results_feed, green, CBC)
        last = order_placed(results_feed, prepay, CBC)
    wait_until_consumed(tight_client, "results", last["position"])
    assert len(account(tight_client, green["id"])["charges"]) == 4
    assert billing_events(tight_client, "charge.held") == []


def credit_check(client: TestClient, visit_id: str, item_code: str = CBC, **params: Any) -> httpx.Response:
    return client.get(
        f"/visits/{visit_id}/credit/{item_code}", params=params, headers=feed_headers("billing")
    )


def test_the_credit_check_says_whether_an_order_still_fits(
    registration: httpx.Client, tight_client: TestClient
) -> None:
    client = tight_client
    visit = new_visit(registration, client, payment_mode="settle_later")  # 2000 used: 3000 left
    green = new_visit(
        registration, client, kind="emergency", department="emergency", payment_mode="green_channel"
    )

    fits = credit_check(client, visit["id"])
    too_many = credit_check(client, visit["id"], quantity=2)
    post_payment(client, visit["id"])  # the fee paid: 5000 left
    after_payment = credit_check(client, visit["id"], quantity=2)

    assert fits.status_code == 200, fits.text
    assert fits.json() == {
        "visit_id": visit["id"],
        "payment_mode": "settle_later",
        "item_code": CBC,
        "price_fen": CBC_FEN,
        "credit_limit_fen": LIMIT_FEN,
        "remaining_credit_fen": LIMIT_FEN - OUTPATIENT_FEE_FEN,
        "fits": True,
    }
    assert (too_many.json()["price_fen"], too_many.json()["fits"]) == (2 * CBC_FEN, False)
    assert (after_payment.json()["remaining_credit_fen"], after_payment.json()["fits"]) == (LIMIT_FEN, True)
    green_check = credit_check(client, green["id"], quantity=999).json()
    assert (green_check["fits"], green_check["remaining_credit_fen"]) == (True, None)


def test_the_credit_check_is_for_services_and_refuses_bad_input(
    registration: httpx.Client, tight_client: TestClient
) -> None:
    client = tight_client
    visit = new_visit(registration, client, payment_mode="settle_later")
    unknown = credit_check(client, "7d0c6c39-0000-4000-8000-000000000000")
    bad_quantity = credit_check(client, visit["id"], quantity=0)
    as_staff = client.get(f"/visits/{visit['id']}/credit/{CBC}")  # the gateway's staff credentials

    assert unknown.status_code == 404 and unknown.headers["content-type"] == "application/problem+json"
    assert bad_quantity.status_code == 400  # a bad query parameter, as everywhere here
    assert as_staff.status_code == 403
