"""A visit's account: opened from registration's feed (or, for a visit not read yet, from registration's
answer), locked before every money change, and shown as the account view (the daily bill, 一日清单, is
`daily_bill.py`)."""

from datetime import date, datetime
from typing import Any

from sqlmodel import Session

from kit.auth import visible_to
from kit.client import ServiceClient
from kit.clock import as_utc, hospital_date, utcnow
from kit.database import Database
from kit.errors import ensure_visit_open
from kit.outbox import record_event
from services.billing import repository
from services.billing.errors import AccountSettled, VisitNotFound
from services.billing.models import Charge, OutboxEvent, VisitAccount
from services.billing.schemas import (
    AccountPublic,
    ChargePublic,
    PaymentPublic,
    RegistrationVisit,
)

SETTLED = "settled"


def hospital_today() -> date:
    return hospital_date(utcnow())


def instant(text: str) -> datetime:
    """A timestamp from another service's event, in UTC."""
    return as_utc(datetime.fromisoformat(text))


def record(session: Session, account: VisitAccount, event_type: str, payload: dict[str, Any]) -> None:
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


async def unseen_visit(
    database: Database, registration: ServiceClient, *, visit_id: str
) -> RegistrationVisit | None:
    """What registration says of a visit billing has no account for yet; None when it has one.

    For request paths, before the unit of work opens: the look-up in billing's own database is a short
    read behind the read gate, and registration is asked with no gate or transaction held.
    VisitNotFound when registration does not know the visit either.
    """
    if await database.read(lambda session: bool(repository.accounts_of_visits(session, [visit_id]))):
        return None
    visit = await registration.get(RegistrationVisit, "/visits/{visit_id}", visit_id=visit_id)
    if visit is None:
        raise VisitNotFound("No such visit.")
    return visit


async def chargeable_visit(registration: ServiceClient, *, visit_id: str) -> RegistrationVisit:
    """Registration's visit, for a charge posted by hand: VisitNotFound when it has none, VisitClosed when
    it has closed the visit (a charge arriving through a feed, for work done before, is still posted).

    For request paths, before the unit of work opens (as `unseen_visit`).
    """
    visit = await registration.get(RegistrationVisit, "/visits/{visit_id}", visit_id=visit_id)
    if visit is None:
        raise VisitNotFound("No such visit.")
    ensure_visit_open(
        visit_id,
        visit.status,
        detail=(
            f"Visit {visit_id} is closed; it takes no new charge. Settle it, or pay its supplementary bill."
        ),
    )
    return visit


def mark_admitted(session: Session, *, visit_id: str, department: str | None) -> None:
    """Registration admitted (or transferred) the visit: its account is an inpatient one from now on
    (same account), of the ward's department, as registration's visit is."""
    account = repository.get_account(session, visit_id, for_update=True)
    if account is not None:
        account.kind = "inpatient"
        account.department = department or account.department
        session.add(account)


def mark_discharged(session: Session, *, visit_id: str, discharged_at: datetime) -> None:
    """Registration discharged the visit: its account awaits the discharge settlement (出院结算).

    Not settled here: settlement takes the patient's payment at the cashier, and waits there (bounded,
    `await_charges`) for every charge caused before it — a green-channel order placed just before
    discharge is on the settled bill, never lost; one read after settlement is on the supplementary bill.
    """
    account = repository.get_account(session, visit_id, for_update=True)
    if account is None:  # an account is opened from visit.opened, which comes first in this feed
        return
    account.discharged_at = discharged_at
    session.add(account)


def open_account(
    session: Session,
    *,
    visit_id: str,
    patient_id: str,
    kind: str,
    payment_mode: str,
    opened_at: datetime,
    department: str | None = None,
) -> VisitAccount:
    """The visit's locked account, created if missing (both feeds and the API may be first to see it)."""
    account = repository.get_account(session, visit_id, for_update=True)
    if account is not None:
        return account
    account = VisitAccount(
        visit_id=visit_id,
        patient_id=patient_id,
        kind=kind,
        payment_mode=payment_mode,
        opened_at=opened_at,
        department=department,
    )
    if repository.insert_account(session, account):
        return account
    existing = repository.get_account(session, visit_id, for_update=True)
    if existing is None:  # the twin that beat us rolled back: let the caller retry
        raise RuntimeError(f"account for visit {visit_id} vanished while being created")
    return existing


def account_for(session: Session, *, visit_id: str, unseen: RegistrationVisit | None) -> VisitAccount:
    """The visit's locked account, opened from `unseen` (registration's answer, asked before the unit
    of work by `unseen_visit`) when billing has not read the visit yet."""
    account = repository.get_account(session, visit_id, for_update=True)
    if account is not None:
        return account
    if unseen is None or unseen.id != visit_id:
        raise VisitNotFound("No such visit.")
    return open_account(
        session,
        visit_id=unseen.id,
        patient_id=unseen.patient_id,
        kind=unseen.kind,
        payment_mode=unseen.payment_mode,
        opened_at=as_utc(unseen.opened_at),
        department=unseen.department,
    )


def scheme_known(session: Session, *, visit_id: str) -> bool:
    """Whether billing has read the visit's insurance scheme (from `visit.opened`)."""
    account = repository.get_account(session, visit_id)
    return account is not None and account.insurance_scheme is not None


def known_account(session: Session, visit_id: str, acting_for: str | None = None) -> VisitAccount:
    """The visit's account; acting for another patient, 404 exactly as for one billing does not have."""
    account = repository.get_account(session, visit_id)
    refuse_unless_visible(account.patient_id if account else None, acting_for)
    assert account is not None
    return account


def refuse_unless_visible(patient_id: str | None, acting_for: str | None) -> None:
    """404 for a visit billing has no account for (`patient_id` None) or another patient's visit, the
    same answer for both, so a patient learns nothing about other visits."""
    if patient_id is None or not visible_to(acting_for, patient_id):
        raise VisitNotFound("Billing has no account for this visit.")


def refuse_if_settled(account: VisitAccount) -> None:
    if account.status == SETTLED:
        raise AccountSettled(f"The account of visit {account.visit_id} is settled; it takes no more changes.")


def charge_to_public(charge: Charge, account: VisitAccount) -> ChargePublic:
    return ChargePublic(**charge.model_dump(), patient_id=account.patient_id, status=charge.status)


def account_view(session: Session, *, visit_id: str, acting_for: str | None = None) -> AccountPublic:
    """Every charge of the visit with its totals; balance = charges − payments. Charges read after the
    account was settled are flagged `supplementary` and add up to the supplementary bill (补费)."""
    account = known_account(session, visit_id, acting_for)
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
        discharged_at=account.discharged_at,
        awaiting_discharge_settlement=account.discharged_at is not None and account.status != SETTLED,
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
