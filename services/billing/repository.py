"""All of billing's SQL."""

from collections.abc import Collection
from datetime import date

from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, or_, select, update

from services.billing.models import (
    BookingFee,
    BookingPayment,
    CatalogueItem,
    Charge,
    Payment,
    Refund,
    RejectedCharge,
    VisitAccount,
)


def get_item(session: Session, code: str) -> CatalogueItem | None:
    return session.get(CatalogueItem, code)


def list_items(session: Session, *, category: str | None, include_inactive: bool) -> list[CatalogueItem]:
    query = select(CatalogueItem)
    if category:
        query = query.where(CatalogueItem.category == category)
    if not include_inactive:
        query = query.where(col(CatalogueItem.active).is_(True))
    return list(session.exec(query.order_by(col(CatalogueItem.category), col(CatalogueItem.code))).all())


def deactivate_items_except(session: Session, codes: Collection[str]) -> None:
    session.execute(
        update(CatalogueItem)
        .where(col(CatalogueItem.code).not_in(codes), col(CatalogueItem.active).is_(True))
        .values(active=False)
    )


def get_account(session: Session, visit_id: str, *, for_update: bool = False) -> VisitAccount | None:
    """With `for_update`, the account row is locked: on PostgreSQL every money change to one visit
    queues behind the previous one (SQLite already serialises writers with BEGIN IMMEDIATE)."""
    query = select(VisitAccount).where(VisitAccount.visit_id == visit_id)
    if for_update:
        query = query.with_for_update()
    return session.exec(query).first()


def accounts_of_visits(session: Session, visit_ids: Collection[str]) -> set[str]:
    """Which of the visits billing holds an account for."""
    query = select(VisitAccount.visit_id).where(col(VisitAccount.visit_id).in_(visit_ids))
    return set(session.exec(query).all())


def insert_account(session: Session, account: VisitAccount) -> bool:
    """Add an account; False when a concurrent transaction created the same visit's account first."""
    try:
        with session.begin_nested():
            session.add(account)
    except IntegrityError:
        return False
    return True


def repoint_accounts(
    session: Session, *, visit_ids: Collection[str], source_patient_id: str, target_patient_id: str
) -> None:
    session.execute(
        update(VisitAccount)
        .where(
            or_(
                col(VisitAccount.visit_id).in_(visit_ids),
                col(VisitAccount.patient_id) == source_patient_id,
            )
        )
        .values(patient_id=target_patient_id)
    )


def list_charges(session: Session, visit_id: str, *, service_date: date | None = None) -> list[Charge]:
    query = select(Charge).where(Charge.visit_id == visit_id)
    if service_date is not None:
        query = query.where(Charge.service_date == service_date)
    return list(session.exec(query.order_by(col(Charge.charged_at), col(Charge.id))).all())


def unpaid_charges(session: Session, visit_id: str) -> list[Charge]:
    query = select(Charge).where(Charge.visit_id == visit_id, col(Charge.payment_id).is_(None))
    return list(session.exec(query.order_by(col(Charge.charged_at), col(Charge.id))).all())


def supplementary_due_fen(session: Session, visit_id: str) -> int:
    query = select(func.coalesce(func.sum(Charge.amount_fen), 0)).where(
        Charge.visit_id == visit_id, col(Charge.supplementary).is_(True), col(Charge.payment_id).is_(None)
    )
    return int(session.exec(query).one())


def charges_by_id(session: Session, charge_ids: Collection[str]) -> dict[str, Charge]:
    rows = session.exec(select(Charge).where(col(Charge.id).in_(charge_ids))).all()
    return {row.id: row for row in rows}


def charge_for_event(session: Session, event_id: str) -> Charge | None:
    return session.exec(select(Charge).where(Charge.source_event_id == event_id)).first()


def charge_for_order(session: Session, order_id: str) -> Charge | None:
    return session.exec(select(Charge).where(Charge.order_id == order_id)).first()


def mark_paid(session: Session, charges: Collection[Charge], payment_id: str) -> None:
    for charge in charges:
        charge.payment_id = payment_id
        session.add(charge)


def list_payments(session: Session, visit_id: str) -> list[Payment]:
    query = select(Payment).where(Payment.visit_id == visit_id).order_by(col(Payment.paid_at))
    return list(session.exec(query).all())


def rejection_for_event(session: Session, event_id: str) -> RejectedCharge | None:
    return session.exec(select(RejectedCharge).where(RejectedCharge.event_id == event_id)).first()


def list_rejections(session: Session, *, visit_id: str | None, limit: int) -> list[RejectedCharge]:
    query = select(RejectedCharge)
    if visit_id:
        query = query.where(RejectedCharge.visit_id == visit_id)
    return list(session.exec(query.order_by(col(RejectedCharge.id).desc()).limit(limit)).all())


def get_booking_fee(session: Session, appointment_id: str, *, for_update: bool = False) -> BookingFee | None:
    """With `for_update`, the fee row is locked: a payment and a cancellation of one appointment queue."""
    query = select(BookingFee).where(BookingFee.appointment_id == appointment_id)
    if for_update:
        query = query.with_for_update()
    return session.exec(query).first()


def insert_booking_fee(session: Session, fee: BookingFee) -> bool:
    """Add a booking fee; False when the appointment already has one (a concurrent first read of it)."""
    try:
        with session.begin_nested():
            session.add(fee)
    except IntegrityError:
        return False
    return True


def booking_payment_of(session: Session, appointment_id: str) -> BookingPayment | None:
    return session.exec(select(BookingPayment).where(BookingPayment.appointment_id == appointment_id)).first()


def refund_of(session: Session, appointment_id: str) -> Refund | None:
    return session.exec(select(Refund).where(Refund.appointment_id == appointment_id)).first()
