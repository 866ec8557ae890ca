"""Billing rules: charge only catalogue items at catalogue prices, each charge once, take payments that
match what is due, and settle an account so nothing more is charged to it.

Every money change to a visit first locks its account row, so on PostgreSQL two payments of the same
visit queue instead of both paying one charge.
"""

import logging
import re
import uuid
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any
from urllib.parse import quote

from sqlmodel import Session

from kit.auth import visible_to
from kit.client import ServiceClient
from kit.clock import as_utc, hospital_date, utcnow
from kit.errors import BadGateway, ServiceUnavailable
from kit.feed import FeedConsumer, caught_up
from kit.outbox import record_event
from services.billing import repository
from services.billing.errors import (
    AccountSettled,
    AmountMismatch,
    ChargeAlreadyPaid,
    ChargeNotFound,
    ChargesStillArriving,
    InvalidServiceDate,
    ItemNotFound,
    NothingDue,
    UnknownItem,
    VisitNotFound,
)
from services.billing.models import CatalogueItem, Charge, OutboxEvent, Payment, RejectedCharge, VisitAccount
from services.billing.schemas import (
    ID_PATTERN,
    AccountPublic,
    CatalogueItemPublic,
    CatalogueRow,
    Category,
    ChargeCreate,
    ChargeOrigin,
    ChargePublic,
    DailyBillLine,
    DailyBillPublic,
    PaymentCreate,
    PaymentMethod,
    PaymentPublic,
    RejectedChargePublic,
    SettlementCreate,
    SettlementPublic,
)

logger = logging.getLogger("patientflow.billing")
REGISTRATION_EVENTS = frozenset({"visit.opened", "patient.merged"})
RESULTS_EVENTS = frozenset({"order.placed"})
MAX_QUANTITY = 999
SETTLED = "settled"


def hospital_today() -> date:
    return hospital_date(utcnow())


# Catalogue


def load_catalogue(session: Session, *, rows: Sequence[CatalogueRow]) -> None:
    """Upsert the price list; items no longer in it become inactive (never deleted: bills name them)."""
    for row in rows:
        values = row.model_dump(mode="json")
        item = repository.get_item(session, row.code)
        if item is None:
            session.add(CatalogueItem(**values))
        elif not item.active or any(getattr(item, name) != value for name, value in values.items()):
            item.sqlmodel_update({**values, "active": True, "updated_at": utcnow()})
            session.add(item)
    repository.deactivate_items_except(session, [row.code for row in rows])


def list_catalogue(
    session: Session, *, category: Category | None, include_inactive: bool
) -> list[CatalogueItemPublic]:
    items = repository.list_items(session, category=category, include_inactive=include_inactive)
    return [item_to_public(item) for item in items]


def get_item(session: Session, *, code: str) -> CatalogueItem:
    item = repository.get_item(session, code)
    if item is None:
        raise ItemNotFound("No such catalogue item.")
    return item


def item_to_public(item: CatalogueItem) -> CatalogueItemPublic:
    return CatalogueItemPublic.model_validate(item, from_attributes=True)


# Accounts


def _instant(text: str) -> datetime:
    return as_utc(datetime.fromisoformat(text))


def _open_account(
    session: Session, *, visit_id: str, patient_id: str, kind: str, payment_mode: str, opened_at: datetime
) -> VisitAccount:
    """The visit's locked account, created if missing (both feeds and the API may be first to see it)."""
    account = repository.get_account(session, visit_id, for_update=True)
    if account is not None:
        return account
    account = VisitAccount(
        visit_id=visit_id, patient_id=patient_id, kind=kind, payment_mode=payment_mode, opened_at=opened_at
    )
    if repository.insert_account(session, account):
        return account
    existing = repository.get_account(session, visit_id, for_update=True)
    if existing is None:  # the twin that beat us rolled back: let the caller retry
        raise RuntimeError(f"account for visit {visit_id} vanished while being created")
    return existing


def _account_for(session: Session, *, visit_id: str, registration: ServiceClient) -> VisitAccount:
    """The visit's locked account; a visit billing has not read about yet is looked up in registration."""
    account = repository.get_account(session, visit_id, for_update=True)
    if account is not None:
        return account
    visit = registration.get_json(f"/visits/{quote(visit_id, safe='')}")
    if visit is None:
        raise VisitNotFound("No such visit.")
    return _open_account(
        session,
        visit_id=visit["id"],
        patient_id=visit["patient_id"],
        kind=visit["kind"],
        payment_mode=visit["payment_mode"],
        opened_at=_instant(visit["opened_at"]),
    )


def _account_if_known(
    session: Session, *, visit_id: str | None, registration: ServiceClient
) -> VisitAccount | None:
    if visit_id is None:
        return None
    try:
        return _account_for(session, visit_id=visit_id, registration=registration)
    except VisitNotFound:
        return None


def _known_account(session: Session, visit_id: str, acting_for: str | None = None) -> VisitAccount:
    """The visit's account; acting for another patient, 404 exactly as for one billing does not have."""
    account = repository.get_account(session, visit_id)
    if account is None or not visible_to(acting_for, account.patient_id):
        raise VisitNotFound("Billing has no account for this visit.")
    return account


def _refuse_if_settled(account: VisitAccount) -> None:
    if account.status == SETTLED:
        raise AccountSettled(f"The account of visit {account.visit_id} is settled; it takes no more changes.")


def account_view(session: Session, *, visit_id: str, acting_for: str | None = None) -> AccountPublic:
    """Every charge of the visit with its totals; balance = charges − payments. Charges read after the
    account was settled are flagged `supplementary` and add up to the supplementary bill (补费)."""
    account = _known_account(session, visit_id, acting_for)
    charges = repository.list_charges(session, visit_id)
    payments = repository.list_payments(session, visit_id)
    total = sum(charge.amount_fen for charge in charges)
    paid = sum(payment.amount_fen for payment in payments)
    supplementary = [charge for charge in charges if charge.supplementary]
    return AccountPublic(
        visit_id=account.visit_id,
        patient_id=account.patient_id,
        kind=account.kind,
        payment_mode=account.payment_mode,
        status=account.status,
        settled_at=account.settled_at,
        charges_total_fen=total,
        paid_fen=paid,
        balance_fen=total - paid,
        supplementary_total_fen=sum(charge.amount_fen for charge in supplementary),
        supplementary_due_fen=sum(c.amount_fen for c in supplementary if c.payment_id is None),
        charges=[charge_to_public(charge, account) for charge in charges],
        payments=[
            PaymentPublic(
                **payment.model_dump(),
                charge_ids=[charge.id for charge in charges if charge.payment_id == payment.id],
            )
            for payment in payments
        ],
    )


def daily_bill(
    session: Session, *, visit_id: str, day: date | None, acting_for: str | None = None
) -> DailyBillPublic:
    """The 一日清单 of one hospital day: the charges whose service date is that day."""
    account = _known_account(session, visit_id, acting_for)
    day = day or hospital_today()
    lines = [
        DailyBillLine(charge_id=charge.id, **charge.model_dump(exclude={"id"}), status=charge.status)
        for charge in repository.list_charges(session, visit_id, service_date=day)
    ]
    total = sum(line.amount_fen for line in lines)
    paid = sum(line.amount_fen for line in lines if line.status == "paid")
    return DailyBillPublic(
        visit_id=account.visit_id,
        patient_id=account.patient_id,
        date=day,
        lines=lines,
        total_fen=total,
        paid_fen=paid,
        unpaid_fen=total - paid,
    )


# Charges


def _record(session: Session, account: VisitAccount, event_type: str, payload: dict[str, Any]) -> None:
    """Every billing event is about a visit and names its patient (contracts.md)."""
    record_event(
        session,
        OutboxEvent,
        event_type=event_type,
        aggregate_type="visit",
        aggregate_id=account.visit_id,
        visit_id=account.visit_id,
        patient_id=account.patient_id,
        payload=payload,
    )


def charge_to_public(charge: Charge, account: VisitAccount) -> ChargePublic:
    return ChargePublic(**charge.model_dump(), patient_id=account.patient_id, status=charge.status)


def _add_charge(
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
) -> Charge:
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
    )
    session.add(charge)
    _record(
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
        _record(
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
    return charge


def post_charge(session: Session, *, data: ChargeCreate, registration: ServiceClient) -> ChargePublic:
    """Charge an active catalogue item at its catalogue price, dated within the visit: from the day it
    opened to today (hospital time)."""
    item = repository.get_item(session, data.item_code)
    if item is None or not item.active:
        raise UnknownItem(
            f"{data.item_code!r} is not an active item of the price catalogue.", item_code=data.item_code
        )
    today = hospital_today()
    if data.service_date is not None and data.service_date > today:
        raise InvalidServiceDate(f"A charge cannot be dated after today ({today.isoformat()}).")
    account = _account_for(session, visit_id=data.visit_id, registration=registration)
    _refuse_if_settled(account)
    opened = hospital_date(account.opened_at)
    if data.service_date is not None and data.service_date < opened:
        raise InvalidServiceDate(
            f"A charge cannot be dated before its visit opened ({opened.isoformat()}).",
            visit_opened=opened.isoformat(),
        )
    charge = _add_charge(
        session,
        account=account,
        item=item,
        quantity=data.quantity,
        origin=ChargeOrigin.manual,
        service_date=data.service_date or today,
        note=data.note,
    )
    return charge_to_public(charge, account)


# Payments and settlement


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
        charges = [found[i] for i in wanted]
    if not charges:
        raise NothingDue(f"Visit {account.visit_id} has no unpaid charges.")
    return charges


def _check_amount(due_fen: int, amount_fen: int | None) -> None:
    """A stated amount must match to the fen: a cashier's typo must not part-pay a bill."""
    if amount_fen is not None and amount_fen != due_fen:
        raise AmountMismatch(f"The amount due is {due_fen} fen, not {amount_fen}.", due_fen=due_fen)


def _take_payment(
    session: Session, *, account: VisitAccount, charges: list[Charge], method: PaymentMethod
) -> PaymentPublic:
    payment = Payment(
        id=str(uuid.uuid4()),
        visit_id=account.visit_id,
        amount_fen=sum(charge.amount_fen for charge in charges),
        method=method.value,
    )
    session.add(payment)
    session.flush()  # the charges' foreign key needs the payment row
    repository.mark_paid(session, charges, payment.id)
    charge_ids = [charge.id for charge in charges]
    _record(
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
        _record(
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
    )


def pay(session: Session, *, data: PaymentCreate, registration: ServiceClient) -> PaymentPublic:
    """Pay some or all unpaid charges of a visit in one payment; nothing is paid if any listed charge
    cannot be. On a settled account the only unpaid charges are the supplementary bill's (补费)."""
    account = _account_for(session, visit_id=data.visit_id, registration=registration)
    charges = _charges_to_pay(session, account=account, charge_ids=data.charge_ids)
    _check_amount(sum(charge.amount_fen for charge in charges), data.amount_fen)
    return _take_payment(session, account=account, charges=charges, method=data.method)


def await_charges(consumers: Sequence[FeedConsumer], *, within_seconds: float) -> None:
    """Return once billing has applied every event its sources (registration, results) had committed
    when this was called, so a settlement sees every charge caused before it was asked for.

    A source that can't say how far its feed goes, or a consumer still behind after `within_seconds`,
    is ChargesStillArriving (503 + Retry-After). Call it before the unit of work: it does HTTP and waits.
    """
    try:
        behind = caught_up(consumers, within_seconds=within_seconds)
    except (ServiceUnavailable, BadGateway) as exc:
        raise ChargesStillArriving(
            f"Cannot confirm every charge has arrived: {exc.detail} Nothing was settled; retry shortly."
        ) from exc
    if behind:
        raise ChargesStillArriving(
            f"Charges from {', '.join(behind)} are still arriving. Nothing was settled; retry shortly.",
            sources=behind,
        )


def settle(
    session: Session, *, visit_id: str, data: SettlementCreate, registration: ServiceClient
) -> SettlementPublic:
    """Pay everything still unpaid and close the account (先诊疗后结算 / 先救治后付费 at discharge)."""
    account = _account_for(session, visit_id=visit_id, registration=registration)
    _refuse_if_settled(account)
    unpaid = repository.unpaid_charges(session, visit_id)
    _check_amount(sum(charge.amount_fen for charge in unpaid), data.amount_fen)
    payment = _take_payment(session, account=account, charges=unpaid, method=data.method) if unpaid else None
    settled_at = utcnow()
    account.status, account.settled_at = SETTLED, settled_at
    session.add(account)
    total = sum(charge.amount_fen for charge in repository.list_charges(session, visit_id))
    _record(
        session, account, "visit.settled", {"payment_id": payment.id if payment else None, "total_fen": total}
    )
    return SettlementPublic(
        visit_id=visit_id,
        patient_id=account.patient_id,
        status=account.status,
        payment=payment,
        total_fen=total,
        settled_at=settled_at,
    )


# Events from the other services' feeds


def apply_registration_event(session: Session, event: dict[str, Any]) -> None:
    """Registration's feed: a visit opens an account (and its 诊察费); a merge re-points accounts."""
    data = event["data"]
    if event["type"] == "visit.opened":
        account = _open_account(
            session,
            visit_id=event["visit_id"],
            patient_id=event["patient_id"],
            kind=data["kind"],
            payment_mode=data["payment_mode"],
            opened_at=_instant(event["occurred_at"]),
        )
        if data.get("registration_fee_item"):
            _charge_for_event(
                session,
                event=event,
                account=account,
                item_code=data["registration_fee_item"],
                quantity=1,
                origin=ChargeOrigin.registration,
            )
    elif event["type"] == "patient.merged":
        repository.repoint_accounts(
            session,
            visit_ids=data["visit_ids"],
            source_patient_id=data["source_patient_id"],
            target_patient_id=data["target_patient_id"],
        )


def apply_results_event(session: Session, event: dict[str, Any], *, registration: ServiceClient) -> None:
    """Results' feed: charge each placed order. Registration being down raises, so the event is retried."""
    if event["type"] != "order.placed":
        return
    data = event["data"]
    order_id = _well_formed(data.get("order_id"))
    if order_id is None:
        _reject(session, event=event, reason="invalid-order", item_code=data.get("test_code"))
        return
    account = _account_if_known(
        session, visit_id=_well_formed(event.get("visit_id")), registration=registration
    )
    if account is None:
        _reject(
            session, event=event, reason="unknown-visit", item_code=data.get("test_code"), order_id=order_id
        )
        return
    _charge_for_event(
        session,
        event=event,
        account=account,
        item_code=data.get("test_code"),
        quantity=data.get("quantity", 1),
        origin=ChargeOrigin.order,
        order_id=order_id,
    )


def _charge_for_event(
    session: Session,
    *,
    event: dict[str, Any],
    account: VisitAccount,
    item_code: Any,
    quantity: Any,
    origin: ChargeOrigin,
    order_id: str | None = None,
) -> None:
    """Post the charge an event asks for, once per event id; refuse (and record) what may not be charged.

    The service date is the day the event happened, so a consumer catching up after midnight still
    puts the charge on the right 一日清单. A settled account still takes it, on the supplementary bill.
    """
    event_id = event["id"]
    if repository.charge_for_event(session, event_id) or repository.rejection_for_event(session, event_id):
        return  # a replay: this event was already charged or refused
    item = repository.get_item(session, item_code) if isinstance(item_code, str) else None
    if item is None or not item.active:
        _reject(session, event=event, reason="unknown-item", item_code=item_code, order_id=order_id)
        return
    reason = _refusal(session, account=account, quantity=quantity, order_id=order_id)
    if reason:
        _reject(session, event=event, reason=reason, item_code=item_code, order_id=order_id)
        return
    _add_charge(
        session,
        account=account,
        item=item,
        quantity=quantity,
        origin=origin,
        service_date=hospital_date(_instant(event["occurred_at"])),
        order_id=order_id,
        source_event_id=event["id"],
        supplementary=account.status == SETTLED,  # caused before, read after settlement: 补费
    )


def _refusal(session: Session, *, account: VisitAccount, quantity: Any, order_id: str | None) -> str | None:
    """Why an event's charge of a catalogue item must not be posted, or None (never repeat a charge)."""
    if type(quantity) is not int or not 1 <= quantity <= MAX_QUANTITY:
        return "invalid-quantity"
    if order_id is not None and repository.charge_for_order(session, order_id) is not None:
        return "duplicate-order"
    return None


def _well_formed(value: Any) -> str | None:
    """An id from another service's event, or None if it is not one (a malformed event must be refused,
    not retried for ever by the consumer)."""
    return value if isinstance(value, str) and re.fullmatch(ID_PATTERN, value) else None


def _reject(
    session: Session, *, event: dict[str, Any], reason: str, item_code: Any, order_id: str | None = None
) -> None:
    if repository.rejection_for_event(session, event["id"]):
        return
    session.add(
        RejectedCharge(
            event_id=event["id"],
            source=event.get("source") or "unknown",
            visit_id=_well_formed(event.get("visit_id")),
            item_code=str(item_code)[:64] if item_code is not None else None,
            order_id=_well_formed(order_id),
            reason=reason,
        )
    )
    logger.warning("refused to charge %s event %s: %s", event.get("source"), event["id"], reason)


def list_rejections(session: Session, *, visit_id: str | None, limit: int) -> list[RejectedChargePublic]:
    rejections = repository.list_rejections(session, visit_id=visit_id, limit=limit)
    return [RejectedChargePublic.model_validate(row, from_attributes=True) for row in rejections]
