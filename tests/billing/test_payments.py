"""Payments and settlement: all or nothing, amounts to the fen, and the events results releases orders by."""

import random
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from kit.testing import FakeFeed, eventually
from tests.billing.conftest import order_placed
from tests.billing.factories import (
    CBC,
    INFUSION,
    OUTPATIENT_FEE_FEN,
    account,
    assert_no_floats,
    billing_events,
    keyed,
    new_visit,
    post_charge,
    post_payment,
)


def test_payment_of_everything_due_emits_charge_paid_with_order_ids(
    registration: httpx.Client, client: TestClient, results_feed: FakeFeed
) -> None:
    visit = new_visit(registration, client)
    placed = order_placed(results_feed, visit, CBC)
    eventually(lambda: len(account(client, visit["id"])["charges"]) == 2, what="the order charge")
    charges = account(client, visit["id"])["charges"]

    payment = post_payment(client, visit["id"], method="wechat", amount_fen=OUTPATIENT_FEE_FEN + 2000)

    assert payment["visit_id"] == visit["id"] and payment["method"] == "wechat"
    assert payment["amount_fen"] == OUTPATIENT_FEE_FEN + 2000
    assert sorted(payment["charge_ids"]) == sorted(c["id"] for c in charges)
    paid = account(client, visit["id"])
    assert (paid["paid_fen"], paid["balance_fen"]) == (OUTPATIENT_FEE_FEN + 2000, 0)
    assert {c["status"] for c in paid["charges"]} == {"paid"}
    [received] = billing_events(client, "payment.received")
    assert received["data"]["payment_id"] == payment["id"]
    assert (received["visit_id"], received["patient_id"]) == (visit["id"], visit["patient_id"])
    charge_paid = billing_events(client, "charge.paid")
    assert {e["data"]["order_id"] for e in charge_paid} == {None, placed["data"]["order_id"]}
    assert {e["data"]["payment_id"] for e in charge_paid} == {payment["id"]}
    assert all(e["patient_id"] == visit["patient_id"] for e in charge_paid)


def test_paying_listed_charges_is_all_or_nothing(registration: httpx.Client, client: TestClient) -> None:
    visit = new_visit(registration, client)
    other = new_visit(registration, client)
    [fee] = account(client, visit["id"])["charges"]
    infusion = post_charge(client, visit["id"], INFUSION)
    post_payment(client, visit["id"], charge_ids=[fee["id"]])

    already_paid = client.post(
        "/payments",
        json={"visit_id": visit["id"], "charge_ids": [infusion["id"], fee["id"]], "method": "cash"},
        headers=keyed(),
    )
    not_this_visit = client.post(
        "/payments",
        json={"visit_id": other["id"], "charge_ids": [infusion["id"]], "method": "cash"},
        headers=keyed(),
    )
    no_such_charge = client.post(
        "/payments",
        json={"visit_id": visit["id"], "charge_ids": [infusion["id"], "no-such-charge"], "method": "cash"},
        headers=keyed(),
    )

    assert already_paid.status_code == 409 and already_paid.json()["charge_ids"] == [fee["id"]]
    assert not_this_visit.status_code == 404 and not_this_visit.json()["type"].endswith("/charge-not-found")
    assert no_such_charge.status_code == 404
    state = account(client, visit["id"])
    assert (state["paid_fen"], state["balance_fen"]) == (OUTPATIENT_FEE_FEN, 500)
    assert [c["status"] for c in state["charges"]] == ["paid", "unpaid"]
    assert len(billing_events(client, "payment.received")) == 1


def test_amount_must_match_and_something_must_be_due(registration: httpx.Client, client: TestClient) -> None:
    visit = new_visit(registration, client)

    short = client.post(
        "/payments", json={"visit_id": visit["id"], "amount_fen": 1999, "method": "cash"}, headers=keyed()
    )
    as_float = client.post(
        "/payments", json={"visit_id": visit["id"], "amount_fen": 2000.0, "method": "cash"}, headers=keyed()
    )
    assert short.status_code == 422 and short.json()["type"].endswith("/amount-mismatch")
    assert short.json()["due_fen"] == OUTPATIENT_FEE_FEN
    assert as_float.status_code == 422
    assert account(client, visit["id"])["paid_fen"] == 0

    post_payment(client, visit["id"], amount_fen=OUTPATIENT_FEE_FEN)
    nothing = client.post("/payments", json={"visit_id": visit["id"], "method": "cash"}, headers=keyed())
    assert nothing.status_code == 409 and nothing.json()["type"].endswith("/nothing-due")


def test_concurrent_payments_of_the_same_charges_pay_once(
    registration: httpx.Client, client: TestClient
) -> None:
    visit = new_visit(registration, client)
    post_charge(client, visit["id"], INFUSION, 2)
    body = {"visit_id": visit["id"], "method": "card"}

    with ThreadPoolExecutor(max_workers=6) as pool:
        responses = list(pool.map(lambda _: client.post("/payments", json=body, headers=keyed()), range(6)))

    assert sorted(r.status_code for r in responses) == [201] + [409] * 5
    state = account(client, visit["id"])
    assert (state["paid_fen"], state["balance_fen"]) == (OUTPATIENT_FEE_FEN + 1000, 0)


def test_settlement_pays_the_rest_and_closes_the_account(
    registration: httpx.Client, client: TestClient
) -> None:
    visit = new_visit(
        registration, client, kind="emergency", department="emergency", payment_mode="green_channel"
    )
    post_charge(client, visit["id"], "311300001")  # 心肺复苏术, 20000
    post_payment(client, visit["id"], charge_ids=[account(client, visit["id"])["charges"][0]["id"]])
    post_charge(client, visit["id"], "YP0006", 3)  # 肾上腺素, 3 × 200
    headers = keyed()

    response = client.post(f"/visits/{visit['id']}/settlement", json={"method": "insurance"}, headers=headers)

    assert response.status_code == 201, response.text
    settlement = response.json()
    assert (settlement["status"], settlement["total_fen"]) == ("settled", 2500 + 20000 + 600)
    assert settlement["payment"]["amount_fen"] == 20000 + 600
    state = account(client, visit["id"])
    assert (state["status"], state["balance_fen"], state["paid_fen"]) == ("settled", 0, 23100)
    assert state["settled_at"] is not None
    # the account lists both payments, each with the charges it paid
    assert [(p["amount_fen"], len(p["charge_ids"])) for p in state["payments"]] == [(2500, 1), (20600, 2)]
    assert state["payments"][1]["id"] == settlement["payment"]["id"]
    [settled] = billing_events(client, "visit.settled")
    assert settled["data"] == {"payment_id": settlement["payment"]["id"], "total_fen": 23100}
    assert settled["patient_id"] == visit["patient_id"]

    replay = client.post(f"/visits/{visit['id']}/settlement", json={"method": "insurance"}, headers=headers)
    again = client.post(f"/visits/{visit['id']}/settlement", json={"method": "insurance"}, headers=keyed())
    pay_more = client.post("/payments", json={"visit_id": visit["id"], "method": "cash"}, headers=keyed())
    assert (replay.status_code, replay.json()) == (201, settlement)
    assert again.status_code == 409 and again.json()["type"].endswith("/account-settled")
    assert pay_more.status_code == 409
    assert len(billing_events(client, "visit.settled")) == 1


def test_settlement_with_nothing_due_has_no_payment(registration: httpx.Client, client: TestClient) -> None:
    visit = new_visit(registration, client, payment_mode="settle_later")
    post_payment(client, visit["id"])

    mismatch = client.post(
        f"/visits/{visit['id']}/settlement", json={"method": "cash", "amount_fen": 1}, headers=keyed()
    )
    response = client.post(
        f"/visits/{visit['id']}/settlement", json={"method": "cash", "amount_fen": 0}, headers=keyed()
    )

    assert mismatch.status_code == 422
    assert response.status_code == 201, response.text
    assert (response.json()["payment"], response.json()["total_fen"]) == (None, OUTPATIENT_FEE_FEN)
    assert billing_events(client, "visit.settled")[0]["data"]["payment_id"] is None


def test_settling_an_unknown_visit_is_404(client: TestClient) -> None:
    response = client.post(
        "/visits/6a0e9d3b-0000-4000-8000-000000000000/settlement", json={"method": "cash"}, headers=keyed()
    )
    assert response.status_code == 404


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_charges_and_payments_keep_the_balance(
    seed: int, registration: httpx.Client, client: TestClient
) -> None:
    """Property: after any sequence of charges, payments and retried requests, balance = charges − payments
    and every figure is the sum of the lines it stands for."""
    rng = random.Random(seed)
    visit = new_visit(registration, client)
    # Items no charging rule names (those are test_charge_rules.py's), so every charge here posts.
    ruled = {
        code
        for rule in client.get("/charge-rules").json()["rules"]
        for code in (rule["item_code"], rule["other_item_code"])
    }
    codes = [item["code"] for item in client.get("/catalogue").json() if item["code"] not in ruled]
    charged, paid = OUTPATIENT_FEE_FEN, 0
    sent: list[tuple[str, dict[str, Any], dict[str, str]]] = []

    for _ in range(25):
        state = account(client, visit["id"])
        unpaid = [c for c in state["charges"] if c["status"] == "unpaid"]
        move = rng.choice(["charge", "charge", "pay_some", "pay_all", "retry"])
        if move == "charge":
            item = client.get(f"/catalogue/{rng.choice(codes)}").json()
            quantity = rng.randint(1, 5)
            body: dict[str, Any] = {"visit_id": visit["id"], "item_code": item["code"], "quantity": quantity}
            sent.append(("/charges", body, keyed()))
            assert client.post("/charges", json=body, headers=sent[-1][2]).status_code == 201
            charged += item["price_fen"] * quantity
        elif move in ("pay_some", "pay_all") and unpaid:
            chosen = rng.sample(unpaid, rng.randint(1, len(unpaid))) if move == "pay_some" else unpaid
            due = sum(c["amount_fen"] for c in chosen)
            body = {"visit_id": visit["id"], "charge_ids": [c["id"] for c in chosen], "method": "cash"}
            sent.append(("/payments", body | {"amount_fen": due}, keyed()))
            assert client.post("/payments", json=sent[-1][1], headers=sent[-1][2]).status_code == 201
            paid += due
        elif move == "retry" and sent:
            path, body, headers = rng.choice(sent)
            replayed = client.post(path, json=body, headers=headers)
            assert replayed.headers.get("Idempotent-Replayed") == "true"

        state = account(client, visit["id"])
        assert_no_floats(state)
        assert (state["charges_total_fen"], state["paid_fen"]) == (charged, paid)
        assert state["charges_total_fen"] == sum(c["amount_fen"] for c in state["charges"])
        assert state["balance_fen"] == state["charges_total_fen"] - state["paid_fen"]
        assert state["balance_fen"] == sum(
            c["amount_fen"] for c in state["charges"] if c["status"] == "unpaid"
        )
