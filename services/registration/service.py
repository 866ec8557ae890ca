"""Registration rules: who may be registered, how visits open, how an unidentified patient is merged."""

import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from kit.auth import visible_to
from kit.database import ReadConnection
from kit.outbox import record_event
from services.registration import repository
from services.registration.config import RegistrationSettings
from services.registration.errors import (
    DuplicateCard,
    DuplicatePatient,
    IdentityMismatch,
    InvalidIdNumber,
    MergeRefused,
    PatientMerged,
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
from services.registration.patient_index import issue_card_number
from services.registration.schemas import (
    PatientCreate,
    PatientPublic,
    PatientUpdate,
    PaymentMode,
    VisitCreate,
    VisitKind,
    VisitPublic,
    VisitWithName,
)

# Issued card numbers are random: after this many clashes with cards on file, something else is wrong.
CARD_DRAWS = 5


def to_public(patient: Patient) -> PatientPublic:
    """The client view: identity number masked (a client never needs it back in full)."""
    return patient_public(patient.model_dump())


def patient_public(values: Mapping[str, Any]) -> PatientPublic:
    """`to_public` of a patient's column values (an ORM patient's or a Core row's); the full identity
    number and the phone are not fields of the answer, so they never leave."""
    return PatientPublic.model_validate({**values, "id_number_masked": mask_id_number(values["id_number"])})


def _duplicate(existing: Patient) -> DuplicatePatient:
    return DuplicatePatient(
        "A patient with this identity number is already registered.",
        existing_patient_id=existing.id,
        existing_patient=f"/v1/patients/{existing.id}",
    )


def _duplicate_card(existing: Patient) -> DuplicateCard:
    return DuplicateCard(
        "This medical-card number is already on another patient's record.",
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
    """Register a patient with a medical card (the one given, or one issued now).

    An identity number or card number already on file is a 409 naming the existing patient; a birth
    date or sex the identity number contradicts is a 422 naming the field (an unidentified patient's
    are estimates: nothing to check them against).
    """
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
            sex=data.sex.value if data.sex else None,
            phone=data.phone,
        )
    else:
        id_number = _checked_id_number(data.id_number)
        _cross_check(id_number, data)
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
    patient.insurance_scheme = data.insurance_scheme.value
    if data.card_number is not None:
        existing = repository.find_patient_by_card_number(session, data.card_number)
        if existing:
            raise _duplicate_card(existing)
    _insert_patient(session, patient, card_number=data.card_number)
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


def _cross_check(id_number: str, data: PatientCreate) -> None:
    """The birth date and sex typed at the desk must be those the identity number encodes."""
    if data.birth_date is not None and data.birth_date != birth_date_of(id_number):
        raise IdentityMismatch(
            "birth_date does not agree with the identity number; correct or omit it.",
            slug="birth-date-mismatch",
            field="birth_date",
        )
    if data.sex is not None and data.sex.value != sex_of(id_number):
        raise IdentityMismatch(
            "sex does not agree with the identity number; correct or omit it.",
            slug="sex-mismatch",
            field="sex",
        )


def _insert_patient(session: Session, patient: Patient, *, card_number: str | None) -> None:
    """Insert with the card given, or with issued numbers until one is free.

    A concurrent twin loses on a unique index (identity number or card) with a 409, not a 500.
    """
    for draw in range(CARD_DRAWS):
        patient.card_number = card_number or issue_card_number()
        try:
            with session.begin_nested():
                session.add(patient)
            return
        except IntegrityError:
            id_number = patient.id_number
            twin = repository.find_patient_by_id_number(session, id_number) if id_number else None
            if twin is not None:
                raise _duplicate(twin) from None
            holder = repository.find_patient_by_card_number(session, patient.card_number)
            if holder is None:
                raise
            if card_number is not None:
                raise _duplicate_card(holder) from None
            if draw == CARD_DRAWS - 1:
                raise


def update_patient(session: Session, *, patient_id: str, data: PatientUpdate) -> Patient:
    """Change the insurance scheme or record another medical card; a merged record changes no more."""
    patient = get_patient(session, patient_id=patient_id)
    if patient.merged_into_id:
        raise PatientMerged(
            "This record was merged; change the surviving record.", merged_into_id=patient.merged_into_id
        )
    changed: list[str] = []
    if data.insurance_scheme is not None and data.insurance_scheme.value != patient.insurance_scheme:
        patient.insurance_scheme = data.insurance_scheme.value
        changed.append("insurance_scheme")
    session.add(patient)
    if data.card_number is not None and data.card_number != patient.card_number:
        changed.append("card_number")
        holder = repository.find_patient_by_card_number(session, data.card_number)
        if holder is not None:
            raise _duplicate_card(holder)
        session.flush()  # the scheme's change before the savepoint: only the card's is at stake in it
        try:
            # A concurrent holder of the same card wins the unique index. The change is made and flushed
            # inside the savepoint: one made before it would be flushed as the savepoint opens, outside it,
            # and its IntegrityError would break the whole transaction (a 500, not a 409).
            with session.begin_nested():
                patient.card_number = data.card_number
                session.flush()
        except IntegrityError:
            holder = repository.find_patient_by_card_number(session, data.card_number)
            if holder is None:
                raise
            raise _duplicate_card(holder) from None
    if changed:
        # Billing prices the next visits by the scheme; the card number itself stays in registration.
        record_event(
            session,
            OutboxEvent,
            event_type="patient.updated",
            aggregate_type="patient",
            aggregate_id=patient.id,
            patient_id=patient.id,
            payload={"changed": changed, "insurance_scheme": patient.insurance_scheme},
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
            # How the patient is insured when the visit opens (医保类别), for billing to price by later.
            "insurance_scheme": patient.insurance_scheme,
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


def read_patient(reader: ReadConnection, *, patient_id: str, acting_for: str | None = None) -> PatientPublic:
    """`get_patient` as the API shows it, read below the ORM (siblings ask for names by patient id)."""
    row = repository.read_patient_row(reader, patient_id)
    if row is None or not visible_to(acting_for, row["id"]):
        raise PatientNotFound("No such patient.")
    return patient_public(dict(row))


def read_visit_with_name(reader: ReadConnection, *, visit_id: str) -> VisitWithName:
    """The visit and its patient's name in one read, for a service that queues the visit and shows the
    name (triage's board masks it at once)."""
    row = repository.read_visit_with_name_row(reader, visit_id)
    if row is None:
        raise VisitNotFound("No such visit.")
    return VisitWithName.model_validate(dict(row))


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
