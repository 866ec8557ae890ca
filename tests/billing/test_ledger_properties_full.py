"""Issue 12's ledger property with every operation it names in one sequence, on an inpatient's account:
charges posted by the cashier and by results' feed, retries of both (the same request and key again,
the same event delivered again, the same order in a new event), the nightly bed-day job run again and
again, reversals (before settlement and after it, when they refund), deposits, full and partial
payments (from the deposit too, and the patient's own `insurance` tender), refunds of what an open
account owes back (in part or whole), the settlement and the deposit refund after it.

After every step: balance = deposits + payments − deposit applied − deposit refunded − lines, summed
line by line; the account's totals are the sums of its lines; no key, no order and no night ever
yields two charges; each charge is reversed at most once and exactly. At the end, the day's
reconciliation is balanced. (tests/billing/test_reversals.py and test_invoices.py keep the narrower
sequences.) Runs on SQLite and, with PATIENTFLOW_TEST_DATABASE_URL, on PostgreSQL.
"""

from collections import Counter
from datetime import timedelta
from typing import Any

import httpx
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from kit.clock import hospital_date, utcnow
from kit.testing import FakeFeed
from tests.billing.conftest import order_placed_event
from tests.billing.factories import (
    CBC,
    INFUSION,
    account,
    keyed,
    register_insured,
    register_unidentified,
    wait_until_consumed,
)
from tests.billing.inpatients import admitted_visit, move_stay_back, today

GLUCOSE = "250307001"  # 血糖, 500 fen: no charging rule
TENDERS = ["cash", "card", "wechat", "alipay", "insurance"]
MOVES = [
    "charge",
    "order",
    "redeliver",
    "reorder",
    "nightly",
    "pay",
    "pay_some",
    "pay_from_deposit",
    "reverse",
    "deposit",
    "settle",
    "refund",
    "refund_owed",
    "retry",
]
REVERSAL = {"reason": "错录", "operator": "收费员 王五"}


def event_note(move: str) -> None:
    """Count the moves that ran (`--hypothesis-show-statistics`): a guard skipped the others."""
    event(f"ran {move}")


def live_charges(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Charges neither reversed nor reversals themselves."""
    cancelled = {c["reversal_of"] for c in lines} | {c["id"] for c in lines if c["reversal_of"]}
    return [c for c in lines if c["id"] not in cancelled]


def check_ledger(client: TestClient, visit_id: str) -> dict[str, Any]:
    """Every invariant of one account that holds after any step; the account."""
    state = account(client, visit_id)
    money = client.get(f"/visits/{visit_id}/deposits").json()
    lines = state["charges"]
    total = sum(c["amount_fen"] for c in lines)
    paid = sum(p["amount_fen"] for p in state["payments"])
    deposited = sum(d["amount_fen"] for d in money["deposits"])
    refunded = sum(r["amount_fen"] for r in money["refunds"])
    assert (state["charges_total_fen"], state["paid_fen"]) == (total, paid)
    assert money["balance_fen"] == deposited + paid - money["deposit_applied_fen"] - refunded - total
    assert money["deposit_held_fen"] >= 0
    by_id = {c["id"]: c for c in lines}
    reversed_ids = [c["reversal_of"] for c in lines if c["reversal_of"]]
    assert len(reversed_ids) == len(set(reversed_ids))  # a charge is reversed once at most
    for line in lines:
        if line["reversal_of"]:
            original = by_id[line["reversal_of"]]
            assert (line["amount_fen"], line["quantity"]) == (-original["amount_fen"], -original["quantity"])
    charges = [c for c in lines if not c["reversal_of"]]
    orders = Counter(c["order_id"] for c in charges if c["order_id"])
    assert all(count == 1 for count in orders.values()), orders  # an order is charged once, ever
    nights = Counter(
        (c["service_date"], c["item_code"]) for c in live_charges(lines) if c["origin"] == "inpatient_day"
    )
    assert all(count == 1 for count in nights.values()), nights  # a night and item: one standing line
    for invoice in client.get(f"/visits/{visit_id}/invoices").json():
        assert invoice["insurer_fen"] + invoice["patient_fen"] == invoice["total_fen"]
        assert sum(line["amount_fen"] for line in invoice["lines"]) == invoice["total_fen"]
    return state


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_sequence_of_every_ledger_operation_keeps_the_ledger(
    data: st.DataObject, registration: httpx.Client, client: TestClient, results_feed: FakeFeed
) -> None:
    # Insured (the cashier's payments split at once, a paid reversal refunded at once) or self-pay (a
    # paid reversal before settlement leaves a credit, refunded by `refund_owed` or at settlement).
    insured = data.draw(st.booleans())
    patient = register_insured(registration) if insured else register_unidentified(registration)
    visit = admitted_visit(registration, client, patient_id=patient["id"], payment_mode="settle_later")
    vid = visit["id"]
    move_stay_back(client, vid, days=2)  # two nights for the job to post
    yesterday = (today() - timedelta(days=1)).isoformat()
    sent: list[tuple[str, dict[str, Any], dict[str, str]]] = []  # every request answered 201
    events: list[dict[str, Any]] = []  # every order.placed published
    # Every operation in some order, then more of any: each example tries each one at least once.
    moves = data.draw(st.permutations(MOVES)) + data.draw(st.lists(st.sampled_from(MOVES), max_size=8))
    # A credit exists only between a paid reversal and the settlement: offer its refund right after.
    moves = [m for move in moves for m in ((move, "refund_owed") if move == "reverse" else (move,))]
    for move in moves:
        state = account(client, vid)
        held = client.get(f"/visits/{vid}/deposits").json()["deposit_held_fen"]
        is_open = state["status"] == "open"
        live = live_charges(state["charges"])
        unpaid = [c for c in live if c["status"] == "unpaid"]
        owed_back = sum(p["amount_fen"] for p in state["payments"]) - sum(
            c["amount_fen"] for c in state["charges"]
        )
        request: tuple[str, dict[str, Any], dict[str, str]] | None = None
        event: dict[str, Any] | None = None
        if move == "charge" and is_open:
            item = data.draw(st.sampled_from([INFUSION, CBC]))
            body: dict[str, Any] = {
                "visit_id": vid,
                "item_code": item,
                "quantity": data.draw(st.integers(1, 3)),
            }
            request = ("/charges", body, keyed())
        elif move == "order":
            event = order_placed_event(visit, data.draw(st.sampled_from([CBC, GLUCOSE])))
        elif move == "redeliver" and events:  # the same event again: delivery is at least once
            event = data.draw(st.sampled_from(events))
        elif move == "reorder" and events:  # the same order in an event of its own
            again = data.draw(st.sampled_from(events))
            event = order_placed_event(visit, again["data"]["test_code"], order_id=again["data"]["order_id"])
        elif move == "nightly":
            ran = client.post("/inpatient-days/runs", json={"date": yesterday})
            assert ran.status_code == 200, ran.text
        elif move == "pay" and is_open and unpaid:
            request = (
                "/payments",
                {"visit_id": vid, "method": data.draw(st.sampled_from(TENDERS))},
                keyed(),
            )
        elif move == "pay_some" and is_open and unpaid:
            chosen = data.draw(st.lists(st.sampled_from(unpaid), min_size=1, unique_by=lambda c: c["id"]))
            body = {"visit_id": vid, "charge_ids": [c["id"] for c in chosen], "method": "card"}
            request = ("/payments", body, keyed())
        elif move == "pay_from_deposit" and is_open and [c for c in unpaid if c["amount_fen"] <= held]:
            chosen_one = data.draw(st.sampled_from([c for c in unpaid if c["amount_fen"] <= held]))
            body = {"visit_id": vid, "charge_ids": [chosen_one["id"]], "method": "deposit"}
            request = ("/payments", body, keyed())
        elif move == "reverse" and live:  # after settlement: a correction, refunded
            target = data.draw(st.sampled_from(live))
            request = (f"/charges/{target['id']}/reversal", REVERSAL, keyed())
        elif move == "deposit" and is_open:
            body = {"amount_fen": data.draw(st.integers(1, 30_000)), "method": "cash"}
            request = (f"/visits/{vid}/deposits", body, keyed())
        elif move == "settle" and is_open:
            request = (f"/visits/{vid}/settlement", {"method": data.draw(st.sampled_from(TENDERS))}, keyed())
        elif move == "refund" and not is_open and held > 0:
            request = (f"/visits/{vid}/deposit-refunds", {}, keyed())
        elif move == "refund_owed" and owed_back > 0:  # paid for, since reversed: 退费 over the tenders
            amount = data.draw(st.one_of(st.none(), st.integers(1, owed_back)))
            body = REVERSAL | ({} if amount is None else {"amount_fen": amount})
            request = (f"/visits/{vid}/refunds", body, keyed())
        elif move == "retry" and sent:
            request = data.draw(st.sampled_from(sent))
        if request is not None or event is not None or move == "nightly":
            event_note(move)
        if request is not None:
            path, body, headers = request
            response = client.post(path, json=body, headers=headers)
            assert response.status_code == 201, f"{move} {path}: {response.text}"
            sent.append(request)
        if event is not None:
            stored = results_feed.publish(event)
            events.append(event)
            wait_until_consumed(client, "results", stored["position"])
        check_ledger(client, vid)

    final = check_ledger(client, vid)
    charge_keys = {headers["Idempotency-Key"] for path, _, headers in sent if path == "/charges"}
    assert len([c for c in final["charges"] if c["origin"] == "manual"]) == len(charge_keys)
    ordered = {e["data"]["order_id"] for e in events}
    charged_orders = {c["order_id"] for c in final["charges"] if c["order_id"] and not c["reversal_of"]}
    assert charged_orders == ordered  # every order charged, once (check_ledger), redelivered or not
    day = client.get("/reconciliation", params={"date": hospital_date(utcnow()).isoformat()}).json()
    assert day["balanced"] is True, day["mismatches"]
