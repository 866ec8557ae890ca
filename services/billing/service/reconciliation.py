"""The day's reconciliation (日对账): every charge, reversal, payment (the insurer's by method
`insurance`, at settlement or at an insured visit's cashier payment), payment refund (money given back
over the tenders that paid, negative; `deposit` when back into the deposit held), deposit,
deposit application, deposit refund, booking-fee payment (`booking_payment`, taken at booking, before
any visit), booking-fee refund (`refund`, a cancelled appointment's) and insurer share of one hospital
day, totals by kind and by method, and `balanced`, checked four ways that do not share arithmetic with
the report:

- each kind's total from the listed lines equals the database's own SUM over the same day;
- each invoice issued that day has insurer + patient = total, and its money by method adds up to it;
- the insurer's payments and refunds of the day (method `insurance` under an insured scheme, summed by
  the database) equal the day's insurer shares;
- each account touched that day has balance (deposits.Ledger, summed by the database) = the sum of its
  lines read one by one (deposits + payments − applications − deposit refunds − charges).

A paid booking fee carried onto the visit at check-in becomes a payment of the visit with the booking
payment's id and time (booking_fees.py): it counts in the visit's balance, never again as a payment of
a day, so the booking day's report is not rewritten by a later check-in and the money is counted once.
"""

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import and_, func
from sqlmodel import Session, col, select

from kit.clock import HOSPITAL_TZ
from services.billing.models import (
    BookingPayment,
    Charge,
    Deposit,
    DepositApplication,
    DepositRefund,
    Invoice,
    Payment,
    Refund,
)
from services.billing.schemas import ReconciliationLine, ReconciliationPublic
from services.billing.service import deposits, insurance

# The booking payment carried onto a visit at check-in: the same money as its `booking_payment`.
_CARRIED = col(Payment.id).in_(select(BookingPayment.id))
# kind → (table, its timestamp column, extra condition or None)
_SOURCES: dict[str, tuple[Any, Any, Any]] = {
    "charge": (Charge, Charge.charged_at, col(Charge.reversal_of).is_(None)),
    "reversal": (Charge, Charge.charged_at, col(Charge.reversal_of).is_not(None)),
    "payment": (Payment, Payment.paid_at, and_(col(Payment.amount_fen) >= 0, ~_CARRIED)),
    # Money owed back after a settled bill's correction (reversals.py): negative payments by method.
    "payment_refund": (Payment, Payment.paid_at, col(Payment.amount_fen) < 0),
    "deposit": (Deposit, Deposit.received_at, None),
    "deposit_applied": (DepositApplication, DepositApplication.applied_at, None),
    "deposit_refund": (DepositRefund, DepositRefund.refunded_at, None),
    "booking_payment": (BookingPayment, BookingPayment.paid_at, None),
    "refund": (Refund, Refund.refunded_at, None),
}
# The kinds on a visit's account (booking fees are an appointment's until check-in).
_ON_ACCOUNT = frozenset(
    {"charge", "reversal", "payment", "payment_refund", "deposit", "deposit_applied", "deposit_refund"}
)
# How each table moves an account's balance: all of a visit's payments, the carried booking payment too.
_BALANCE: tuple[tuple[Any, int], ...] = (
    (Charge, -1),
    (Payment, 1),
    (Deposit, 1),
    (DepositApplication, -1),
    (DepositRefund, -1),
)
INSURANCE = "insurance"


def day_window(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time(), HOSPITAL_TZ).astimezone(UTC)
    return start, start + timedelta(days=1)


def _rows(session: Session, kind: str, start: datetime, end: datetime) -> list[ReconciliationLine]:
    model, stamp, extra = _SOURCES[kind]
    query = select(model).where(stamp >= start, stamp < end)
    if extra is not None:
        query = query.where(extra)
    return [
        ReconciliationLine(
            kind=kind,  # type: ignore[arg-type]
            id=str(getattr(row, "id", None) or row.payment_id),
            visit_id=getattr(row, "visit_id", None),
            method=getattr(row, "method", None),
            amount_fen=row.amount_fen,
            at=getattr(row, stamp.key),
            appointment_id=getattr(row, "appointment_id", None),
        )
        for row in session.exec(query).all()
    ]


def _insurer_shares(session: Session, start: datetime, end: datetime) -> list[Invoice]:
    query = select(Invoice).where(Invoice.issued_at >= start, Invoice.issued_at < end)
    return list(session.exec(query.order_by(col(Invoice.issued_at))).all())


def _database_sum(session: Session, kind: str, start: datetime, end: datetime) -> int:
    model, stamp, extra = _SOURCES[kind]
    query = select(func.coalesce(func.sum(model.amount_fen), 0)).where(stamp >= start, stamp < end)
    if extra is not None:
        query = query.where(extra)
    return int(session.exec(query).one())


def _insurer_paid(session: Session, start: datetime, end: datetime) -> int:
    """The insurer's own payments less its refunds, summed by the database: method `insurance` under an
    insured scheme, as `tenders.insurer_share` tells them (a patient's own `insurance` tender, 个人账户,
    carries no scheme — or `self_pay`, written before tenders were told apart — and pays no share)."""
    query = select(func.coalesce(func.sum(Payment.amount_fen), 0)).where(
        Payment.paid_at >= start,
        Payment.paid_at < end,
        Payment.method == INSURANCE,
        col(Payment.insurance_scheme).is_not(None),
        Payment.insurance_scheme != insurance.SELF_PAY,
        ~_CARRIED,
    )
    return int(session.exec(query).one())


def _balance_from_lines(session: Session, visit_id: str) -> int:
    balance = 0
    for model, sign in _BALANCE:
        query = select(model.amount_fen).where(model.visit_id == visit_id)
        balance += sign * sum(int(amount) for amount in session.exec(query).all())
    return balance


def reconcile(session: Session, *, day: date) -> ReconciliationPublic:
    start, end = day_window(day)
    lines = [line for kind in _SOURCES for line in _rows(session, kind, start, end)]
    mismatches: list[str] = []
    issued = _insurer_shares(session, start, end)
    earlier = {i.supersedes for i in issued if i.supersedes}
    replaced = {
        i.id: i.insurer_fen for i in session.exec(select(Invoice).where(col(Invoice.id).in_(earlier))).all()
    }
    for invoice in issued:
        share = invoice.insurer_fen - replaced.get(invoice.supersedes or "", 0)
        lines.append(
            ReconciliationLine(
                kind="insurer_share",
                id=invoice.id,
                visit_id=invoice.visit_id,
                method=INSURANCE,
                amount_fen=share,
                at=invoice.issued_at,
            )
        )
        if invoice.insurer_fen + invoice.patient_fen != invoice.total_fen:
            mismatches.append(f"invoice {invoice.number}: insurer + patient ≠ total")
        if sum(invoice.paid_by.values()) != invoice.total_fen:
            mismatches.append(f"invoice {invoice.number}: paid by method ≠ total")
    lines.sort(key=lambda line: (line.at, line.kind, line.id))
    by_kind: dict[str, int] = {}
    by_method: dict[str, dict[str, int]] = {}
    for line in lines:
        by_kind[line.kind] = by_kind.get(line.kind, 0) + line.amount_fen
        methods = by_method.setdefault(line.kind, {})
        methods[line.method or "-"] = methods.get(line.method or "-", 0) + line.amount_fen
    for kind in _SOURCES:
        if by_kind.get(kind, 0) != _database_sum(session, kind, start, end):
            mismatches.append(f"{kind}: the lines do not add up to the database's sum")
    insurer_paid = _insurer_paid(session, start, end)
    if insurer_paid != by_kind.get("insurer_share", 0):
        mismatches.append(
            f"insurance: the insurer's payments ({insurer_paid} fen) ≠ the invoices' insurer shares "
            f"({by_kind.get('insurer_share', 0)} fen)"
        )
    for visit_id in sorted({line.visit_id for line in lines if line.visit_id and line.kind in _ON_ACCOUNT}):
        if _balance_from_lines(session, visit_id) != deposits.ledger(session, visit_id).balance_fen:
            mismatches.append(f"visit {visit_id}: balance ≠ the sum of its lines")
    return ReconciliationPublic(
        date=day,
        lines=lines,
        totals_by_kind=by_kind,
        totals_by_method=by_method,
        balanced=not mismatches,
        mismatches=mismatches,
    )
