"""Settlement (结算): once every charge caused before it has arrived, pay what is unpaid and close the
account; what arrives later goes onto the supplementary bill (补费)."""

from collections.abc import Sequence

from sqlmodel import Session

from kit.clock import utcnow
from kit.errors import BadGateway, ServiceUnavailable
from kit.feed import FeedConsumer, caught_up
from services.billing import repository
from services.billing.errors import ChargesStillArriving
from services.billing.schemas import PaymentMethod, RegistrationVisit, SettlementCreate, SettlementPublic
from services.billing.service import deposits, inpatient_days, insurance, invoices, tenders
from services.billing.service.accounts import SETTLED, account_for, record, refuse_if_settled
from services.billing.service.payments import check_amount, take_payment


def await_charges(
    consumers: Sequence[FeedConsumer], *, within_seconds: float, nothing_done: str = "Nothing was settled"
) -> None:
    """Return once billing has applied every event its sources (registration, results) had committed
    when this was called, so a settlement sees every charge caused before it was asked for.

    A source that can't say how far its feed goes, or a consumer still behind after `within_seconds`,
    is ChargesStillArriving (503 + Retry-After). Call it before the unit of work: it does HTTP and waits.
    """
    try:
        behind = caught_up(consumers, within_seconds=within_seconds)
    except (ServiceUnavailable, BadGateway) as exc:
        raise ChargesStillArriving(
            f"Cannot confirm every charge has arrived: {exc.detail} {nothing_done}; retry shortly."
        ) from exc
    if behind:
        raise ChargesStillArriving(
            f"Charges from {', '.join(behind)} are still arriving. {nothing_done}; retry shortly.",
            sources=behind,
        )


def settle(
    session: Session,
    *,
    visit_id: str,
    data: SettlementCreate,
    unseen: RegistrationVisit | None,
    split_table: insurance.SplitTable,
    day_items: inpatient_days.DayItems,
) -> SettlementPublic:
    """Pay everything still unpaid and close the account (先诊疗后结算 / 先救治后付费 at discharge): the
    insurer pays its share of it (insurance.py), the deposit and the patient the rest, and an invoice
    (发票) is issued for the lines settled (none when nothing was due); what the account owed back is
    refunded (多退少补). An inpatient's days not yet posted by the nightly job are posted first."""
    account = account_for(session, visit_id=visit_id, unseen=unseen)
    refuse_if_settled(account)
    inpatient_days.post_before_settlement(session, account, items=day_items)
    # 多退: what a paid charge reversed before settlement left owed back goes back now, over the
    # tenders that paid, so a settled account owes nothing either way (the deposit held aside). First,
    # so what the card paid goes back to the card, not to the tender this settlement is about to take.
    sums = deposits.ledger(session, visit_id)
    owed_back = sums.payments_fen - (sums.charges_fen - sums.unpaid_fen)  # paid for, no longer charged
    refunds = (
        tenders.refund_patient(
            session, account, amount_fen=owed_back, first=[], reason="结算退费 (settlement)"
        )
        if owed_back > 0
        else []
    )
    unpaid = repository.unpaid_charges(session, visit_id)
    due = sum(charge.amount_fen for charge in unpaid)
    split, previous = invoices.split_for(session, split_table, account, unpaid)
    insurer = split.insurer_fen - (previous.insurer_fen if previous else 0)
    patient_due = due - insurer
    # The deposit pays first (多退少补): the patient hands over only the rest, `amount_fen` names that.
    from_deposit = deposits.from_deposit_fen(session, account, due_fen=patient_due, method=data.method)
    check_amount(patient_due - from_deposit, data.amount_fen)
    method = PaymentMethod.deposit if patient_due and from_deposit == patient_due else data.method
    payment = (
        take_payment(
            session,
            account=account,
            charges=unpaid,
            method=method,
            from_deposit=from_deposit,
            insurer_fen=insurer,
        )
        if unpaid
        else None
    )
    invoice = (
        invoices.issue(
            session,
            account,
            charges=unpaid,
            split=split,
            paid_by=invoices.paid_by(payment),
            previous=previous,
        )
        if payment
        else None
    )
    settled_at = utcnow()
    account.status, account.settled_at = SETTLED, settled_at
    session.add(account)
    total = sum(charge.amount_fen for charge in repository.list_charges(session, visit_id))
    record(
        session, account, "visit.settled", {"payment_id": payment.id if payment else None, "total_fen": total}
    )
    return SettlementPublic(
        visit_id=visit_id,
        patient_id=account.patient_id,
        status=account.status,
        payment=payment,
        total_fen=total,
        settled_at=settled_at,
        deposit_applied_fen=from_deposit,
        deposit_refundable_fen=deposits.ledger(session, visit_id).held_fen,
        insurer_fen=insurer if payment else 0,
        patient_fen=patient_due if payment else 0,
        invoice=invoice,
        refunds=refunds,
    )
