"""Bookings sent at the same moment over real HTTP against a served registration (SQLite and PostgreSQL):
the last seat goes to exactly one, a patient racing itself books once, a key sent twenty times books once."""

import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tests.registration.factories import run_together, staff

RACERS = 50


def clinic_session(client: httpx.Client, *, quota: int) -> dict[str, Any]:
    code = f"dept-{uuid.uuid4().hex[:8]}"
    assert client.post("/departments", json={"code": code, "name": "心内科"}).status_code == 201
    doctor = client.post(
        "/doctors", json={"name": "李医生", "title": "chief", "expert": True, "department": code}
    )
    starts_at = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    body = {
        "department": code,
        "doctor_id": doctor.json()["id"],
        "date": starts_at.date().isoformat(),
        "period": "morning",
        "starts_at": starts_at.isoformat(),
        "ends_at": (starts_at + timedelta(hours=1)).isoformat(),
        "quota": quota,
        "slot_minutes": 60,
    }
    response = client.post("/clinic-sessions", json=body)
    assert response.status_code == 201, response.text
    session: dict[str, Any] = response.json()
    return session


def patients(client: httpx.Client, count: int) -> list[str]:
    return [client.post("/patients", json={"unidentified": True}).json()["id"] for _ in range(count)]


def booking(
    session_id: str, patient_id: str, key: str | None = None
) -> Callable[[httpx.Client], httpx.Response]:
    headers = {"Idempotency-Key": key} if key else {}
    body = {"clinic_session_id": session_id, "patient_id": patient_id, "channel": "app"}
    return lambda client: client.post("/appointments", json=body, headers=headers)


def test_fifty_bookings_of_the_last_seat_give_one_201_and_49_clear_409s(served_registration: str) -> None:
    with staff(served_registration) as client:
        session = clinic_session(client, quota=2)
        first, *racers = patients(client, RACERS + 1)
        assert booking(session["id"], first)(client).status_code == 201
    responses = run_together(served_registration, [booking(session["id"], p) for p in racers])
    assert Counter(r.status_code for r in responses) == {201: 1, 409: RACERS - 1}
    refusals = {r.json()["type"].rsplit("/", 1)[1] for r in responses if r.status_code == 409}
    assert refusals == {"session-full"}
    with staff(served_registration) as client:
        slots = client.get(f"/clinic-sessions/{session['id']}/slots").json()
        booked = client.get("/appointments", params={"clinic_session_id": session["id"]}).json()
    assert slots["free"] == 0 and [s["capacity"] for s in slots["slots"]] == [2]
    assert len(booked) == 2 and {a["status"] for a in booked} == {"booked"}


def test_a_patient_racing_itself_books_once(served_registration: str) -> None:
    with staff(served_registration) as client:
        session = clinic_session(client, quota=20)
        [patient] = patients(client, 1)
    responses = run_together(served_registration, [booking(session["id"], patient)] * 10)
    assert Counter(r.status_code for r in responses) == {201: 1, 409: 9}
    with staff(served_registration) as client:
        assert client.get(f"/clinic-sessions/{session['id']}/slots").json()["free"] == 19
        assert len(client.get("/appointments", params={"patient_id": patient}).json()) == 1


def test_the_same_idempotency_key_sent_twenty_times_at_once_books_once(served_registration: str) -> None:
    with staff(served_registration) as client:
        session = clinic_session(client, quota=20)
        [patient] = patients(client, 1)
    key = str(uuid.uuid4())
    responses = run_together(served_registration, [booking(session["id"], patient, key)] * 20)
    assert {r.status_code for r in responses} <= {201, 409}
    assert len({r.json()["id"] for r in responses if r.status_code == 201}) == 1
    with staff(served_registration) as client:
        assert len(client.get("/appointments", params={"patient_id": patient}).json()) == 1
        again = booking(session["id"], patient, key)(client)  # and any retry afterwards gets the first answer
        assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"


def test_generation_racing_itself_creates_each_session_once(served_registration: str) -> None:
    with staff(served_registration) as client:
        code = f"dept-{uuid.uuid4().hex[:8]}"
        assert client.post("/departments", json={"code": code, "name": "心内科"}).status_code == 201
        doctor = client.post("/doctors", json={"name": "李医生", "title": "chief", "department": code}).json()
        weekly = {"department": code, "doctor_id": doctor["id"], "weekday": 2, "period": "afternoon"}
        weekly |= {"quota": 12, "valid_from": "2031-03-01"}
        assert client.post("/schedule-templates", json=weekly).status_code == 201
    generate = {"from_date": "2031-03-01", "to_date": "2031-04-30", "department": code}
    responses = run_together(
        served_registration, [lambda c: c.post("/clinic-sessions/generate", json=generate)] * 5
    )
    assert {r.status_code for r in responses} == {200}
    created = [session_id for r in responses for session_id in r.json()["created"]]
    assert len(created) == len(set(created)) == 9  # the Wednesdays of March and April 2031
    with staff(served_registration) as client:
        sessions = client.get("/clinic-sessions", params={"department": code}).json()
    assert sorted(s["id"] for s in sessions) == sorted(created)
