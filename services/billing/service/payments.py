"""Payments: some or all unpaid charges of a visit in one payment, all or nothing, for exactly what is due."""

import uuid

from sqlmodel import Session

from services.billing import repository
from services.billing.errors import (
    AmountMismatch,
    ChargeAlreadyPaid,
    ChargeNotFound,
    ChargeReversed,
    NothingDue,
)
from services.billing.models import Charge, Payment, VisitAccount
from services.billing.schemas import PaymentCreate, PaymentMethod, PaymentPublic, RegistrationVisit
from services.billing.service import deposits, insurance, invoices
from services.billing.service.accounts import SETTLED, account_for, record


def _charges_to_pay(session: Session, *, account: VisitAccount, charge_ids: list[str] | None) -> list[Charge]:
    """The listed charges (all of them unpaid charges of this visit), or every unpaid charge."""
    if charge_ids is None:
        charges = repository.unpaid_charges(session, account.visit_id)
    else:
        wanted = list(dict.fromkeys(charge_ids))
        found = repository.charges_by_id(session, wanted)
        missing = [i for i in wanted if i not in found or found[i].visit_id != account.visit_id]
        if missing:
            # Positions, not the ids: an id the visit does not have is whatever the client typed.
            positions = [n for n, charge_id in enumerate(charge_ids) if charge_id in missing]
            raise ChargeNotFound(
                "This visit has no charge with some of the listed ids.", missing_positions=positions
            )
        paid = [i for i in wanted if found[i].payment_id is not None]
        if paid:
            raise ChargeAlreadyPaid(f"Charge {paid[0]} is already paid.", charge_ids=paid)
        # A reversed charge, or a reversal line, is due no more: it cancels out with its pair.
        cancelled = [i for i in wanted if found[i].reversal_of or repository.reversal_of_charge(session, i)]
        if cancelled:
            raise ChargeReversed(
                f"Charge {cancelled[0]} is reversed; nothing is due on it.", charge_ids=cancelled
            )
        charges = [found[i] for i in wanted]
    if not charges:
        raise NothingDue(f"Visit {account.visit_id} has no unpaid charges.")
    return charges


def check_amount(due_fen: int, amount_fen: int | None) -> None:
    """A stated amount must match to the fen: a cashier's typo must not part-pay a bill."""
    if amount_fen is not None and amount_fen != due_fen:
        raise AmountMismatch(f"The amount due is {due_fen} fen, not {amount_fen}.", due_fen=due_fen)


def take_payment(
    session: Session,
    *,
    account: VisitAccount,
    charges: list[Charge],
    method: PaymentMethod,
    from_deposit: int = 0,
    insurer_fen: int = 0,
) -> PaymentPublic:
    """Pay the charges whole; `from_deposit` fen of it come out of the visit's deposit (deposits.py) and
    `insurer_fen` are the insurer's share, a payment of its own by method `insurance` (settlement)."""
    total = sum(charge.amount_fen for charge in charges)
    insurer_pays_all = insurer_fen == total and total > 0
    if insurer_pays_all:  # the payment itself is the insurer's
        method, insurer_fen = PaymentMethod.insurance, 0
    scheme = invoices.scheme_of(account)
    if insurer_fen:
        session.add(
            Payment(
                id=str(uuid.uuid4()),
                visit_id=account.visit_id,
                amount_fen=insurer_fen,
                method=PaymentMethod.insurance.value,
                insurance_scheme=scheme,
            )
        )
    payment = Payment(
        id=str(uuid.uuid4()),
        visit_id=account.visit_id,
        amount_fen=total - insurer_fen,
        method=method.value,
        # The scheme marks the insurer's money; a patient's own `insurance` tender (个人账户) has none.
        insurance_scheme=scheme if insurer_pays_all else None,
    )
    session.add(payment)
    session.flush()  # the charges' foreign key needs the payment row
    repository.mark_paid(session, charges, payment.id)
    receipt_number = deposits.after_payment(
        session, account, payment=payment, from_deposit=from_deposit, insurer_fen=insurer_fen
    )
    charge_ids = [charge.id for charge in charges]
    record(
        session,
        account,
        "payment.received",
        {
            "payment_id": payment.id,
            "amount_fen": payment.amount_fen,
            "method": payment.method,
            "charge_ids": charge_ids,
        },
    )
    for charge in charges:  # results releases prepaid orders from these
        record(
            session,
            account,
            "charge.paid",
            {"charge_id": charge.id, "order_id": charge.order_id, "payment_id": payment.id},
        )
    return PaymentPublic(
        id=payment.id,
        visit_id=payment.visit_id,
        amount_fen=payment.amount_fen,
        method=method,
        charge_ids=charge_ids,
        paid_at=payment.paid_at,
        deposit_fen=from_deposit,
        receipt_number=receipt_number,
        insurer_fen=insurer_fen,  # 0 when the payment itself is the insurer's
        insurance_scheme=payment.insurance_scheme or (scheme if insurer_fen else None),
    )


def insured_at_the_cashier(account: VisitAccount) -> bool:
    """An open account of an insured visit: its cashier payments are split as they are made (实时结算),
    so the patient hands over only their own share and the settlement never splits those lines again."""
    return account.status != SETTLED and invoices.scheme_of(account) != insurance.SELF_PAY


def pay(
    session: Session,
    *,
    data: PaymentCreate,
    unseen: RegistrationVisit | None,
    split_table: insurance.SplitTable | None = None,
) -> PaymentPublic:
    """Pay some or all unpaid charges of a visit in one payment; nothing is paid if any listed charge
    cannot be. On a settled account the only unpaid charges are the supplementary bill's (补费): the
    insurer pays the growth of its share and a new invoice supersedes the settlement's (invoices.py).
    An insured visit's cashier payment before settlement is split the same way, at once: the insurer's
    share of the whole visit so far (deductible and cap per visit) less what it already paid, so the
    cashier payments and the settlement consume the deductible and the cap exactly once."""
    account = account_for(session, visit_id=data.visit_id, unseen=unseen)
    charges = _charges_to_pay(session, account=account, charge_ids=data.charge_ids)
    due = sum(charge.amount_fen for charge in charges)
    reissue = split_table is not None and (account.status == SETTLED or insured_at_the_cashier(account))
    previous = None
    insurer_fen = 0
    if reissue and split_table is not None:
        split, previous = invoices.split_for(session, split_table, account, charges)
        insurer_fen = max(0, min(due, split.insurer_fen - (previous.insurer_fen if previous else 0)))
    check_amount(due - insurer_fen, data.amount_fen)
    # Method `deposit`: paid out of the deposit (a prepaid inpatient's order is released from it).
    from_deposit = (
        deposits.from_deposit_fen(session, account, due_fen=due - insurer_fen, method=data.method)
        if data.method == PaymentMethod.deposit
        else 0
    )
    payment = take_payment(
        session,
        account=account,
        charges=charges,
        method=data.method,
        from_deposit=from_deposit,
        insurer_fen=insurer_fen,
    )
    if reissue:
        invoice = invoices.issue(
            session,
            account,
            charges=charges,
            split=insurance.Split(
                total_fen=(previous.total_fen if previous else 0) + due,
                insurer_fen=(previous.insurer_fen if previous else 0) + insurer_fen,
            ),
            paid_by=invoices.paid_by(payment),
            previous=previous,
        )
        payment = payment.model_copy(update={"invoice_number": invoice.number})
    return payment
