"""Corrections (冲销): a charge is never edited or deleted; a reversal line cancels it.

The line copies the charge with the quantity and amount negated, its service date (so the day's bill
and the per-day rules net it out: a wrongly posted bed-day can be posted again), the reason and the
operator, and points at the charge (`reversal_of`, unique: a charge is reversed at most once, even by
racing requests). A paid charge's line carries the same payment, so the account's balance shows the
money now owed back; an unpaid charge and its line cancel out and are due no more.
"""

import uuid

from sqlmodel import Session

from services.billing import repository
from services.billing.errors import ChargeAlreadyReversed, ChargeIsReversal, ChargeNotFound
from services.billing.models import Charge
from services.billing.schemas import ChargeOrigin, ChargePublic, ReversalCreate
from services.billing.service.accounts import charge_to_public, record, refuse_if_settled


def reverse_charge(session: Session, *, charge_id: str, data: ReversalCreate) -> ChargePublic:
    """Post the reversal line of a charge; emits `charge.reversed`. 404 for no such charge, 409 when it
    is already reversed, is itself a reversal, or its account is settled."""
    charge = repository.get_charge(session, charge_id)
    if charge is None:
        raise ChargeNotFound("No such charge.")
    account = repository.get_account(session, charge.visit_id, for_update=True)
    if account is None:  # a charge always has its account (foreign key)
        raise RuntimeError(f"charge {charge_id} without an account")
    refuse_if_settled(account)
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
    return charge_to_public(line, account)
