"""The settle-later credit limit with real processes, through the gateway: orders within the limit go to
the lab at once, the one that crosses it waits (and says why) until paid, the green channel never waits,
and with billing down the order goes ahead and is held once billing is back.

The system runs with billing's default limit (500000 fen): a manual charge of 24 × 心肺复苏术 (20000 fen
each) brings a visit near it, so a head CT (20000 fen) no longer fits.
"""

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from patientflow.supervisor import System
from tests.e2e.clients import (
    Gateway,
    assert_problem,
    charges_of_visit,
    eventually,
    hub_events,
    ok,
    register_patient,
    unique_department,
)

CBC = "250101015"  # 血细胞分析, 2000 fen
HEAD_CT = "210300001"  # 头颅CT平扫, 20000 fen
RESUSCITATION = "311300001"  # 心肺复苏术, 20000 fen
NEAR_THE_LIMIT = 24  # 480000 fen: with the fee and a CBC, 16000 fen of credit are left


def keyed() -> dict[str, str]:
    return {"Idempotency-Key": str(uuid.uuid4())}


def open_visit(gateway: Gateway, payment_mode: str, kind: str = "outpatient") -> dict[str, Any]:
    patient = register_patient(gateway.his)
    body = {
        "patient_id": patient["id"],
        "kind": kind,
        "department": unique_department(),
        "payment_mode": payment_mode,
    }
    return ok(gateway.his.post("/v1/visits", json=body), 201)  # type: ignore[no-any-return]


def order(gateway: Gateway, visit_id: str, test_code: str) -> dict[str, Any]:
    body = {"visit_id": visit_id, "test_code": test_code}
    return ok(gateway.doctor.post("/v1/orders", json=body), 201)  # type: ignore[no-any-return]


def read_order(gateway: Gateway, order_id: str) -> dict[str, Any]:
    return ok(gateway.lab.get(f"/v1/orders/{order_id}"))  # type: ignore[no-any-return]


def run_up_near_the_limit(gateway: Gateway, visit_id: str) -> None:
    charges_of_visit(gateway, visit_id, at_least=1)  # billing has opened the account (its fee)
    body = {"visit_id": visit_id, "item_code": RESUSCITATION, "quantity": NEAR_THE_LIMIT}
    ok(gateway.cashier.post("/v1/charges", json=body, headers=keyed()), 201)


def pay_everything(gateway: Gateway, visit_id: str, *, charges: int) -> None:
    charges_of_visit(gateway, visit_id, at_least=charges)  # the orders' charges have arrived
    payment = {"visit_id": visit_id, "method": "wechat"}
    ok(gateway.cashier.post("/v1/payments", json=payment, headers=keyed()), 201)


def released(gateway: Gateway, order_id: str) -> bool:
    return read_order(gateway, order_id)["status"] == "released"


def release_reasons_at_hub(gateway: Gateway, visit_id: str, order_id: str, *, at_least: int) -> list[str]:
    """The reasons of the order's `order.released` events at the hub, once it has `at_least` of them (the
    hub reads results' feed on its own time)."""

    def probe() -> list[str] | None:
        events = hub_events(gateway, "order.released", visit_id)
        reasons = [e["data"]["reason"] for e in events if e["data"]["order_id"] == order_id]
        return reasons if len(reasons) >= at_least else None

    found: list[str] = eventually(probe, what=f"{at_least} order.released for {order_id} at the hub")
    return found


def test_settle_later_orders_wait_past_the_credit_limit_until_paid(gateway: Gateway) -> None:
    visit = open_visit(gateway, "settle_later")
    within = order(gateway, visit["id"], CBC)
    run_up_near_the_limit(gateway, visit["id"])
    crossing = order(gateway, visit["id"], HEAD_CT)

    assert (within["status"], within["hold_reason"]) == ("released", None)
    assert (crossing["status"], crossing["hold_reason"]) == ("awaiting_payment", "credit_limit")
    shown = read_order(gateway, crossing["id"])  # staff see why it waits
    assert (shown["status"], shown["hold_reason"]) == ("awaiting_payment", "credit_limit")
    assert_problem(gateway.lab.post(f"/v1/orders/{crossing['id']}/collection"), 402)
    [held] = eventually(lambda: hub_events(gateway, "order.held", visit["id"]), what="order.held")
    assert (held["data"]["order_id"], held["data"]["reason"]) == (crossing["id"], "credit_limit")
    # Billing, posting the CT's charge, finds it past the limit too.
    eventually(lambda: hub_events(gateway, "charge.held", visit["id"]), what="charge.held")

    pay_everything(gateway, visit["id"], charges=4)  # fee, CBC, the manual charge, the CT
    eventually(lambda: released(gateway, crossing["id"]), what="the paid order to be released")
    assert read_order(gateway, crossing["id"])["hold_reason"] is None
    ok(gateway.lab.post(f"/v1/orders/{crossing['id']}/collection"))
    reasons = release_reasons_at_hub(gateway, visit["id"], crossing["id"], at_least=1)
    assert reasons == ["paid"]  # released once, by the payment


def test_reversing_a_held_orders_charge_cancels_the_order(gateway: Gateway) -> None:
    """The cashier reverses the charge of an order held past the limit (the patient will not have the
    CT): results cancels the order, so it neither waits for ever nor reaches the lab uncharged."""
    visit = open_visit(gateway, "settle_later")
    run_up_near_the_limit(gateway, visit["id"])
    crossing = order(gateway, visit["id"], HEAD_CT)
    assert crossing["status"] == "awaiting_payment"
    ct_charge = next(c for c in charges_of_visit(gateway, visit["id"], at_least=3) if c["order_id"])

    reversal = {"reason": "患者放弃检查", "operator": "收费员"}
    ok(gateway.cashier.post(f"/v1/charges/{ct_charge['id']}/reversal", json=reversal, headers=keyed()), 201)

    [cancelled] = eventually(
        lambda: hub_events(gateway, "order.cancelled", visit["id"]), what="order.cancelled"
    )
    assert (cancelled["data"]["order_id"], cancelled["data"]["charge_id"]) == (
        crossing["id"],
        ct_charge["id"],
    )
    assert read_order(gateway, crossing["id"])["status"] == "cancelled"
    assert_problem(gateway.lab.post(f"/v1/orders/{crossing['id']}/collection"), 409)


def test_green_channel_orders_never_wait(gateway: Gateway) -> None:
    visit = open_visit(gateway, "green_channel", kind="emergency")
    run_up_near_the_limit(gateway, visit["id"])
    ok(
        gateway.cashier.post(
            "/v1/charges",
            json={"visit_id": visit["id"], "item_code": RESUSCITATION, "quantity": NEAR_THE_LIMIT},
            headers=keyed(),
        ),
        201,
    )  # 960000 fen: far past any settle-later limit
    ct = order(gateway, visit["id"], HEAD_CT)
    assert (ct["status"], ct["hold_reason"]) == ("released", None)
    charges_of_visit(gateway, visit["id"], at_least=4)  # billing charged the CT
    assert read_order(gateway, ct["id"])["status"] == "released"
    assert hub_events(gateway, "charge.held", visit["id"]) == []


@pytest.fixture
def _billing_back_after(gateway: Gateway, system: System) -> Iterator[None]:
    """Leave the shared system as found: billing running and its circuit closed."""
    yield
    if "billing" not in system.processes:
        system.start_service("billing")
    eventually(
        lambda: "open" not in gateway.anonymous.get("/readyz").json()["circuits"].values(),
        what="every circuit to be re-admitted",
    )


@pytest.mark.usefixtures("_billing_back_after")
def test_with_billing_down_the_order_goes_ahead_and_is_held_when_billing_is_back(
    gateway: Gateway, system: System
) -> None:
    visit = open_visit(gateway, "settle_later")
    run_up_near_the_limit(gateway, visit["id"])
    order(gateway, visit["id"], CBC)  # 16000 fen of credit left, as above
    charges_of_visit(gateway, visit["id"], at_least=3)

    system.stop_service("billing")
    try:
        ct = order(gateway, visit["id"], HEAD_CT)  # billing cannot be asked: clinical work goes on
        assert (ct["status"], ct["hold_reason"]) == ("released", None)
    finally:
        system.start_service("billing")

    # Billing reads the order, posts its charge past the limit and holds it; results takes it back.
    eventually(
        lambda: read_order(gateway, ct["id"])["hold_reason"] == "credit_limit", what="the hold to arrive"
    )
    assert read_order(gateway, ct["id"])["status"] == "awaiting_payment"
    # The hub reads results' and billing's feeds on its own time: the events reach it a little later.
    [held] = eventually(lambda: hub_events(gateway, "order.held", visit["id"]), what="order.held at the hub")
    [charge_held] = eventually(
        lambda: hub_events(gateway, "charge.held", visit["id"]), what="charge.held at the hub"
    )
    assert held["data"]["charge_id"] == charge_held["data"]["charge_id"]

    pay_everything(gateway, visit["id"], charges=4)
    eventually(lambda: released(gateway, ct["id"]), what="the paid order to be released")
    reasons = release_reasons_at_hub(gateway, visit["id"], ct["id"], at_least=2)
    assert reasons == ["payment_mode", "paid"]  # out, back for the hold, out again once paid
