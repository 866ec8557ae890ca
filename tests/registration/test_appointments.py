"""Appointments: quota, one booking per patient and session, holds, cancellation, check-in, walk-ins,
no-shows, idempotency. Where time matters the service is called with its `now`."""

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from fastapi.testclient import TestClient
from sqlmodel import Session

from kit.testing import FakeFeed, eventually, feed_headers, internal_headers
from services.registration import appointments, repository
from services.registration.config import RegistrationSettings
from services.registration.errors import AppointmentStateConflict, CheckInRefused
from services.registration.schemas import CancelReason, PaymentMode
from tests.registration.factories import book, create_clinic_session, create_patient
from tests.registration.test_settled_visits import visit_settled

T = TypeVar("T")


def unidentified(client: TestClient) -> str:
    patient_id: str = create_patient(client, unidentified=True, id_number=None, name=None)["id"]
    return patient_id


def in_session(client: TestClient, work: Callable[[Session], T]) -> T:
    """Run service code in one unit of work of the app's database (as a request would)."""
    with client.app.state.database.session() as session:  # type: ignore[attr-defined]
        return work(session)


def settings_of(client: TestClient) -> RegistrationSettings:
    settings: RegistrationSettings = client.app.state.settings  # type: ignore[attr-defined]
    return settings


def events(client: TestClient, event_type: str) -> list[dict[str, Any]]:
    """Every event of the type on the feed (the database is wiped per test: a page or two)."""
    found: list[dict[str, Any]] = []
    while True:
        after = found[-1]["position"] if found else 0
        params = {"type": event_type, "limit": 500, "after": after}
        page = client.get("/events", params=params, headers=feed_headers("registration")).json()["events"]
        if not page:
            return found
        found += page


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_a_booking_takes_the_earliest_free_slot_and_says_what_it_costs(client: TestClient) -> None:
    session = create_clinic_session(client)
    patient = unidentified(client)
    response = book(client, session["id"], patient)
    assert response.status_code == 201, response.text
    booked = response.json()
    assert booked["status"] == "booked" and booked["slot_starts_at"] == session["starts_at"]
    assert (booked["fee_item"], booked["fee_fen"]) == ("110200001", 2000)
    slots = client.get(f"/clinic-sessions/{session['id']}/slots").json()
    assert slots["free"] == 3 and slots["slots"][0]["free"] == 0
    [event] = [e for e in events(client, "appointment.booked") if e["data"]["appointment_id"] == booked["id"]]
    assert event["data"]["clinic_session_id"] == session["id"] and event["data"]["channel"] == "phone"


def test_a_patient_holds_one_booking_per_session(client: TestClient) -> None:
    session = create_clinic_session(client)
    patient = unidentified(client)
    assert book(client, session["id"], patient).status_code == 201
    again = book(client, session["id"], patient, channel="app")
    assert again.status_code == 409 and again.json()["type"].endswith("/already-booked")
    assert client.get(f"/clinic-sessions/{session['id']}/slots").json()["free"] == 3


def test_a_full_session_and_a_full_slot_refuse_with_409(client: TestClient) -> None:
    session = create_clinic_session(client, quota=2, slot_minutes=60)
    first, second, third = (unidentified(client) for _ in range(3))
    slot = session["starts_at"]
    assert book(client, session["id"], first, slot_starts_at=slot).status_code == 201
    full_slot = book(client, session["id"], second, slot_starts_at=slot)
    assert full_slot.status_code == 409 and full_slot.json()["type"].endswith("/slot-full")
    assert book(client, session["id"], second).status_code == 201
    full = book(client, session["id"], third)
    assert full.status_code == 409 and full.json()["type"].endswith("/session-full")


def test_bad_bookings_are_4xx_problems_and_change_nothing(client: TestClient) -> None:
    session = create_clinic_session(client)
    patient = unidentified(client)
    cases: list[tuple[dict[str, Any], int]] = [
        ({"clinic_session_id": "nope"}, 404),
        ({"patient_id": "nope"}, 404),
        ({"slot_starts_at": "2031-01-01T08:00:00+08:00"}, 422),
        ({"slot_starts_at": "2031-01-01T08:00:00"}, 422),  # no offset
        ({"slot_starts_at": "tomorrow"}, 422),
        ({"channel": "fax"}, 422),
        ({"channel": "referral"}, 422),  # without the referring clinic
        ({"channel": "followup"}, 422),  # without the visit it follows
        ({"referring_clinic": "社区卫生服务中心"}, 422),  # a phone booking has none
        ({"check_in": True}, 422),  # only a walk-in checks in at booking
        ({"channel": "followup", "followup_of_visit_id": "nope"}, 422),
        ({"payment_mode": "green_channel"}, 422),
    ]
    for change, status in cases:
        body = {"clinic_session_id": session["id"], "patient_id": patient, "channel": "phone"} | change
        response = client.post("/appointments", json=body)
        assert response.status_code == status, (change, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
    assert client.get(f"/clinic-sessions/{session['id']}/slots").json()["free"] == 4


def test_referral_and_followup_bookings_carry_their_origin(client: TestClient) -> None:
    session = create_clinic_session(client)
    referred = book(
        client, session["id"], unidentified(client), channel="referral", referring_clinic="社区中心"
    )
    assert referred.status_code == 201 and referred.json()["referring_clinic"] == "社区中心"
    patient = create_patient(client, id_number="110101199003074477")
    visit = client.post(
        "/visits", json={"patient_id": patient["id"], "kind": "outpatient", "department": "x"}
    )
    followup = book(
        client, session["id"], patient["id"], channel="followup", followup_of_visit_id=visit.json()["id"]
    )
    assert followup.status_code == 201 and followup.json()["followup_of_visit_id"] == visit.json()["id"]
    stranger = book(
        client,
        session["id"],
        unidentified(client),
        channel="followup",
        followup_of_visit_id=visit.json()["id"],
    )
    assert stranger.status_code == 422  # another patient's visit


def test_booking_hours_open_and_close(client: TestClient) -> None:
    now = datetime.now().astimezone()
    later = create_clinic_session(client, booking_opens_at=(now + timedelta(days=1)).isoformat())
    early = book(client, later["id"], unidentified(client))
    assert early.status_code == 409 and early.json()["type"].endswith("/booking-closed")
    closed = create_clinic_session(
        client,
        booking_opens_at=(now - timedelta(days=2)).isoformat(),
        booking_closes_at=(now - timedelta(days=1)).isoformat(),
    )
    late = book(client, closed["id"], unidentified(client))
    assert late.status_code == 409 and late.json()["type"].endswith("/booking-closed")
    # The desk still registers a walk-in until the session ends, and a doctor books a follow-up early.
    assert book(client, closed["id"], unidentified(client), channel="onsite").status_code == 201
    patient = create_patient(client, id_number="320106199202151237")
    visit = client.post(
        "/visits", json={"patient_id": patient["id"], "kind": "outpatient", "department": "x"}
    )
    followup = {"channel": "followup", "followup_of_visit_id": visit.json()["id"]}
    assert book(client, later["id"], patient["id"], **followup).status_code == 201
    assert book(client, closed["id"], patient["id"], **followup).status_code == 409  # not after the cut-off


def test_a_hold_lapses_by_itself_and_its_seat_is_taken_by_the_next_booking(client: TestClient) -> None:
    session = create_clinic_session(client, quota=1, slot_minutes=120)
    held = book(client, session["id"], unidentified(client), channel="app", hold=True).json()
    assert held["status"] == "proposed"
    lapse = instant(held["hold_expires_at"])
    assert lapse - instant(held["created_at"]) == timedelta(seconds=settings_of(client).hold_seconds)
    clinic = in_session(client, lambda s: repository.get_clinic_session(s, session["id"]))
    other = unidentified(client)
    assert clinic is not None

    def book_other(now: datetime) -> Any:
        def work(s: Session) -> Any:
            patient = repository.get_patient(s, other)
            assert patient is not None
            return appointments.book(
                s, clinic_session=clinic, patient=patient, channel=appointments.Channel.phone,
                booked_by="test", settings=settings_of(client), now=now,
            )  # fmt: skip

        return in_session(client, work)

    try:
        book_other(lapse - timedelta(seconds=1))
    except appointments.SessionFull:
        pass
    else:
        raise AssertionError("a live hold must keep its seat")
    booked = book_other(lapse)
    assert booked.status == "booked"
    assert client.get(f"/appointments/{held['id']}").json()["status"] == "cancelled"
    [cancelled] = [
        e for e in events(client, "appointment.cancelled") if e["data"]["appointment_id"] == held["id"]
    ]
    assert cancelled["data"]["reason"] == "hold_expired"
    confirm = client.post(f"/appointments/{held['id']}/confirm")
    assert confirm.status_code == 409


def test_a_lapsed_hold_shows_as_free_and_the_sweep_releases_it(client: TestClient) -> None:
    session = create_clinic_session(client, quota=1, slot_minutes=120)
    held = book(client, session["id"], unidentified(client), channel="app", hold=True).json()
    assert client.get(f"/clinic-sessions/{session['id']}/slots").json()["free"] == 0
    after = instant(held["hold_expires_at"]) + timedelta(seconds=1)
    released, _ = in_session(client, lambda s: appointments.sweep(s, settings=settings_of(client), now=after))
    assert released >= 1
    assert client.get(f"/appointments/{held['id']}").json()["cancel_reason"] == "hold_expired"
    assert client.get(f"/clinic-sessions/{session['id']}/slots").json()["free"] == 1


def test_a_confirmed_hold_is_booked(client: TestClient) -> None:
    session = create_clinic_session(client)
    held = book(client, session["id"], unidentified(client), channel="app", hold=True).json()
    confirmed = client.post(f"/appointments/{held['id']}/confirm")
    assert confirmed.status_code == 200 and confirmed.json()["status"] == "booked"
    assert client.post(f"/appointments/{held['id']}/confirm").status_code == 409
    booked = [e for e in events(client, "appointment.booked") if e["data"]["appointment_id"] == held["id"]]
    assert (
        len(booked) == 1
        and len([e for e in events(client, "appointment.held") if e["data"]["appointment_id"] == held["id"]])
        == 1
    )


def test_a_patient_cancels_until_the_cut_off_and_the_desk_after_it(client: TestClient) -> None:
    session = create_clinic_session(client, quota=1, slot_minutes=120)
    booked = book(client, session["id"], unidentified(client)).json()
    cutoff = instant(booked["slot_starts_at"]) - timedelta(minutes=settings_of(client).cancel_cutoff_minutes)

    def cancel(reason: CancelReason, now: datetime) -> Any:
        return in_session(
            client,
            lambda s: appointments.cancel(
                s,
                appointment_id=booked["id"],
                reason=reason,
                acting_for=None,
                settings=settings_of(client),
                now=now,
            ),
        )

    try:
        cancel(CancelReason.patient, cutoff + timedelta(seconds=1))
    except AppointmentStateConflict as refused:
        assert refused.slug == "cancel-cutoff-passed"
    else:
        raise AssertionError("a patient cannot cancel after the cut-off")
    assert cancel(CancelReason.desk, cutoff + timedelta(seconds=1)).status == "cancelled"
    assert client.get(f"/clinic-sessions/{session['id']}/slots").json()["free"] == 1
    again = client.post(f"/appointments/{booked['id']}/cancel", json={"reason": "desk"})
    assert again.status_code == 409


def test_a_cancelled_seat_is_free_again_at_once(client: TestClient) -> None:
    session = create_clinic_session(client, quota=1, slot_minutes=120, starts_at=None)
    first = book(client, session["id"], unidentified(client)).json()
    # Three hours ahead is past the default two-hour cut-off: the patient may cancel.
    cancelled = client.post(f"/appointments/{first['id']}/cancel", json={"reason": "patient"})
    assert cancelled.status_code == 200 and cancelled.json()["cancel_reason"] == "patient"
    assert book(client, session["id"], unidentified(client)).status_code == 201


def test_check_in_opens_within_its_window_and_opens_the_visit(client: TestClient) -> None:
    session = create_clinic_session(client)
    booked = book(client, session["id"], unidentified(client)).json()
    slot = instant(booked["slot_starts_at"])
    settings = settings_of(client)

    def check_in(now: datetime) -> Any:
        return in_session(
            client,
            lambda s: appointments.check_in(
                s,
                appointment_id=booked["id"],
                acting_for=None,
                payment_mode=PaymentMode.prepay,
                settings=settings,
                now=now,
            ),
        )

    for now, slug in (
        (slot - timedelta(minutes=settings.checkin_early_minutes, seconds=1), "check-in-too-early"),
        (slot + timedelta(minutes=settings.checkin_late_minutes, seconds=1), "check-in-too-late"),
    ):
        try:
            check_in(now)
        except CheckInRefused as refused:
            assert refused.slug == slug
        else:
            raise AssertionError(slug)
    arrived = check_in(slot - timedelta(minutes=settings.checkin_early_minutes))
    assert arrived.status == "arrived" and arrived.visit is not None and arrived.visit.slip_code
    visit = client.get(f"/visits/{arrived.visit_id}").json()
    assert visit["department"] == session["department"] and visit["kind"] == "outpatient"
    [opened] = [e for e in events(client, "visit.opened") if e["visit_id"] == arrived.visit_id]
    assert opened["data"]["appointment_id"] == booked["id"]
    assert opened["data"]["registration_fee_item"] == session["fee_item"]
    [event] = [
        e for e in events(client, "appointment.arrived") if e["data"]["appointment_id"] == booked["id"]
    ]
    assert event["visit_id"] == arrived.visit_id and instant(event["data"]["slot_starts_at"]) == slot
    assert client.post(f"/appointments/{booked['id']}/check-in").status_code == 409  # once


def test_a_booking_not_checked_in_after_the_grace_period_is_a_noshow(client: TestClient) -> None:
    session = create_clinic_session(client)
    booked = book(client, session["id"], unidentified(client)).json()
    grace = instant(booked["slot_starts_at"]) + timedelta(minutes=settings_of(client).noshow_grace_minutes)
    assert (
        in_session(client, lambda s: appointments.mark_noshows(s, settings=settings_of(client), now=grace))
        == 0
    )
    assert client.get(f"/appointments/{booked['id']}").json()["status"] == "booked"
    later = grace + timedelta(seconds=1)
    assert (
        in_session(client, lambda s: appointments.mark_noshows(s, settings=settings_of(client), now=later))
        >= 1
    )
    assert client.get(f"/appointments/{booked['id']}").json()["status"] == "noshow"
    assert [e for e in events(client, "appointment.noshow") if e["data"]["appointment_id"] == booked["id"]]
    assert client.post(f"/appointments/{booked['id']}/check-in").status_code == 409


def test_a_walk_in_draws_on_the_same_quota_and_is_checked_in_at_once(client: TestClient) -> None:
    session = create_clinic_session(client, quota=1, slot_minutes=120)
    walk_in = book(client, session["id"], unidentified(client), channel="onsite", check_in=True)
    assert walk_in.status_code == 201, walk_in.text
    answer = walk_in.json()
    assert answer["status"] == "arrived" and answer["visit"]["slip_code"] and answer["visit_id"]
    full = book(client, session["id"], unidentified(client))
    assert full.status_code == 409 and full.json()["type"].endswith("/session-full")


def test_the_same_idempotency_key_books_once(client: TestClient) -> None:
    session = create_clinic_session(client)
    patient = unidentified(client)
    key = {"Idempotency-Key": str(uuid.uuid4())}
    body = {"clinic_session_id": session["id"], "patient_id": patient, "channel": "phone"}
    answers = [client.post("/appointments", json=body, headers=key) for _ in range(20)]
    assert {a.status_code for a in answers} == {201}
    assert len({a.json()["id"] for a in answers}) == 1
    assert answers[-1].headers.get("idempotent-replayed") == "true"
    listed = client.get("/appointments", params={"clinic_session_id": session["id"]}).json()
    assert len(listed) == 1
    reused = client.post("/appointments", json=body | {"channel": "app"}, headers=key)
    assert reused.status_code == 422


def test_a_patients_own_device_books_only_for_its_patient_in_the_app(client: TestClient) -> None:
    session = create_clinic_session(client)
    mine, theirs = unidentified(client), unidentified(client)
    as_app = internal_headers(
        "app-dev", {"appointments:write", "registration:read"}, audience="registration", patient=mine
    )
    other = client.post(
        "/appointments",
        json={"clinic_session_id": session["id"], "patient_id": theirs, "channel": "app"},
        headers=as_app,
    )
    assert other.status_code == 404
    by_phone = client.post(
        "/appointments",
        json={"clinic_session_id": session["id"], "patient_id": mine, "channel": "phone"},
        headers=as_app,
    )
    assert by_phone.status_code == 422
    booked = client.post(
        "/appointments",
        json={"clinic_session_id": session["id"], "patient_id": mine, "channel": "app"},
        headers=as_app,
    )
    assert booked.status_code == 201
    theirs_booked = book(client, session["id"], theirs).json()
    assert client.get(f"/appointments/{theirs_booked['id']}", headers=as_app).status_code == 404
    assert client.post(f"/appointments/{theirs_booked['id']}/cancel", headers=as_app).status_code == 404
    assert [a["id"] for a in client.get("/appointments", headers=as_app).json()] == [booked.json()["id"]]


def test_a_settled_visit_fulfils_the_appointment_that_opened_it(
    client: TestClient, billing_feed: FakeFeed
) -> None:
    session = create_clinic_session(client, quota=1, slot_minutes=120)
    walk_in = book(client, session["id"], unidentified(client), channel="onsite", check_in=True).json()
    billing_feed.publish(visit_settled({"id": walk_in["visit_id"], "patient_id": walk_in["patient_id"]}))
    eventually(
        lambda: client.get(f"/appointments/{walk_in['id']}").json()["status"] == "fulfilled",
        what="the appointment to be fulfilled",
    )
    [event] = [
        e for e in events(client, "appointment.fulfilled") if e["data"]["appointment_id"] == walk_in["id"]
    ]
    assert event["visit_id"] == walk_in["visit_id"]


def test_a_suspended_or_cancelled_session_takes_no_booking(client: TestClient) -> None:
    for status in ("suspended", "cancelled"):
        session = create_clinic_session(client)

        def set_status(s: Session, session_id: str = session["id"], status: str = status) -> None:
            clinic = repository.get_clinic_session(s, session_id)
            assert clinic is not None
            clinic.status = status
            s.add(clinic)

        in_session(client, set_status)
        refused = book(client, session["id"], unidentified(client))
        assert refused.status_code == 409 and refused.json()["type"].endswith("/session-not-open")
        assert client.get(f"/clinic-sessions/{session['id']}/slots").json()["free"] == 0
