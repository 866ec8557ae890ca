"""The directory and the schedule: departments, doctors, weekly templates, exceptions, generated and ad-hoc
sessions and their slots."""

from datetime import date, time, timedelta
from typing import Any

from fastapi.testclient import TestClient

from services.registration.schedules import local_instant, slot_capacities
from tests.registration.factories import create_clinic_session, create_department, create_doctor

MONDAY = date(2031, 3, 3)


def template(client: TestClient, **overrides: Any) -> dict[str, Any]:
    department = overrides.pop("department", None) or create_department(client)["code"]
    doctor_id = overrides.pop("doctor_id", None) or create_doctor(client, department)["id"]
    body = {
        "department": department,
        "doctor_id": doctor_id,
        "weekday": 0,
        "period": "morning",
        "quota": 10,
        "slot_minutes": 30,
        "valid_from": MONDAY.isoformat(),
    } | overrides
    response = client.post("/schedule-templates", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def generate(client: TestClient, department: str, from_date: date, days: int) -> dict[str, Any]:
    body = {
        "from_date": from_date.isoformat(),
        "to_date": (from_date + timedelta(days=days - 1)).isoformat(),
        "department": department,
    }
    response = client.post("/clinic-sessions/generate", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def test_the_directory_lists_departments_and_doctors_with_title_expert_and_profile(
    client: TestClient,
) -> None:
    code = create_department(client, floor="5F", zone="C")["code"]
    expert = create_doctor(client, code, title="chief", expert=True, profile="心律失常")
    create_doctor(client, code, name="王医生", title="resident")
    assert {"code": code, "name": "心内科", "floor": "5F", "zone": "C"} in client.get("/departments").json()
    doctors = client.get("/doctors", params={"department": code}).json()
    assert len(doctors) == 2
    assert client.get("/doctors", params={"department": code, "expert": True}).json() == [expert]
    assert client.get(f"/doctors/{expert['id']}").json()["profile"] == "心律失常"


def test_a_department_code_is_taken_once_and_a_doctor_needs_a_known_department(client: TestClient) -> None:
    code = create_department(client)["code"]
    again = client.post("/departments", json={"code": code, "name": "x"})
    assert again.status_code == 409 and again.json()["type"].endswith("/duplicate-department")
    stray = client.post("/doctors", json={"name": "x", "title": "chief", "department": "no-such-dept"})
    assert stray.status_code == 404
    assert (
        client.post("/doctors", json={"name": "x", "title": "professor", "department": code}).status_code
        == 422
    )
    assert client.get("/doctors/no-such-doctor").status_code == 404


def test_generation_makes_one_session_per_template_and_date_and_a_rerun_makes_none(
    client: TestClient,
) -> None:
    weekly = template(client)
    department = weekly["department"]
    first = generate(client, department, MONDAY, 14)
    assert len(first["created"]) == 2 and first["existing"] == 0
    again = generate(client, department, MONDAY - timedelta(days=7), 21)  # the week before: not valid yet
    assert again["created"] == [] and again["existing"] == 2
    sessions = client.get("/clinic-sessions", params={"department": department}).json()
    assert [s["date"] for s in sessions] == [MONDAY.isoformat(), (MONDAY + timedelta(days=7)).isoformat()]
    session = sessions[0]
    assert session["starts_at"] == "2031-03-03T00:00:00Z"  # 08:00 in Shanghai
    assert session["ends_at"] == "2031-03-03T04:00:00Z"
    assert session["booking_opens_at"] == "2031-02-24T00:00:00Z"  # 7 days before, at 08:00 local
    assert session["booking_closes_at"] == session["starts_at"]
    assert session["template_id"] == weekly["id"] and session["status"] == "open"


def test_exceptions_skip_a_date_or_override_its_quota_and_times(client: TestClient) -> None:
    weekly = template(client)
    skip = {"date": MONDAY.isoformat(), "action": "skip", "reason": "学术会议"}
    assert client.post(f"/schedule-templates/{weekly['id']}/exceptions", json=skip).status_code == 201
    later = MONDAY + timedelta(days=7)
    override = {
        "date": later.isoformat(),
        "action": "override",
        "quota": 2,
        "starts_at": "09:00",
        "ends_at": "10:00",
    }
    assert client.post(f"/schedule-templates/{weekly['id']}/exceptions", json=override).status_code == 201
    result = generate(client, weekly["department"], MONDAY, 14)
    assert result["skipped"] == 1 and len(result["created"]) == 1
    session = client.get(f"/clinic-sessions/{result['created'][0]}").json()
    assert session["quota"] == 2 and session["starts_at"] == "2031-03-10T01:00:00Z"
    slots = client.get(f"/clinic-sessions/{session['id']}/slots").json()["slots"]
    assert [(s["capacity"], s["free"]) for s in slots] == [(1, 1), (1, 1)]


def test_an_exception_must_fall_on_the_templates_weekday_and_be_consistent(client: TestClient) -> None:
    weekly = template(client)
    tuesday = {"date": (MONDAY + timedelta(days=1)).isoformat(), "action": "skip"}
    assert client.post(f"/schedule-templates/{weekly['id']}/exceptions", json=tuesday).status_code == 422
    empty = {"date": MONDAY.isoformat(), "action": "override"}
    assert client.post(f"/schedule-templates/{weekly['id']}/exceptions", json=empty).status_code == 422
    assert (
        client.post(
            "/schedule-templates/nope/exceptions", json={**tuesday, "date": MONDAY.isoformat()}
        ).status_code
        == 404
    )


def test_an_override_whose_times_fit_no_slot_is_refused_and_generation_goes_on(client: TestClient) -> None:
    weekly = template(client)  # 08:00-12:00 in slots of its own length
    exceptions = f"/schedule-templates/{weekly['id']}/exceptions"
    too_short = {"date": MONDAY.isoformat(), "action": "override", "starts_at": "09:00", "ends_at": "09:01"}
    refused = client.post(exceptions, json=too_short)
    assert refused.status_code == 422 and refused.json()["type"].endswith("schedule-refused")
    after_the_end = {"date": MONDAY.isoformat(), "action": "override", "starts_at": "13:00"}
    assert client.post(exceptions, json=after_the_end).status_code == 422
    result = generate(client, weekly["department"], MONDAY, 14)
    assert len(result["created"]) == 2  # the refused exceptions left nothing behind to block the run


def test_the_fee_item_follows_the_doctors_title_and_expert_status(client: TestClient) -> None:
    code = create_department(client)["code"]
    expected = {
        ("resident", False): ("110200001", 2000),
        ("attending", False): ("110200001", 2000),
        ("associate_chief", False): ("110200002", 3000),
        ("chief", False): ("110200003", 4000),
        ("chief", True): ("110200004", 10000),
    }
    for (title, expert), (item, fen) in expected.items():
        doctor = create_doctor(client, code, title=title, expert=expert)
        session = create_clinic_session(client, department=code, doctor_id=doctor["id"])
        assert (session["fee_item"], session["fee_fen"]) == (item, fen)


def test_a_template_refuses_bad_input(client: TestClient) -> None:
    code = create_department(client)["code"]
    doctor = create_doctor(client, code)
    other = create_doctor(client, create_department(client)["code"])
    base = {"department": code, "doctor_id": doctor["id"], "weekday": 0, "period": "morning", "quota": 5}
    base |= {"valid_from": MONDAY.isoformat()}
    for change in (
        {"quota": 0},
        {"quota": -1},
        {"quota": 10**9},
        {"slot_minutes": 1},
        {"weekday": 7},
        {"starts_at": "12:00", "ends_at": "08:00"},
        {"valid_until": (MONDAY - timedelta(days=1)).isoformat()},
        {"valid_from": "2031-02-30"},
        {"valid_from": "0001-01-01"},  # the calendar's ends: no hospital day, no 500
        {"valid_from": MONDAY.isoformat(), "valid_until": "9999-12-31"},
        {"slot_minutes": 240, "starts_at": "08:00", "ends_at": "09:00"},  # no slot fits
    ):
        response = client.post("/schedule-templates", json=base | change)
        assert response.status_code == 422, (change, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
    assert client.post("/schedule-templates", json=base | {"doctor_id": other["id"]}).status_code == 422
    assert client.post("/schedule-templates", json=base | {"doctor_id": "nobody"}).status_code == 404
    too_long = {"from_date": "2031-01-01", "to_date": "2031-12-31"}
    assert client.post("/clinic-sessions/generate", json=too_long).status_code == 422
    backwards = {"from_date": "2031-01-02", "to_date": "2031-01-01"}
    assert client.post("/clinic-sessions/generate", json=backwards).status_code == 422
    at_the_end = {"from_date": "9999-12-25", "to_date": "9999-12-31"}
    assert client.post("/clinic-sessions/generate", json=at_the_end).status_code == 422


def test_sessions_are_found_by_department_doctor_and_date(client: TestClient) -> None:
    session = create_clinic_session(client)
    by_doctor = client.get("/clinic-sessions", params={"doctor_id": session["doctor_id"]}).json()
    assert [s["id"] for s in by_doctor] == [session["id"]]
    on_day = client.get(
        "/clinic-sessions", params={"department": session["department"], "date": session["date"]}
    )
    assert [s["id"] for s in on_day.json()] == [session["id"]]
    assert client.get("/clinic-sessions", params={"date": "2031-13-01"}).status_code == 400
    assert client.get("/clinic-sessions/nope").status_code == 404
    assert client.get("/clinic-sessions/nope/slots").status_code == 404


def test_the_quota_is_spread_over_the_slots() -> None:
    base = date(2031, 1, 1)
    starts, ends = local_instant(base, time(8)), local_instant(base, time(10))
    assert [n for _, n in slot_capacities(starts_at=starts, ends_at=ends, slot_minutes=30, quota=10)] == [
        3,
        2,
        3,
        2,
    ]
    spread = slot_capacities(starts_at=starts, ends_at=ends, slot_minutes=30, quota=2)
    assert [(at - starts, n) for at, n in spread] == [(timedelta(0), 1), (timedelta(hours=1), 1)]
