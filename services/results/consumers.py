"""What results does with its siblings' events: billing's payments release orders, its credit holds
take them back and its reversals cancel them; registration's merges re-point them, and registration's
patients are learned by name for the printed report.

Each handler runs in the consumer's transaction (kit.feed) and calls no one. Registration's events carry
no names (docs/events.md), so the registration feed's `resolve` hook (`PatientNames.resolve`) asks
registration for them before the page's transaction opens; the handler keeps them (`PatientName`), and
printing reads them without a network call, registration up or down.
"""

from collections.abc import Sequence
from typing import Any

from sqlmodel import Session

from kit.client import ServiceClient
from kit.clock import utcnow
from kit.database import Database
from services.results import repository, service
from services.results.schemas import RegistrationPatient

BILLING_EVENTS = frozenset({"charge.paid", "charge.held", "charge.reversed"})
REGISTRATION_EVENTS = frozenset({"patient.registered", "patient.merged", "visit.opened"})


def apply_billing_event(session: Session, event: dict[str, Any], *, require_payment: bool = False) -> None:
    """Billing feed handler: a paid charge naming an order marks it paid (and releases it to the lab
    when it awaited payment; where release requires payment, its report may now reach the patient); a
    charge held past a settle-later credit limit takes its order back from the lab while no specimen was
    collected (`service.record_held`); a reversed charge cancels an order the lab has not started
    (`service.record_charge_reversed`)."""
    if event["type"] not in BILLING_EVENTS:
        return
    order_id = event["data"].get("order_id")
    if not order_id or not isinstance(order_id, str):
        return
    order = repository.get_order(session, order_id, for_update=True)
    if order is None:
        return
    if event["type"] == "charge.paid":
        service.record_paid(session, order, require_payment=require_payment)
    elif event["type"] == "charge.held":
        service.record_held(session, order, event["data"])
    else:
        service.record_charge_reversed(session, order, event["data"])


def _named_patient(event: dict[str, Any]) -> str | None:
    """The patient whose name an event makes results learn: the registered one, a merge's survivor (the
    merged visits' reports print its name), a visit's patient (one registered before results kept names)."""
    if event["type"] == "patient.merged":
        return str(event["data"]["target_patient_id"])
    return event.get("patient_id")


class PatientNames:
    """The patients one page of registration's events names, as registration has them: filled by
    `resolve` outside any transaction, kept by `apply_registration_event` inside."""

    def __init__(self, registration: ServiceClient, database: Database) -> None:
        self.registration, self.database = registration, database
        self._page: dict[str, RegistrationPatient] = {}

    def resolve(self, events: Sequence[dict[str, Any]]) -> None:
        """Ask registration for each patient the page registers or merges into, and for a visit's patient
        results does not know yet; registration not answering raises, and the consumer reads the page
        again later, so no name is skipped."""
        wanted = {p for e in events if e["type"] != "visit.opened" and (p := _named_patient(e))}
        visiting = {p for e in events if e["type"] == "visit.opened" and (p := _named_patient(e))}
        if visiting - wanted:
            with self.database.session(write=False) as session:
                known = repository.patient_names(session, sorted(visiting - wanted))
            wanted |= visiting - set(known)
        self._page = {}
        for patient_id in sorted(wanted):
            patient = self.registration.get_sync(
                RegistrationPatient, "/patients/{patient_id}", patient_id=patient_id
            )
            if patient is not None:
                self._page[patient_id] = patient

    def found(self, patient_id: str) -> RegistrationPatient | None:
        return self._page.get(patient_id)


def keep_name(session: Session, patient: RegistrationPatient) -> None:
    repository.keep_patient_name(
        session,
        {
            "patient_id": patient.id,
            "identified": patient.identified,
            "name": patient.name,
            "sex": patient.sex,
            "birth_date": patient.birth_date,
            "updated_at": utcnow(),
        },
    )


def apply_registration_event(
    session: Session, event: dict[str, Any], *, names: PatientNames | None = None
) -> None:
    """Registration feed handler: a patient's name is kept (as `resolve` found it); after a merge
    (身份确认后合并) results follow the surviving patient."""
    patient_id = _named_patient(event)
    found = names.found(patient_id) if names and patient_id else None
    if found is not None:
        keep_name(session, found)
    if event["type"] != "patient.merged":
        return
    data = event["data"]
    repository.repoint_patient(
        session,
        visit_ids=data.get("visit_ids") or [],
        source_id=data["source_patient_id"],
        target_id=data["target_patient_id"],
    )
