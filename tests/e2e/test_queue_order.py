"""Who is next and why, through the real gateway: the order route reads the live queue under its rules."""

from typing import Any

from tests.e2e.clients import Gateway, assert_problem, ok, unique_department


def queued(gateway: Gateway, department: str, *, level: str | None = None, priority: str = "normal") -> Any:
    patient = ok(gateway.his.post("/v1/patients", json={"unidentified": True}), 201)
    visit = ok(
        gateway.his.post(
            "/v1/visits", json={"patient_id": patient["id"], "kind": "emergency", "department": department}
        ),
        201,
    )
    if level:
        ok(gateway.nurse.post("/v1/assessments", json={"visit_id": visit["id"], "level": level}), 201)
    body = {"visit_id": visit["id"], "priority": priority}
    return ok(gateway.nurse.post(f"/v1/queues/{department}/tickets", json=body), 201)


def test_a_nurse_reads_who_is_next_and_why(gateway: Gateway) -> None:
    department = unique_department()
    normal = queued(gateway, department)
    elderly = queued(gateway, department, priority="priority")
    urgent = queued(gateway, department, level="II")

    answer = ok(gateway.nurse.get(f"/v1/queues/{department}/order"))
    assert [entry["ticket_id"] for entry in answer["order"]] == [urgent["id"], elderly["id"], normal["id"]]
    assert answer["order"][0]["reason"].startswith("level II, arrived ")
    assert answer["order"][0]["reason"].endswith("green channel: ahead of everyone")
    assert answer["order"][1]["reason"].endswith("ahead of normal patients")
    assert [entry["display_number"] for entry in answer["order"]] == [
        t["display_number"] for t in (urgent, elderly, normal)
    ]
    # The live queue agrees: the next call takes the first of the order.
    called = ok(gateway.nurse.post(f"/v1/queues/{department}/call-next", json={}))
    assert called["id"] == urgent["id"]
    assert len(ok(gateway.nurse.get(f"/v1/queues/{department}/order"))["order"]) == 2

    # The waiting-room screen and a patient's app see no order (it names tickets and triage levels).
    assert_problem(gateway.board.get(f"/v1/queues/{department}/order"), 403)
    assert_problem(gateway.app.get(f"/v1/queues/{department}/order"), 403)
