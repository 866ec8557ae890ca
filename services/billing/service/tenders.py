"""Refunds follow the tenders that paid (原路退回): money owed back goes to the methods it came by.

A payment's tenders, in the order they paid: the deposit's part first (at settlement the deposit pays
first, 多退少补), then the money handed over by the payment's own method. The insurer's share (统筹)
is a payment of its own (method `insurance` carrying the scheme it pays under: `insurer_share`); what
it gets back is set by splitting the corrected bill again (reversals.py), never by this order. A
patient's own tender by method `insurance` (the insurance personal account, 个人账户) carries no
scheme: it is a tender like card, given back that way with a receipt.

A refund of `amount` walks the tenders backwards — the newest payment first, within it the last
tender first — and gives each at most what it paid less what was already given back to it (`plan`),
so card goes back to card, mobile to mobile, and the deposit's part back into the deposit held (a
negative deposit application: the deposit can then be topped up, spent or refunded after discharge as
any other). Each part is a negative payment naming the payment it returns (`refund_of`), with a
receipt of its own (the insurer's clawback gets none) and a `payment.refunded` event per method.
The ledger identity (deposits.py) holds line by line: a part back into the deposit lowers payments and
applications alike, moving the money from handed-over to held.
"""

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlmodel import Session, col, select

from services.billing import repository
from services.billing.errors import NothingDue, RefundExceedsPaid, VisitNotFound
from services.billing.models import DepositApplication, Payment, VisitAccount
from services.billing.schemas import PaymentMethod, RefundPartPublic, VisitRefundCreate, VisitRefundPublic
from services.billing.service import deposits
from services.billing.service.accounts import record
from services.billing.service.insurance import SELF_PAY

INSURANCE, DEPOSIT = PaymentMethod.insurance.value, PaymentMethod.deposit.value


def insurer_share(payment: Payment) -> bool:
    """Whether the payment (or refund) is the insurer's share rather than a tender of the patient.
    (Rows written before tenders were told apart carry `self_pay` on a self-pay patient's tender.)"""
    return payment.method == INSURANCE and payment.insurance_scheme not in (None, SELF_PAY)


@dataclass(frozen=True, slots=True)
class Tender:
    """What one payment took by one method, and how much of it was given back already."""

    payment_id: str
    method: str
    paid_fen: int
    refunded_fen: int = 0

    @property
    def refundable_fen(self) -> int:
        return self.paid_fen - self.refunded_fen


def plan(tenders: Sequence[Tender], amount_fen: int) -> tuple[list[tuple[Tender, int]], int]:
    """How `amount_fen` goes back over `tenders` (given in the order they paid): the last first, none
    beyond what it can still take. Returns the parts and the shortfall (0 when they cover it)."""
    parts: list[tuple[Tender, int]] = []
    left = amount_fen
    for tender in reversed(tenders):
        if left <= 0:
            break
        take = min(left, tender.refundable_fen)
        if take > 0:
            parts.append((tender, take))
            left -= take
    return parts, max(0, left)


def tenders_of(session: Session, payments: Iterable[Payment]) -> list[Tender]:
    """The patient's tenders of `payments` (positive, not the insurer's), oldest payment first."""
    paid = [p for p in payments if p.amount_fen > 0 and not insurer_share(p)]
    ids = [p.id for p in paid]
    if not ids:
        return []
    applied = {
        a.payment_id: a.amount_fen
        for a in session.exec(select(DepositApplication).where(col(DepositApplication.payment_id).in_(ids)))
    }
    given_back: dict[tuple[str, str], int] = {}
    for refund in session.exec(select(Payment).where(col(Payment.refund_of).in_(ids))):
        key = (refund.refund_of or "", refund.method)
        given_back[key] = given_back.get(key, 0) - refund.amount_fen
    tenders: list[Tender] = []
    for payment in sorted(paid, key=lambda p: (p.paid_at, p.id)):
        from_deposit = min(applied.get(payment.id, 0), payment.amount_fen)
        split = [(DEPOSIT, from_deposit), (payment.method, payment.amount_fen - from_deposit)]
        merged: dict[str, int] = {}
        for method, fen in split:
            if fen:
                merged[method] = merged.get(method, 0) + fen
        tenders += [
            Tender(payment.id, method, fen, given_back.get((payment.id, method), 0))
            for method, fen in merged.items()
        ]
    return tenders


def give_back_part(
    session: Session,
    account: VisitAccount,
    *,
    method: str,
    amount_fen: int,
    refund_of: str | None,
    reason: str,
    charge_id: str | None = None,
    to_insurer: bool = False,
) -> RefundPartPublic:
    """One method's part of a refund: the negative payment, the deposit's part back into the deposit,
    the receipt (none for the insurer's clawback) and `payment.refunded`."""
    payment = Payment(
        id=str(uuid.uuid4()),
        visit_id=account.visit_id,
        amount_fen=-amount_fen,
        method=method,
        refund_of=refund_of,
        insurance_scheme=account.insurance_scheme if to_insurer else None,
    )
    session.add(payment)
    session.flush()  # the deposit application's foreign key needs the payment row
    if method == DEPOSIT:
        back = DepositApplication(payment_id=payment.id, visit_id=account.visit_id, amount_fen=-amount_fen)
        session.add(back)
    receipt = (
        deposits.issue_receipt(
            session, account, kind="refund", amount_fen=amount_fen, method=method, reference_id=payment.id
        )
        if not to_insurer
        else None
    )
    session.flush()
    record(
        session,
        account,
        "payment.refunded",
        {
            "appointment_id": None,  # the schema's booking-fee refunds name theirs
            "refund_id": payment.id,
            "payment_id": refund_of or payment.id,
            "amount_fen": amount_fen,
            "method": method,
            "reason": reason[:200],
            "charge_id": charge_id,
        },
    )
    return RefundPartPublic(
        payment_id=payment.id,
        refund_of=refund_of,
        method=PaymentMethod(method),
        amount_fen=amount_fen,
        receipt_number=receipt.number if receipt else None,
    )


def refund_patient(
    session: Session,
    account: VisitAccount,
    *,
    amount_fen: int,
    first: Sequence[Payment],
    reason: str,
    charge_id: str | None = None,
) -> list[RefundPartPublic]:
    """Give `amount_fen` back to the patient over the tenders of `first` (the payments that paid what
    is refunded), then, if they cannot take it all, over the visit's other payments, newest first.
    Never more to a tender than it paid; a shortfall beyond every tender (the bill was paid by means
    billing did not record, e.g. before tenders were kept) goes back the default way (deposits.py)."""
    first_ids = {p.id for p in first}
    others = [p for p in repository.list_payments(session, account.visit_id) if p.id not in first_ids]
    parts, short = plan(tenders_of(session, others) + tenders_of(session, first), amount_fen)
    given = [
        give_back_part(
            session,
            account,
            method=tender.method,
            amount_fen=fen,
            refund_of=tender.payment_id,
            reason=reason,
            charge_id=charge_id,
        )
        for tender, fen in parts
    ]
    if short:
        method = deposits.refund_method(session, account.visit_id).value
        given.append(
            give_back_part(
                session,
                account,
                method=method,
                amount_fen=short,
                refund_of=None,
                reason=reason,
                charge_id=charge_id,
            )
        )
    return given


def refund_insurer(
    session: Session, account: VisitAccount, *, amount_fen: int, reason: str, charge_id: str | None
) -> list[RefundPartPublic]:
    """Give the insurer back `amount_fen` (its share's decrease, from splitting the corrected bill
    again) over its payments, the newest first, none beyond what it paid."""
    query = select(Payment).where(
        Payment.visit_id == account.visit_id, Payment.method == INSURANCE, col(Payment.amount_fen) > 0
    )
    paid = sorted((p for p in session.exec(query) if insurer_share(p)), key=lambda p: (p.paid_at, p.id))
    given_back: dict[str, int] = {}
    if paid:
        refunds = select(Payment).where(col(Payment.refund_of).in_([p.id for p in paid]))
        for row in session.exec(refunds):
            given_back[row.refund_of or ""] = given_back.get(row.refund_of or "", 0) - row.amount_fen
    insurer = [Tender(p.id, INSURANCE, p.amount_fen, given_back.get(p.id, 0)) for p in paid]
    parts, short = plan(insurer, amount_fen)
    # A shortfall cannot arise (the split never gives the insurer back more than it paid), but would
    # still be recorded rather than dropped.
    planned = [(t.payment_id, fen) for t, fen in parts] + ([(None, short)] if short else [])
    return [
        give_back_part(
            session,
            account,
            method=INSURANCE,
            amount_fen=fen,
            refund_of=payment_id,
            reason=reason,
            charge_id=charge_id,
            to_insurer=True,
        )
        for payment_id, fen in planned
    ]


def owed_back_fen(session: Session, visit_id: str) -> int:
    """What the account owes the patient beyond the deposit it holds (balance − deposit held): money
    paid toward charges (the insurer's and the deposit's parts too) less money given back, less every
    charge — positive after a paid charge is reversed before settlement."""
    sums = deposits.ledger(session, visit_id)
    return sums.payments_fen - sums.charges_fen


def refund(session: Session, *, visit_id: str, data: VisitRefundCreate) -> VisitRefundPublic:
    """Refund what the account owes back (all of it by default), split back over the tenders that paid:
    409 `nothing-due` when it owes nothing, 409 `refund-exceeds-paid` above what it owes."""
    account = repository.get_account(session, visit_id, for_update=True)
    if account is None:
        raise VisitNotFound("Billing has no account for this visit.")
    owed = owed_back_fen(session, visit_id)
    if owed <= 0:
        raise NothingDue(f"Visit {visit_id} is owed nothing back.")
    amount = owed if data.amount_fen is None else data.amount_fen
    if amount > owed:
        raise RefundExceedsPaid(
            f"Visit {visit_id} is owed {owed} fen back, not {amount}.", refundable_fen=owed
        )
    parts = refund_patient(
        session, account, amount_fen=amount, first=[], reason=f"{data.reason} ({data.operator})"
    )
    return VisitRefundPublic(visit_id=visit_id, amount_fen=amount, parts=parts)
