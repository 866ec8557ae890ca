"""Settlement never drops a charge, with the real processes behind the gateway.

An order placed just before settlement is on the settled bill; one placed after it is on the visit's
supplementary bill (补费), announced and payable; with a source of charges down, settlement answers 503
and settles nothing. A settled visit says so in registration. Charges are dated within their visit.
"""

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from patientflow.supervisor import System
from tests.e2e.clients import (
    Gateway,
    assert_problem,
    emergency_visit,
    eventually,
    hub_events,
    ok,
    visit_account,
)

CBC = "250101015"  # 血细胞分析, 2000 fen
CBC_FEN = 2000
EMERGENCY_FEE_FEN = 2500  # 急诊诊察费, charged when the visit opens
INFUSION = "120400006"


def green_channel_visit(gateway: Gateway) -> dict[str, Any]:
    patient = ok(gateway.nurse.post("/v1/patients", json={"unidentified": True, "alias": "女，约30岁"}), 201)
    return emergency_visit(gateway.nurse, patient["id"], department="emergency")


def place_order(gateway: Gateway, visit_id: str) -> dict[str, Any]:
    return ok(gateway.doctor.post("/v1/orders", json={"visit_id": visit_id, "test_code": CBC}), 201)  # type: ignore[no-any-return]


def settle(gateway: Gateway, visit_id: str) -> httpx.Response:
    return gateway.cashier.post(
        f"/v1/visits/{visit_id}/settlement",
        json={"method": "insurance"},
        headers={"Idempotency-Key": str(uuid.uuid4())},
    )


def account(gateway: Gateway, visit_id: str) -> dict[str, Any]:
    return ok(gateway.cashier.get(f"/v1/visits/{visit_id}/account"))  # type: ignore[no-any-return]


@contextmanager
def billing_polling_every(system: System, seconds: float) -> Iterator[None]:
    """Billing restarted so that its consumers poll their feeds only every `seconds` (a lagging billing)."""
    normal = system.env["PATIENTFLOW_FEED_POLL_SECONDS"]
    system.env["PATIENTFLOW_FEED_POLL_SECONDS"] = str(seconds)
    system.stop_service("billing")
    try:
        system.start_service("billing")
        yield
    finally:
        system.env["PATIENTFLOW_FEED_POLL_SECONDS"] = normal
        system.stop_service("billing")
        system.start_service("billing")


def test_an_order_placed_just_before_settlement_is_on_the_settled_bill(
    system: System, gateway: Gateway
) -> None:
    with billing_polling_every(system, 60):  # billing would read the order a minute from now
        visit = green_channel_visit(gateway)
        order = place_order(gateway, visit["id"])

        # At once: billing has the order's charge, or says it is still arriving and settles nothing.
        response = settle(gateway, visit["id"])
        if response.status_code == 503:
            assert assert_problem(response, 503)["type"].endswith("/charges-still-arriving")
            assert account(gateway, visit["id"])["status"] == "open"
            response = eventually(
                lambda: r if (r := settle(gateway, visit["id"])).status_code == 201 else None,
                what="the settlement",
            )
        settlement = ok(response, 201)

        assert settlement["total_fen"] == EMERGENCY_FEE_FEN + CBC_FEN
        assert settlement["payment"]["amount_fen"] == EMERGENCY_FEE_FEN + CBC_FEN
        state = account(gateway, visit["id"])
        assert [c["order_id"] for c in state["charges"] if c["origin"] == "order"] == [order["id"]]
        assert (state["status"], state["balance_fen"], state["supplementary_due_fen"]) == ("settled", 0, 0)
        assert ok(gateway.cashier.get("/v1/rejected-charges", params={"visit_id": visit["id"]})) == []

    # Registration learns of it from billing's feed, and closes the emergency visit.
    registered = eventually(
        lambda: (v := ok(gateway.his.get(f"/v1/visits/{visit['id']}")))["status"] == "closed" and v,
        what="registration to show the visit settled and closed",
    )
    assert registered["settled_at"] is not None and registered["close_reason"] == "settled"


def admitted_visit(gateway: Gateway) -> dict[str, Any]:
    """A green-channel emergency patient admitted to a bed: a settlement before discharge (中途结算)
    leaves the visit open, so orders still come after it."""
    visit = green_channel_visit(gateway)
    ward = f"w-{uuid.uuid4().hex[:8]}"
    body = {"code": ward, "department": "icu", "name": "重症监护", "beds": [{"code": "1"}]}
    ok(gateway.nurse.post("/v1/wards", json=body), 201)
    ok(gateway.nurse.post(f"/v1/visits/{visit['id']}/admission", json={"ward": ward, "bed": "1"}), 201)
    return visit


def test_an_order_placed_after_settlement_is_a_supplementary_bill(gateway: Gateway) -> None:
    visit = admitted_visit(gateway)
    ok(settle(gateway, visit["id"]), 201)

    late = place_order(gateway, visit["id"])

    state = eventually(
        lambda: (a := account(gateway, visit["id"]))["supplementary_due_fen"] and a,
        what="the late order on the supplementary bill",
    )
    [extra] = [c for c in state["charges"] if c["supplementary"]]
    assert (extra["order_id"], extra["amount_fen"], extra["status"]) == (late["id"], CBC_FEN, "unpaid")
    assert (state["status"], state["balance_fen"]) == ("settled", CBC_FEN)
    assert ok(gateway.cashier.get("/v1/rejected-charges", params={"visit_id": visit["id"]})) == []
    [announced] = eventually(
        lambda: hub_events(gateway, "charge.supplementary", visit["id"]), what="charge.supplementary"
    )
    assert announced["data"]["charge_id"] == extra["id"]
    assert announced["data"]["supplementary_due_fen"] == CBC_FEN

    payment = ok(
        gateway.cashier.post(
            "/v1/payments",
            json={"visit_id": visit["id"], "method": "wechat", "amount_fen": CBC_FEN},
            headers={"Idempotency-Key": str(uuid.uuid4())},
        ),
        201,
    )
    assert payment["charge_ids"] == [extra["id"]]
    paid = account(gateway, visit["id"])
    assert (paid["balance_fen"], paid["supplementary_due_fen"]) == (0, 0)


def test_settlement_with_results_down_is_503_and_settles_nothing(system: System, gateway: Gateway) -> None:
    visit = green_channel_visit(gateway)
    eventually(lambda: visit_account(gateway, visit["id"]), what="billing to open the account")

    system.stop_service("results")
    try:
        response = settle(gateway, visit["id"])
        body = assert_problem(response, 503)
        assert body["type"].endswith("/charges-still-arriving")
        assert int(response.headers["retry-after"]) >= 1
        state = account(gateway, visit["id"])
        assert (state["status"], state["payments"]) == ("open", [])
    finally:
        system.start_service("results")

    settlement = eventually(
        lambda: (r := settle(gateway, visit["id"])).status_code == 201 and r.json(),
        what="settlement once results is back",
    )
    assert settlement["total_fen"] == EMERGENCY_FEE_FEN


def test_a_charge_dated_outside_its_visit_is_refused(gateway: Gateway) -> None:
    visit = green_channel_visit(gateway)
    before = eventually(lambda: visit_account(gateway, visit["id"]), what="billing to open the account")

    for service_date in ("0001-01-01", "2000-01-01"):
        response = gateway.cashier.post(
            "/v1/charges",
            json={
                "visit_id": visit["id"],
                "item_code": INFUSION,
                "quantity": 1,
                "service_date": service_date,
            },
            headers={"Idempotency-Key": str(uuid.uuid4())},
        )
        assert assert_problem(response, 422)["type"].endswith("/invalid-service-date")

    assert account(gateway, visit["id"])["charges"] == before["charges"]


def test_rejected_charges_are_listed_for_staff_with_billing_read(gateway: Gateway) -> None:
    assert isinstance(ok(gateway.cashier.get("/v1/rejected-charges")), list)
    assert_problem(gateway.doctor.get("/v1/rejected-charges"), 403)
