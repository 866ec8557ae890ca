"""A held read through the gateway, real processes: a lab screen waiting for an order's payment asks once
(`GET /v1/orders/{id}?wait=&while_status=awaiting_payment`) and hears of the payment when results does."""

import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from tests.e2e.clients import (
    Gateway,
    assert_problem,
    charges_of_visit,
    ok,
    patient_session,
    register_patient,
    unique_department,
)

CBC = "250101015"  # 血细胞分析 (complete blood count)


def unpaid_order(gateway: Gateway, patient: dict[str, Any] | None = None) -> dict[str, str]:
    patient = patient or register_patient(gateway.his)
    body = {"patient_id": patient["id"], "kind": "outpatient", "department": unique_department()}
    visit = ok(gateway.his.post("/v1/visits", json=body), 201)
    order: dict[str, str] = ok(
        gateway.doctor.post("/v1/orders", json={"visit_id": visit["id"], "test_code": CBC}), 201
    )
    return order


def test_a_held_read_answers_when_the_payment_releases_the_order(gateway: Gateway) -> None:
    order = unpaid_order(gateway)
    charges_of_visit(gateway, order["visit_id"], at_least=2)  # the order's charge and the 诊察费
    held_read: dict[str, str | int] = {"wait": 10, "while_status": "awaiting_payment"}
    with ThreadPoolExecutor(1) as pool:
        held = pool.submit(gateway.lab.get, f"/v1/orders/{order['id']}", params=held_read)
        payment = {"visit_id": order["visit_id"], "method": "wechat"}
        headers = {"Idempotency-Key": str(uuid.uuid4())}
        ok(gateway.cashier.post("/v1/payments", json=payment, headers=headers), 201)
        assert ok(held.result())["status"] == "released"


def test_a_hold_longer_than_the_gateways_read_deadline_is_not_cut_off(gateway: Gateway) -> None:
    """The gateway gives a read 3 s; a held one gets its hold on top, and answers as the order stands."""
    order = unpaid_order(gateway)
    held = gateway.lab.get(
        f"/v1/orders/{order['id']}", params={"wait": 4, "while_status": "awaiting_payment"}
    )
    assert ok(held)["status"] == "awaiting_payment"


def test_a_patients_app_holds_only_its_own_orders_and_bad_holds_are_refused(gateway: Gateway) -> None:
    patient = register_patient(gateway.his)
    mine, theirs = unpaid_order(gateway, patient), unpaid_order(gateway)
    session = patient_session(gateway, patient)
    held = {"wait": "0.5", "while_status": "awaiting_payment"}
    with httpx.Client(
        base_url=gateway.app.base_url,
        headers=dict(gateway.app.headers) | {"x-patient-token": session["token"]},
        timeout=30,
    ) as app:
        assert ok(app.get(f"/v1/orders/{mine['id']}", params=held))["status"] == "awaiting_payment"
        not_mine = assert_problem(app.get(f"/v1/orders/{theirs['id']}", params=held), 404)
        unknown = assert_problem(app.get("/v1/orders/no-such-order", params=held), 404)
        assert not_mine["type"] == unknown["type"]  # another patient's order looks like none at all
    for wait in ("11", "1e999", "nan", "-1", "１０", "0x10"):  # no sane client sends these
        refused = gateway.lab.get(
            f"/v1/orders/{mine['id']}", params={"wait": wait, "while_status": "reported"}
        )
        assert_problem(refused, 400)
    assert_problem(
        gateway.lab.get(f"/v1/orders/{mine['id']}", params={"wait": 1, "while_status": "紧急"}), 400
    )
