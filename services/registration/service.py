"""Registration rules: who may be registered, how visits open, how an unidentified patient is merged."""

import uuid

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from kit.auth import visible_to
from kit.database import ReadConnection
from kit.outbox import record_event
from services.registration import repository
from services.registration.config import RegistrationSettings
from services.registration.errors import (
    DuplicatePatient,
    InvalidIdNumber,
    MergeRefused,
    PatientNotFound,
    VisitNotFound,
    VisitRefused,
)
from services.registration.identity import (
    birth_date_of,
    id_number_problem,
    mask_id_number,
    normalise_id_number,
    sex_of,
)
from services.registration.models import OutboxEvent, Patient, Visit
from services.registration.schemas import (
    PatientCreate,
    PatientPublic,
    PaymentMode,
    VisitCreate,
    VisitKind,
    VisitPublic,
)


def to_public(patient: Patient) -> PatientPublic:
    """The client view: identity number masked (a client never needs it back in full)."""
    return PatientPublic(
        id=patient.id,
        identified=patient.identified,
        id_number_masked=mask_id_number(patient.id_number),
        name=patient.name,
        sex=patient.sex,
        birth_date=patient.birth_date,
        alias=patient.alias,
        merged_into_id=patient.merged_into_id,
        created_at=patient.created_at,
    )


def _duplicate(existing: Patient) -> DuplicatePatient:
    return DuplicatePatient(
        "A patient with this identity number is already registered.",
        existing_patient_id=existing.id,
        existing_patient=f"/v1/patients/{existing.id}",
    )


def _checked_id_number(raw: str | None) -> str:
    if not raw:
        raise InvalidIdNumber("An identified patient needs an identity number (id_number).")
    id_number = normalise_id_number(raw)
    problem = id_number_problem(id_number)
    if problem:
        raise InvalidIdNumber(problem)
    return id_number


def register_patient(session: Session, *, data: PatientCreate) -> Patient:
    """Register a patient; an identity number already on file is a 409 naming the existing patient."""
    patient_id = str(uuid.uuid4())
    if data.unidentified:
        if data.id_number:
            raise InvalidIdNumber("An unidentified patient has no identity number; omit id_number.")
        patient = Patient(
            id=patient_id,
            identified=False,
            name=None,
            alias=data.alias or f"Unidentified {patient_id[:8]}",
            birth_date=data.birth_date,
            phone=data.phone,
        )
    else:
        id_number = _checked_id_number(data.id_number)
        if data.birth_date is not None and data.birth_date != birth_date_of(id_number):
            raise InvalidIdNumber(
                "birth_date does not agree with the identity number; omit it.", slug="birth-date-mismatch"
            )
        if not data.name:
            raise InvalidIdNumber("An identified patient needs a name.", slug="name-required")
        existing = repository.find_patient_by_id_number(session, id_number)
        if existing:
            raise _duplicate(existing)
        patient = Patient(
            id=patient_id,
            identified=True,
            id_number=id_number,
            name=data.name,
            sex=sex_of(id_number),
            birth_date=birth_date_of(id_number),
            phone=data.phone,
            alias=data.alias,
        )
    try:
        with session.begin_nested():  # a concurrent twin loses on the unique index, not with a 500
            session.add(patient)
    except IntegrityError:
        existing = repository.find_patient_by_id_number(session, patient.id_number or "")
        if existing is None:
            raise
        raise _duplicate(existing) from None
    record_event(
        session,
        OutboxEvent,
        event_type="patient.registered",
        aggregate_type="patient",
        aggregate_id=patient.id,
        patient_id=patient.id,
        payload={"identified": patient.identified},
    )
    return patient


def get_patient(session: Session, *, patient_id: str, acting_for: str | None = None) -> Patient:
    """The patient; acting for another patient, 404 exactly as for one that does not exist."""
    patient = repository.get_patient(session, patient_id)
    if patient is None or not visible_to(acting_for, patient.id):
        raise PatientNotFound("No such patient.")
    return patient


def open_visit(
    session: Session,
    *,
    data: VisitCreate,
    settings: RegistrationSettings,
    fee_item: str | None = None,
    appointment_id: str | None = None,
) -> Visit:
    """Open a visit; green channel (先救治后付费) is for emergencies only.

    A checked-in appointment opens its visit with the session's consultation fee (`fee_item`, instead of
    the kind's default) and names itself (`appointment_id`) in `visit.opened`.
    """
    patient = get_patient(session, patient_id=data.patient_id)
    if patient.merged_into_id:
        raise VisitRefused(
            "This patient record was merged; open the visit on the surviving record.",
            merged_into_id=patient.merged_into_id,
        )
    if data.payment_mode is PaymentMode.green_channel and data.kind is not VisitKind.emergency:
        raise VisitRefused("The green channel is only for emergency visits.")
    visit = Visit(
        id=str(uuid.uuid4()),
        patient_id=patient.id,
        kind=data.kind.value,
        department=data.department,
        payment_mode=data.payment_mode.value,
    )
    session.add(visit)
    fee_items = {
        VisitKind.outpatient: settings.outpatient_fee_item,
        VisitKind.emergency: settings.emergency_fee_item,
    }
    record_event(
        session,
        OutboxEvent,
        event_type="visit.opened",
        aggregate_type="visit",
        aggregate_id=visit.id,
        visit_id=visit.id,
        patient_id=patient.id,
        payload={
            "kind": visit.kind,
            "department": visit.department,
            "payment_mode": visit.payment_mode,
            "registration_fee_item": fee_item or fee_items.get(data.kind),
            "appointment_id": appointment_id,
        },
    )
    return visit


def get_visit(session: Session, *, visit_id: str, acting_for: str | None = None) -> Visit:
    """The visit; acting for another patient, 404 exactly as for one that does not exist."""
    visit = repository.get_visit(session, visit_id)
    if visit is None or not visible_to(acting_for, visit.patient_id):
        raise VisitNotFound("No such visit.")
    return visit


def read_visit(reader: ReadConnection, *, visit_id: str, acting_for: str | None = None) -> VisitPublic:
    """`get_visit` as the API shows it, read below the ORM (the hot read of every sibling)."""
    row = repository.read_visit_row(reader, visit_id)
    if row is None or not visible_to(acting_for, row["patient_id"]):
        raise VisitNotFound("No such visit.")
    return VisitPublic.model_validate(dict(row))


def merge_patients(session: Session, *, target_id: str, source_id: str) -> tuple[Patient, list[str]]:
    """Fold an unidentified patient's record and visits into the identified patient's record."""
    if target_id == source_id:
        raise MergeRefused("A patient cannot be merged into itself.")
    target = get_patient(session, patient_id=target_id)
    source = get_patient(session, patient_id=source_id)
    if not target.identified or target.merged_into_id:
        raise MergeRefused("The surviving record must be an identified, unmerged patient.")
    if source.identified:
        raise MergeRefused("Only an unidentified patient's record can be merged into another.")
    if source.merged_into_id:
        raise MergeRefused("That record was already merged.", merged_into_id=source.merged_into_id)
    moved = repository.move_visits(session, from_patient_id=source.id, to_patient_id=target.id)
    source.merged_into_id = target.id
    session.add(source)
    record_event(
        session,
        OutboxEvent,
        event_type="patient.merged",
        aggregate_type="patient",
        aggregate_id=target.id,
        patient_id=target.id,
        payload={"source_patient_id": source.id, "target_patient_id": target.id, "visit_ids": moved},
    )
    return target, moved
