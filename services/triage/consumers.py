"""What triage does with registration's events: a patient checked in for an appointment
(`appointment.arrived`) joins the department's queue carrying the appointment time; a merge (身份确认后合并)
re-points assessments and tickets to the surviving patient.

Handlers run in the consumer's transaction (kit.feed) and call no one: the names the waiting-room board
shows are asked of registration by the feed's `resolve` hook (`ArrivalNames.resolve`) before the
page's transaction opens, and masked at once. Applying an event twice changes nothing (kit.feed records
it, and re-pointing is idempotent anyway).
"""

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlmodel import Session

from kit.client import ServiceClient
from kit.clock import as_utc
from services.triage import repository, service
from services.triage.errors import AlreadyQueued
from services.triage.schemas import RegistrationPatient, RegistrationVisit, TicketCreate

logger = logging.getLogger("patientflow.triage")
REGISTRATION_EVENTS = frozenset({"appointment.arrived", "patient.merged"})


class ArrivalNames:
    """The masked names of the patients one page of registration's events checks in: filled by
    `resolve` outside any transaction, read by `apply_registration_event` inside."""

    def __init__(self, registration: ServiceClient) -> None:
        self.registration = registration
        self._page: dict[str, str] = {}

    def resolve(self, events: Sequence[dict[str, Any]]) -> None:
        """Ask registration for each arriving patient's name; registration being down raises, so the
        consumer reads the page again later and nobody is left out of the queue."""
        patients = {
            e["patient_id"] for e in events if e["type"] == "appointment.arrived" and e.get("patient_id")
        }
        self._page = {}
        for patient_id in sorted(patients):
            patient = self.registration.get_sync(
                RegistrationPatient, "/patients/{patient_id}", patient_id=patient_id
            )
            self._page[patient_id] = service.mask_name(patient.name if patient else None)

    def masked_name(self, patient_id: str) -> str:
        return self._page.get(patient_id) or service.mask_name(None)


def apply_registration_event(
    session: Session, event: dict[str, Any], *, names: ArrivalNames | None = None
) -> None:
    """Registration's feed, by type: `appointment.arrived` queues the checked-in patient in the
    appointment's department with its slot time (`Ticket.appointment_at`); `patient.merged` re-points."""
    if event["type"] == "appointment.arrived":
        _queue_arrival(session, event, names)
    elif event["type"] == "patient.merged":
        _apply_merge(session, event)


def _apply_merge(session: Session, event: dict[str, Any]) -> None:
    """The merged visits' assessments and tickets, and any left on the merged record, name the survivor."""
    data = event["data"]
    repository.repoint_patient(
        session,
        visit_ids=data.get("visit_ids") or [],
        source_id=data["source_patient_id"],
        target_id=data["target_patient_id"],
    )


def _queue_arrival(session: Session, event: dict[str, Any], names: ArrivalNames | None) -> None:
    data = event["data"]
    visit = RegistrationVisit(id=data["visit_id"], patient_id=event["patient_id"])
    try:
        service.enqueue(
            session,
            visit=visit,
            masked_name=names.masked_name(visit.patient_id) if names else service.mask_name(None),
            department=data["department"],
            data=TicketCreate(visit_id=visit.id),
            appointment_at=as_utc(datetime.fromisoformat(data["slot_starts_at"])),
        )
    except AlreadyQueued:  # the desk queued the visit by hand first: one ticket is enough
        logger.info("visit %s checked in by appointment was already queued", visit.id)
