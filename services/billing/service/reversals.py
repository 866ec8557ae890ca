"""Corrections (冲销): a charge is never edited or deleted; a reversal line cancels it.

The line copies the charge with the quantity and amount negated, its service date (so the day's bill
and the per-day rules net it out: a wrongly posted bed-day can be posted again), the reason and the
operator, and points at the charge (`reversal_of`, unique: a charge is reversed at most once, even by
racing requests). A paid charge's line carries the same payment, so the account's balance shows the
money now owed back; an unpaid charge and its line cancel out and are due no more.

After settlement (a correction of a settled bill) the line also corrects the money: when the charge is
on the current invoice, the split is made again over its lines plus the reversal line, exactly as the
supplementary bill does (deductible and cap per visit), and a new invoice supersedes the old one; the
insurer's share falls by the difference (a negative `insurance` payment) and the patient is refunded
the rest, with a receipt (`payments.give_back`). A paid charge not on the invoice is refunded whole.
"""

import uuid

from sqlmodel import Session

from services.billing import repository
from services.billing.errors import ChargeAlreadyReversed, ChargeIsReversal, ChargeNotFound
from services.billing.models import Charge, Payment, VisitAccount
from services.billing.schemas import ChargeOrigin, ChargePublic, PaymentMethod, ReversalCreate
from services.billing.service import deposits, insurance, invoices
from services.billing.service.accounts import SETTLED, charge_to_public, record
from services.billing.service.payments import give_back


def reverse_charge(
    session: Session, *, charge_id: str, data: ReversalCreate, split_table: insurance.SplitTable
) -> ChargePublic:
    """Post the reversal line of a charge; emits `charge.reversed` (and, on a settled account,
    `invoice.issued` for the corrected invoice). 404 for no such charge, 409 when it is already
    reversed or is itself a reversal."""
    charge = repository.get_charge(session, charge_id)
    if charge is None:
        raise ChargeNotFound("No such charge.")
    account = repository.get_account(session, charge.visit_id, for_update=True)
    if account is None:  # a charge always has its account (foreign key)
        raise RuntimeError(f"charge {charge_id} without an account")
    if charge.reversal_of is not None:
        raise ChargeIsReversal("This charge is a reversal line; it cannot be reversed.", charge_id=charge_id)
    line = Charge(
        id=str(uuid.uuid4()),
        visit_id=charge.visit_id,
        item_code=charge.item_code,
        item_name=charge.item_name,
        unit=charge.unit,
        unit_price_fen=charge.unit_price_fen,
        quantity=-charge.quantity,
        amount_fen=-charge.amount_fen,
        origin=ChargeOrigin.reversal.value,
        note=None,
        payment_id=charge.payment_id,
        service_date=charge.service_date,
        supplementary=charge.supplementary,
        price_entry_id=charge.price_entry_id,
        reversal_of=charge.id,
        reversal_reason=data.reason,
        operator=data.operator,
    )
    if repository.reversal_of_charge(session, charge.id) or not repository.insert_reversal(session, line):
        raise ChargeAlreadyReversed("This charge is already reversed.", charge_id=charge_id)
    record(
        session,
        account,
        "charge.reversed",
        {
            "charge_id": line.id,
            "reversal_of": charge.id,
            "item_code": line.item_code,
            "quantity": line.quantity,
            "amount_fen": line.amount_fen,
            "service_date": line.service_date.isoformat(),
            "reason": data.reason,
            "operator": data.operator,
        },
    )
    if account.status == SETTLED and charge.payment_id is not None:
        _correct_settled(session, account, charge=charge, line=line, split_table=split_table)
    return charge_to_public(line, account)


def _correct_settled(
    session: Session,
    account: VisitAccount,
    *,
    charge: Charge,
    line: Charge,
    split_table: insurance.SplitTable,
) -> None:
    """Owe back what the settled bill took for `charge`: the insurer's share decrease, and the
    patient's part refunded the way it was paid (a deposit's part the way the deposit came in)."""
    previous = invoices.current_invoice(session, account.visit_id)
    on_invoice = previous is not None and any(
        old.charge_id == charge.id for old in invoices.lines_of(session, previous.id)
    )
    insurer_back = 0
    if on_invoice:
        split, previous = invoices.split_for(session, split_table, account, [line])
        old_insurer = previous.insurer_fen if previous else 0
        insurer_back = max(0, min(charge.amount_fen, old_insurer - split.insurer_fen))
    patient_back = charge.amount_fen - insurer_back
    paid = session.get(Payment, charge.payment_id)
    method = PaymentMethod(paid.method) if paid else PaymentMethod.cash
    # The invoice's money by method loses the patient's part where the settlement recorded it.
    paid_key = method.value
    if method in (PaymentMethod.deposit, PaymentMethod.insurance):
        method = deposits.refund_method(session, account.visit_id)
    if insurer_back:
        give_back(session, account, amount_fen=insurer_back, method=PaymentMethod.insurance)
    if patient_back:
        give_back(session, account, amount_fen=patient_back, method=method)
    given_back = {"insurance": -insurer_back}
    given_back[paid_key] = given_back.get(paid_key, 0) - patient_back  # the insurer's payment: same key
    if on_invoice:
        invoices.issue(
            session,
            account,
            charges=[line],
            split=split,
            paid_by=given_back,
            previous=previous,
        )
