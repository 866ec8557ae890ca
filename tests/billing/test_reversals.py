"""Corrections are reversal lines (冲销) with a reason and an operator, never edits: once per charge,
the account's totals follow, and `charge.reversed` announces them."""

from concurrent.futures import ThreadPoolExecutor
from threading import Barrier
from typing import Any

import httpx
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.billing.factories import (
    INFUSION,
    OUTPATIENT_FEE_FEN,
    account,
    billing_events,
    keyed,
    new_visit,
    post_charge,
    post_payment,
)

REASON = {"reason": "医嘱取消, 未执行", "operator": "收费员 王五"}


def reverse(client: TestClient, charge_id: str, body: dict[str, Any] = REASON) -> httpx.Response:
    return client.post(f"/charges/{charge_id}/reversal", json=body, headers=keyed())


def test_a_reversal_line_cancels_an_unpaid_charge(registration: httpx.Client, client: TestClient) -> None:
    visit = new_visit(registration, client)
    infusion = post_charge(client, visit["id"], INFUSION, 3)

    response = reverse(client, infusion["id"])

    assert response.status_code == 201, response.text
    line = response.json()
    assert (line["reversal_of"], line["item_code"], line["origin"]) == (infusion["id"], INFUSION, "reversal")
    assert (line["quantity"], line["amount_fen"], line["unit_price_fen"]) == (-3, -1500, 500)
    assert (line["reversal_reason"], line["operator"]) == (REASON["reason"], REASON["operator"])
    assert line["service_date"] == infusion["service_date"]
    after = account(client, visit["id"])
    charges = {c["id"]: c for c in after["charges"]}
    assert charges[infusion["id"]] == infusion | {"reversal_of": None}  # the charge itself never changes
    assert after["charges_total_fen"] == after["balance_fen"] == OUTPATIENT_FEE_FEN
    [announced] = billing_events(client, "charge.reversed")
    assert announced["data"] == {
        "charge_id": line["id"],
        "reversal_of": infusion["id"],
        "item_code": INFUSION,
        "quantity": -3,
        "amount_fen": -1500,
        "service_date": infusion["service_date"],
        "reason": REASON["reason"],
        "operator": REASON["operator"],
        "order_id": None,  # a manual charge: no order for results to cancel
    }
    # Neither line can be paid by name; paying everything due pays the fee only: they cancel out.
    for listed in ([infusion["id"]], [line["id"]]):
        body = {"visit_id": visit["id"], "charge_ids": listed, "method": "cash"}
        named = client.post("/payments", json=body, headers=keyed())
        assert named.status_code == 409 and named.json()["type"].endswith("/charge-reversed")
    payment = post_payment(client, visit["id"])
    assert payment["amount_fen"] == OUTPATIENT_FEE_FEN
    assert account(client, visit["id"])["balance_fen"] == 0


def test_a_paid_charge_reversed_leaves_a_credit(registration: httpx.Client, client: TestClient) -> None:
    visit = new_visit(registration, client)
    infusion = post_charge(client, visit["id"], INFUSION)
    post_payment(client, visit["id"])

    line = reverse(client, infusion["id"]).json()

    assert (
        line["status"] == "paid" and line["payment_id"] == account(client, visit["id"])["payments"][0]["id"]
    )
    after = account(client, visit["id"])
    assert (after["charges_total_fen"], after["paid_fen"]) == (OUTPATIENT_FEE_FEN, OUTPATIENT_FEE_FEN + 500)
    assert after["balance_fen"] == -500  # owed back to the patient


def test_a_charge_is_reversed_once_and_a_reversal_never(
    registration: httpx.Client, client: TestClient
) -> None:
    visit = new_visit(registration, client)
    infusion = post_charge(client, visit["id"], INFUSION)
    line = reverse(client, infusion["id"]).json()

    twice = reverse(client, infusion["id"])
    of_the_line = reverse(client, line["id"])
    missing = reverse(client, "0f6c1d52-0000-4000-8000-000000000000")

    assert twice.status_code == 409 and twice.json()["type"].endswith("/charge-already-reversed")
    assert of_the_line.status_code == 409 and of_the_line.json()["type"].endswith("/charge-is-reversal")
    assert missing.status_code == 404 and missing.json()["type"].endswith("/charge-not-found")
    assert len(account(client, visit["id"])["charges"]) == 3
    assert len(billing_events(client, "charge.reversed")) == 1


def test_racing_reversals_of_one_charge_post_one_line(registration: httpx.Client, client: TestClient) -> None:
    visit = new_visit(registration, client)
    infusion = post_charge(client, visit["id"], INFUSION)
    racers = 6
    barrier = Barrier(racers)

    def post(_: int) -> httpx.Response:
        barrier.wait()
        return reverse(client, infusion["id"])

    with ThreadPoolExecutor(max_workers=racers) as pool:
        statuses = sorted(r.status_code for r in pool.map(post, range(racers)))

    assert statuses == [201] + [409] * (racers - 1)
    assert len(account(client, visit["id"])["charges"]) == 3


def test_a_reversal_needs_a_key_a_reason_and_an_operator(
    registration: httpx.Client, client: TestClient
) -> None:
    visit = new_visit(registration, client)
    infusion = post_charge(client, visit["id"], INFUSION)
    path = f"/charges/{infusion['id']}/reversal"

    unkeyed = client.post(path, json=REASON)
    bad_bodies = [{}, {"reason": "x"}, REASON | {"reason": ""}, REASON | {"operator": "a\x00b"},
                  REASON | {"reason": "x" * 201}, REASON | {"amount_fen": 1}]  # fmt: skip

    assert unkeyed.status_code == 400
    for body in bad_bodies:
        response = client.post(path, json=body, headers=keyed())
        assert response.status_code == 422, body
    assert client.post("/charges/..%2F/reversal", json=REASON, headers=keyed()).status_code in {404, 422}
    assert len(account(client, visit["id"])["charges"]) == 2


def test_a_settled_accounts_correction_refunds_the_patient_once(
    registration: httpx.Client, client: TestClient
) -> None:
    visit = new_visit(registration, client, payment_mode="settle_later")
    fee = account(client, visit["id"])["charges"][0]
    settled = client.post(f"/visits/{visit['id']}/settlement", json={"method": "card"}, headers=keyed())
    assert settled.status_code == 201, settled.text
    key = keyed()

    first, retried = (client.post(f"/charges/{fee['id']}/reversal", json=REASON, headers=key) for _ in "12")

    assert first.status_code == retried.status_code == 201, first.text
    assert first.json()["id"] == retried.json()["id"]
    state = account(client, visit["id"])
    assert (state["charges_total_fen"], state["balance_fen"]) == (0, 0)
    refunds = [r for r in client.get(f"/visits/{visit['id']}/receipts").json() if r["kind"] == "refund"]
    assert [(r["amount_fen"], r["method"]) for r in refunds] == [(fee["amount_fen"], "card")]
    old, new = client.get(f"/visits/{visit['id']}/invoices").json()
    assert (new["supersedes"], new["total_fen"], new["paid_by"]) == (old["id"], 0, {})


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_sequence_of_charges_payments_and_reversals_keeps_the_ledger(
    data: st.DataObject, registration: httpx.Client, client: TestClient
) -> None:
    """Property: whatever is charged, paid, reversed or retried, the total is the sum of the lines,
    balance = total − payments = what is unpaid − what is owed back for paid charges reversed, and no
    key and no charge ever yields two lines."""
    visit = new_visit(registration, client)
    sent: list[tuple[str, dict[str, Any], dict[str, str]]] = []
    for move in data.draw(st.lists(st.sampled_from(["charge", "pay", "reverse", "retry"]), max_size=10)):
        charges = account(client, visit["id"])["charges"]
        cancelled = {c["reversal_of"] for c in charges} | {c["id"] for c in charges if c["reversal_of"]}
        live = [c for c in charges if c["id"] not in cancelled]
        if move == "charge":
            body: dict[str, Any] = {
                "visit_id": visit["id"],
                "item_code": INFUSION,
                "quantity": data.draw(st.integers(1, 5)),
            }
            sent.append(("/charges", body, keyed()))
        elif move == "pay" and [c for c in live if c["status"] == "unpaid"]:
            sent.append(("/payments", {"visit_id": visit["id"], "method": "cash"}, keyed()))
        elif move == "reverse" and live:
            target = data.draw(st.sampled_from(live))
            sent.append((f"/charges/{target['id']}/reversal", REASON, keyed()))
        elif move == "retry" and sent:
            sent.append(data.draw(st.sampled_from(sent)))
        else:
            continue
        path, body, headers = sent[-1]
        assert client.post(path, json=body, headers=headers).status_code == 201

        state = account(client, visit["id"])
        lines = state["charges"]
        assert state["charges_total_fen"] == sum(c["amount_fen"] for c in lines)
        assert state["paid_fen"] == sum(p["amount_fen"] for p in state["payments"])
        assert state["balance_fen"] == state["charges_total_fen"] - state["paid_fen"]
        owed_back = -sum(c["amount_fen"] for c in lines if c["reversal_of"] and c["status"] == "paid")
        assert (
            state["balance_fen"] == sum(c["amount_fen"] for c in lines if c["status"] == "unpaid") - owed_back
        )
        reversed_ids = [c["reversal_of"] for c in lines if c["reversal_of"]]
        assert len(reversed_ids) == len(set(reversed_ids))
    keyed_charges = {h["Idempotency-Key"] for p, _, h in sent if p == "/charges"}
    posted = [c for c in account(client, visit["id"])["charges"] if c["origin"] == "manual"]
    assert len(posted) == len(keyed_charges)
