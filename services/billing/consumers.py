"""What billing does with its siblings' events: registration's visits open accounts (and charge their
registration fee), merges re-point them, admissions and discharges mark them; results' placed orders are
charged.

Handlers run inside the consumer's transaction (kit.feed) and call no one. An order for a visit billing
has not read yet (registration's feed behind results') needs registration's word on the visit: the
results feed's `resolve` hook (`UnseenVisits.resolve`) asks for it before the page's transaction opens.
"""

from collections.abc import Sequence
from typing import Any

from sqlmodel import Session

from kit.client import ServiceClient
from kit.database import Database
from services.billing import repository
from services.billing.schemas import ChargeOrigin, RegistrationVisit
from services.billing.service import booking_fees, inpatient_days
from services.billing.service.accounts import (
    account_for,
    instant,
    mark_admitted,
    mark_discharged,
    open_account,
)
from services.billing.service.charges import charge_for_event, department_code, reject, well_formed
from services.billing.service.deposits import hold_over_credit

REGISTRATION_EVENTS = (
    frozenset({"visit.opened", "patient.merged", "visit.green_channel"})
    | inpatient_days.STAY_EVENTS
    | booking_fees.BOOKING_EVENTS
)
RESULTS_EVENTS = frozenset({"order.placed"})


class UnseenVisits:
    """Registration's answers on the visits one page of results' events names and billing has no
    account for: filled by `resolve` outside any transaction, read by `apply_results_event` inside."""

    def __init__(self, database: Database, registration: ServiceClient) -> None:
        self.database, self.registration = database, registration
        self._page: dict[str, RegistrationVisit | None] = {}

    def resolve(self, events: Sequence[dict[str, Any]]) -> None:
        """Ask registration about the page's unseen visits (None: it does not know one either).

        Registration being down raises, so the consumer reads the page again later: nothing is lost.
        """
        named = {
            visit_id
            for event in events
            if event["type"] in RESULTS_EVENTS and (visit_id := well_formed(event.get("visit_id")))
        }
        with self.database.session(write=False) as session:
            unseen = named - repository.accounts_of_visits(session, named) if named else set()
        self._page = {
            visit_id: self.registration.get_sync(RegistrationVisit, "/visits/{visit_id}", visit_id=visit_id)
            for visit_id in sorted(unseen)
        }

    def answer(self, visit_id: str) -> RegistrationVisit | None:
        """Registration's visit as `resolve` found it (None: unknown there); KeyError if never asked."""
        return self._page[visit_id]


def apply_registration_event(session: Session, event: dict[str, Any]) -> None:
    """Registration's feed: a visit opens an account and charges its 诊察费 (a checked-in appointment's
    booking fee moves onto it instead); a merge re-points accounts; appointments keep, refund or void
    their booking fees; an admission makes it an inpatient account; a discharge marks it for discharge
    settlement (出院结算); a switch to the green channel (`visit.green_channel`) changes its payment mode."""
    data = event["data"]
    if event["type"] in booking_fees.BOOKING_EVENTS:
        booking_fees.apply_booking_event(session, event)
    elif event["type"] == "visit.opened":
        account = open_account(
            session,
            visit_id=event["visit_id"],
            patient_id=event["patient_id"],
            kind=data["kind"],
            payment_mode=data["payment_mode"],
            opened_at=instant(event["occurred_at"]),
        )
        # The scheme at opening is the visit's (an account opened from registration's answer gets it here).
        if data.get("insurance_scheme") and account.insurance_scheme is None:
            account.insurance_scheme = str(data["insurance_scheme"])[:32]
            session.add(account)
        if account.department is None and (department := department_code(data.get("department"))):
            account.department = department
            session.add(account)
        appointment_id = well_formed(data.get("appointment_id"))
        if appointment_id and booking_fees.move_onto_visit(
            session, event=event, account=account, appointment_id=appointment_id
        ):
            return
        if data.get("registration_fee_item"):
            charge_for_event(
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
    elif event["type"] in inpatient_days.STAY_EVENTS:
        # The stay's beds and dates, for the nightly bed and nursing days (inpatient_days.py).
        inpatient_days.apply_stay_event(session, event)
        if event["type"] in ("visit.admitted", "visit.transferred"):
            mark_admitted(
                session, visit_id=event["visit_id"], department=department_code(data.get("department"))
            )
        elif event["type"] == "visit.discharged":
            mark_discharged(session, visit_id=event["visit_id"], discharged_at=instant(event["occurred_at"]))
    elif event["type"] == "visit.green_channel":
        # Triage put the visit on the green channel (registration's green_channel.py): it pays later.
        switched = repository.get_account(session, event["visit_id"], for_update=True)
        if switched is not None:
            switched.payment_mode = data["payment_mode"]
            session.add(switched)


def apply_results_event(
    session: Session, event: dict[str, Any], *, unseen: UnseenVisits, credit_limit_fen: int
) -> None:
    """Results' feed: charge each placed order; an order for a visit registration does not know is refused.
    An order's charge that takes a settle-later account past `credit_limit_fen` is held (`charge.held`)."""
    if event["type"] not in RESULTS_EVENTS:
        return
    data = event["data"]
    order_id = well_formed(data.get("order_id"))
    visit_id = well_formed(event.get("visit_id"))
    if order_id is None:
        reject(session, event=event, reason="invalid-order", item_code=data.get("test_code"))
        return
    account = repository.get_account(session, visit_id, for_update=True) if visit_id else None
    if account is None and visit_id is not None:
        # KeyError if `resolve` never asked: the event stays unapplied and is read again.
        registered = unseen.answer(visit_id)
        account = account_for(session, visit_id=visit_id, unseen=registered) if registered else None
    if account is None:
        reject(
            session, event=event, reason="unknown-visit", item_code=data.get("test_code"), order_id=order_id
        )
        return
    charge = charge_for_event(
        session,
        event=event,
        account=account,
        item_code=data.get("test_code"),
        quantity=data.get("quantity", 1),
        origin=ChargeOrigin.order,
        order_id=order_id,
        department=data.get("department"),  # 开单科室 (results' order.department), else the visit's
    )
    if charge is not None:  # posted now: a replay neither posts nor holds again
        hold_over_credit(session, account, charge, credit_limit_fen=credit_limit_fen)
