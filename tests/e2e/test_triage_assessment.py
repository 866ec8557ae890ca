"""Triage assessment in depth through the real gateway: vital signs and their bounds, the suggested level
and the nurse's override, the green channel flag, re-triage timers (`triage.overdue` from the running
service's background job), `triage.level_changed`, and routing to a department's queue (分诊)."""

from typing import Any

import httpx

from tests.e2e.clients import (
    Gateway,
    assert_problem,
    eventually,
    ok,
    register_patient,
    unique_department,
    visit_account,
)

PAGE = 100


def open_visit(gateway: Gateway, department: str, kind: str = "emergency") -> dict[str, Any]:
    patient = register_patient(gateway.his)
    body = {"patient_id": patient["id"], "kind": kind, "department": department}
    visit: dict[str, Any] = ok(gateway.his.post("/v1/visits", json=body), 201)
    return visit


def events_of(client: httpx.Client, event_type: str, visit_id: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    after = 0
    while True:
        page = ok(client.get("/v1/events", params={"after": after, "limit": PAGE, "type": event_type}))
        found += [e for e in page["events"] if e["visit_id"] == visit_id]
        if page["next_after"] == after:
            return found
        after = page["next_after"]


def test_vital_signs_suggest_the_level_and_an_override_needs_a_reason(gateway: Gateway) -> None:
    visit = open_visit(gateway, unique_department())
    vitals = {"heart_rate": 130, "systolic_bp": 85, "diastolic_bp": 50, "spo2": 95, "consciousness": "A"}
    body = {"visit_id": visit["id"], "chief_complaint": "呕血2小时", "vitals": vitals, "pain_score": 4}
    suggested = ok(gateway.nurse.post("/v1/assessments", json=body), 201)
    assert (suggested["level"], suggested["suggested_by"], suggested["zone"]) == ("II", "systolic_bp", "red")
    assert suggested["suggestion_reason"] == "level II: systolic BP 85 < 90"
    assert suggested["green_channel"] is True

    problem = assert_problem(gateway.nurse.post("/v1/assessments", json=body | {"level": "III"}), 422)
    assert problem["type"].endswith("/override-reason-required")
    overridden = ok(
        gateway.nurse.post(
            "/v1/assessments", json=body | {"level": "I", "override_reason": "面色苍白、四肢湿冷，休克早期"}
        ),
        201,
    )
    assert (overridden["level"], overridden["suggested_level"]) == ("I", "II")
    listed = ok(gateway.doctor.get(f"/v1/visits/{visit['id']}/assessments"))
    assert [(a["level"], a["suggested_level"], a["override_reason"]) for a in listed] == [
        ("II", "II", None),
        ("I", "II", "面色苍白、四肢湿冷，休克早期"),
    ]
    eventually(
        lambda: (
            [e["data"]["to_level"] for e in events_of(gateway.his, "triage.level_changed", visit["id"])]
            == ["I"]
        ),
        what="triage.level_changed in the hub's log",
    )


def test_nonsense_vital_signs_are_refused_and_nothing_is_stored(gateway: Gateway) -> None:
    visit = open_visit(gateway, unique_department())
    for vitals in (
        {"heart_rate": 900},
        {"spo2": 120},
        {"temperature": 370},
        {"systolic_bp": 60, "diastolic_bp": 90},
    ):
        response = gateway.nurse.post("/v1/assessments", json={"visit_id": visit["id"], "vitals": vitals})
        assert_problem(response, 422)
    assert_problem(
        gateway.nurse.post(
            "/v1/assessments", json={"visit_id": visit["id"], "level": "IV", "pain_score": 12}
        ),
        422,
    )
    assert ok(gateway.doctor.get(f"/v1/visits/{visit['id']}/assessments")) == []


def test_a_level_i_patient_left_waiting_is_flagged_overdue_and_emitted_once(gateway: Gateway) -> None:
    department = unique_department()
    visit = open_visit(gateway, department)
    ok(gateway.nurse.post(f"/v1/queues/{department}/tickets", json={"visit_id": visit["id"]}), 201)
    body = {"visit_id": visit["id"], "vitals": {"spo2": 75, "heart_rate": 130}}
    assessment = ok(gateway.nurse.post("/v1/assessments", json=body), 201)
    assert assessment["level"] == "I"  # limit 0 minutes: overdue as soon as any time passes

    def flagged() -> bool:
        (ticket,) = ok(gateway.nurse.get(f"/v1/queues/{department}"))["waiting"]
        return bool(ticket["overdue"]) and ticket["level"] == "I" and ticket["rank"] == 0

    eventually(flagged, what="the queue to flag the waiting level-I patient overdue")
    eventually(
        lambda: len(events_of(gateway.his, "triage.overdue", visit["id"])) == 1,
        what="the re-triage timer's triage.overdue in the hub's log",
    )
    (overdue,) = events_of(gateway.his, "triage.overdue", visit["id"])
    assert overdue["data"]["assessment_id"] == assessment["id"]
    # The timer keeps running: it does not emit again for the same assessment.
    marker = open_visit(gateway, department)
    ok(gateway.nurse.post("/v1/assessments", json={"visit_id": marker["id"], "level": "I"}), 201)
    ok(gateway.nurse.post(f"/v1/queues/{department}/tickets", json={"visit_id": marker["id"]}), 201)
    eventually(
        lambda: len(events_of(gateway.his, "triage.overdue", marker["id"])) == 1,
        what="a later round of the timer",
    )
    assert len(events_of(gateway.his, "triage.overdue", visit["id"])) == 1


def test_outpatient_triage_routes_the_patient_to_the_department_queue(gateway: Gateway) -> None:
    desk, cardiology = unique_department(), unique_department()
    visit = open_visit(gateway, desk, kind="outpatient")
    body = {"visit_id": visit["id"], "chief_complaint": "心悸一周", "level": "IV", "department": cardiology}
    routed = ok(gateway.nurse.post("/v1/assessments", json=body), 201)
    queue = ok(gateway.nurse.get(f"/v1/queues/{cardiology}"))
    assert [t["id"] for t in queue["waiting"]] == [routed["ticket_id"]]
    assert queue["waiting"][0]["visit_id"] == visit["id"]
    assert ok(gateway.nurse.get(f"/v1/queues/{desk}"))["waiting"] == []


def test_level_i_or_ii_switches_an_emergency_visit_to_the_green_channel(gateway: Gateway) -> None:
    visit = open_visit(gateway, unique_department())
    assert visit["payment_mode"] == "prepay"
    body = {"visit_id": visit["id"], "vitals": {"systolic_bp": 80, "diastolic_bp": 50}}
    assert ok(gateway.nurse.post("/v1/assessments", json=body), 201)["level"] == "II"
    eventually(
        lambda: ok(gateway.his.get(f"/v1/visits/{visit['id']}"))["payment_mode"] == "green_channel",
        what="registration to put the level-II visit on the green channel",
    )
    eventually(
        lambda: (visit_account(gateway, visit["id"]) or {}).get("payment_mode") == "green_channel",
        what="billing to follow",
    )
    (switched,) = eventually(
        lambda: events_of(gateway.his, "visit.green_channel", visit["id"]) or None, what="the hub's log"
    )
    assert switched["data"]["level"] == "II"
