"""Booking fees (预约诊察费): an appointment's consultation fee, read from registration's feed, payable at
booking, refunded once if the appointment is cancelled after payment, and carried onto the visit's
account at check-in as its 诊察费 with the payment already taken (never charged a second time).

Every change to one fee first locks its row, so a payment racing a cancellation either pays a fee that
the cancellation then refunds, or finds it cancelled (409): money is never taken for a cancelled
appointment without a refund. A refund is its own record, unique per appointment: a replayed
`appointment.cancelled` (or a second one) refunds nothing more.
"""

import uuid
from collections.abc import Sequence
from typing import Any

from sqlmodel import Session

from kit.auth import visible_to
from kit.clock import hospital_date
from kit.errors import BadGateway, ServiceUnavailable
from kit.feed import FeedConsumer, caught_up
from kit.outbox import record_event
from services.billing import repository
from services.billing.errors import BookingFeeNotDue, BookingFeeNotFound
from services.billing.models import (
    BookingFee,
    BookingPayment,
    CatalogueItem,
    OutboxEvent,
    Payment,
    Refund,
    VisitAccount,
)
from services.billing.schemas import (
    BookingFeePaymentCreate,
    BookingFeePublic,
    BookingPaymentPublic,
    ChargeOrigin,
    PaymentMethod,
    RefundPublic,
)
from services.billing.service.accounts import instant, record
from services.billing.service.charges import add_charge, reject, well_formed
from services.billing.service.payments import check_amount

DUE, PAID, REFUNDED, VOID, ON_VISIT = "due", "paid", "refunded", "void", "on_visit"
BOOKING_EVENTS = frozenset({"appointment.booked", "appointment.held", "appointment.cancelled"})


def record_for_appointment(
    session: Session, fee: BookingFee, event_type: str, payload: dict[str, Any]
) -> None:
    """A booking-fee event: about the appointment, naming its patient (and its visit, once it has one)."""
    record_event(
        session,
        OutboxEvent,
        event_type=event_type,
        aggregate_type="appointment",
        aggregate_id=fee.appointment_id,
        visit_id=fee.visit_id,
        patient_id=fee.patient_id,
        payload={"appointment_id": fee.appointment_id, **payload},
    )


# --- registration's events ----------------------------------------------------------------------------


def apply_booking_event(session: Session, event: dict[str, Any]) -> None:
    """`appointment.booked`/`.held` keep the appointment's fee; `.cancelled` refunds or voids it."""
    if event["type"] == "appointment.cancelled":
        cancel_booking(session, event=event)
    else:
        record_booking(session, event=event)


def record_booking(session: Session, *, event: dict[str, Any]) -> None:
    """Keep the appointment's fee at the catalogue price of its item, once (a hold confirmed later, or a
    replay, finds it kept). An item the catalogue does not price is refused for the cashier."""
    data = event["data"]
    appointment_id = well_formed(data.get("appointment_id"))
    patient_id = well_formed(data.get("patient_id") or event.get("patient_id"))
    if appointment_id is None or patient_id is None:
        reject(session, event=event, reason="invalid-appointment", item_code=data.get("fee_item"))
        return
    if repository.get_booking_fee(session, appointment_id) is not None:
        return
    item_code = data.get("fee_item")
    item = repository.get_item(session, item_code) if isinstance(item_code, str) else None
    if item is None or not item.active:
        reject(session, event=event, reason="unknown-item", item_code=item_code)
        return
    fee = BookingFee(
        appointment_id=appointment_id,
        patient_id=patient_id,
        clinic_session_id=str(data.get("clinic_session_id") or "")[:36],
        department=str(data.get("department") or "")[:32],
        item_code=item.code,
        item_name=item.name_zh,
        unit=item.unit,
        amount_fen=item.price_fen,
        booked_at=instant(event["occurred_at"]),
    )
    repository.insert_booking_fee(session, fee)


def cancel_booking(session: Session, *, event: dict[str, Any]) -> None:
    """A cancelled appointment: a paid fee is refunded the way it was paid (退费), a due one is void.

    Exactly once: a fee already refunded, void or on a visit is left as it is."""
    data = event["data"]
    appointment_id = well_formed(data.get("appointment_id"))
    fee = repository.get_booking_fee(session, appointment_id, for_update=True) if appointment_id else None
    if fee is None or fee.status not in (DUE, PAID):
        return
    reason = str(data.get("reason") or "unknown")[:32]
    fee.cancelled_at, fee.cancel_reason = instant(event["occurred_at"]), reason
    if fee.status == DUE:
        fee.status = VOID
        session.add(fee)
        return
    payment = repository.booking_payment_of(session, fee.appointment_id)
    if payment is None or repository.refund_of(session, fee.appointment_id) is not None:
        raise RuntimeError(f"booking fee {fee.appointment_id} is paid without one payment and no refund")
    refund = Refund(
        id=str(uuid.uuid4()),
        appointment_id=fee.appointment_id,
        payment_id=payment.id,
        amount_fen=payment.amount_fen,
        method=payment.method,
        reason=reason,
        source_event_id=event["id"],
    )
    fee.status = REFUNDED
    session.add_all([fee, refund])
    record_for_appointment(
        session,
        fee,
        "payment.refunded",
        {
            "refund_id": refund.id,
            "payment_id": payment.id,
            "amount_fen": refund.amount_fen,
            "method": refund.method,
            "reason": refund.reason,
            "charge_id": None,  # a visit's refund names its corrected charge (tenders.py)
        },
    )


def move_onto_visit(
    session: Session, *, event: dict[str, Any], account: VisitAccount, appointment_id: str
) -> bool:
    """Check-in (`visit.opened` naming its appointment): the fee becomes the visit's 诊察费 charge, with
    its payment when it was paid. False when there is no fee to move (the caller charges as without an
    appointment); True when the visit's 诊察费 is the fee's (moved now, or by this event before)."""
    fee = repository.get_booking_fee(session, appointment_id, for_update=True)
    if fee is None or fee.patient_id != account.patient_id:
        return False
    if fee.status == ON_VISIT:
        return True  # a replay of the check-in
    if fee.status not in (DUE, PAID):
        return False  # cancelled before check-in: charged on the visit like any 诊察费
    # The price the patient booked (and maybe paid) at, even if the catalogue changed since.
    priced = CatalogueItem(
        code=fee.item_code,
        name_zh=fee.item_name,
        name_en=fee.item_name,
        unit=fee.unit,
        price_fen=fee.amount_fen,
        category="registration",
    )
    charge = add_charge(
        session,
        account=account,
        item=priced,
        quantity=1,
        origin=ChargeOrigin.registration,
        service_date=hospital_date(instant(event["occurred_at"])),
        source_event_id=event["id"],
        note=f"appointment {fee.appointment_id}",
        department=fee.department,  # the clinic session's
        enforce_rules=False,  # the fee was accepted at booking; the visit's own 诊察费 is this one
    )
    if fee.status == PAID:
        charge.payment_id = _carry_payment(session, fee=fee, account=account)
        session.add(charge)
        record(
            session,
            account,
            "charge.paid",
            {"charge_id": charge.id, "order_id": None, "payment_id": charge.payment_id},
        )
    fee.status, fee.visit_id, fee.charge_id = ON_VISIT, account.visit_id, charge.id
    session.add(fee)
    return True


def _carry_payment(session: Session, *, fee: BookingFee, account: VisitAccount) -> str:
    """The booking payment as a payment of the visit (same id, amount, method and time): the account's
    balance and its payments show the money taken at booking."""
    booked = repository.booking_payment_of(session, fee.appointment_id)
    if booked is None:
        raise RuntimeError(f"booking fee {fee.appointment_id} is paid without a payment")
    session.add(
        Payment(
            id=booked.id,
            visit_id=account.visit_id,
            amount_fen=booked.amount_fen,
            method=booked.method,
            paid_at=booked.paid_at,
        )
    )
    session.flush()  # the charge's foreign key needs the payment row
    return booked.id


# --- the API ------------------------------------------------------------------------------------------


def await_bookings(consumers: Sequence[FeedConsumer], *, within_seconds: float) -> None:
    """Wait (bounded) until billing has read the appointments registration had committed, so a fee paid
    right after booking is found. Call it outside any transaction: it does HTTP and waits. Registration
    unable to say how far its feed goes changes nothing: the fee is then not found (404)."""
    try:
        caught_up(consumers, within_seconds=within_seconds)
    except (ServiceUnavailable, BadGateway):
        return


def is_known(session: Session, *, appointment_id: str) -> bool:
    return repository.get_booking_fee(session, appointment_id) is not None


def known_fee(
    session: Session, appointment_id: str, acting_for: str | None = None, *, for_update: bool = False
) -> BookingFee:
    """The appointment's fee; acting for another patient, 404 exactly as for one billing does not have."""
    fee = repository.get_booking_fee(session, appointment_id, for_update=for_update)
    if fee is None or not visible_to(acting_for, fee.patient_id):
        raise BookingFeeNotFound("Billing has no booking fee for this appointment.")
    return fee


def booking_fee_view(
    session: Session, *, appointment_id: str, acting_for: str | None = None
) -> BookingFeePublic:
    return fee_to_public(session, known_fee(session, appointment_id, acting_for))


def pay_booking_fee(
    session: Session, *, appointment_id: str, data: BookingFeePaymentCreate, acting_for: str | None = None
) -> BookingFeePublic:
    """Pay a due booking fee in full; 409 once it is paid, or its appointment cancelled or checked in."""
    fee = known_fee(session, appointment_id, acting_for, for_update=True)
    if fee.status != DUE:
        raise BookingFeeNotDue(
            f"The booking fee of appointment {appointment_id} is {fee.status}; nothing to pay.",
            fee_status=fee.status,
        )
    check_amount(fee.amount_fen, data.amount_fen)
    payment = BookingPayment(
        id=str(uuid.uuid4()), appointment_id=fee.appointment_id, amount_fen=fee.amount_fen, method=data.method
    )
    fee.status = PAID
    session.add_all([fee, payment])
    record_for_appointment(
        session,
        fee,
        "booking_fee.paid",
        {
            "payment_id": payment.id,
            "amount_fen": payment.amount_fen,
            "method": payment.method,
            "item_code": fee.item_code,
        },
    )
    return fee_to_public(session, fee, payment=payment)


def fee_to_public(
    session: Session, fee: BookingFee, *, payment: BookingPayment | None = None
) -> BookingFeePublic:
    payment = payment or repository.booking_payment_of(session, fee.appointment_id)
    refund = repository.refund_of(session, fee.appointment_id)
    return BookingFeePublic(
        **fee.model_dump(),
        payment=BookingPaymentPublic(
            id=payment.id,
            amount_fen=payment.amount_fen,
            method=PaymentMethod(payment.method),
            paid_at=payment.paid_at,
        )
        if payment
        else None,
        refund=RefundPublic(
            id=refund.id,
            payment_id=refund.payment_id,
            amount_fen=refund.amount_fen,
            method=PaymentMethod(refund.method),
            reason=refund.reason,
            refunded_at=refund.refunded_at,
        )
        if refund
        else None,
    )
