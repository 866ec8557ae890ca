"""All of registration's SQL."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import CursorResult, RowMapping, bindparam, exists, func
from sqlalchemy import select as core_select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select, update

from kit.clock import as_utc
from kit.database import ReadConnection
from services.registration.models import (
    Appointment,
    Bed,
    ClinicSession,
    Department,
    DisruptedAppointment,
    Doctor,
    InpatientStay,
    OneTimeCode,
    Patient,
    RebookingOffer,
    ScheduleException,
    ScheduleTemplate,
    SessionAttempt,
    SessionDisruption,
    SessionLock,
    SessionSlot,
    SlipCode,
    StayMovement,
    Visit,
    Ward,
)


def get_patient(session: Session, patient_id: str) -> Patient | None:
    return session.get(Patient, patient_id)


def find_patient_by_id_number(session: Session, id_number: str) -> Patient | None:
    return session.exec(select(Patient).where(Patient.id_number == id_number)).first()


def find_patient_by_card_number(session: Session, card_number: str) -> Patient | None:
    return session.exec(select(Patient).where(Patient.card_number == card_number)).first()


def search_patients(
    session: Session,
    *,
    id_number: str | None,
    card_number: str | None,
    phone: str | None,
    name_prefix: str | None,
    after: str | None,
    limit: int,
) -> list[Patient]:
    """Patients matching every key given (a name by prefix, `%` and `_` taken literally), by id."""
    query = select(Patient)
    if id_number is not None:
        query = query.where(Patient.id_number == id_number)
    if card_number is not None:
        query = query.where(Patient.card_number == card_number)
    if phone is not None:
        query = query.where(Patient.phone == phone)
    if name_prefix is not None:
        # The pattern is built here, whole, so PostgreSQL can use the prefix index for it.
        escaped = name_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(col(Patient.name).like(escaped + "%", escape="\\"))
    if after is not None:
        query = query.where(col(Patient.id) > after)
    return list(session.exec(query.order_by(col(Patient.id)).limit(limit)).all())


def get_visit(session: Session, visit_id: str) -> Visit | None:
    return session.get(Visit, visit_id)


_VISIT = Visit.__table__  # type: ignore[attr-defined]
_VISIT_BY_ID = core_select(_VISIT).where(_VISIT.c.id == bindparam("visit_id"))


def read_visit_row(reader: ReadConnection, visit_id: str) -> RowMapping | None:
    """The visit as a row, by SQLAlchemy Core: every sibling's most frequent call, a third of the cost of
    the ORM session's `get`."""
    return reader.execute(_VISIT_BY_ID, {"visit_id": visit_id}).mappings().first()


_PATIENT = Patient.__table__  # type: ignore[attr-defined]
_VISIT_WITH_NAME = (
    core_select(_VISIT, _PATIENT.c.name.label("patient_name"))
    .select_from(_VISIT.outerjoin(_PATIENT, _PATIENT.c.id == _VISIT.c.patient_id))
    .where(_VISIT.c.id == bindparam("visit_id"))
)
_PATIENT_BY_ID = core_select(_PATIENT).where(_PATIENT.c.id == bindparam("patient_id"))


def read_visit_with_name_row(reader: ReadConnection, visit_id: str) -> RowMapping | None:
    """The visit's row with its patient's name (`patient_name`), in one Core statement: what a queue
    needs to take the visit, read once."""
    return reader.execute(_VISIT_WITH_NAME, {"visit_id": visit_id}).mappings().first()


def read_patient_row(reader: ReadConnection, patient_id: str) -> RowMapping | None:
    """The patient as a row, by SQLAlchemy Core (siblings read patients by id for their names)."""
    return reader.execute(_PATIENT_BY_ID, {"patient_id": patient_id}).mappings().first()


def list_visits(session: Session, patient_id: str) -> list[Visit]:
    query = select(Visit).where(Visit.patient_id == patient_id).order_by(col(Visit.opened_at))
    return list(session.exec(query).all())


def move_visits(session: Session, *, from_patient_id: str, to_patient_id: str) -> list[str]:
    moved = [v.id for v in list_visits(session, from_patient_id)]
    session.execute(
        update(Visit).where(col(Visit.patient_id) == from_patient_id).values(patient_id=to_patient_id)
    )
    return moved


def find_slip(session: Session, code_digest: str) -> SlipCode | None:
    return session.exec(select(SlipCode).where(SlipCode.code_digest == code_digest)).first()


def revoke_slips(session: Session, *, visit_id: str, now: datetime) -> None:
    """Every live slip of the visit stops working (a reissued slip replaces a lost one)."""
    session.execute(
        update(SlipCode)
        .where(col(SlipCode.visit_id) == visit_id, col(SlipCode.revoked_at).is_(None))
        .values(revoked_at=now)
    )


def latest_one_time_code(session: Session, patient_id: str) -> OneTimeCode | None:
    query = (
        select(OneTimeCode)
        .where(OneTimeCode.patient_id == patient_id)
        .order_by(col(OneTimeCode.id).desc())
        .limit(1)
    )
    return session.exec(query).first()


def spend_one_time_codes(session: Session, *, patient_id: str, now: datetime) -> None:
    """The patient's unspent codes stop working (a new code replaces them; a used one is spent)."""
    session.execute(
        update(OneTimeCode)
        .where(col(OneTimeCode.patient_id) == patient_id, col(OneTimeCode.spent_at).is_(None))
        .values(spent_at=now)
    )


def session_locks(session: Session, keys: Sequence[str]) -> list[SessionLock]:
    """The lock rows for these keys, created if missing, held FOR UPDATE until the transaction ends
    (on PostgreSQL; SQLite writers are serialised already), so concurrent tries count one by one."""
    for key in keys:
        if session.get(SessionLock, key) is None:
            try:
                with session.begin_nested():  # a concurrent first try of the same key wins the insert
                    session.add(SessionLock(key=key))
            except IntegrityError:
                pass
    query = (
        select(SessionLock)
        .where(col(SessionLock.key).in_(keys))
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    rows = {row.key: row for row in session.exec(query).all()}
    return [rows[key] for key in keys]


def list_session_attempts(
    session: Session, *, patient_id: str | None, client: str | None, limit: int
) -> Sequence[SessionAttempt]:
    query = select(SessionAttempt).order_by(col(SessionAttempt.id).desc()).limit(limit)
    if patient_id is not None:
        query = query.where(SessionAttempt.patient_id == patient_id)
    if client is not None:
        query = query.where(SessionAttempt.client == client)
    return session.exec(query).all()


# --- directory and schedules ------------------------------------------------------------------------


def get_department(session: Session, code: str) -> Department | None:
    return session.get(Department, code)


def list_departments(session: Session) -> Sequence[Department]:
    return session.exec(select(Department).order_by(col(Department.code))).all()


def get_doctor(session: Session, doctor_id: str) -> Doctor | None:
    return session.get(Doctor, doctor_id)


def list_doctors(
    session: Session, *, department: str | None, expert: bool | None, limit: int
) -> Sequence[Doctor]:
    query = select(Doctor).order_by(col(Doctor.department), col(Doctor.name), col(Doctor.id)).limit(limit)
    if department is not None:
        query = query.where(Doctor.department == department)
    if expert is not None:
        query = query.where(Doctor.expert == expert)
    return session.exec(query).all()


def get_template(session: Session, template_id: str) -> ScheduleTemplate | None:
    return session.get(ScheduleTemplate, template_id)


def list_templates(
    session: Session, *, department: str | None, doctor_id: str | None, limit: int
) -> Sequence[ScheduleTemplate]:
    query = select(ScheduleTemplate).order_by(col(ScheduleTemplate.created_at), col(ScheduleTemplate.id))
    if department is not None:
        query = query.where(ScheduleTemplate.department == department)
    if doctor_id is not None:
        query = query.where(ScheduleTemplate.doctor_id == doctor_id)
    return session.exec(query.limit(limit)).all()


def templates_in_force(
    session: Session, *, department: str | None, from_date: date, to_date: date
) -> Sequence[ScheduleTemplate]:
    """Active templates valid on some day of the range."""
    query = select(ScheduleTemplate).where(
        col(ScheduleTemplate.active).is_(True),
        col(ScheduleTemplate.valid_from) <= to_date,
        (col(ScheduleTemplate.valid_until).is_(None)) | (col(ScheduleTemplate.valid_until) >= from_date),
    )
    if department is not None:
        query = query.where(ScheduleTemplate.department == department)
    return session.exec(query.order_by(col(ScheduleTemplate.id))).all()


def get_exception(session: Session, *, template_id: str, on: date) -> ScheduleException | None:
    query = select(ScheduleException).where(
        ScheduleException.template_id == template_id, ScheduleException.date == on
    )
    return session.exec(query).first()


def exceptions_between(
    session: Session, *, template_ids: Sequence[str], from_date: date, to_date: date
) -> dict[tuple[str, date], ScheduleException]:
    if not template_ids:
        return {}
    query = select(ScheduleException).where(
        col(ScheduleException.template_id).in_(template_ids),
        col(ScheduleException.date) >= from_date,
        col(ScheduleException.date) <= to_date,
    )
    return {(e.template_id, e.date): e for e in session.exec(query).all()}


def template_session_on(session: Session, *, template_id: str, on: date) -> ClinicSession | None:
    query = select(ClinicSession).where(ClinicSession.template_id == template_id, ClinicSession.date == on)
    return session.exec(query).first()


def get_clinic_session(session: Session, clinic_session_id: str) -> ClinicSession | None:
    return session.get(ClinicSession, clinic_session_id)


def list_clinic_sessions(
    session: Session,
    *,
    department: str | None,
    doctor_id: str | None,
    from_date: date | None,
    to_date: date | None,
    limit: int,
) -> Sequence[ClinicSession]:
    query = select(ClinicSession).order_by(col(ClinicSession.starts_at), col(ClinicSession.id)).limit(limit)
    if department is not None:
        query = query.where(ClinicSession.department == department)
    if doctor_id is not None:
        query = query.where(ClinicSession.doctor_id == doctor_id)
    if from_date is not None:
        query = query.where(col(ClinicSession.date) >= from_date)
    if to_date is not None:
        query = query.where(col(ClinicSession.date) <= to_date)
    return session.exec(query).all()


def slots_of(session: Session, clinic_session_id: str) -> Sequence[SessionSlot]:
    query = (
        select(SessionSlot)
        .where(SessionSlot.clinic_session_id == clinic_session_id)
        .order_by(col(SessionSlot.starts_at))
        .execution_options(populate_existing=True)
    )
    return session.exec(query).all()


def find_slot(session: Session, *, clinic_session_id: str, starts_at: datetime) -> SessionSlot | None:
    query = select(SessionSlot).where(
        SessionSlot.clinic_session_id == clinic_session_id, SessionSlot.starts_at == starts_at
    )
    return session.exec(query).first()


def lapsed_holds_by_slot(session: Session, *, clinic_session_id: str, now: datetime) -> dict[int, int]:
    """Per slot, the holds past their time but not yet released (their seats are free to take)."""
    query = (
        select(Appointment.slot_id, func.count())
        .where(
            Appointment.clinic_session_id == clinic_session_id,
            Appointment.status == "proposed",
            col(Appointment.hold_expires_at) <= now,
        )
        .group_by(col(Appointment.slot_id))
    )
    return {slot_id: count for slot_id, count in session.exec(query).all()}


def _changed_rows(result: Any) -> int:
    assert isinstance(result, CursorResult)
    return result.rowcount


def take_seat(session: Session, slot_id: int) -> bool:
    """One seat of the slot, if one is left: a single conditional UPDATE, so two bookers can never both
    take the last seat (PostgreSQL re-checks `taken < capacity` on the row it waited for; SQLite runs
    one writer at a time)."""
    result = session.execute(
        update(SessionSlot)
        .where(col(SessionSlot.id) == slot_id, col(SessionSlot.taken) < col(SessionSlot.capacity))
        .values(taken=col(SessionSlot.taken) + 1)
        .execution_options(synchronize_session=False)
    )
    return _changed_rows(result) == 1


_SLOT = SessionSlot.__table__  # type: ignore[attr-defined]


def first_free_slot(
    session: Session, *, clinic_session_id: str, starts_at: datetime | None = None, skip_locked: bool = False
) -> tuple[int, datetime] | None:
    """The earliest slot of the session (or the one starting at `starts_at`) with a seat left, by id
    and start: a hint only, `take_seat` decides. `skip_locked` (PostgreSQL; SQLite has one writer at a
    time anyway) passes over slots another booking is taking a seat of right now, and locks the one
    found: at a rush, concurrent bookings fill different slots instead of queueing on the first."""
    query = (
        core_select(_SLOT.c.id, _SLOT.c.starts_at)
        .where(_SLOT.c.clinic_session_id == clinic_session_id, _SLOT.c.taken < _SLOT.c.capacity)
        .order_by(_SLOT.c.starts_at)
        .limit(1)
    )
    if skip_locked:
        query = query.with_for_update(skip_locked=True)
    if starts_at is not None:
        query = query.where(_SLOT.c.starts_at == starts_at)
    row = session.execute(query).first()
    return (row.id, row.starts_at) if row else None


def give_back_seat(session: Session, slot_id: int) -> None:
    session.execute(
        update(SessionSlot)
        .where(col(SessionSlot.id) == slot_id, col(SessionSlot.taken) > 0)
        .values(taken=col(SessionSlot.taken) - 1)
        .execution_options(synchronize_session=False)
    )


def move_appointment_if(
    session: Session, appointment_id: str, *, from_statuses: Sequence[str], **values: Any
) -> bool:
    """Change the appointment only if it is still in one of `from_statuses`: of two racing changes (a
    cancel and a sweep, two check-ins) exactly one wins."""
    result = session.execute(
        update(Appointment)
        .where(col(Appointment.id) == appointment_id, col(Appointment.status).in_(from_statuses))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return _changed_rows(result) == 1


def get_appointment(session: Session, appointment_id: str) -> Appointment | None:
    return session.get(Appointment, appointment_id, populate_existing=True)


def appointment_of_visit(session: Session, visit_id: str) -> Appointment | None:
    return session.exec(select(Appointment).where(Appointment.visit_id == visit_id)).first()


def active_appointment(session: Session, *, clinic_session_id: str, patient_id: str) -> Appointment | None:
    query = select(Appointment).where(
        Appointment.clinic_session_id == clinic_session_id,
        Appointment.patient_id == patient_id,
        col(Appointment.status).in_(("proposed", "booked", "arrived")),
    )
    return session.exec(query.execution_options(populate_existing=True)).first()


def lapsed_holds(
    session: Session,
    *,
    now: datetime,
    clinic_session_id: str | None = None,
    patient_id: str | None = None,
    limit: int = 500,
) -> Sequence[Appointment]:
    query = select(Appointment).where(
        Appointment.status == "proposed", col(Appointment.hold_expires_at) <= now
    )
    if clinic_session_id is not None:
        query = query.where(Appointment.clinic_session_id == clinic_session_id)
    if patient_id is not None:
        query = query.where(Appointment.patient_id == patient_id)
    return session.exec(query.order_by(col(Appointment.id)).limit(limit)).all()


def overdue_bookings(session: Session, *, slot_before: datetime, limit: int = 500) -> Sequence[Appointment]:
    """Booked appointments whose slot started before `slot_before` (no-show candidates)."""
    query = (
        select(Appointment)
        .where(Appointment.status == "booked", col(Appointment.slot_starts_at) < slot_before)
        .order_by(col(Appointment.id))
        .limit(limit)
    )
    return session.exec(query).all()


def list_appointments(
    session: Session,
    *,
    patient_id: str | None,
    clinic_session_id: str | None,
    status: str | None,
    limit: int,
) -> Sequence[Appointment]:
    query = select(Appointment).order_by(col(Appointment.slot_starts_at), col(Appointment.id)).limit(limit)
    if patient_id is not None:
        query = query.where(Appointment.patient_id == patient_id)
    if clinic_session_id is not None:
        query = query.where(Appointment.clinic_session_id == clinic_session_id)
    if status is not None:
        query = query.where(Appointment.status == status)
    return session.exec(query).all()


def may_have_a_seat(session: Session, *, clinic_session_id: str, now: datetime) -> bool:
    """A slot of the session with a seat left, or a lapsed hold whose seat can be taken back."""
    free = core_select(_SLOT.c.id).where(
        _SLOT.c.clinic_session_id == clinic_session_id, _SLOT.c.taken < _SLOT.c.capacity
    )
    if session.execute(free.limit(1)).first() is not None:
        return True
    return bool(lapsed_holds_by_slot(session, clinic_session_id=clinic_session_id, now=now))


# --- disruptions ------------------------------------------------------------------------------------------

ACTIVE_STATUSES = ("proposed", "booked", "arrived")  # an appointment holding its seat


def lock_clinic_session(session: Session, clinic_session_id: str) -> ClinicSession | None:
    """The session row, locked: two disruptions of one session queue. `FOR NO KEY UPDATE`, so a booking
    inserting its appointment (whose foreign key share-locks this row) never waits for it: that wait,
    with the booking holding a slot this transaction locks next, would be a deadlock."""
    query = select(ClinicSession).where(ClinicSession.id == clinic_session_id).with_for_update(key_share=True)
    return session.exec(query.execution_options(populate_existing=True)).first()


def lock_slots(session: Session, clinic_session_id: str) -> list[SessionSlot]:
    """The session's slots, locked in id order. A booking that took a seat before this commits first (and
    its appointment is then seen); one after it waits for this transaction and re-checks its seat."""
    query = (
        select(SessionSlot)
        .where(SessionSlot.clinic_session_id == clinic_session_id)
        .order_by(col(SessionSlot.id))
        .with_for_update(key_share=True)
        .execution_options(populate_existing=True)
    )
    return list(session.exec(query).all())


def close_seats(session: Session, clinic_session_id: str) -> None:
    """No free seat left in any slot (`capacity = taken`): a booking racing the cancellation, which read
    the session as open before it was cancelled, fails its conditional seat update instead of landing."""
    session.execute(
        update(SessionSlot)
        .where(col(SessionSlot.clinic_session_id) == clinic_session_id)
        .values(capacity=col(SessionSlot.taken))
        .execution_options(synchronize_session=False)
    )


def seated_appointments(session: Session, clinic_session_id: str) -> list[Appointment]:
    """The session's holds and bookings not yet checked in: whom a disruption touches."""
    query = (
        select(Appointment)
        .where(
            Appointment.clinic_session_id == clinic_session_id,
            col(Appointment.status).in_(("proposed", "booked")),
        )
        .order_by(col(Appointment.slot_starts_at), col(Appointment.id))
        .execution_options(populate_existing=True)
    )
    return list(session.exec(query).all())


def appointments_of_slots(session: Session, slot_ids: Sequence[int]) -> list[Appointment]:
    query = select(Appointment).where(col(Appointment.slot_id).in_(slot_ids))
    return list(session.exec(query.execution_options(populate_existing=True)).all())


def next_session_with_room(
    session: Session,
    *,
    now: datetime,
    after: datetime,
    excluding: str,
    doctor_id: str | None = None,
    department: str | None = None,
    period: str | None = None,
    without_patient: str | None = None,
) -> ClinicSession | None:
    """The soonest open session starting after `after`, bookable now, with a free seat (by the counters;
    a lapsed hold's seat is not counted), of this doctor or this department and period; with
    `without_patient`, not one that patient already holds a booking in."""
    free = func.sum(col(SessionSlot.capacity) - col(SessionSlot.taken))
    with_room = (
        select(SessionSlot.clinic_session_id).group_by(col(SessionSlot.clinic_session_id)).having(free > 0)
    )
    query = select(ClinicSession).where(
        ClinicSession.status == "open",
        ClinicSession.id != excluding,
        col(ClinicSession.starts_at) > after,
        col(ClinicSession.booking_opens_at) <= now,
        col(ClinicSession.booking_closes_at) > now,
        col(ClinicSession.id).in_(with_room),
    )
    if doctor_id is not None:
        query = query.where(ClinicSession.doctor_id == doctor_id)
    if department is not None:
        query = query.where(ClinicSession.department == department)
    if period is not None:
        query = query.where(ClinicSession.period == period)
    if without_patient is not None:
        theirs = select(Appointment.clinic_session_id).where(
            Appointment.patient_id == without_patient, col(Appointment.status).in_(ACTIVE_STATUSES)
        )
        query = query.where(col(ClinicSession.id).not_in(theirs))
    return session.exec(query.order_by(col(ClinicSession.starts_at), col(ClinicSession.id)).limit(1)).first()


def patients_booked_in(session: Session, clinic_session_id: str, patient_ids: Sequence[str]) -> set[str]:
    """Which of the patients hold an active booking (or hold) in the session."""
    query = select(Appointment.patient_id).where(
        Appointment.clinic_session_id == clinic_session_id,
        col(Appointment.patient_id).in_(patient_ids),
        col(Appointment.status).in_(ACTIVE_STATUSES),
    )
    return set(session.exec(query).all())


def open_offers_of(session: Session, appointment_ids: Sequence[str]) -> list[RebookingOffer]:
    query = select(RebookingOffer).where(
        col(RebookingOffer.appointment_id).in_(appointment_ids), RebookingOffer.status == "offered"
    )
    return list(session.exec(query).all())


def get_offer(session: Session, offer_id: str, *, for_update: bool = False) -> RebookingOffer | None:
    query = select(RebookingOffer).where(RebookingOffer.id == offer_id)
    if for_update:
        query = query.with_for_update()
    return session.exec(query.execution_options(populate_existing=True)).first()


def disruptions_of(session: Session, clinic_session_id: str) -> list[SessionDisruption]:
    query = (
        select(SessionDisruption)
        .where(SessionDisruption.clinic_session_id == clinic_session_id)
        .order_by(col(SessionDisruption.created_at), col(SessionDisruption.id))
    )
    return list(session.exec(query).all())


def disrupted_of(session: Session, disruption_id: str) -> list[DisruptedAppointment]:
    query = select(DisruptedAppointment).where(DisruptedAppointment.disruption_id == disruption_id)
    return list(session.exec(query).all())


def offers_of(session: Session, disruption_id: str) -> list[RebookingOffer]:
    query = select(RebookingOffer).where(RebookingOffer.disruption_id == disruption_id)
    return list(session.exec(query).all())


def appointments_by_id(session: Session, appointment_ids: Sequence[str]) -> dict[str, Appointment]:
    query = select(Appointment).where(col(Appointment.id).in_(appointment_ids))
    return {row.id: row for row in session.exec(query.execution_options(populate_existing=True)).all()}


def sessions_by_id(session: Session, clinic_session_ids: Sequence[str]) -> dict[str, ClinicSession]:
    query = select(ClinicSession).where(col(ClinicSession.id).in_(clinic_session_ids))
    return {row.id: row for row in session.exec(query).all()}


# --- inpatient stays and visits that close -----------------------------------------------------------


def get_ward(session: Session, code: str) -> Ward | None:
    return session.get(Ward, code)


def list_wards(session: Session, department: str | None) -> list[Ward]:
    query = select(Ward).order_by(col(Ward.code))
    if department is not None:
        query = query.where(Ward.department == department)
    return list(session.exec(query).all())


def beds_of_wards(session: Session, ward_codes: Sequence[str]) -> list[tuple[Bed, str | None]]:
    """Each bed of these wards with the visit lying in it (None when free), by ward and bed code."""
    query = (
        select(Bed, InpatientStay.visit_id)
        .join(InpatientStay, col(InpatientStay.bed_id) == col(Bed.id), isouter=True)
        .where(col(Bed.ward_code).in_(ward_codes))
        .order_by(col(Bed.ward_code), col(Bed.code))
    )
    return [(bed, visit_id) for bed, visit_id in session.exec(query).all()]


def find_bed(session: Session, *, ward_code: str, bed_code: str) -> Bed | None:
    query = select(Bed).where(Bed.ward_code == ward_code, Bed.code == bed_code)
    return session.exec(query).first()


def get_bed(session: Session, bed_id: int) -> Bed | None:
    return session.get(Bed, bed_id)


def get_stay(session: Session, visit_id: str) -> InpatientStay | None:
    return session.get(InpatientStay, visit_id)


def stay_of_bed(session: Session, bed_id: int) -> InpatientStay | None:
    return session.exec(select(InpatientStay).where(InpatientStay.bed_id == bed_id)).first()


def list_movements(session: Session, visit_id: str) -> list[StayMovement]:
    query = select(StayMovement).where(StayMovement.visit_id == visit_id).order_by(col(StayMovement.id))
    return list(session.exec(query).all())


def visits_due_to_close(
    session: Session, *, outpatient_before: datetime, emergency_before: datetime, payment_modes: Sequence[str]
) -> list[Visit]:
    """Open visits the end-of-day rule closes: outpatient ones opened before `outpatient_before`,
    emergency ones opened before `emergency_before`, never one with a stay, only in `payment_modes`."""
    admitted = select(InpatientStay.visit_id).where(col(InpatientStay.visit_id) == col(Visit.id))
    query = (
        select(Visit)
        .where(
            Visit.status == "open",
            col(Visit.payment_mode).in_(payment_modes),
            (col(Visit.kind) == "outpatient") & (col(Visit.opened_at) < outpatient_before)
            | (col(Visit.kind) == "emergency") & (col(Visit.opened_at) < emergency_before),
            ~admitted.exists(),
        )
        .order_by(col(Visit.opened_at))
        .with_for_update(skip_locked=True)
    )
    return list(session.exec(query).all())


def lock_visit(session: Session, visit_id: str) -> Visit | None:
    """The visit, its row held FOR UPDATE to the end of the transaction (on PostgreSQL; SQLite writers
    are serialised already), so a close, an admission and a settlement of one visit take turns."""
    query = (
        select(Visit).where(Visit.id == visit_id).with_for_update().execution_options(populate_existing=True)
    )
    return session.exec(query).first()


# --- statistics (statistics.py) ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AppointmentGroup:
    """Booked appointments of one session day, department, channel, status and cancel reason."""

    day: date
    department: str
    channel: str
    status: str
    cancel_reason: str | None
    count: int


def appointment_counts(
    session: Session, *, from_date: date, to_date: date, department: str | None
) -> list[AppointmentGroup]:
    """Appointments ever booked (not lapsed holds) of the sessions held on these days, counted by group."""
    day, dept = col(ClinicSession.date), col(ClinicSession.department)
    channel, status, reason = (
        col(Appointment.channel),
        col(Appointment.status),
        col(Appointment.cancel_reason),
    )
    query = (
        core_select(day, dept, channel, status, reason, func.count())
        .select_from(Appointment)
        .join(ClinicSession, col(ClinicSession.id) == col(Appointment.clinic_session_id))
        .where(day >= from_date, day <= to_date, col(Appointment.booked_at).is_not(None))
        .group_by(day, dept, channel, status, reason)
    )
    if department is not None:
        query = query.where(dept == department)
    return [AppointmentGroup(*row) for row in session.execute(query).all()]


def outpatient_visit_counts(
    session: Session, *, opened_from: datetime, opened_before: datetime, department: str | None
) -> tuple[int, int]:
    """Outpatient visits opened in [from, before) — an admitted one counts by where it came from — and
    how many of them an appointment's check-in opened."""
    came_as_outpatient = (col(Visit.kind) == "outpatient") | (
        col(InpatientStay.admitted_from) == "outpatient"
    )
    query = (
        core_select(func.count())
        .select_from(Visit)
        .outerjoin(InpatientStay, col(InpatientStay.visit_id) == col(Visit.id))
        .where(col(Visit.opened_at) >= opened_from, col(Visit.opened_at) < opened_before, came_as_outpatient)
    )
    if department is not None:
        query = query.where(col(Visit.department) == department)
    by_appointment = query.where(
        exists(core_select(col(Appointment.id)).where(col(Appointment.visit_id) == col(Visit.id)))
    )
    return session.execute(query).scalar_one(), session.execute(by_appointment).scalar_one()


def stay_movement_counts(
    session: Session, *, at_from: datetime, at_before: datetime, department: str | None
) -> tuple[int, int]:
    """Admissions and transfers recorded in [from, before) (into `department`, if given)."""
    kind = col(StayMovement.kind)
    query = (
        core_select(kind, func.count())
        .where(col(StayMovement.at) >= at_from, col(StayMovement.at) < at_before)
        .where(kind.in_(("admission", "transfer")))
        .group_by(kind)
    )
    if department is not None:
        query = query.where(col(StayMovement.department) == department)
    counts: dict[str, int] = {row[0]: row[1] for row in session.execute(query).all()}
    return counts.get("admission", 0), counts.get("transfer", 0)


def discharged_stays(
    session: Session, *, discharged_from: datetime, discharged_before: datetime, department: str | None
) -> list[tuple[datetime, datetime]]:
    """(admitted, discharged) of the stays discharged in [from, before) (from `department`, if given)."""
    discharged = col(InpatientStay.discharged_at)
    query = core_select(col(InpatientStay.admitted_at), discharged).where(
        discharged >= discharged_from, discharged < discharged_before
    )
    if department is not None:
        query = query.where(
            exists(
                core_select(col(StayMovement.id)).where(
                    col(StayMovement.visit_id) == col(InpatientStay.visit_id),
                    col(StayMovement.kind) == "discharge",
                    col(StayMovement.department) == department,
                )
            )
        )
    return [(as_utc(admitted), as_utc(left)) for admitted, left in session.execute(query).all()]
