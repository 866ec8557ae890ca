"""Booking fees: an appointment's 诊察费 kept from registration's `appointment.booked`, paid at booking,
refunded exactly once when the appointment is cancelled, and carried onto the visit at check-in (paid:
with its payment, never charged again; unpaid: charged there).

Registration's appointment events are applied through billing's own handler (as its consumer does), so
each test writes exactly the events it needs, replays included."""

import uuid
from datetime import date, timedelta
from typing import Any

import httpx
from fastapi.testclient import TestClient

from kit.clock import hospital_date, utcnow
from kit.database import Database
from kit.testing import internal_headers
from services.billing.consumers import apply_registration_event
from services.billing.models import BookingPayment
from tests.billing.factories import account, billing_events, keyed, new_visit, rejections

ASSOCIATE_CHIEF = "110200002"  # 副主任医师门诊诊察费, 3000 fen
ASSOCIATE_CHIEF_FEN = 3000


def registration_event(event_type: str, patient_id: str, data: dict[str, Any], **top: Any) -> dict[str, Any]:
    """An event as registration's feed serves it (contracts.md)."""
    return {
        "id": str(uuid.uuid4()),
        "type": event_type,
        "source": "registration",
        "position": 1,
        "aggregate": {"type": "appointment", "id": data.get("appointment_id")},
        "sequence": 1,
        "occurred_at": utcnow().isoformat(),
        "visit_id": None,
        "patient_id": patient_id,
        "data": data,
    } | top


def database_of(client: TestClient) -> Database:
    found: Database = client.app.state.database  # type: ignore[attr-defined]
    return found


def apply(client: TestClient, event: dict[str, Any]) -> None:
    with database_of(client).session() as session:
        apply_registration_event(session, event)


def booked(
    client: TestClient, patient_id: str | None = None, fee_item: str = ASSOCIATE_CHIEF
) -> dict[str, Any]:
    """A booked appointment whose fee billing has read; returns the `appointment.booked` event."""
    appointment_id, patient_id = str(uuid.uuid4()), patient_id or str(uuid.uuid4())
    event = registration_event(
        "appointment.booked",
        patient_id,
        {
            "appointment_id": appointment_id,
            "patient_id": patient_id,
            "clinic_session_id": str(uuid.uuid4()),
            "doctor_id": str(uuid.uuid4()),
            "department": "internal",
            "slot_starts_at": utcnow().isoformat(),
            "channel": "app",
            "fee_item": fee_item,
            "fee_fen": 1,  # registration's figure is informational: billing prices from its catalogue
        },
    )
    apply(client, event)
    return event


def cancelled(booking: dict[str, Any], reason: str = "session_cancelled") -> dict[str, Any]:
    data = booking["data"]
    return registration_event(
        "appointment.cancelled",
        data["patient_id"],
        {
            "appointment_id": data["appointment_id"],
            "patient_id": data["patient_id"],
            "clinic_session_id": data["clinic_session_id"],
            "reason": reason,
        },
    )


def checked_in(visit: dict[str, Any], appointment_id: str) -> dict[str, Any]:
    """Registration's `visit.opened` of a visit opened by checking an appointment in."""
    return registration_event(
        "visit.opened",
        visit["patient_id"],
        {
            "kind": "outpatient",
            "department": "internal",
            "payment_mode": "prepay",
            "registration_fee_item": "110200001",
            "appointment_id": appointment_id,
        },
        visit_id=visit["id"],
        aggregate={"type": "visit", "id": visit["id"]},
    )


def fee(client: TestClient, appointment_id: str, **headers: str) -> dict[str, Any]:
    response = client.get(f"/booking-fees/{appointment_id}", headers=headers or None)
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def pay(client: TestClient, appointment_id: str, key: str | None = None, **body: Any) -> httpx.Response:
    return client.post(
        f"/booking-fees/{appointment_id}/payments", json={"method": "wechat"} | body, headers=keyed(key)
    )


def reconciliation(client: TestClient, day: date) -> dict[str, Any]:
    response = client.get("/reconciliation", params={"date": day.isoformat()})
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def test_a_booked_appointment_has_its_fee_at_the_catalogue_price_once(client: TestClient) -> None:
    booking = booked(client)
    apply(client, booking)  # a replay keeps the one fee
    held_then_booked = booking | {"id": str(uuid.uuid4())}
    apply(client, held_then_booked)

    shown = fee(client, booking["data"]["appointment_id"])
    assert shown["status"] == "due"
    assert (shown["item_code"], shown["amount_fen"]) == (ASSOCIATE_CHIEF, ASSOCIATE_CHIEF_FEN)
    assert shown["patient_id"] == booking["patient_id"]
    assert shown["payment"] is None and shown["refund"] is None


def test_paying_a_fee_takes_it_once_under_one_key(client: TestClient) -> None:
    appointment_id = booked(client)["data"]["appointment_id"]
    key = str(uuid.uuid4())
    first = pay(client, appointment_id, key, amount_fen=ASSOCIATE_CHIEF_FEN)
    again = pay(client, appointment_id, key, amount_fen=ASSOCIATE_CHIEF_FEN)
    assert first.status_code == again.status_code == 201, first.text
    assert again.headers["idempotent-replayed"] == "true"
    assert first.json() == again.json()
    assert first.json()["status"] == "paid"
    assert first.json()["payment"]["amount_fen"] == ASSOCIATE_CHIEF_FEN

    second = pay(client, appointment_id)
    assert second.status_code == 409 and second.json()["type"].endswith("/booking-fee-not-due")
    paid = [e for e in billing_events(client, "booking_fee.paid") if e["aggregate"]["id"] == appointment_id]
    assert len(paid) == 1
    assert paid[0]["data"]["amount_fen"] == ASSOCIATE_CHIEF_FEN and paid[0]["visit_id"] is None


def test_bad_payments_are_problems_and_pay_nothing(client: TestClient) -> None:
    appointment_id = booked(client)["data"]["appointment_id"]
    wrong_amount = pay(client, appointment_id, amount_fen=ASSOCIATE_CHIEF_FEN - 1)
    assert wrong_amount.status_code == 422 and wrong_amount.json()["type"].endswith("/amount-mismatch")
    for body in ({"method": "bitcoin"}, {"method": "cash", "amount_fen": 30.0}, {"method": "cash", "x": 1}):
        response = client.post(f"/booking-fees/{appointment_id}/payments", json=body, headers=keyed())
        assert response.status_code == 422, body
        assert response.headers["content-type"].startswith("application/problem+json")
    unkeyed = client.post(f"/booking-fees/{appointment_id}/payments", json={"method": "cash"})
    assert unkeyed.status_code == 400
    missing = pay(client, str(uuid.uuid4()))
    assert missing.status_code == 404 and missing.json()["type"].endswith("/booking-fee-not-found")
    malformed = client.get("/booking-fees/not..an-id")
    assert malformed.status_code == 400 and malformed.headers["content-type"].startswith(
        "application/problem"
    )
    assert fee(client, appointment_id)["status"] == "due"


def test_a_cancelled_paid_appointment_is_refunded_exactly_once(client: TestClient) -> None:
    booking = booked(client)
    appointment_id = booking["data"]["appointment_id"]
    paid = pay(client, appointment_id, method="alipay").json()
    cancellation = cancelled(booking)
    apply(client, cancellation)
    apply(client, cancellation)  # the same event replayed
    apply(client, cancelled(booking, reason="patient"))  # and a second cancellation of it

    shown = fee(client, appointment_id)
    assert shown["status"] == "refunded" and shown["cancel_reason"] == "session_cancelled"
    refund = shown["refund"]
    assert refund["payment_id"] == paid["payment"]["id"]
    assert (refund["amount_fen"], refund["method"], refund["reason"]) == (
        ASSOCIATE_CHIEF_FEN,
        "alipay",
        "session_cancelled",
    )
    assert shown["payment"] == paid["payment"]  # the payment itself is never edited
    refunds = [
        e for e in billing_events(client, "payment.refunded") if e["aggregate"]["id"] == appointment_id
    ]
    assert len(refunds) == 1
    assert refunds[0]["data"] | {"refund_id": None} == {
        "appointment_id": appointment_id,
        "refund_id": None,
        "payment_id": paid["payment"]["id"],
        "amount_fen": ASSOCIATE_CHIEF_FEN,
        "method": "alipay",
        "reason": "session_cancelled",
        "charge_id": None,  # named by a visit's refunds only (the v1 schema, extended)
    }
    assert pay(client, appointment_id).status_code == 409


def test_a_cancelled_unpaid_appointment_is_void_and_refunds_nothing(client: TestClient) -> None:
    booking = booked(client)
    apply(client, cancelled(booking, reason="patient"))
    shown = fee(client, booking["data"]["appointment_id"])
    assert (shown["status"], shown["refund"]) == ("void", None)
    assert pay(client, booking["data"]["appointment_id"]).status_code == 409
    assert not [
        e
        for e in billing_events(client, "payment.refunded")
        if e["aggregate"]["id"] == booking["data"]["appointment_id"]
    ]


def test_a_paid_fee_moves_onto_the_visit_at_check_in_and_is_not_charged_again(
    client: TestClient, registration: httpx.Client
) -> None:
    visit = new_visit(
        registration, client, payment_mode="settle_later"
    )  # its own 诊察费 line, from registration
    lines_before = len(account(client, visit["id"])["charges"])
    booking = booked(client, visit["patient_id"])
    appointment_id = booking["data"]["appointment_id"]
    paid = pay(client, appointment_id, method="card").json()
    arrival = checked_in(visit, appointment_id)
    apply(client, arrival)
    apply(client, arrival)  # replayed: still one charge

    bill = account(client, visit["id"])
    moved = [c for c in bill["charges"] if c["item_code"] == ASSOCIATE_CHIEF]
    assert len(bill["charges"]) == lines_before + 1 and len(moved) == 1
    assert moved[0]["status"] == "paid" and moved[0]["payment_id"] == paid["payment"]["id"]
    assert moved[0]["amount_fen"] == ASSOCIATE_CHIEF_FEN
    carried = [p for p in bill["payments"] if p["id"] == paid["payment"]["id"]]
    assert carried and carried[0]["method"] == "card" and carried[0]["charge_ids"] == [moved[0]["id"]]
    daily = client.get(f"/visits/{visit['id']}/daily-bill").json()
    assert [line["status"] for line in daily["lines"] if line["item_code"] == ASSOCIATE_CHIEF] == ["paid"]

    shown = fee(client, appointment_id)
    assert (shown["status"], shown["visit_id"], shown["charge_id"]) == (
        "on_visit",
        visit["id"],
        moved[0]["id"],
    )
    apply(client, cancelled(booking))  # too late: the fee is the visit's now
    assert fee(client, appointment_id)["refund"] is None


def test_an_unpaid_fee_is_charged_on_the_visit_at_check_in(
    client: TestClient, registration: httpx.Client
) -> None:
    visit = new_visit(registration, client)
    lines_before = len(account(client, visit["id"])["charges"])
    booking = booked(client, visit["patient_id"])
    appointment_id = booking["data"]["appointment_id"]
    apply(client, checked_in(visit, appointment_id))

    bill = account(client, visit["id"])
    assert len(bill["charges"]) == lines_before + 1
    charged = bill["charges"][-1]
    assert (charged["item_code"], charged["status"], charged["amount_fen"]) == (
        ASSOCIATE_CHIEF,
        "unpaid",
        ASSOCIATE_CHIEF_FEN,
    )
    assert fee(client, appointment_id)["status"] == "on_visit"
    assert pay(client, appointment_id).status_code == 409  # paid on the visit now, not here


def test_a_fee_item_the_catalogue_does_not_price_is_refused_for_the_cashier(client: TestClient) -> None:
    booking = booked(client, fee_item="NOPE0001")
    assert client.get(f"/booking-fees/{booking['data']['appointment_id']}").status_code == 404
    refused = [r for r in rejections(client) if r["event_id"] == booking["id"]]
    assert [r["reason"] for r in refused] == ["unknown-item"]


def test_acting_for_a_patient_reaches_only_its_own_fees(client: TestClient) -> None:
    mine, theirs = booked(client), booked(client)
    me = mine["patient_id"]
    app = internal_headers("app-dev", {"billing:read", "billing:write"}, audience="billing", patient=me)

    for booking, expected in ((theirs, 404), (mine, 200)):
        appointment_id = booking["data"]["appointment_id"]
        assert client.get(f"/booking-fees/{appointment_id}", headers=app).status_code == expected
    refused = client.post(
        f"/booking-fees/{theirs['data']['appointment_id']}/payments",
        json={"method": "wechat"},
        headers=app | keyed(),
    )
    assert refused.status_code == 404 and theirs["patient_id"] not in refused.text
    assert fee(client, theirs["data"]["appointment_id"])["status"] == "due"
    own = client.post(
        f"/booking-fees/{mine['data']['appointment_id']}/payments",
        json={"method": "wechat"},
        headers=app | keyed(),
    )
    assert own.status_code == 201 and own.json()["patient_id"] == me


def test_a_booking_paid_and_refunded_in_one_day_is_on_that_days_reconciliation_and_nets_to_nothing(
    client: TestClient,
) -> None:
    booking = booked(client)
    appointment_id = booking["data"]["appointment_id"]
    paid = pay(client, appointment_id, method="alipay").json()
    apply(client, cancelled(booking))
    refund = fee(client, appointment_id)["refund"]

    day = reconciliation(client, hospital_date(utcnow()))

    assert [
        (line["kind"], line["id"], line["appointment_id"], line["method"], line["amount_fen"])
        for line in day["lines"]
    ] == [
        ("booking_payment", paid["payment"]["id"], appointment_id, "alipay", ASSOCIATE_CHIEF_FEN),
        ("refund", refund["id"], appointment_id, "alipay", ASSOCIATE_CHIEF_FEN),
    ]
    # Taken and given back the same way the same day: nothing left of it.
    assert (
        day["totals_by_method"]["booking_payment"]
        == day["totals_by_method"]["refund"]
        == {"alipay": ASSOCIATE_CHIEF_FEN}
    )
    assert day["totals_by_kind"]["booking_payment"] - day["totals_by_kind"]["refund"] == 0
    assert (day["balanced"], day["mismatches"]) == (True, [])


def test_a_paid_booking_checked_in_on_a_later_day_leaves_the_booking_days_reconciliation_as_it_was(
    client: TestClient, registration: httpx.Client
) -> None:
    visit = new_visit(registration, client, payment_mode="settle_later")
    booking = booked(client, visit["patient_id"])
    appointment_id = booking["data"]["appointment_id"]
    paid = pay(client, appointment_id, method="card").json()["payment"]
    with database_of(client).session() as session:  # paid yesterday (billing stamps every row now)
        taken = session.get(BookingPayment, paid["id"])
        assert taken is not None
        taken.paid_at -= timedelta(days=1)
        session.add(taken)
    booking_day = hospital_date(utcnow()) - timedelta(days=1)
    before = reconciliation(client, booking_day)
    assert [(line["kind"], line["id"], line["visit_id"]) for line in before["lines"]] == [
        ("booking_payment", paid["id"], None)
    ]
    assert before["totals_by_kind"] == {"booking_payment": ASSOCIATE_CHIEF_FEN} and before["balanced"] is True

    apply(client, checked_in(visit, appointment_id))

    assert reconciliation(client, booking_day) == before
    day = reconciliation(client, hospital_date(utcnow()))
    assert (day["balanced"], day["mismatches"]) == (True, [])
    moved = [c for c in account(client, visit["id"])["charges"] if c["item_code"] == ASSOCIATE_CHIEF]
    assert [line["kind"] for line in day["lines"] if line["id"] == moved[0]["id"]] == ["charge"]
    assert paid["id"] not in {line["id"] for line in day["lines"]}  # taken once, on the booking day
    assert "booking_payment" not in day["totals_by_kind"]
