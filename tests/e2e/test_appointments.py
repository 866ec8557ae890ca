"""Appointments end to end, through the gateway with every process running: the directory, schedules, booking
rules, holds, cancellation, check-in into the queue, no-shows, walk-ins, patient-bound devices and bad input.

The system runs with a 2-second hold, a 90-minute no-show grace and a fast sweep (tests/e2e/conftest.py).
Times are relative to now, so each test builds its own sessions around the moment it runs.
"""

import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from kit.testing import eventually, run_together
from tests.e2e.clients import Gateway, assert_problem, ok, patient_session, register_patient, visit_account

RACERS = 50


def now() -> datetime:
    return datetime.now(UTC).replace(second=0, microsecond=0)


def directory(gateway: Gateway, **doctor: Any) -> tuple[str, str]:
    code = f"dept-{uuid.uuid4().hex[:8]}"
    ok(gateway.admin.post("/v1/departments", json={"code": code, "name": "心内科", "floor": "3F"}), 201)
    body = {"name": "李医生", "title": "chief", "department": code} | doctor
    return code, ok(gateway.admin.post("/v1/doctors", json=body), 201)["id"]


def clinic_session(
    gateway: Gateway,
    *,
    starts_in: timedelta,
    hours: float = 2,
    quota: int = 8,
    slot_minutes: int = 15,
    **extra: Any,
) -> dict[str, Any]:
    """An ad-hoc session of a fresh department and doctor, starting `starts_in` from now."""
    code, doctor_id = directory(gateway)
    starts_at = now() + starts_in
    body = {
        "department": code,
        "doctor_id": doctor_id,
        "date": starts_at.date().isoformat(),
        "period": "morning",
        "starts_at": starts_at.isoformat(),
        "ends_at": (starts_at + timedelta(hours=hours)).isoformat(),
        "quota": quota,
        "slot_minutes": slot_minutes,
    } | extra
    session: dict[str, Any] = ok(gateway.his.post("/v1/clinic-sessions", json=body), 201)
    return session


def patient(gateway: Gateway) -> str:
    patient_id: str = ok(gateway.his.post("/v1/patients", json={"unidentified": True}), 201)["id"]
    return patient_id


def book(
    client: httpx.Client,
    session_id: str,
    patient_id: str,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> httpx.Response:
    body = {"clinic_session_id": session_id, "patient_id": patient_id, "channel": "phone"} | extra
    return client.post("/v1/appointments", json=body, headers=headers)


def slot_at(session: dict[str, Any], minutes: int) -> str:
    return (datetime.fromisoformat(session["starts_at"]) + timedelta(minutes=minutes)).isoformat()


def problem_slug(response: httpx.Response, status: int) -> str:
    return str(assert_problem(response, status)["type"]).rsplit("/", 1)[1]


def test_the_directory_and_schedule_are_published_to_every_client(gateway: Gateway) -> None:
    code, doctor_id = directory(gateway, expert=True, profile="心律失常介入治疗")
    weekly = {
        "department": code,
        "doctor_id": doctor_id,
        "weekday": 5,
        "period": "full_day",
        "quota": 30,
        "slot_minutes": 30,
        "kind": "weekend",
        "valid_from": "2031-03-01",
    }
    ok(gateway.admin.post("/v1/schedule-templates", json=weekly), 201)
    generate = {"from_date": "2031-03-01", "to_date": "2031-03-31", "department": code}
    created = ok(gateway.his.post("/v1/clinic-sessions/generate", json=generate))["created"]
    assert len(created) == 5  # the Saturdays of March 2031
    again = ok(gateway.his.post("/v1/clinic-sessions/generate", json=generate))
    assert again["created"] == [] and again["existing"] == 5
    for reader in (gateway.board, gateway.lab, gateway.doctor, gateway.anonymous):
        if reader is gateway.anonymous:
            assert gateway.anonymous.get("/v1/departments").status_code == 401
            continue
        assert code in [d["code"] for d in ok(reader.get("/v1/departments"))]
        [doctor] = ok(reader.get("/v1/doctors", params={"department": code}))
        assert doctor["expert"] and doctor["profile"] == "心律失常介入治疗"
        sessions = ok(reader.get("/v1/clinic-sessions", params={"doctor_id": doctor_id}))
        assert [s["date"] for s in sessions][:2] == ["2031-03-01", "2031-03-08"]
        assert sessions[0]["fee_item"] == "110200004" and sessions[0]["kind"] == "weekend"
        slots = ok(reader.get(f"/v1/clinic-sessions/{created[0]}/slots"))
        assert slots["free"] == 30 and len(slots["slots"]) == 19  # 08:00–17:30 in 30-minute slots
    assert gateway.board.post("/v1/departments", json={"code": "x", "name": "x"}).status_code == 403
    assert gateway.nurse.post("/v1/clinic-sessions/generate", json=generate).status_code == 403


def test_fifty_bookings_of_the_last_free_slot_give_one_201_and_49_409s(gateway: Gateway) -> None:
    session = clinic_session(gateway, starts_in=timedelta(days=1), quota=3, slot_minutes=60, hours=1)
    racers = [patient(gateway) for _ in range(RACERS)]
    for _ in range(2):
        ok(book(gateway.his, session["id"], patient(gateway)), 201)
    responses = run_together(
        [lambda p=p: book(gateway.his, session["id"], p) for p in racers]  # type: ignore[misc]
    )
    assert Counter(r.status_code for r in responses) == {201: 1, 409: RACERS - 1}
    assert {problem_slug(r, 409) for r in responses if r.status_code == 409} == {"session-full"}
    slots = ok(gateway.his.get(f"/v1/clinic-sessions/{session['id']}/slots"))
    assert slots["free"] == 0
    booked = ok(gateway.his.get("/v1/appointments", params={"clinic_session_id": session["id"]}))
    assert len(booked) == 3


def test_the_same_idempotency_key_sent_twenty_times_books_once(gateway: Gateway) -> None:
    session = clinic_session(gateway, starts_in=timedelta(days=1))
    patient_id = patient(gateway)
    key = {"Idempotency-Key": str(uuid.uuid4())}
    answers = [book(gateway.his, session["id"], patient_id, headers=key) for _ in range(20)]
    assert {a.status_code for a in answers} == {201}
    assert len({a.json()["id"] for a in answers}) == 1
    assert len(ok(gateway.his.get("/v1/appointments", params={"patient_id": patient_id}))) == 1
    assert ok(gateway.his.get(f"/v1/clinic-sessions/{session['id']}/slots"))["free"] == 7


def test_one_patient_holds_one_booking_per_session(gateway: Gateway) -> None:
    session = clinic_session(gateway, starts_in=timedelta(days=1))
    patient_id = patient(gateway)
    ok(book(gateway.his, session["id"], patient_id), 201)
    assert (
        problem_slug(book(gateway.nurse, session["id"], patient_id, channel="onsite"), 409)
        == "already-booked"
    )


def test_an_expired_hold_frees_its_seat(gateway: Gateway) -> None:
    session = clinic_session(gateway, starts_in=timedelta(days=1), quota=1, slot_minutes=60, hours=1)
    held = ok(book(gateway.his, session["id"], patient(gateway), channel="app", hold=True), 201)
    assert held["status"] == "proposed" and held["hold_expires_at"]
    other = patient(gateway)
    first_try = book(gateway.his, session["id"], other)
    if first_try.status_code != 201:  # the 2-second hold may already be over on a slow machine
        assert problem_slug(first_try, 409) == "session-full"
        eventually(
            lambda: book(gateway.his, session["id"], other).status_code == 201,
            what="the lapsed hold to free its seat",
        )
    lapsed = ok(gateway.his.get(f"/v1/appointments/{held['id']}"))
    assert lapsed["status"] == "cancelled" and lapsed["cancel_reason"] == "hold_expired"
    assert problem_slug(gateway.his.post(f"/v1/appointments/{held['id']}/confirm"), 409) == "hold-lapsed"


def test_a_patient_cancels_until_the_cut_off_and_the_desk_after_it(gateway: Gateway) -> None:
    soon = clinic_session(gateway, starts_in=timedelta(hours=1))  # inside the 120-minute cut-off
    later = clinic_session(gateway, starts_in=timedelta(hours=5))
    patient_id = patient(gateway)
    near = ok(book(gateway.his, soon["id"], patient_id), 201)
    far = ok(book(gateway.his, later["id"], patient_id), 201)
    refused = gateway.his.post(f"/v1/appointments/{near['id']}/cancel", json={"reason": "patient"})
    assert problem_slug(refused, 409) == "cancel-cutoff-passed"
    cancelled = ok(gateway.nurse.post(f"/v1/appointments/{near['id']}/cancel", json={"reason": "desk"}))
    assert cancelled["status"] == "cancelled" and cancelled["cancel_reason"] == "desk"
    ok(gateway.his.post(f"/v1/appointments/{far['id']}/cancel", json={"reason": "patient"}))
    assert ok(gateway.his.get(f"/v1/clinic-sessions/{later['id']}/slots"))["free"] == 8
    again = gateway.his.post(f"/v1/appointments/{far['id']}/cancel", json={"reason": "desk"})
    assert problem_slug(again, 409) == "appointment-state"


def test_check_in_windows_and_a_check_in_that_queues_the_patient_with_the_appointment_time(
    gateway: Gateway,
) -> None:
    # Slots every 15 minutes from two hours ago: 45 minutes ago is past the 30-minute late window;
    # in 15 minutes is inside the 60-minute early window; the session three hours ahead is too early.
    session = clinic_session(gateway, starts_in=-timedelta(hours=2), hours=3, quota=12)
    ahead = clinic_session(gateway, starts_in=timedelta(hours=3))
    late = ok(book(gateway.nurse, session["id"], patient(gateway), slot_starts_at=slot_at(session, 75)), 201)
    assert (
        problem_slug(gateway.nurse.post(f"/v1/appointments/{late['id']}/check-in"), 409)
        == "check-in-too-late"
    )
    early = ok(book(gateway.his, ahead["id"], patient(gateway)), 201)
    assert (
        problem_slug(gateway.his.post(f"/v1/appointments/{early['id']}/check-in"), 409)
        == "check-in-too-early"
    )

    on_time = ok(
        book(gateway.his, session["id"], patient(gateway), slot_starts_at=slot_at(session, 135)), 201
    )
    arrived = ok(gateway.nurse.post(f"/v1/appointments/{on_time['id']}/check-in"))
    assert arrived["status"] == "arrived" and arrived["visit"]["slip_code"]
    visit = ok(gateway.his.get(f"/v1/visits/{arrived['visit_id']}"))
    assert (visit["kind"], visit["department"]) == ("outpatient", session["department"])

    def queued() -> dict[str, Any] | None:
        tickets = ok(gateway.nurse.get(f"/v1/visits/{arrived['visit_id']}/tickets"))
        return tickets[0] if tickets else None

    ticket = eventually(queued, what="triage to queue the checked-in patient")
    assert ticket["department"] == session["department"] and ticket["status"] == "waiting"
    assert datetime.fromisoformat(ticket["appointment_at"]) == datetime.fromisoformat(
        on_time["slot_starts_at"]
    )
    charges = eventually(
        lambda: (visit_account(gateway, arrived["visit_id"]) or {}).get("charges"),
        what="billing to charge the consultation fee",
    )
    assert [c["item_code"] for c in charges] == [session["fee_item"]]
    assert problem_slug(gateway.nurse.post(f"/v1/appointments/{on_time['id']}/check-in"), 409) == "not-booked"


def test_a_booking_not_checked_in_after_the_grace_period_becomes_a_noshow(gateway: Gateway) -> None:
    session = clinic_session(gateway, starts_in=-timedelta(hours=2), hours=3, quota=12)
    missed = ok(book(gateway.nurse, session["id"], patient(gateway), channel="onsite"), 201)
    assert datetime.fromisoformat(missed["slot_starts_at"]) == datetime.fromisoformat(session["starts_at"])
    eventually(
        lambda: ok(gateway.his.get(f"/v1/appointments/{missed['id']}"))["status"] == "noshow",
        what="the sweep to mark the no-show",
    )
    recent = ok(
        book(gateway.nurse, session["id"], patient(gateway), slot_starts_at=slot_at(session, 75)), 201
    )
    assert ok(gateway.his.get(f"/v1/appointments/{recent['id']}"))["status"] == "booked"  # within the grace


def test_a_walk_in_draws_on_the_same_quota(gateway: Gateway) -> None:
    session = clinic_session(gateway, starts_in=-timedelta(minutes=30), quota=2, slot_minutes=60, hours=2)
    ok(book(gateway.his, session["id"], patient(gateway)), 201)
    walk_in = ok(book(gateway.nurse, session["id"], patient(gateway), channel="onsite", check_in=True), 201)
    assert walk_in["status"] == "arrived" and walk_in["visit"]["department"] == session["department"]
    full = book(gateway.nurse, session["id"], patient(gateway), channel="onsite", check_in=True)
    assert problem_slug(full, 409) == "session-full"


def test_an_app_books_cancels_and_checks_in_only_for_its_own_patient(gateway: Gateway) -> None:
    session = clinic_session(gateway, starts_in=timedelta(minutes=20))
    later = clinic_session(gateway, starts_in=timedelta(hours=5))
    me = register_patient(gateway.his, "王小明")
    someone = patient(gateway)
    token = patient_session(gateway, me, "app")["token"]
    app = {"x-patient-token": token}

    def as_app(method: str, path: str, **kwargs: Any) -> httpx.Response:
        return gateway.app.request(method, path, headers=app, **kwargs)

    mine = {"clinic_session_id": session["id"], "patient_id": me["id"], "channel": "app"}
    theirs = mine | {"patient_id": someone}
    assert as_app("POST", "/v1/appointments", json=theirs).status_code == 404  # the gateway's binding
    booked = ok(as_app("POST", "/v1/appointments", json=mine), 201)
    their_booking = ok(book(gateway.his, session["id"], someone), 201)
    for action in ("cancel", "check-in", "confirm"):
        assert as_app("POST", f"/v1/appointments/{their_booking['id']}/{action}").status_code == 404
    assert as_app("GET", f"/v1/appointments/{their_booking['id']}").status_code == 404
    assert [a["id"] for a in ok(as_app("GET", "/v1/appointments"))] == [booked["id"]]
    assert ok(as_app("GET", f"/v1/clinic-sessions/{session['id']}/slots"))["free"] == 6
    arrived = ok(as_app("POST", f"/v1/appointments/{booked['id']}/check-in"))
    assert arrived["status"] == "arrived"
    far = ok(as_app("POST", "/v1/appointments", json=mine | {"clinic_session_id": later["id"]}), 201)
    cancelled = ok(as_app("POST", f"/v1/appointments/{far['id']}/cancel", json={"reason": "desk"}))
    assert cancelled["cancel_reason"] == "patient"  # a patient's own device always cancels as the patient


def test_a_kiosk_checks_its_patient_in_but_books_nothing(gateway: Gateway) -> None:
    session = clinic_session(gateway, starts_in=timedelta(minutes=20))
    me = register_patient(gateway.his, "赵六")
    ok(
        gateway.his.post(
            "/v1/visits", json={"patient_id": me["id"], "kind": "outpatient", "department": "x"}
        ),
        201,
    )
    booked = ok(book(gateway.his, session["id"], me["id"]), 201)
    kiosk = {"x-patient-token": patient_session(gateway, me, "kiosk")["token"]}
    body = {"clinic_session_id": session["id"], "patient_id": me["id"], "channel": "app"}
    assert gateway.kiosk.post("/v1/appointments", json=body, headers=kiosk).status_code == 403
    assert gateway.kiosk.post(f"/v1/appointments/{booked['id']}/cancel", headers=kiosk).status_code == 403
    arrived = ok(gateway.kiosk.post(f"/v1/appointments/{booked['id']}/check-in", headers=kiosk))
    assert arrived["status"] == "arrived" and arrived["visit"]["slip_code"]


def test_bad_input_is_a_4xx_problem(gateway: Gateway) -> None:
    session = clinic_session(gateway, starts_in=timedelta(days=1))
    code, doctor_id = directory(gateway)
    patient_id = patient(gateway)
    base = {
        "department": code,
        "doctor_id": doctor_id,
        "date": "2031-03-01",
        "period": "morning",
        "starts_at": "2031-03-01T08:00:00+08:00",
        "ends_at": "2031-03-01T12:00:00+08:00",
        "quota": 10,
    }
    for change, status in (
        ({"quota": 10**12}, 422),
        ({"quota": -3}, 422),
        ({"slot_minutes": 0}, 422),
        ({"date": "2031-02-30"}, 422),
        ({"starts_at": "2031-03-01T08:00:00"}, 422),
        ({"ends_at": "2031-03-01T07:00:00+08:00"}, 422),
        ({"doctor_id": "no-such-doctor"}, 404),
        ({"department": "no-such-dept"}, 404),
    ):
        assert_problem(gateway.his.post("/v1/clinic-sessions", json=base | change), status)
    for change, status in (
        ({"clinic_session_id": str(uuid.uuid4())}, 404),
        ({"patient_id": str(uuid.uuid4())}, 404),
        ({"slot_starts_at": "2031-03-01T08:07:00+08:00"}, 422),
        ({"channel": "telegram"}, 422),
        ({"hold": "maybe"}, 422),
    ):
        body = {"clinic_session_id": session["id"], "patient_id": patient_id, "channel": "phone"} | change
        assert_problem(gateway.his.post("/v1/appointments", json=body), status)
    assert_problem(gateway.his.get("/v1/clinic-sessions", params={"date": "yesterday"}), 400)
    assert_problem(gateway.his.get("/v1/clinic-sessions", params={"limit": -1}), 400)
    assert_problem(gateway.his.get(f"/v1/appointments/{uuid.uuid4()}"), 404)
    assert_problem(gateway.his.post(f"/v1/appointments/{uuid.uuid4()}/check-in"), 404)
    assert_problem(gateway.his.get("/v1/appointments"), 400)  # neither a patient nor a session named
    generate = {"from_date": "2031-01-01", "to_date": "2032-01-01"}
    assert_problem(gateway.his.post("/v1/clinic-sessions/generate", json=generate), 422)
    assert ok(gateway.his.get(f"/v1/clinic-sessions/{session['id']}/slots"))["free"] == 8
