"""Charges: only active catalogue items at the catalogue price of their service date, each asked-for
charge posted once, the charging rules (`rules`) enforced on every one, and what may not be charged
refused and recorded for the cashier (never invented, never lost)."""

import logging
import re
import uuid
from datetime import date
from typing import Any

from sqlmodel import Session

from kit.clock import hospital_date
from services.billing import catalogue, repository
from services.billing.errors import ChargeRefused, InvalidServiceDate, ItemNotPricedOnDate, UnknownItem
from services.billing.models import CatalogueItem, Charge, RejectedCharge, VisitAccount
from services.billing.schemas import (
    ID_PATTERN,
    ChargeCreate,
    ChargeOrigin,
    ChargePublic,
    RegistrationVisit,
    RejectedChargePublic,
)
from services.billing.service import deposits
from services.billing.service.accounts import (
    SETTLED,
    account_for,
    charge_to_public,
    hospital_today,
    instant,
    record,
    refuse_if_settled,
)
from services.billing.service.rules import enforce

logger = logging.getLogger("patientflow.billing")
MAX_QUANTITY = 999
DEPARTMENT_PATTERN = r"[a-z0-9-]{1,32}"  # registration's department codes


def add_charge(
    session: Session,
    *,
    account: VisitAccount,
    item: CatalogueItem,
    quantity: int,
    origin: ChargeOrigin,
    service_date: date,
    order_id: str | None = None,
    source_event_id: str | None = None,
    note: str | None = None,
    supplementary: bool = False,
    price_entry_id: int | None = None,
    enforce_rules: bool = True,
    check_balance: bool = True,
    department: str | None = None,
) -> Charge:
    """Post one line at `item`'s price, named after `department` (开单科室; by default the visit's).
    ChargeRefused (nothing posted) when a charging rule forbids it: the caller holds the visit's
    account row locked, so the rules see every earlier charge."""
    if enforce_rules:
        enforce(session, account=account, item_code=item.code, quantity=quantity, service_date=service_date)
    charge = Charge(
        id=str(uuid.uuid4()),
        visit_id=account.visit_id,
        item_code=item.code,
        item_name=item.name_zh,
        unit=item.unit,
        unit_price_fen=item.price_fen,
        quantity=quantity,
        amount_fen=item.price_fen * quantity,
        origin=origin.value,
        order_id=order_id,
        source_event_id=source_event_id,
        note=note,
        service_date=service_date,
        supplementary=supplementary,
        price_entry_id=price_entry_id,
        department=department or account.department,
    )
    session.add(charge)
    record(
        session,
        account,
        "charge.posted",
        {
            "charge_id": charge.id,
            "item_code": charge.item_code,
            "quantity": charge.quantity,
            "amount_fen": charge.amount_fen,
            "order_id": charge.order_id,
            "origin": charge.origin,
        },
    )
    if supplementary:
        session.flush()  # the supplementary bill's due amount counts this charge
        record(
            session,
            account,
            "charge.supplementary",
            {
                "charge_id": charge.id,
                "item_code": charge.item_code,
                "amount_fen": charge.amount_fen,
                "order_id": charge.order_id,
                "supplementary_due_fen": repository.supplementary_due_fen(session, account.visit_id),
            },
        )
    # The account holds a deposit: is it running low? (A batch of charges checks once, after the batch.)
    if check_balance and account.low_balance_threshold_fen is not None:
        session.flush()
        deposits.check_low_balance(session, account)
    return charge


def post_charge(session: Session, *, data: ChargeCreate, unseen: RegistrationVisit | None) -> ChargePublic:
    """Charge an active catalogue item at its catalogue price on the service date, dated within the visit:
    from the day it opened to today (hospital time). `unseen`: registration's visit, when billing had no
    account. ChargeRefused when a charging rule forbids it (the router records `charge.refused`)."""
    item = repository.get_item(session, data.item_code)
    if item is None or not item.active:
        raise UnknownItem(
            f"{data.item_code!r} is not an active item of the price catalogue.", item_code=data.item_code
        )
    today = hospital_today()
    if data.service_date is not None and data.service_date > today:
        raise InvalidServiceDate(f"A charge cannot be dated after today ({today.isoformat()}).")
    account = account_for(session, visit_id=data.visit_id, unseen=unseen)
    refuse_if_settled(account)
    opened = hospital_date(account.opened_at)
    if data.service_date is not None and data.service_date < opened:
        raise InvalidServiceDate(
            f"A charge cannot be dated before its visit opened ({opened.isoformat()}).",
            visit_opened=opened.isoformat(),
        )
    service_date = data.service_date or today
    price = catalogue.price_on(session, code=item.code, day=service_date)
    if price is None:
        raise ItemNotPricedOnDate(
            f"{item.code} has no price on {service_date.isoformat()} in the catalogue in force.",
            item_code=item.code,
        )
    charge = add_charge(
        session,
        account=account,
        item=price.item,
        quantity=data.quantity,
        origin=ChargeOrigin.manual,
        service_date=service_date,
        note=data.note,
        price_entry_id=price.entry_id,
    )
    return charge_to_public(charge, account)


def record_refusal(
    session: Session, refusal: ChargeRefused, *, source: str, order_id: str | None = None
) -> None:
    """`charge.refused` for a charge a rule forbade (its visit's account exists: the rules read it)."""
    account = repository.get_account(session, refusal.visit_id)
    if account is None:
        return
    refused(
        session,
        account=account,
        reason=refusal.reason,
        item_code=refusal.item_code,
        quantity=refusal.quantity,
        service_date=refusal.service_date,
        rule_id=refusal.rule_id,
        source=source,
        order_id=order_id,
    )


def refused(
    session: Session,
    *,
    account: VisitAccount,
    reason: str,
    item_code: Any,
    quantity: Any,
    service_date: date | None,
    source: str,
    rule_id: int | None = None,
    order_id: str | None = None,
    source_event_id: str | None = None,
) -> None:
    """Announce a refused charge (`charge.refused`), so the ward and the patient's app see it too."""
    record(
        session,
        account,
        "charge.refused",
        {
            "item_code": str(item_code)[:64] if item_code is not None else None,
            "quantity": quantity if type(quantity) is int else None,
            "service_date": service_date.isoformat() if service_date else None,
            "reason": reason,
            "rule_id": rule_id,
            "source": source,
            "order_id": order_id,
            "source_event_id": source_event_id,
        },
    )


def charge_for_event(
    session: Session,
    *,
    event: dict[str, Any],
    account: VisitAccount,
    item_code: Any,
    quantity: Any,
    origin: ChargeOrigin,
    order_id: str | None = None,
    department: Any = None,
) -> Charge | None:
    """Post the charge an event asks for, once per event id; refuse (and record) what may not be charged.
    Returns the charge posted now (None for a replay or a refusal). `department`: the one the event
    names (an order's 开单科室), else the visit's.

    The service date is the day the event happened, so a consumer catching up after midnight still
    puts the charge on the right 一日清单. A settled account still takes it, on the supplementary bill.
    """
    event_id = event["id"]
    if repository.charge_for_event(session, event_id) or repository.rejection_for_event(session, event_id):
        return None  # a replay: this event was already charged or refused
    service_date = hospital_date(instant(event["occurred_at"]))

    def refuse(reason: str, rule_id: int | None = None) -> None:
        reject(session, event=event, reason=reason, item_code=item_code, order_id=order_id)
        refused(
            session,
            account=account,
            reason=reason,
            item_code=item_code,
            quantity=quantity,
            service_date=service_date,
            source=str(event.get("source") or "unknown")[:32],
            rule_id=rule_id,
            order_id=order_id,
            source_event_id=event_id,
        )

    item = repository.get_item(session, item_code) if isinstance(item_code, str) else None
    if item is None or not item.active:
        refuse("unknown-item")
        return None
    reason = _refusal(session, quantity=quantity, order_id=order_id)
    if reason:
        refuse(reason)
        return None
    price = catalogue.price_on(session, code=item.code, day=service_date)
    if price is None:
        refuse("not-priced-on-date")
        return None
    try:
        return add_charge(
            session,
            account=account,
            item=price.item,
            quantity=quantity,
            origin=origin,
            service_date=service_date,
            order_id=order_id,
            source_event_id=event["id"],
            supplementary=account.status == SETTLED,  # caused before, read after settlement: 补费
            price_entry_id=price.entry_id,
            department=department_code(department),
        )
    except ChargeRefused as refusal:
        refuse(refusal.reason, refusal.rule_id)
        return None


def _refusal(session: Session, *, quantity: Any, order_id: str | None) -> str | None:
    """Why an event's charge of a catalogue item must not be posted, or None (never repeat a charge)."""
    if type(quantity) is not int or not 1 <= quantity <= MAX_QUANTITY:
        return "invalid-quantity"
    if order_id is not None and repository.charge_for_order(session, order_id) is not None:
        return "duplicate-order"
    return None


def department_code(value: Any) -> str | None:
    """A department code from another service's event, or None if it is not one (then the visit's)."""
    return value if isinstance(value, str) and re.fullmatch(DEPARTMENT_PATTERN, value) else None


def well_formed(value: Any) -> str | None:
    """An id from another service's event, or None if it is not one (a malformed event must be refused,
    not retried for ever by the consumer)."""
    return value if isinstance(value, str) and re.fullmatch(ID_PATTERN, value) else None


def reject(
    session: Session, *, event: dict[str, Any], reason: str, item_code: Any, order_id: str | None = None
) -> None:
    if repository.rejection_for_event(session, event["id"]):
        return
    session.add(
        RejectedCharge(
            event_id=event["id"],
            source=event.get("source") or "unknown",
            visit_id=well_formed(event.get("visit_id")),
            item_code=str(item_code)[:64] if item_code is not None else None,
            order_id=well_formed(order_id),
            reason=reason,
        )
    )
    logger.warning("refused to charge %s event %s: %s", event.get("source"), event["id"], reason)


def list_rejections(session: Session, *, visit_id: str | None, limit: int) -> list[RejectedChargePublic]:
    rejections = repository.list_rejections(session, visit_id=visit_id, limit=limit)
    return [RejectedChargePublic.model_validate(row, from_attributes=True) for row in rejections]
