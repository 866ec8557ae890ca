"""Deposits (住院押金): receipts numbered in order and never changed, the low-balance alert once per
crossing, the deposit paying first at the discharge settlement and what is left refunded once, payments
out of the deposit, and bad input refused without a change."""

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import select

from kit.clock import utcnow
from kit.testing import FakeFeed, service_client
from services.billing import repository
from services.billing.app import create_app
from services.billing.models import BillingTable, Deposit, OutboxEvent, Receipt, VisitAccount
from services.billing.schemas import ChargeOrigin
from services.billing.service.charges import add_charge
from services.billing.service.deposits import ReceiptImmutable, check_low_balance, ledger
from tests.billing.conftest import billing_settings
from tests.billing.factories import (
    INFUSION,
    account,
    billing_events,
    keyed,
    new_visit,
    post_charge,
)
from tests.billing.inpatients import admitted_visit, database, deposit

RENAL_PANEL = "250305005"  # 肾功能, 3000 fen: no charging rule limits it (a bed-day is once a day)


def deposits(client: TestClient, visit_id: str) -> dict[str, Any]:
    response = client.get(f"/visits/{visit_id}/deposits")
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def low_balance_events(client: TestClient, visit_id: str) -> list[dict[str, Any]]:
    return [e for e in billing_events(client, "deposit.low_balance") if e["visit_id"] == visit_id]


def test_a_deposit_and_top_up_each_get_the_next_receipt_and_a_retry_gets_the_first_answer(
    registration: httpx.Client, client: TestClient
) -> None:
    visit = admitted_visit(registration, client)
    key = keyed()
    body = {"amount_fen": 200_000, "method": "card"}

    first = client.post(f"/visits/{visit['id']}/deposits", json=body, headers=key)
    retried = client.post(f"/visits/{visit['id']}/deposits", json=body, headers=key)
    top_up = deposit(client, visit["id"], 50_000, method="wechat")

    assert first.status_code == retried.status_code == 201
    assert retried.json() == first.json() and retried.headers.get("idempotent-replayed") == "true"
    numbers = [first.json()["receipt_number"], top_up["receipt_number"]]
    assert int(numbers[1][-8:]) == int(numbers[0][-8:]) + 1 and numbers[0][:6] == numbers[1][:6]
    shown = deposits(client, visit["id"])
    assert [d["amount_fen"] for d in shown["deposits"]] == [200_000, 50_000]
    assert shown["deposit_total_fen"] == shown["deposit_held_fen"] == 250_000
    assert shown["balance_fen"] == 250_000 - shown["charges_total_fen"]
    receipts = client.get(f"/visits/{visit['id']}/receipts").json()
    assert [(r["number"], r["kind"], r["amount_fen"]) for r in receipts] == [
        (numbers[0], "deposit", 200_000),
        (numbers[1], "deposit", 50_000),
    ]


def test_a_receipt_cannot_be_changed_or_removed(registration: httpx.Client, client: TestClient) -> None:
    visit = admitted_visit(registration, client)
    number = deposit(client, visit["id"], 10_000)["receipt_number"]

    for change in ("amount", "delete"):
        with pytest.raises(ReceiptImmutable), database(client).session() as session:
            receipt = session.get(Receipt, number)
            assert receipt is not None
            if change == "amount":
                receipt.amount_fen = 1
                session.add(receipt)
            else:
                session.delete(receipt)
            session.flush()

    assert client.get(f"/visits/{visit['id']}/receipts").json()[0]["amount_fen"] == 10_000


def test_the_low_balance_alert_fires_once_per_crossing(
    registration: httpx.Client, client: TestClient
) -> None:
    visit = admitted_visit(registration, client)
    fee = account(client, visit["id"])["charges_total_fen"]  # the consultation fee of the visit
    deposit(client, visit["id"], 10_000 + fee, low_balance_threshold_fen=3_000)

    post_charge(client, visit["id"], "250305002")  # 6000: balance 4000, above the line
    assert low_balance_events(client, visit["id"]) == []
    post_charge(client, visit["id"], INFUSION, 3)  # 1500: balance 2500, crosses it
    post_charge(client, visit["id"], INFUSION)  # 500: still below, no second alert
    alerts = low_balance_events(client, visit["id"])
    assert [(a["data"]["balance_fen"], a["data"]["threshold_fen"]) for a in alerts] == [(2_500, 3_000)]
    assert deposits(client, visit["id"])["low_balance"] is True

    deposit(client, visit["id"], 10_000)  # balance 12000: back over the line, re-armed
    assert deposits(client, visit["id"])["low_balance"] is False
    post_charge(client, visit["id"], RENAL_PANEL, 3)  # 9000: balance 3000, at the line again
    assert [a["data"]["balance_fen"] for a in low_balance_events(client, visit["id"])] == [2_500, 3_000]


def test_the_deposit_pays_first_at_settlement_and_what_is_left_is_refunded_once(
    registration: httpx.Client, client: TestClient
) -> None:
    visit = admitted_visit(registration, client, payment_mode="settle_later")
    deposit(client, visit["id"], 100_000)
    post_charge(client, visit["id"], RENAL_PANEL, 2)
    total = account(client, visit["id"])["charges_total_fen"]

    early = client.post(f"/visits/{visit['id']}/deposit-refunds", json={}, headers=keyed())
    settled = client.post(
        f"/visits/{visit['id']}/settlement", json={"method": "cash", "amount_fen": 0}, headers=keyed()
    )
    refund = client.post(f"/visits/{visit['id']}/deposit-refunds", json={}, headers=keyed())
    again = client.post(f"/visits/{visit['id']}/deposit-refunds", json={}, headers=keyed())

    assert early.status_code == 409 and early.json()["type"].endswith("/account-not-settled")
    assert settled.status_code == 201, settled.text
    assert settled.json()["payment"]["method"] == "deposit"
    assert (settled.json()["deposit_applied_fen"], settled.json()["deposit_refundable_fen"]) == (
        total,
        100_000 - total,
    )
    assert refund.status_code == 201, refund.text
    assert (refund.json()["amount_fen"], refund.json()["method"]) == (100_000 - total, "card")
    assert again.status_code == 409 and again.json()["type"].endswith("/nothing-due")
    final = deposits(client, visit["id"])
    assert (final["deposit_held_fen"], final["balance_fen"]) == (0, 0)
    kinds = [r["kind"] for r in client.get(f"/visits/{visit['id']}/receipts").json()]
    assert kinds == ["deposit", "payment", "deposit_refund"]


def test_a_short_deposit_leaves_the_patient_the_rest_to_pay(
    registration: httpx.Client, client: TestClient
) -> None:
    visit = admitted_visit(registration, client)
    deposit(client, visit["id"], 1_000)
    due = account(client, visit["id"])["balance_fen"]

    wrong = client.post(
        f"/visits/{visit['id']}/settlement", json={"method": "cash", "amount_fen": due}, headers=keyed()
    )
    right = client.post(
        f"/visits/{visit['id']}/settlement",
        json={"method": "cash", "amount_fen": due - 1_000},
        headers=keyed(),
    )

    assert wrong.status_code == 422 and wrong.json()["due_fen"] == due - 1_000
    assert right.status_code == 201, right.text
    assert (right.json()["payment"]["amount_fen"], right.json()["payment"]["deposit_fen"]) == (due, 1_000)
    assert deposits(client, visit["id"])["balance_fen"] == 0


def test_a_prepaid_inpatients_order_is_paid_out_of_the_deposit(
    registration: httpx.Client, client: TestClient
) -> None:
    visit = admitted_visit(registration, client)
    charge = post_charge(client, visit["id"], "250305002")  # 6000
    deposit(client, visit["id"], 5_000)

    short = client.post(
        "/payments",
        json={"visit_id": visit["id"], "charge_ids": [charge["id"]], "method": "deposit"},
        headers=keyed(),
    )
    deposit(client, visit["id"], 1_000)
    paid = client.post(
        "/payments",
        json={"visit_id": visit["id"], "charge_ids": [charge["id"]], "method": "deposit"},
        headers=keyed(),
    )

    assert short.status_code == 409 and short.json()["type"].endswith("/deposit-insufficient")
    assert paid.status_code == 201, paid.text
    assert paid.json()["deposit_fen"] == 6_000
    paid_events = [e for e in billing_events(client, "charge.paid") if e["data"]["charge_id"] == charge["id"]]
    assert len(paid_events) == 1  # results releases the order from it
    assert deposits(client, visit["id"])["deposit_held_fen"] == 0


@pytest.mark.parametrize(
    "body",
    [
        {"amount_fen": 0, "method": "cash"},
        {"amount_fen": 10**13, "method": "cash"},
        {"amount_fen": 100.5, "method": "cash"},
        {"amount_fen": "100", "method": "cash"},
        {"amount_fen": 100, "method": "deposit"},
        {"amount_fen": 100, "method": "bitcoin"},
        {"amount_fen": 100, "method": "cash", "low_balance_threshold_fen": -1},
        {"amount_fen": 100, "method": "cash", "note": "x" * 10_000},
    ],
)
def test_bad_deposits_are_refused_and_change_nothing(
    registration: httpx.Client, client: TestClient, body: dict[str, Any]
) -> None:
    visit = new_visit(registration, client)

    response = client.post(f"/visits/{visit['id']}/deposits", json=body, headers=keyed())

    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert deposits(client, visit["id"])["deposits"] == []


def test_deposits_of_an_unknown_visit_are_404(client: TestClient) -> None:
    missing = str(uuid.uuid4())
    posted = client.post(
        f"/visits/{missing}/deposits", json={"amount_fen": 100, "method": "cash"}, headers=keyed()
    )
    assert posted.status_code == 404 and client.get(f"/visits/{missing}/deposits").status_code == 404


# --- the account's standing against its mode ------------------------------------------------------------


@pytest.fixture
def tight_client(
    data_dir: Path, registration: httpx.Client, registration_url: str, results_feed: FakeFeed
) -> Iterator[TestClient]:
    """Billing with a settle-later credit limit of 50 yuan."""
    results_feed.clear()
    overrides = {"registration_url": registration_url, "results_url": results_feed.url}
    settings_ = billing_settings(data_dir, settle_later_credit_limit_fen=5_000, **overrides)
    with service_client(create_app(settings_), BillingTable.metadata) as client:
        yield client


def test_charges_beyond_the_credit_limit_are_posted_and_held(
    registration: httpx.Client, tight_client: TestClient
) -> None:
    client = tight_client
    visit = new_visit(registration, client, payment_mode="settle_later")  # its fee: 2000
    within = post_charge(client, visit["id"], RENAL_PANEL)  # 5000 in all: at the limit
    beyond = post_charge(client, visit["id"], INFUSION)  # 5500: over it

    standing = client.get(f"/visits/{visit['id']}/standing").json()

    assert (standing["credit_limit_fen"], standing["credit_used_fen"], standing["over_credit_limit"]) == (
        5_000,
        5_500,
        True,
    )
    assert standing["held_charge_ids"] == [beyond["id"]]
    assert within["id"] in [c["id"] for c in account(client, visit["id"])["charges"]]
    deposit(client, visit["id"], 1_000)  # security for the rest: back within the limit
    standing = client.get(f"/visits/{visit['id']}/standing").json()
    assert (standing["over_credit_limit"], standing["held_charge_ids"]) == (False, [])


def test_a_green_channel_account_has_no_limit_and_is_followed_up(
    registration: httpx.Client, client: TestClient
) -> None:
    visit = new_visit(
        registration, client, kind="emergency", department="emergency", payment_mode="green_channel"
    )
    prepaid = new_visit(registration, client)
    post_charge(client, visit["id"], "311300001", 30)  # 600000 fen: far past any credit limit

    standing = client.get(f"/visits/{visit['id']}/standing").json()
    pending = client.get("/green-channel/follow-ups").json()
    relief = client.put(
        f"/visits/{visit['id']}/relief", json={"category": "no_means", "note": "疾病应急救助"}
    )
    refused = client.put(f"/visits/{prepaid['id']}/relief", json={"category": "no_means"})

    assert (standing["credit_limit_fen"], standing["over_credit_limit"], standing["needs_follow_up"]) == (
        None,
        False,
        True,
    )
    assert visit["id"] in [s["visit_id"] for s in pending]
    assert relief.status_code == 200, relief.text
    assert (relief.json()["relief_category"], relief.json()["needs_follow_up"]) == ("no_means", False)
    assert visit["id"] not in [s["visit_id"] for s in client.get("/green-channel/follow-ups").json()]
    assert refused.status_code == 409 and refused.json()["type"].endswith("/not-green-channel")


# --- the ledger, as a property ---------------------------------------------------------------------------

Step = tuple[str, int]
steps = st.lists(
    st.one_of(
        st.tuples(st.just("charge"), st.integers(min_value=1, max_value=20)),
        st.tuples(st.just("deposit"), st.integers(min_value=100, max_value=20_000)),
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=steps, threshold=st.integers(min_value=0, max_value=10_000))
def test_the_alert_fires_exactly_on_each_downward_crossing(
    registration: httpx.Client, client: TestClient, steps: list[Step], threshold: int
) -> None:
    """For any run of deposits and charges: one alert per fall to the line from above it, the balance
    always deposits − charges to the fen."""
    visit_id, patient_id = str(uuid.uuid4()), str(uuid.uuid4())
    with database(client).session() as session:
        session.add(
            VisitAccount(visit_id=visit_id, patient_id=patient_id, kind="inpatient", payment_mode="prepay")
        )
    item = None
    balance, low, expected_alerts, deposited = 0, False, 0, False
    for kind, amount in steps:
        with database(client).session() as session:
            account_row = repository.get_account(session, visit_id, for_update=True)
            assert account_row is not None
            if kind == "deposit":
                session.add(
                    Deposit(
                        id=str(uuid.uuid4()),
                        visit_id=visit_id,
                        amount_fen=amount,
                        method="cash",
                        receipt_number=str(uuid.uuid4())[:32],
                        received_by="test",
                    )
                )
                account_row.low_balance_threshold_fen = threshold
                session.flush()
                check_low_balance(session, account_row)
                balance += amount
                deposited = True
            else:
                item = item or repository.get_item(session, INFUSION)
                assert item is not None
                add_charge(
                    session,
                    account=account_row,
                    item=item,
                    quantity=amount,
                    origin=ChargeOrigin.manual,
                    service_date=utcnow().date(),
                )
                balance -= item.price_fen * amount
            if deposited:
                now_low = balance <= threshold
                expected_alerts += int(now_low and not low)
                low = now_low
    with database(client).session(write=False) as session:
        assert ledger(session, visit_id).balance_fen == balance
        alerts = session.exec(
            select(OutboxEvent).where(
                OutboxEvent.event_type == "deposit.low_balance", OutboxEvent.aggregate_id == visit_id
            )
        ).all()
    assert len(alerts) == expected_alerts


def test_cashiers_taking_deposits_at_once_get_consecutive_receipts(
    registration: httpx.Client, client: TestClient
) -> None:
    visits = [admitted_visit(registration, client) for _ in range(6)]
    barrier = threading.Barrier(len(visits))
    answers: list[httpx.Response] = []

    def take(visit_id: str) -> None:
        barrier.wait()
        body = {"amount_fen": 10_000, "method": "cash"}
        answers.append(client.post(f"/visits/{visit_id}/deposits", json=body, headers=keyed()))

    threads = [threading.Thread(target=take, args=(visit["id"],)) for visit in visits]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert [answer.status_code for answer in answers] == [201] * len(visits)
    numbers = sorted(int(answer.json()["receipt_number"][-8:]) for answer in answers)
    assert numbers == list(range(numbers[0], numbers[0] + len(visits)))
