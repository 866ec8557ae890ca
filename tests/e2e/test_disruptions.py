"""Disrupted sessions and the fees they touch, through the gateway with the real processes.

The issue's figure: a cancelled session with 30 booked patients gives 30 `appointment.disrupted` events
at the hub, 30 rebooking offers, a refund for each of the 10 who had paid, and nobody left booked on it.
Offers accepted book within the quota; declined ones leave the patient cancelled and refunded. A paid
booking fee moves onto the visit at check-in and is not charged again.
"""

import uuid
from collections.abc import Callable
from datetime import datetime, time, timedelta
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from sqlalchemy import create_engine, text

from kit.clock import hospital_date, utcnow
from kit.testing import database_url_under_test
from patientflow.supervisor import System
from tests.e2e.clients import (
    Gateway,
    assert_problem,
    eventually,
    ok,
    patient_session,
    register_patient,
    unique_department,
)
from tests.e2e.conftest import E2E_SCHEMA_PREFIX

HOSPITAL = ZoneInfo("Asia/Shanghai")
ASSOCIATE_CHIEF = "110200002"  # 副主任医师门诊诊察费
ASSOCIATE_CHIEF_FEN = 3000


def keyed() -> dict[str, str]:
    return {"Idempotency-Key": str(uuid.uuid4())}


def department(gateway: Gateway) -> str:
    code = unique_department()
    ok(gateway.his.post("/v1/departments", json={"code": code, "name": "心内科", "floor": "3F"}), 201)
    return code


def doctor(gateway: Gateway, dept: str, title: str = "associate_chief") -> str:
    body = {"name": "李医生", "title": title, "department": dept}
    doctor_id: str = ok(gateway.his.post("/v1/doctors", json=body), 201)["id"]
    return doctor_id


def clinic_session(
    gateway: Gateway,
    doctor_id: str,
    dept: str,
    *,
    quota: int,
    starts: datetime | None = None,
    days_ahead: int = 1,
) -> dict[str, Any]:
    """A 3-hour session of 15-minute slots: at 09:00 `days_ahead` days on (hospital time), or at `starts`."""
    if starts is None:
        day = (utcnow().astimezone(HOSPITAL) + timedelta(days=days_ahead)).date()
        starts = datetime.combine(day, time(9, 0), HOSPITAL)
    local = starts.astimezone(HOSPITAL)
    body = {
        "department": dept,
        "doctor_id": doctor_id,
        "date": local.date().isoformat(),
        "period": "morning" if local.hour < 12 else "afternoon" if local.hour < 18 else "evening",
        "starts_at": local.isoformat(),
        "ends_at": (local + timedelta(hours=3)).isoformat(),
        "quota": quota,
        "slot_minutes": 15,
    }
    found: dict[str, Any] = ok(gateway.his.post("/v1/clinic-sessions", json=body), 201)
    return found


def new_patient(gateway: Gateway) -> str:
    body = {"unidentified": True, "alias": "预约患者"}
    patient_id: str = ok(gateway.nurse.post("/v1/patients", json=body), 201)["id"]
    return patient_id


def book(
    client: httpx.Client, session_id: str, patient_id: str, channel: str = "phone", **headers: str
) -> Any:
    body = {"clinic_session_id": session_id, "patient_id": patient_id, "channel": channel}
    return ok(client.post("/v1/appointments", json=body, headers=headers or None), 201)


def pay_fee(client: httpx.Client, appointment_id: str, **headers: str) -> httpx.Response:
    return client.post(
        f"/v1/booking-fees/{appointment_id}/payments", json={"method": "wechat"}, headers=keyed() | headers
    )


def disrupt(gateway: Gateway, session_id: str, **body: Any) -> Any:
    body = {"category": "doctor", "reason": "专家临时停诊"} | body
    return ok(
        gateway.his.post(f"/v1/clinic-sessions/{session_id}/disruptions", json=body, headers=keyed()), 201
    )


def hub_events(
    gateway: Gateway, event_type: str, wanted: Callable[[dict[str, Any]], bool]
) -> list[dict[str, Any]]:
    """The hub's events of one type that `wanted` keeps, paged from the start of its log."""
    found: list[dict[str, Any]] = []
    after = 0
    while True:
        page = ok(gateway.his.get("/v1/events", params={"type": event_type, "after": after, "limit": 100}))
        if not page["events"]:
            return found
        found += [event for event in page["events"] if wanted(event)]
        after = page["events"][-1]["position"]


def at_hub(
    gateway: Gateway, event_type: str, wanted: Callable[[dict[str, Any]], bool], *, at_least: int
) -> list[dict[str, Any]]:
    """The hub's events of one type that `wanted` keeps, once there are at least `at_least` of them."""

    def probe() -> list[dict[str, Any]] | None:
        found = hub_events(gateway, event_type, wanted)
        return found if len(found) >= at_least else None

    return eventually(probe, what=f"{at_least} {event_type} event(s) at the hub")


def fee(gateway: Gateway, appointment_id: str) -> dict[str, Any]:
    found: dict[str, Any] = ok(gateway.cashier.get(f"/v1/booking-fees/{appointment_id}"))
    return found


def refunded(gateway: Gateway, appointment_id: str) -> bool:
    return fee(gateway, appointment_id)["status"] == "refunded"


def visit_charges(gateway: Gateway, visit_id: str) -> list[dict[str, Any]] | None:
    """The visit's charges once billing has opened its account and posted any."""
    response = gateway.cashier.get(f"/v1/visits/{visit_id}/account")
    charges: list[dict[str, Any]] = response.json()["charges"] if response.status_code == 200 else []
    return charges or None


def test_a_cancelled_session_with_30_booked_patients_tells_offers_refunds_and_leaves_nobody_booked(
    gateway: Gateway,
) -> None:
    dept = department(gateway)
    lee = doctor(gateway, dept)
    cancelled = clinic_session(gateway, lee, dept, quota=30)
    later = clinic_session(gateway, lee, dept, quota=30, days_ahead=2)
    booked = [book(gateway.his, cancelled["id"], new_patient(gateway)) for _ in range(30)]
    paid = booked[:10]
    for appointment in paid:
        assert ok(pay_fee(gateway.cashier, appointment["id"]), 201)["amount_fen"] == ASSOCIATE_CHIEF_FEN

    answer = disrupt(gateway, cancelled["id"], action="cancel", category="doctor", reason="专家因病停诊")
    assert answer["session_status"] == "cancelled"
    assert {a["appointment_id"] for a in answer["affected"]} == {a["id"] for a in booked}
    offers = {a["offer"]["id"] for a in answer["affected"]}
    assert len(offers) == 30
    assert {a["offer"]["clinic_session_id"] for a in answer["affected"]} == {later["id"]}
    assert ok(gateway.his.get(f"/v1/clinic-sessions/{cancelled['id']}/disruptions"))[0]["id"] == answer["id"]

    # Nobody is left booked on it, and nobody can book it.
    for appointment in booked:
        now = ok(gateway.his.get(f"/v1/appointments/{appointment['id']}"))
        assert (now["status"], now["cancel_reason"]) == ("cancelled", "session_cancelled")
    assert ok(gateway.his.get(f"/v1/clinic-sessions/{cancelled['id']}/slots"))["free"] == 0
    late = gateway.his.post(
        "/v1/appointments",
        json={"clinic_session_id": cancelled["id"], "patient_id": new_patient(gateway), "channel": "phone"},
    )
    assert_problem(late, 409)

    # 30 events at the hub, one per patient, each carrying its offer.
    disrupted = at_hub(
        gateway,
        "appointment.disrupted",
        lambda e: e["data"]["clinic_session_id"] == cancelled["id"],
        at_least=30,
    )
    assert len(disrupted) == 30
    assert sorted(e["patient_id"] for e in disrupted) == sorted(a["patient_id"] for a in booked)
    assert {e["data"]["offer"]["rebooking_offer_id"] for e in disrupted} == offers

    # The 10 who paid are refunded, once each; the 20 who had not owe nothing.
    paid_ids = {a["id"] for a in paid}
    refunds = at_hub(
        gateway, "payment.refunded", lambda e: e["data"]["appointment_id"] in paid_ids, at_least=10
    )
    assert sorted(e["data"]["appointment_id"] for e in refunds) == sorted(paid_ids)
    assert {(e["data"]["amount_fen"], e["data"]["reason"]) for e in refunds} == {
        (ASSOCIATE_CHIEF_FEN, "session_cancelled")
    }
    for appointment in booked:
        shown = fee(gateway, appointment["id"])
        assert shown["status"] == ("refunded" if appointment["id"] in paid_ids else "void")
    # The day's reconciliation has each paid fee and its refund, netting to nothing, and is balanced.
    day = ok(gateway.his.get("/v1/reconciliation", params={"date": hospital_date(utcnow()).isoformat()}))
    assert day["balanced"] is True, day["mismatches"]
    fee_lines = sorted(
        (line["appointment_id"], line["kind"], line["amount_fen"])
        for line in day["lines"]
        if line["appointment_id"] in paid_ids
    )
    assert fee_lines == sorted(
        (appointment_id, kind, ASSOCIATE_CHIEF_FEN)
        for appointment_id in paid_ids
        for kind in ("booking_payment", "refund")
    )


def test_offers_are_accepted_within_the_quota_or_declined_by_the_patients_app_or_the_desk(
    gateway: Gateway,
) -> None:
    dept = department(gateway)
    lee = doctor(gateway, dept)
    cancelled = clinic_session(gateway, lee, dept, quota=10)
    next_one = clinic_session(gateway, lee, dept, quota=1, days_ahead=2)
    person = register_patient(gateway.nurse)
    app = {"X-Patient-Token": patient_session(gateway, person)["token"]}
    mine = book(gateway.app, cancelled["id"], person["id"], channel="app", **app)
    full, declining = (book(gateway.his, cancelled["id"], new_patient(gateway)) for _ in range(2))

    ok(pay_fee(gateway.app, mine["id"], **app), 201)  # the app pays its own patient's fee
    assert_problem(pay_fee(gateway.app, full["id"], **app), 404)  # and no one else's
    ok(pay_fee(gateway.cashier, declining["id"]), 201)

    offers = {
        a["appointment_id"]: a["offer"]["id"]
        for a in disrupt(gateway, cancelled["id"], action="cancel")["affected"]
    }
    assert_problem(
        gateway.app.post(f"/v1/rebooking-offers/{offers[full['id']]}/accept", headers=app | keyed()), 404
    )
    accepted = ok(
        gateway.app.post(f"/v1/rebooking-offers/{offers[mine['id']]}/accept", headers=app | keyed()), 201
    )
    assert accepted["appointment"]["clinic_session_id"] == next_one["id"]
    assert accepted["appointment"]["status"] == "booked"

    refused = gateway.nurse.post(f"/v1/rebooking-offers/{offers[full['id']]}/accept", headers=keyed())
    assert assert_problem(refused, 409)["type"].endswith("/session-full")  # the quota holds for rebookings
    assert ok(gateway.his.get(f"/v1/rebooking-offers/{offers[full['id']]}"))["status"] == "offered"

    declined = ok(gateway.nurse.post(f"/v1/rebooking-offers/{offers[declining['id']]}/decline"))
    assert declined["status"] == "declined"
    assert ok(gateway.his.get(f"/v1/appointments/{declining['id']}"))["status"] == "cancelled"
    for appointment_id in (mine["id"], declining["id"]):
        eventually(partial(refunded, gateway, appointment_id), what="the refund")
    rebooked_fee = eventually(
        lambda: gateway.cashier.get(f"/v1/booking-fees/{accepted['appointment']['id']}").json(),
        what="the new appointment's fee",
    )
    assert rebooked_fee["status"] == "due"
    # The app reads its patient's disruption at the hub (filtered to its patient), not the others'.
    own_events = ok(gateway.app.get("/v1/events", params={"type": "appointment.disrupted"}, headers=app))[
        "events"
    ]
    assert {e["patient_id"] for e in own_events} == {person["id"]}


def test_a_paid_booking_fee_moves_onto_the_visit_at_check_in_and_is_not_charged_again(
    gateway: Gateway,
) -> None:
    dept = department(gateway)
    lee = doctor(gateway, dept)
    # Two seats a slot: both patients in the first slot, within the check-in window now.
    soon = clinic_session(gateway, lee, dept, quota=24, starts=utcnow() + timedelta(minutes=20))
    paid, unpaid = (book(gateway.his, soon["id"], new_patient(gateway)) for _ in range(2))
    payment = ok(pay_fee(gateway.cashier, paid["id"]), 201)["payment"]

    for appointment, status, payment_id in ((paid, "paid", payment["id"]), (unpaid, "unpaid", None)):
        arrived = ok(gateway.nurse.post(f"/v1/appointments/{appointment['id']}/check-in", json={}))
        visit_id = arrived["visit_id"]
        charges = eventually(partial(visit_charges, gateway, visit_id), what="the visit's 诊察费")
        assert [(c["item_code"], c["status"], c["payment_id"]) for c in charges] == [
            (ASSOCIATE_CHIEF, status, payment_id)
        ]
        account = ok(gateway.cashier.get(f"/v1/visits/{visit_id}/account"))
        assert account["balance_fen"] == (0 if status == "paid" else ASSOCIATE_CHIEF_FEN)
        assert fee(gateway, appointment["id"])["status"] == "on_visit"


def test_suspend_blocks_bookings_and_check_ins_resume_reopens_and_change_keeps_bookings(
    gateway: Gateway,
) -> None:
    dept = department(gateway)
    lee, wang = doctor(gateway, dept), doctor(gateway, dept, "chief")
    soon = clinic_session(gateway, lee, dept, quota=4, starts=utcnow() + timedelta(minutes=20))
    kept = book(gateway.his, soon["id"], new_patient(gateway))

    disrupt(gateway, soon["id"], action="suspend", category="hospital", reason="系统维护")
    body = {"clinic_session_id": soon["id"], "patient_id": new_patient(gateway), "channel": "phone"}
    assert assert_problem(gateway.his.post("/v1/appointments", json=body), 409)["type"].endswith(
        "/session-not-open"
    )
    assert (
        "session-not-open"
        in assert_problem(gateway.nurse.post(f"/v1/appointments/{kept['id']}/check-in", json={}), 409)["type"]
    )
    assert ok(gateway.his.get(f"/v1/appointments/{kept['id']}"))["status"] == "booked"

    disrupt(gateway, soon["id"], action="resume", category="hospital", reason="恢复")
    ok(gateway.his.post("/v1/appointments", json=body), 201)
    changed = disrupt(gateway, soon["id"], action="change", substitute_doctor_id=wang, reason="换医生出诊")
    assert {(a["status"], a["outcome"]) for a in changed["affected"]} == {("booked", "kept")}
    told = at_hub(
        gateway,
        "appointment.disrupted",
        lambda e: e["data"]["clinic_session_id"] == soon["id"] and e["data"]["action"] == "change",
        at_least=2,
    )
    assert len(told) == 2 and {e["data"]["doctor_id"] for e in told} == {wang}


def test_bad_disruptions_and_fee_payments_are_problems(gateway: Gateway) -> None:
    dept = department(gateway)
    target = clinic_session(gateway, doctor(gateway, dept), dept, quota=2)
    path = f"/v1/clinic-sessions/{target['id']}/disruptions"
    for body in (
        {"action": "explode", "category": "doctor", "reason": "x"},
        {"action": "cancel", "category": "weather", "reason": "x"},
        {"action": "cancel", "category": "doctor", "reason": ""},
        {"action": "change", "category": "doctor", "reason": "x"},
    ):
        assert_problem(gateway.his.post(path, json=body, headers=keyed()), 422)
    assert_problem(
        gateway.his.post(path, json={"action": "resume", "category": "doctor", "reason": "x"}), 409
    )
    assert_problem(
        gateway.his.post(
            f"/v1/clinic-sessions/{uuid.uuid4()}/disruptions",
            json={"action": "cancel", "category": "doctor", "reason": "x"},
        ),
        404,
    )
    assert_problem(
        gateway.doctor.post(path, json={"action": "cancel", "category": "doctor", "reason": "x"}), 403
    )
    assert_problem(gateway.nurse.post(f"/v1/rebooking-offers/{uuid.uuid4()}/accept", headers=keyed()), 404)
    appointment = book(gateway.his, target["id"], new_patient(gateway))
    wrong = gateway.cashier.post(
        f"/v1/booking-fees/{appointment['id']}/payments",
        json={"method": "cash", "amount_fen": 1},
        headers=keyed(),
    )
    assert assert_problem(wrong, 422)["type"].endswith("/amount-mismatch")
    assert_problem(
        gateway.cashier.post(f"/v1/booking-fees/{appointment['id']}/payments", json={"method": "cash"}), 400
    )
    assert_problem(pay_fee(gateway.cashier, str(uuid.uuid4())), 404)
    assert fee(gateway, appointment["id"])["status"] == "due"


def _rewind_billing_registration_feed(system: System) -> None:
    """Billing forgets it read registration's feed: cursor back to 0, its consumed-event records gone
    (a restore from an old backup, a cursor moved back by hand). Billing must be stopped."""
    url = database_url_under_test()
    schema = f'"{E2E_SCHEMA_PREFIX}billing".' if url else ""
    engine = create_engine(url or f"sqlite:///{system.data_dir / 'billing.db'}")
    with engine.begin() as conn:
        conn.execute(text(f"UPDATE {schema}feed_cursor SET position = 0 WHERE source = 'registration'"))
        conn.execute(text(f"DELETE FROM {schema}consumed_event WHERE source = 'registration'"))
    engine.dispose()


def test_a_replayed_cancellation_never_refunds_twice(system: System, gateway: Gateway) -> None:
    dept = department(gateway)
    lee = doctor(gateway, dept)
    cancelled = clinic_session(gateway, lee, dept, quota=4)
    later = clinic_session(gateway, lee, dept, quota=4, days_ahead=2)
    booked = [book(gateway.his, cancelled["id"], new_patient(gateway)) for _ in range(2)]
    for appointment in booked:
        ok(pay_fee(gateway.cashier, appointment["id"]), 201)
    disrupt(gateway, cancelled["id"], action="cancel")
    for appointment in booked:
        eventually(partial(refunded, gateway, appointment["id"]), what="the refund")
    refunds = {a["id"]: fee(gateway, a["id"])["refund"] for a in booked}

    system.stop_service("billing")
    try:
        _rewind_billing_registration_feed(system)
    finally:
        system.start_service("billing")
    # A booking made now is read after every event before it: the whole feed again, cancellations too.
    newest = book(gateway.his, later["id"], new_patient(gateway))
    eventually(
        lambda: gateway.cashier.get(f"/v1/booking-fees/{newest['id']}").is_success,
        what="billing to read registration's feed again up to the newest booking",
    )
    assert {a["id"]: fee(gateway, a["id"])["refund"] for a in booked} == refunds
    paid_ids = {a["id"] for a in booked}
    replayed = hub_events(gateway, "payment.refunded", lambda e: e["data"]["appointment_id"] in paid_ids)
    assert sorted(e["data"]["appointment_id"] for e in replayed) == sorted(paid_ids)
