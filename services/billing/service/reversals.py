"""Corrections (冲销): a charge is never edited or deleted; a reversal line cancels it.

The line copies the charge with the quantity and amount negated, its service date (so the day's bill
and the per-day rules net it out: a wrongly posted bed-day can be posted again), the reason and the
operator, and points at the charge (`reversal_of`, unique: a charge is reversed at most once, even by
racing requests). A paid charge's line carries the same payment, so the account's balance shows the
money now owed back; an unpaid charge and its line cancel out and are due no more.

After settlement (a correction of a settled bill), and before it for a charge an insured visit paid
at the cashier (split then, so on the current invoice), the line also corrects the money: when the
charge is on the current invoice, the split is made again over its lines plus the reversal line,
exactly as the supplementary bill does (deductible and cap per visit), and a new invoice supersedes
the old one; the insurer's share falls by the difference (a negative `insurance` payment) and the
patient is refunded the rest over the tenders that paid it (tenders.py), a receipt per method. A
settled paid charge not on the invoice is refunded whole, the same way. (An open self-pay account's
paid charge reversed leaves a credit, refunded with `POST /visits/{id}/refunds` or at settlement.)
"""

import uuid

from sqlmodel import Session

from services.billing import repository
from services.billing.errors import ChargeAlreadyReversed, ChargeIsReversal, ChargeNotFound
from services.billing.models import Charge, Payment, VisitAccount
from services.billing.schemas import ChargeOrigin, ChargePublic, ReversalCreate
from services.billing.service import insurance, invoices, tenders
from services.billing.service.accounts import SETTLED, charge_to_public, record


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
        department=charge.department,
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
            "order_id": charge.order_id,  # results cancels the order if its lab has not started
        },
    )
    if charge.payment_id is not None and (account.status == SETTLED or _on_current_invoice(session, charge)):
        _correct_paid(session, account, charge=charge, line=line, reason=data.reason, split_table=split_table)
    return charge_to_public(line, account)


def _on_current_invoice(session: Session, charge: Charge) -> bool:
    previous = invoices.current_invoice(session, charge.visit_id)
    return previous is not None and any(
        old.charge_id == charge.id for old in invoices.lines_of(session, previous.id)
    )


def _correct_paid(
    session: Session,
    account: VisitAccount,
    *,
    charge: Charge,
    line: Charge,
    reason: str,
    split_table: insurance.SplitTable,
) -> None:
    """Owe back what the bill took for `charge` (settled, or split at the cashier): the insurer's share
    decrease back to the insurer, and the patient's part back over the tenders of the charge's payment,
    the last tender first (tenders.py: card to card, the deposit's part into the deposit)."""
    on_invoice = _on_current_invoice(session, charge)
    insurer_back = 0
    if on_invoice:
        split, previous = invoices.split_for(session, split_table, account, [line])
        old_insurer = previous.insurer_fen if previous else 0
        insurer_back = max(0, min(charge.amount_fen, old_insurer - split.insurer_fen))
    patient_back = charge.amount_fen - insurer_back
    paid = session.get(Payment, charge.payment_id)
    # The invoice's money by method loses each part where the payment recorded it.
    given_back: dict[str, int] = {}
    if insurer_back:
        tenders.refund_insurer(session, account, amount_fen=insurer_back, reason=reason, charge_id=charge.id)
        given_back["insurance"] = -insurer_back
    if patient_back:
        parts = tenders.refund_patient(
            session,
            account,
            amount_fen=patient_back,
            first=[paid] if paid else [],
            reason=reason,
            charge_id=charge.id,
        )
        for part in parts:
            given_back[part.method.value] = given_back.get(part.method.value, 0) - part.amount_fen
    if on_invoice:
        invoices.issue(
            session,
            account,
            charges=[line],
            split=split,
            paid_by=given_back,
            previous=previous,
        )
