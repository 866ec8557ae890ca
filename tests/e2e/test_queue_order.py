"""Who is next and why, through the real gateway: the order route reads the live queue under its rules."""

from typing import Any

from tests.e2e.clients import Gateway, assert_problem, ok, unique_department


def queued(
    gateway: Gateway,
    department: str,
    *,
    level: str | None = None,
    priority: str = "normal",
    **ticket: str,
) -> Any:
    patient = ok(gateway.his.post("/v1/patients", json={"unidentified": True}), 201)
    visit = ok(
        gateway.his.post(
            "/v1/visits", json={"patient_id": patient["id"], "kind": "emergency", "department": department}
        ),
        201,
    )
    if level:
        ok(gateway.nurse.post("/v1/assessments", json={"visit_id": visit["id"], "level": level}), 201)
    body = {"visit_id": visit["id"], "priority": priority} | ticket
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


def test_call_next_follows_the_rules_a_nurse_sets_in_the_queue_settings(gateway: Gateway) -> None:
    """Rules, service classes and the cap per station as data in the queue's settings, through the
    gateway: the order and call-next agree, for the same reason."""
    department = unique_department()
    settings = {"kind": "room", "station_cap": 1, "rules": {"shortest_work_first": True}}
    assert ok(gateway.nurse.put(f"/v1/queues/{department}/settings", json=settings))["rules_configured"]
    for code in ("1", "2"):
        ok(gateway.nurse.put(f"/v1/queues/{department}/stations/{code}", json={"label": f"{code}号诊室"}))
    level_two = queued(gateway, department, level="II")
    long_job = queued(gateway, department, service_class="complex")
    short_job = queued(gateway, department, service_class="complex")  # until the desk knows better
    level_one = queued(gateway, department, level="I")
    ok(gateway.nurse.put(f"/v1/tickets/{short_job['id']}/service-class", json={"service_class": "simple"}))

    order = ok(gateway.nurse.get(f"/v1/queues/{department}/order"))["order"]
    assert [e["ticket_id"] for e in order] == [
        level_one["id"],
        level_two["id"],
        short_job["id"],
        long_job["id"],
    ]
    assert order[2]["reason"].endswith("simple (~3 min), shorter work first")
    called = ok(gateway.doctor.post(f"/v1/queues/{department}/call-next", json={"counter": "1"}))
    assert (called["id"], called["reason"]) == (level_one["id"], order[0]["reason"])
    full = assert_problem(
        gateway.doctor.post(f"/v1/queues/{department}/call-next", json={"counter": "1"}), 409
    )
    assert full["type"].endswith("/station-full")
    assert (
        ok(gateway.doctor.post(f"/v1/queues/{department}/call-next", json={"counter": "2"}))["id"]
        == level_two["id"]
    )
    ok(gateway.doctor.post(f"/v1/tickets/{level_one['id']}/finish"))
    assert (
        ok(gateway.doctor.post(f"/v1/queues/{department}/call-next", json={"counter": "1"}))["id"]
        == short_job["id"]
    )
    assert_problem(
        gateway.app.put(f"/v1/tickets/{long_job['id']}/service-class", json={"service_class": "simple"}), 403
    )
