"""Disrupted sessions: change, suspend, resume or cancel a clinic session with a reason; every affected
appointment listed, one `appointment.disrupted` each, rebooking offers accepted (through the one booking
function) or declined; nobody left booked on a cancelled session."""

import uuid
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient

from kit.clock import utcnow
from kit.database import Database
from kit.testing import feed_headers, internal_headers
from services.registration import disruptions
from services.registration.config import RegistrationSettings
from services.registration.errors import RebookingOfferClosed
from services.registration.schemas import DisruptionAction, DisruptionCategory, DisruptionCreate

HOSPITAL = ZoneInfo("Asia/Shanghai")


def ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def keyed() -> dict[str, str]:
    return {"Idempotency-Key": str(uuid.uuid4())}


def department(client: TestClient, code: str = "cardiology") -> str:
    response = client.post("/departments", json={"code": code, "name": "心内科", "floor": "3F"})
    assert response.status_code in (201, 409), response.text
    return code


def doctor(client: TestClient, dept: str, title: str = "associate_chief") -> str:
    body = {"name": "李医生", "title": title, "department": dept}
    doctor_id: str = ok(client.post("/doctors", json=body), 201)["id"]
    return doctor_id


def clinic_session(
    client: TestClient,
    doctor_id: str,
    dept: str,
    *,
    days_ahead: int = 1,
    quota: int = 12,
    hour: int = 9,
    period: str = "morning",
) -> dict[str, Any]:
    """A session `days_ahead` days from today (hospital time), 3 hours long in 15-minute slots."""
    day = (utcnow().astimezone(HOSPITAL) + timedelta(days=days_ahead)).date()
    starts = datetime.combine(day, time(hour, 0), HOSPITAL)
    body = {
        "department": dept,
        "doctor_id": doctor_id,
        "date": day.isoformat(),
        "period": period,
        "starts_at": starts.isoformat(),
        "ends_at": (starts + timedelta(hours=3)).isoformat(),
        "quota": quota,
        "slot_minutes": 15,
    }
    found: dict[str, Any] = ok(client.post("/clinic-sessions", json=body), 201)
    return found


def patient(client: TestClient) -> str:
    patient_id: str = ok(client.post("/patients", json={"unidentified": True, "alias": "预约患者"}), 201)[
        "id"
    ]
    return patient_id


def book(client: TestClient, session_id: str, patient_id: str, **extra: Any) -> dict[str, Any]:
    body = {"clinic_session_id": session_id, "patient_id": patient_id, "channel": "phone"} | extra
    found: dict[str, Any] = ok(client.post("/appointments", json=body), 201)
    return found


def disrupt(client: TestClient, session_id: str, status: int = 201, **body: Any) -> Any:
    body = {"category": "doctor", "reason": "专家临时停诊"} | body
    return ok(client.post(f"/clinic-sessions/{session_id}/disruptions", json=body, headers=keyed()), status)


def events(client: TestClient, event_type: str) -> list[dict[str, Any]]:
    body = ok(
        client.get("/events", headers=feed_headers("registration"), params={"type": event_type, "limit": 500})
    )
    found: list[dict[str, Any]] = body["events"]
    return found


def appointment(client: TestClient, appointment_id: str) -> dict[str, Any]:
    found: dict[str, Any] = ok(client.get(f"/appointments/{appointment_id}"))
    return found


def test_a_cancelled_session_leaves_nobody_booked_and_tells_and_offers_each_patient(
    client: TestClient,
) -> None:
    dept = department(client)
    lee = doctor(client, dept)
    cancelled = clinic_session(client, lee, dept)
    later = clinic_session(client, lee, dept, days_ahead=2)
    booked = [book(client, cancelled["id"], patient(client)) for _ in range(5)]
    held = book(client, cancelled["id"], patient(client), channel="app", hold=True)

    answer = disrupt(client, cancelled["id"], action="cancel", category="hospital", reason="停电")
    assert answer["session_status"] == "cancelled"
    assert {a["appointment_id"] for a in answer["affected"]} == {a["id"] for a in [*booked, held]}
    for affected in answer["affected"]:
        assert (affected["status"], affected["outcome"]) == ("cancelled", "cancelled")
        assert affected["offer"]["clinic_session_id"] == later["id"]
        assert affected["offer"]["doctor_id"] == lee and affected["offer"]["status"] == "offered"
    for item in [*booked, held]:
        now = appointment(client, item["id"])
        assert (now["status"], now["cancel_reason"]) == ("cancelled", "session_cancelled")

    slots = ok(client.get(f"/clinic-sessions/{cancelled['id']}/slots"))
    assert slots["free"] == 0 and slots["status"] == "cancelled"
    late = client.post(
        "/appointments",
        json={"clinic_session_id": cancelled["id"], "patient_id": patient(client), "channel": "phone"},
    )
    assert late.status_code == 409, late.text

    disrupted = [
        e
        for e in events(client, "appointment.disrupted")
        if e["data"]["clinic_session_id"] == cancelled["id"]
    ]
    assert sorted(e["patient_id"] for e in disrupted) == sorted(a["patient_id"] for a in [*booked, held])
    assert {(e["data"]["action"], e["data"]["category"], e["data"]["reason"]) for e in disrupted} == {
        ("cancel", "hospital", "停电")
    }
    assert all(e["data"]["appointment_status"] == "cancelled" and e["data"]["offer"] for e in disrupted)
    cancellations = [
        e
        for e in events(client, "appointment.cancelled")
        if e["data"]["clinic_session_id"] == cancelled["id"]
    ]
    assert len(cancellations) == 6 and {e["data"]["reason"] for e in cancellations} == {"session_cancelled"}
    assert [e["data"]["affected_appointments"] for e in events(client, "session.cancelled")] == [6]

    listed = ok(client.get(f"/clinic-sessions/{cancelled['id']}/disruptions"))
    assert [d["id"] for d in listed] == [answer["id"]] and len(listed[0]["affected"]) == 6


def test_accepting_books_the_offered_session_within_its_quota_and_declining_leaves_cancelled(
    client: TestClient,
) -> None:
    dept = department(client)
    lee = doctor(client, dept)
    cancelled = clinic_session(client, lee, dept)
    next_one = clinic_session(client, lee, dept, days_ahead=2, quota=1)
    first, second, third = (book(client, cancelled["id"], patient(client)) for _ in range(3))
    offers = {
        a["appointment_id"]: a["offer"] for a in disrupt(client, cancelled["id"], action="cancel")["affected"]
    }

    accepted = ok(client.post(f"/rebooking-offers/{offers[first['id']]['id']}/accept", headers=keyed()), 201)
    assert accepted["status"] == "accepted"
    assert accepted["appointment"]["clinic_session_id"] == next_one["id"]
    assert accepted["appointment"]["patient_id"] == first["patient_id"]
    assert accepted["appointment"]["status"] == "booked"
    assert accepted["rebooked_appointment_id"] == accepted["appointment"]["id"]

    full = client.post(f"/rebooking-offers/{offers[second['id']]['id']}/accept", headers=keyed())
    assert full.status_code == 409 and full.json()["type"].endswith("/session-full")
    assert ok(client.get(f"/rebooking-offers/{offers[second['id']]['id']}"))["status"] == "offered"
    assert ok(client.get(f"/clinic-sessions/{next_one['id']}/slots"))["free"] == 0

    declined = ok(client.post(f"/rebooking-offers/{offers[third['id']]['id']}/decline"))
    assert declined["status"] == "declined" and declined["appointment"] is None
    assert ok(client.post(f"/rebooking-offers/{offers[third['id']]['id']}/decline"))["status"] == "declined"
    assert appointment(client, third["id"])["status"] == "cancelled"
    again = client.post(f"/rebooking-offers/{offers[third['id']]['id']}/accept", headers=keyed())
    assert again.status_code == 409 and again.json()["type"].endswith("/rebooking-offer-closed")
    twice = client.post(f"/rebooking-offers/{offers[first['id']]['id']}/accept", headers=keyed())
    assert twice.status_code == 409

    rebooked = events(client, "appointment.rebooked")
    assert [(e["data"]["previous_appointment_id"], e["data"]["appointment_id"]) for e in rebooked] == [
        (first["id"], accepted["appointment"]["id"])
    ]


def test_the_offer_is_a_substitute_doctors_session_when_the_doctor_has_none(client: TestClient) -> None:
    dept = department(client)
    lee, wang, zhao = doctor(client, dept), doctor(client, dept, "chief"), doctor(client, dept, "attending")
    cancelled = clinic_session(client, lee, dept)
    wangs = clinic_session(client, wang, dept, days_ahead=3)
    clinic_session(client, wang, dept, days_ahead=2, hour=14, period="afternoon")  # another period
    zhaos = clinic_session(client, zhao, dept, days_ahead=4)
    booked = book(client, cancelled["id"], patient(client))

    found = disrupt(client, cancelled["id"], action="suspend")
    assert found["affected"][0]["offer"]["clinic_session_id"] == wangs["id"]  # same department and period
    named = disrupt(client, cancelled["id"], action="cancel", substitute_doctor_id=zhao)
    assert named["affected"][0]["offer"]["clinic_session_id"] == zhaos["id"]
    assert (
        ok(client.get(f"/rebooking-offers/{found['affected'][0]['offer']['id']}"))["status"] == "superseded"
    )
    assert appointment(client, booked["id"])["status"] == "cancelled"


def test_a_suspended_session_keeps_its_bookings_but_takes_no_new_ones_until_resumed(
    client: TestClient,
) -> None:
    dept = department(client)
    lee = doctor(client, dept)
    suspended = clinic_session(client, lee, dept)
    other = clinic_session(client, lee, dept, days_ahead=2)
    kept, moving = (
        book(client, suspended["id"], patient(client)),
        book(client, suspended["id"], patient(client)),
    )

    answer = disrupt(client, suspended["id"], action="suspend", category="doctor", reason="医生外出会诊")
    assert answer["session_status"] == "suspended"
    assert {(a["status"], a["outcome"]) for a in answer["affected"]} == {("booked", "kept")}
    refused = client.post(
        "/appointments",
        json={"clinic_session_id": suspended["id"], "patient_id": patient(client), "channel": "phone"},
    )
    assert refused.status_code == 409 and refused.json()["type"].endswith("/session-not-open")
    check_in = client.post(f"/appointments/{kept['id']}/check-in")
    assert check_in.status_code in (409, 422) and "session-not-open" in check_in.json()["type"]

    offer = next(a["offer"] for a in answer["affected"] if a["appointment_id"] == moving["id"])
    moved = ok(client.post(f"/rebooking-offers/{offer['id']}/accept", headers=keyed()), 201)
    assert moved["appointment"]["clinic_session_id"] == other["id"]
    assert (
        appointment(client, moving["id"])["status"],
        appointment(client, moving["id"])["cancel_reason"],
    ) == (
        "cancelled",
        "rebooked",
    )
    assert appointment(client, kept["id"])["status"] == "booked"

    assert (
        disrupt(client, suspended["id"], action="resume", category="doctor", reason="恢复出诊")[
            "session_status"
        ]
        == "open"
    )
    book(client, suspended["id"], patient(client))
    assert [e["data"]["status"] for e in events(client, "session.resumed")] == ["open"]


def test_a_change_moves_the_bookings_with_the_session_and_tells_each_patient(client: TestClient) -> None:
    dept = department(client)
    lee, wang = doctor(client, dept), doctor(client, dept, "chief")
    changed = clinic_session(client, lee, dept)
    first, second = book(client, changed["id"], patient(client)), book(client, changed["id"], patient(client))
    later = datetime.fromisoformat(changed["starts_at"]) + timedelta(minutes=30)

    answer = disrupt(
        client, changed["id"], action="change", starts_at=later.isoformat(), substitute_doctor_id=wang
    )
    assert answer["session_status"] == "open"
    assert {(a["status"], a["outcome"], a["offer"]) for a in answer["affected"]} == {("booked", "kept", None)}
    session_now = ok(client.get(f"/clinic-sessions/{changed['id']}"))
    assert session_now["doctor_id"] == wang
    assert datetime.fromisoformat(session_now["starts_at"]) == later
    for before in (first, second):
        after = appointment(client, before["id"])
        assert after["status"] == "booked"
        shift = datetime.fromisoformat(after["slot_starts_at"]) - datetime.fromisoformat(
            before["slot_starts_at"]
        )
        assert shift == timedelta(minutes=30)
    slots = ok(client.get(f"/clinic-sessions/{changed['id']}/slots"))["slots"]
    assert datetime.fromisoformat(slots[0]["starts_at"]).astimezone(UTC) == later.astimezone(UTC)

    told = [
        e for e in events(client, "appointment.disrupted") if e["data"]["clinic_session_id"] == changed["id"]
    ]
    assert len(told) == 2 and {e["data"]["action"] for e in told} == {"change"}
    assert {e["data"]["doctor_id"] for e in told} == {wang}
    assert {e["data"]["offer"] for e in told} == {None}


def test_bad_disruptions_are_problems_and_change_nothing(client: TestClient) -> None:
    dept = department(client)
    lee = doctor(client, dept)
    other_dept = department(client, "neurology")
    stranger = doctor(client, other_dept)
    target = clinic_session(client, lee, dept)
    booked = book(client, target["id"], patient(client))
    path = f"/clinic-sessions/{target['id']}/disruptions"

    for body, status in (
        ({"action": "cancel", "category": "weather", "reason": "x"}, 422),
        ({"action": "cancel", "category": "doctor"}, 422),
        ({"action": "cancel", "category": "doctor", "reason": ""}, 422),
        ({"action": "change", "category": "doctor", "reason": "x"}, 422),
        (
            {
                "action": "cancel",
                "category": "doctor",
                "reason": "x",
                "starts_at": "2030-01-01T09:00:00+08:00",
            },
            422,
        ),
        ({"action": "change", "category": "doctor", "reason": "x", "starts_at": "2030-01-01T09:00:00"}, 422),
        ({"action": "change", "category": "doctor", "reason": "x", "substitute_doctor_id": stranger}, 422),
        ({"action": "cancel", "category": "doctor", "reason": "x", "offered_session_id": target["id"]}, 422),
        ({"action": "resume", "category": "doctor", "reason": "x"}, 409),
        ({"action": "cancel", "category": "doctor", "reason": "x", "extra": 1}, 422),
    ):
        response = client.post(path, json=body, headers=keyed())
        assert response.status_code == status, (body, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
    missing = client.post(
        f"/clinic-sessions/{uuid.uuid4()}/disruptions",
        json={"action": "cancel", "category": "doctor", "reason": "x"},
        headers=keyed(),
    )
    assert missing.status_code == 404
    assert client.post("/rebooking-offers/nope/accept", headers=keyed()).status_code == 404
    assert client.get("/clinic-sessions/a..b/disruptions").status_code in (400, 404, 422)
    assert appointment(client, booked["id"])["status"] == "booked"
    assert ok(client.get(f"/clinic-sessions/{target['id']}"))["status"] == "open"
    assert ok(client.get(path)) == []

    disrupt(client, target["id"], action="cancel")
    for action in ("cancel", "suspend", "change"):
        extra = {"substitute_doctor_id": doctor(client, dept)} if action == "change" else {}
        refused = client.post(
            path, json={"action": action, "category": "doctor", "reason": "x"} | extra, headers=keyed()
        )
        assert refused.status_code == 409 and refused.json()["type"].endswith("/disruption-refused")


def test_the_same_idempotency_key_disrupts_once(client: TestClient) -> None:
    dept = department(client)
    target = clinic_session(client, doctor(client, dept), dept)
    book(client, target["id"], patient(client))
    key = {"Idempotency-Key": str(uuid.uuid4())}
    body = {"action": "cancel", "category": "patient", "reason": "患者方原因"}
    first = client.post(f"/clinic-sessions/{target['id']}/disruptions", json=body, headers=key)
    again = client.post(f"/clinic-sessions/{target['id']}/disruptions", json=body, headers=key)
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    assert len(ok(client.get(f"/clinic-sessions/{target['id']}/disruptions"))) == 1
    assert (
        len(
            [
                e
                for e in events(client, "appointment.disrupted")
                if e["data"]["clinic_session_id"] == target["id"]
            ]
        )
        == 1
    )


def test_a_patients_app_decides_only_its_own_offers(client: TestClient) -> None:
    dept = department(client)
    lee = doctor(client, dept)
    target = clinic_session(client, lee, dept)
    clinic_session(client, lee, dept, days_ahead=2)
    mine, theirs = book(client, target["id"], patient(client)), book(client, target["id"], patient(client))
    offers = {
        a["appointment_id"]: a["offer"]["id"]
        for a in disrupt(client, target["id"], action="cancel")["affected"]
    }
    app = internal_headers(
        "app-dev",
        {"registration:read", "appointments:write"},
        audience="registration",
        patient=mine["patient_id"],
    )

    for verb in ("accept", "decline"):
        refused = client.post(f"/rebooking-offers/{offers[theirs['id']]}/{verb}", headers=app | keyed())
        assert refused.status_code == 404 and theirs["patient_id"] not in refused.text
    assert client.get(f"/rebooking-offers/{offers[theirs['id']]}", headers=app).status_code == 404
    assert ok(client.get(f"/rebooking-offers/{offers[theirs['id']]}"))["status"] == "offered"
    own = ok(client.post(f"/rebooking-offers/{offers[mine['id']]}/accept", headers=app | keyed()), 201)
    assert own["appointment"]["patient_id"] == mine["patient_id"]
    staff_only = client.post(
        f"/clinic-sessions/{target['id']}/disruptions",
        json={"action": "suspend", "category": "doctor", "reason": "x"},
        headers=app | keyed(),
    )
    assert staff_only.status_code == 403


def test_an_expired_offer_books_nothing_and_leaves_the_patient_cancelled(client: TestClient) -> None:
    dept = department(client)
    lee = doctor(client, dept)
    target = clinic_session(client, lee, dept)
    clinic_session(client, lee, dept, days_ahead=2)
    booked = book(client, target["id"], patient(client))
    offer = disrupt(client, target["id"], action="cancel")["affected"][0]["offer"]
    database: Database = client.app.state.database  # type: ignore[attr-defined]
    settings: RegistrationSettings = client.app.state.settings  # type: ignore[attr-defined]
    later = datetime.fromisoformat(offer["expires_at"]) + timedelta(seconds=1)

    for decide in (
        lambda session: disruptions.accept_offer(
            session, offer_id=offer["id"], acting_for=None, decided_by="desk", settings=settings, now=later
        ),
        lambda session: disruptions.decline_offer(
            session, offer_id=offer["id"], acting_for=None, decided_by="desk", now=later
        ),
    ):
        with pytest.raises(RebookingOfferClosed), database.session() as session:
            decide(session)
        with database.session() as session:
            shown = disruptions.read_offer(session, offer_id=offer["id"], acting_for=None, now=later)
        assert shown.status == "expired"
    assert appointment(client, booked["id"])["status"] == "cancelled"
    assert ok(client.get(f"/appointments?patient_id={booked['patient_id']}")) == [
        appointment(client, booked["id"])
    ]


def test_a_patient_already_booked_in_the_next_session_is_offered_the_one_after(client: TestClient) -> None:
    dept = department(client)
    lee = doctor(client, dept)
    cancelled = clinic_session(client, lee, dept)
    next_one = clinic_session(client, lee, dept, days_ahead=2)
    after_that = clinic_session(client, lee, dept, days_ahead=3)
    twice, once = patient(client), patient(client)
    for patient_id in (twice, once):
        book(client, cancelled["id"], patient_id)
    book(client, next_one["id"], twice)

    offered = {
        a["patient_id"]: a["offer"] for a in disrupt(client, cancelled["id"], action="cancel")["affected"]
    }
    assert offered[once]["clinic_session_id"] == next_one["id"]
    assert offered[twice]["clinic_session_id"] == after_that["id"]
    assert ok(client.post(f"/rebooking-offers/{offered[twice]['id']}/accept", headers=keyed()), 201)


def test_a_lapsed_hold_is_released_as_such_not_disrupted(client: TestClient) -> None:
    dept = department(client)
    target = clinic_session(client, doctor(client, dept), dept)
    booked = book(client, target["id"], patient(client))
    held = book(client, target["id"], patient(client), channel="app", hold=True)
    database: Database = client.app.state.database  # type: ignore[attr-defined]
    settings: RegistrationSettings = client.app.state.settings  # type: ignore[attr-defined]
    later = datetime.fromisoformat(held["hold_expires_at"]) + timedelta(seconds=1)

    data = DisruptionCreate(action=DisruptionAction.cancel, category=DisruptionCategory.doctor, reason="停诊")
    with database.session() as session:
        answer = disruptions.disrupt_session(
            session, clinic_session_id=target["id"], data=data, created_by="his", settings=settings, now=later
        )
    assert [a.appointment_id for a in answer.affected] == [booked["id"]]
    lapsed = appointment(client, held["id"])
    assert (lapsed["status"], lapsed["cancel_reason"]) == ("cancelled", "hold_expired")
    assert held["id"] not in {e["data"]["appointment_id"] for e in events(client, "appointment.disrupted")}
