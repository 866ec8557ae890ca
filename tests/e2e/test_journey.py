"""The journey view with real processes: a visit's whole timeline with its waits, and a partial answer
(saying which part is missing) while a service is down."""

import uuid
from typing import Any

import httpx

from patientflow.supervisor import System
from tests.e2e.clients import (
    Gateway,
    assert_problem,
    charges_of_visit,
    eventually,
    ok,
    patient_session,
    register_patient,
    unique_department,
)

CBC = "250101015"  # 血细胞分析 (complete blood count)
REPORT = {"status": "final", "conclusion": "正常", "observations": [], "verified_by": "李技师"}


def full_visit(gateway: Gateway) -> dict[str, Any]:
    """An outpatient visit that went through every stage: triage, queue, an order paid and reported."""
    department = unique_department()
    patient = register_patient(gateway.his)
    body = {"patient_id": patient["id"], "kind": "outpatient", "department": department}
    visit = ok(gateway.his.post("/v1/visits", json=body), 201)
    ok(gateway.nurse.post("/v1/assessments", json={"visit_id": visit["id"], "level": "IV"}), 201)
    ticket = ok(gateway.nurse.post(f"/v1/queues/{department}/tickets", json={"visit_id": visit["id"]}), 201)
    ok(gateway.doctor.post(f"/v1/queues/{department}/call-next", json={"counter": "3"}))
    order = ok(gateway.doctor.post("/v1/orders", json={"visit_id": visit["id"], "test_code": CBC}), 201)
    charges = charges_of_visit(gateway, visit["id"], at_least=2)
    payment = {"visit_id": visit["id"], "method": "wechat"}
    paid = ok(
        gateway.cashier.post("/v1/payments", json=payment, headers={"Idempotency-Key": str(uuid.uuid4())}),
        201,
    )
    eventually(
        lambda: ok(gateway.lab.get(f"/v1/orders/{order['id']}"))["status"] == "released",
        what="the paid order to be released",
    )
    report = ok(gateway.lab.post(f"/v1/orders/{order['id']}/reports", json=REPORT), 201)
    ok(gateway.doctor.post(f"/v1/tickets/{ticket['id']}/finish"))
    return {
        "patient": patient,
        "visit": visit,
        "ticket": ticket,
        "order": order,
        "report": report,
        "charges": charges,
        "payment": paid,
    }


def stages(journey: dict[str, Any]) -> list[str]:
    return [entry["stage"] for entry in journey["timeline"]]


def test_journey_shows_every_stage_in_order_with_waits(gateway: Gateway) -> None:
    made = full_visit(gateway)
    visit, ticket, order = made["visit"], made["ticket"], made["order"]
    journey = ok(gateway.his.get(f"/v1/visits/{visit['id']}/journey"))

    assert journey["visit_id"] == visit["id"] and journey["patient_id"] == visit["patient_id"]
    assert journey["partial"] is False and journey["missing"] == [] and journey["withheld"] == []
    seen = stages(journey)
    assert seen[0] == "registered"
    for earlier, later in [
        ("registered", "triaged"),
        ("triaged", "queued"),
        ("queued", "called"),
        ("called", "order_placed"),
        ("order_placed", "order_released"),
        ("order_released", "report_final"),
        ("charge_posted", "payment"),
    ]:
        assert seen.index(earlier) < seen.index(later), seen
    assert "consultation_finished" in seen
    times = [entry["at"] for entry in journey["timeline"]]
    assert times == sorted(times)

    by_stage = {entry["stage"]: entry for entry in journey["timeline"]}
    assert by_stage["queued"]["details"]["ticket"] == ticket["display_number"]
    assert by_stage["called"]["details"]["counter"] == "3"
    assert by_stage["order_placed"]["details"]["test_code"] == CBC
    charged = sorted(e["details"]["amount_fen"] for e in journey["timeline"] if e["stage"] == "charge_posted")
    assert charged == sorted(c["amount_fen"] for c in made["charges"])
    payment = made["payment"]
    paid = [e for e in journey["timeline"] if e["stage"] == "payment"]
    assert [(e["details"]["payment_id"], e["details"]["amount_fen"]) for e in paid] == [
        (payment["id"], payment["amount_fen"])
    ]
    assert set(payment["charge_ids"]) == {c["id"] for c in made["charges"]}

    waits = {
        (w["stage"], w["details"].get("ticket") or w["details"].get("order_id")): w for w in journey["waits"]
    }
    assert journey["wait_target_minutes"] == 10
    for key in [
        ("registration_to_triage", None),
        ("queue", ticket["display_number"]),
        ("order_to_report", order["id"]),
    ]:
        wait = waits[key]
        assert wait["waiting"] is False and wait["ended_at"] is not None
        assert 0 <= wait["minutes"] < 10 and wait["exceeded"] is False  # the test ran in seconds
    # a prepaying patient waits at the cashier: one charge_to_payment wait per charge, ended by the payment
    to_payment = {w["details"]["charge_id"]: w for w in journey["waits"] if w["stage"] == "charge_to_payment"}
    assert to_payment.keys() == set(payment["charge_ids"])
    for wait in to_payment.values():
        assert wait["waiting"] is False and wait["ended_at"] == paid[0]["at"] and wait["minutes"] >= 0


def test_journey_withholds_what_the_client_may_not_read(gateway: Gateway) -> None:
    visit = full_visit(gateway)["visit"]
    journey = ok(gateway.doctor.get(f"/v1/visits/{visit['id']}/journey"))  # no billing:read
    assert journey["withheld"] == [{"service": "billing", "part": "account", "scope": "billing:read"}]
    assert "charge_posted" not in stages(journey) and "queued" in stages(journey)
    assert_problem(gateway.lab.get(f"/v1/visits/{visit['id']}/journey"), 403)  # no registration:read
    assert_problem(gateway.his.get("/v1/visits/no-such-visit/journey"), 404)


def test_an_app_sees_the_journey_of_its_own_patient_only(gateway: Gateway) -> None:
    full = full_visit(gateway)
    mine, other = full["visit"], full_visit(gateway)["visit"]
    session = patient_session(gateway, full["patient"])
    with httpx.Client(
        base_url=gateway.app.base_url,
        headers=dict(gateway.app.headers) | {"x-patient-token": session["token"]},
        timeout=30,
    ) as app:
        journey = ok(app.get(f"/v1/visits/{mine['id']}/journey"))
        assert journey["patient_id"] == mine["patient_id"] and "report_final" in stages(journey)
        not_mine = assert_problem(app.get(f"/v1/visits/{other['id']}/journey"), 404)
        unknown = assert_problem(app.get("/v1/visits/no-such-visit/journey"), 404)
    assert not_mine["type"] == unknown["type"]  # another patient's visit looks like no visit at all


def test_journey_is_partial_while_results_is_down(system: System, gateway: Gateway) -> None:
    visit = full_visit(gateway)["visit"]
    system.stop_service("results")
    try:
        journey = ok(gateway.his.get(f"/v1/visits/{visit['id']}/journey"))
    finally:
        system.start_service("results")

    assert journey["partial"] is True
    assert {(m["service"], m["part"]) for m in journey["missing"]} == {
        ("results", "orders"),
        ("results", "reports"),
    }
    assert all(m["status"] in (502, 503, 504) and m["detail"] for m in journey["missing"])
    seen = stages(journey)
    assert {"registered", "triaged", "queued", "called", "charge_posted"} <= set(seen)
    assert not {"order_placed", "order_released", "report_final"} & set(seen)

    # leave results re-admitted for the tests after this one
    eventually(
        lambda: gateway.anonymous.get("/readyz").json()["circuits"]["results"] != "open",
        what="results to be re-admitted",
    )
    ok(gateway.doctor.get(f"/v1/visits/{visit['id']}/orders"))
