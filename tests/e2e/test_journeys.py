"""The two journeys that define patientflow, through the gateway, against the five real processes."""

import uuid
from typing import Any

from gateway.config import GatewaySettings
from kit.clock import hospital_date, utcnow
from patientflow.supervisor import System
from tests.e2e.clients import (
    Gateway,
    assert_problem,
    eventually,
    ok,
    register_patient,
    unique_department,
    visit_account,
)

CBC = "250101015"  # 血细胞分析 (complete blood count)
HEAD_CT = "210300001"
OUTPATIENT_FEE = "110200001"
EMERGENCY_FEE = "110200005"
BREAKER_FAILURES: int = GatewaySettings.model_fields["breaker_failures"].default


def price(gateway: Gateway, code: str) -> int:
    return int(ok(gateway.cashier.get(f"/v1/catalogue/{code}"))["price_fen"])


def charges_of(gateway: Gateway, visit_id: str, count: int) -> list[dict[str, Any]]:
    """Wait until the visit's account shows `count` charges; return them."""
    found = eventually(
        lambda: (a := visit_account(gateway, visit_id)) and len(a["charges"]) >= count and a["charges"],
        what=f"{count} charges on visit {visit_id}",
    )
    return list(found)


def test_outpatient_prepay_journey(gateway: Gateway) -> None:
    department = unique_department()
    patient = register_patient(gateway.his)
    visit = ok(
        gateway.his.post(
            "/v1/visits", json={"patient_id": patient["id"], "kind": "outpatient", "department": department}
        ),
        201,
    )
    assert visit["payment_mode"] == "prepay"

    # the registration fee reaches billing through registration's event feed
    fee = charges_of(gateway, visit["id"], 1)
    assert [c["item_code"] for c in fee] == [OUTPATIENT_FEE]
    assert fee[0]["amount_fen"] == price(gateway, OUTPATIENT_FEE)

    triage = ok(gateway.nurse.post("/v1/assessments", json={"visit_id": visit["id"], "level": "IV"}), 201)
    assert triage["zone"] == "green"
    ticket = ok(gateway.nurse.post(f"/v1/queues/{department}/tickets", json={"visit_id": visit["id"]}), 201)
    called = ok(gateway.doctor.post(f"/v1/queues/{department}/call-next", json={"counter": "3"}))
    assert called["id"] == ticket["id"] and called["status"] == "called"

    order = ok(gateway.doctor.post("/v1/orders", json={"visit_id": visit["id"], "test_code": CBC}), 201)
    assert order["status"] == "awaiting_payment"
    report = {
        "status": "final",
        "conclusion": "正常",
        "observations": [{"code": "WBC", "name": "白细胞", "value": "6.1"}],
    }
    blocked = assert_problem(gateway.lab.post(f"/v1/orders/{order['id']}/reports", json=report), 402)
    assert "pa" in blocked["detail"].lower()

    charges = charges_of(gateway, visit["id"], 2)
    assert sorted(c["item_code"] for c in charges) == sorted([OUTPATIENT_FEE, CBC])
    due = sum(c["amount_fen"] for c in charges)
    key = {"Idempotency-Key": str(uuid.uuid4())}
    payment_body = {"visit_id": visit["id"], "method": "wechat", "amount_fen": due}
    payment = ok(gateway.cashier.post("/v1/payments", json=payment_body, headers=key), 201)
    assert payment["amount_fen"] == due
    replay = gateway.cashier.post("/v1/payments", json=payment_body, headers=key)
    assert replay.status_code == 201 and replay.json()["id"] == payment["id"]  # paid once, not twice

    eventually(
        lambda: ok(gateway.lab.get(f"/v1/orders/{order['id']}"))["status"] == "released",
        what="the paid order to be released to the lab",
    )
    posted = ok(gateway.lab.post(f"/v1/orders/{order['id']}/reports", json=report), 201)
    found = ok(gateway.doctor.get(f"/v1/patients/{patient['id']}/reports"))
    assert [r["id"] for r in found] == [posted["id"]]
    assert found[0]["status"] == "final"
    ok(gateway.doctor.post(f"/v1/tickets/{ticket['id']}/finish"))

    today = hospital_date(utcnow()).isoformat()
    bill = ok(gateway.cashier.get(f"/v1/visits/{visit['id']}/daily-bill", params={"date": today}))
    assert sorted(line["item_code"] for line in bill["lines"]) == sorted([OUTPATIENT_FEE, CBC])
    assert bill["total_fen"] == due == sum(line["amount_fen"] for line in bill["lines"])
    assert bill["unpaid_fen"] == 0
    balance = visit_account(gateway, visit["id"])
    assert balance is not None and balance["balance_fen"] == 0


def test_green_channel_journey_with_billing_stopped(system: System, gateway: Gateway) -> None:
    system.stop_service("billing")
    try:
        unknown = ok(
            gateway.nurse.post("/v1/patients", json={"unidentified": True, "alias": "男，约40岁"}), 201
        )
        visit = ok(
            gateway.nurse.post(
                "/v1/visits",
                json={
                    "patient_id": unknown["id"],
                    "kind": "emergency",
                    "department": "emergency",
                    "payment_mode": "green_channel",
                },
            ),
            201,
        )
        triage = ok(gateway.nurse.post("/v1/assessments", json={"visit_id": visit["id"], "level": "I"}), 201)
        assert triage["zone"] == "red"

        orders = [
            ok(gateway.doctor.post("/v1/orders", json={"visit_id": visit["id"], "test_code": code}), 201)
            for code in (CBC, HEAD_CT)
        ]
        assert [o["status"] for o in orders] == ["released", "released"]  # treat first, pay later
        for order in orders:
            ok(
                gateway.lab.post(
                    f"/v1/orders/{order['id']}/reports",
                    json={"status": "final", "conclusion": "见报告", "observations": []},
                ),
                201,
            )
        # billing really is down: the gateway says so as problem+json, 502 (refused) until billing's
        # circuit opens, then 503 + Retry-After without calling it
        statuses = []
        for _ in range(BREAKER_FAILURES + 1):
            response = gateway.cashier.get(f"/v1/visits/{visit['id']}/account")
            statuses.append(assert_problem(response, response.status_code)["status"])
            if response.status_code == 503:
                assert int(response.headers["retry-after"]) >= 1
                break
        assert set(statuses[:-1]) <= {502} and statuses[-1] == 503, statuses
    finally:
        system.start_service("billing")

    expected = sorted([EMERGENCY_FEE, CBC, HEAD_CT])
    charges = charges_of(gateway, visit["id"], 3)
    assert sorted(c["item_code"] for c in charges) == expected
    # a restart replays the feeds from billing's stored cursors: still exactly one charge each
    system.stop_service("billing")
    system.start_service("billing")
    charges = charges_of(gateway, visit["id"], 3)
    assert sorted(c["item_code"] for c in charges) == expected

    known = register_patient(gateway.his, "李四")
    merged = ok(
        gateway.his.post(f"/v1/patients/{known['id']}/merge", json={"source_patient_id": unknown["id"]})
    )
    assert merged["moved_visit_ids"] == [visit["id"]]
    eventually(
        lambda: (a := visit_account(gateway, visit["id"])) and a["patient_id"] == known["id"],
        what="billing to learn of the merge",
    )
    reports = eventually(
        lambda: len(r := gateway.doctor.get(f"/v1/patients/{known['id']}/reports").json()) == 2 and r,
        what="results to learn of the merge",
    )
    assert {r["test_code"] for r in reports} == {CBC, HEAD_CT}

    total = sum(c["amount_fen"] for c in charges)
    settlement = gateway.cashier.post(
        f"/v1/visits/{visit['id']}/settlement",
        json={"method": "insurance", "amount_fen": total},
        headers={"Idempotency-Key": str(uuid.uuid4())},
    )
    assert settlement.status_code in (200, 201), settlement.text
    settled = visit_account(gateway, visit["id"])
    assert settled is not None
    assert settled["status"] == "settled" and settled["balance_fen"] == 0 and settled["paid_fen"] == total
