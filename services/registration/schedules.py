"""The published directory and the clinic schedule (出诊安排): departments, doctors, weekly templates with
their exceptions, and the clinic sessions generated from them (or opened ad hoc), each cut into slots.

Generation is idempotent: a session is unique per template and date (a unique constraint), so a re-run,
even one racing another, creates nothing twice.
"""

import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from kit.clock import HOSPITAL_TZ, utcnow
from kit.database import upsert
from services.registration import repository
from services.registration.config import RegistrationSettings
from services.registration.errors import (
    ClinicSessionNotFound,
    DepartmentNotFound,
    DoctorNotFound,
    DuplicateDepartment,
    ScheduleRefused,
    TemplateNotFound,
)
from services.registration.models import (
    ClinicSession,
    Department,
    Doctor,
    ScheduleException,
    ScheduleTemplate,
    SessionSlot,
)
from services.registration.schemas import (
    ClinicSessionPublic,
    DepartmentCreate,
    DoctorCreate,
    ExceptionAction,
    ExceptionCreate,
    GenerateRequest,
    GenerateResult,
    Period,
    SessionCreate,
    SessionSlots,
    SlotPublic,
    TemplateCreate,
)

# The usual local hours of each period, when a template does not give its own.
PERIOD_HOURS: dict[Period, tuple[time, time]] = {
    Period.morning: (time(8, 0), time(12, 0)),
    Period.afternoon: (time(13, 30), time(17, 30)),
    Period.evening: (time(18, 0), time(21, 0)),
    Period.full_day: (time(8, 0), time(17, 30)),
}


def local_instant(on: date, at: time) -> datetime:
    """The UTC instant of a local wall-clock time at the hospital."""
    return datetime.combine(on, at, tzinfo=HOSPITAL_TZ).astimezone(UTC)


def create_department(session: Session, *, data: DepartmentCreate) -> Department:
    if repository.get_department(session, data.code) is not None:
        raise DuplicateDepartment("A department with this code exists.", code=data.code)
    department = Department(**data.model_dump())
    try:
        with session.begin_nested():
            session.add(department)
    except IntegrityError:
        raise DuplicateDepartment("A department with this code exists.", code=data.code) from None
    return department


def get_department(session: Session, *, code: str) -> Department:
    department = repository.get_department(session, code)
    if department is None:
        raise DepartmentNotFound("No such department.")
    return department


def create_doctor(session: Session, *, data: DoctorCreate) -> Doctor:
    get_department(session, code=data.department)
    doctor = Doctor(id=str(uuid.uuid4()), **data.model_dump())
    session.add(doctor)
    return doctor


def get_doctor(session: Session, *, doctor_id: str) -> Doctor:
    doctor = repository.get_doctor(session, doctor_id)
    if doctor is None:
        raise DoctorNotFound("No such doctor.")
    return doctor


def fee_of(doctor: Doctor, settings: RegistrationSettings) -> tuple[str, int]:
    """The consultation fee's catalogue item (by title, or the expert fee) and its price in fen."""
    item = settings.consultation_fee_items["expert" if doctor.expert else doctor.title]
    return item, settings.consultation_fee_fen.get(item, 0)


def _doctor_of(session: Session, *, doctor_id: str, department: str) -> Doctor:
    get_department(session, code=department)
    doctor = get_doctor(session, doctor_id=doctor_id)
    if doctor.department != department:
        raise ScheduleRefused(
            "The doctor belongs to another department.", doctor_department=doctor.department
        )
    return doctor


def slot_capacities(
    *, starts_at: datetime, ends_at: datetime, slot_minutes: int, quota: int
) -> list[tuple[datetime, int]]:
    """The slots of a session and their seats: the quota spread evenly over the slots that fit (a quota
    smaller than the number of slots leaves gaps rather than crowding the start)."""
    count = int((ends_at - starts_at).total_seconds() // 60) // slot_minutes
    if count == 0:
        raise ScheduleRefused("Not one slot fits between the start and the end.")
    seats = [0] * count
    for seat in range(quota):
        seats[seat * count // quota] += 1
    step = timedelta(minutes=slot_minutes)
    return [(starts_at + index * step, n) for index, n in enumerate(seats) if n > 0]


def create_template(session: Session, *, data: TemplateCreate) -> ScheduleTemplate:
    _doctor_of(session, doctor_id=data.doctor_id, department=data.department)
    default_start, default_end = PERIOD_HOURS[data.period]
    starts_at, ends_at = data.starts_at or default_start, data.ends_at or default_end
    anchor = data.valid_from  # any date: only checks that a slot fits
    slot_capacities(
        starts_at=local_instant(anchor, starts_at),
        ends_at=local_instant(anchor, ends_at),
        slot_minutes=data.slot_minutes,
        quota=data.quota,
    )
    template = ScheduleTemplate(
        id=str(uuid.uuid4()),
        **data.model_dump(exclude={"starts_at", "ends_at", "period", "kind"}),
        period=data.period.value,
        kind=data.kind.value,
        starts_at=starts_at,
        ends_at=ends_at,
    )
    session.add(template)
    return template


def get_template(session: Session, *, template_id: str) -> ScheduleTemplate:
    template = repository.get_template(session, template_id)
    if template is None:
        raise TemplateNotFound("No such schedule template.")
    return template


def add_exception(session: Session, *, template_id: str, data: ExceptionCreate) -> ScheduleException:
    """Skip one date of a template or give it its own quota/times; a date given again replaces the first.

    Only sessions generated afterwards follow it: a session already generated is changed (or
    cancelled) through its own routes, so its bookings are never silently dropped.
    """
    template = get_template(session, template_id=template_id)
    if data.date.weekday() != template.weekday:
        raise ScheduleRefused("That date is not on the template's weekday.", weekday=template.weekday)
    if data.action is ExceptionAction.override:  # refused now, not later by the whole generation run
        slot_capacities(
            starts_at=local_instant(data.date, data.starts_at or template.starts_at),
            ends_at=local_instant(data.date, data.ends_at or template.ends_at),
            slot_minutes=template.slot_minutes,
            quota=data.quota or template.quota,
        )
    values = data.model_dump(exclude={"action"}) | {"action": data.action.value}
    upsert(
        session,
        ScheduleException,
        values | {"template_id": template.id, "created_at": utcnow()},
        keys=["template_id", "date"],
        update=list(values),
    )
    exception = repository.get_exception(session, template_id=template.id, on=data.date)
    assert exception is not None
    return exception


def _session_from_template(
    template: ScheduleTemplate,
    doctor: Doctor,
    on: date,
    exception: ScheduleException | None,
    settings: RegistrationSettings,
) -> tuple[ClinicSession, list[tuple[datetime, int]]]:
    local_start, local_end, quota = template.starts_at, template.ends_at, template.quota
    if exception is not None:
        local_start = exception.starts_at or local_start
        local_end = exception.ends_at or local_end
        quota = exception.quota or quota
    starts_at, ends_at = local_instant(on, local_start), local_instant(on, local_end)
    fee_item, fee_fen = fee_of(doctor, settings)
    clinic_session = ClinicSession(
        id=str(uuid.uuid4()),
        template_id=template.id,
        department=template.department,
        doctor_id=template.doctor_id,
        date=on,
        period=template.period,
        kind=template.kind,
        starts_at=starts_at,
        ends_at=ends_at,
        quota=quota,
        slot_minutes=template.slot_minutes,
        fee_item=fee_item,
        fee_fen=fee_fen,
        booking_opens_at=local_instant(
            on - timedelta(days=template.booking_opens_days), template.booking_opens_at
        ),
        booking_closes_at=starts_at - timedelta(minutes=template.booking_closes_minutes),
    )
    slots = slot_capacities(
        starts_at=starts_at, ends_at=ends_at, slot_minutes=template.slot_minutes, quota=quota
    )
    return clinic_session, slots


def _add_session(
    session: Session, clinic_session: ClinicSession, slots: Sequence[tuple[datetime, int]]
) -> None:
    session.add(clinic_session)
    session.flush()
    for starts_at, capacity in slots:
        session.add(SessionSlot(clinic_session_id=clinic_session.id, starts_at=starts_at, capacity=capacity))


def generate_sessions(
    session: Session, *, data: GenerateRequest, settings: RegistrationSettings
) -> GenerateResult:
    """Sessions of every template in force for each date of the range; existing ones are left alone."""
    templates = repository.templates_in_force(
        session, department=data.department, from_date=data.from_date, to_date=data.to_date
    )
    exceptions = repository.exceptions_between(
        session, template_ids=[t.id for t in templates], from_date=data.from_date, to_date=data.to_date
    )
    created: list[str] = []
    existing = skipped = 0
    for template in templates:
        doctor = get_doctor(session, doctor_id=template.doctor_id)
        on = data.from_date + timedelta(days=(template.weekday - data.from_date.weekday()) % 7)
        while on <= data.to_date:
            in_force = template.valid_from <= on and (
                template.valid_until is None or on <= template.valid_until
            )
            exception = exceptions.get((template.id, on))
            if not in_force:
                pass
            elif exception is not None and exception.action == ExceptionAction.skip.value:
                skipped += 1
            elif repository.template_session_on(session, template_id=template.id, on=on) is not None:
                existing += 1
            else:
                clinic_session, slots = _session_from_template(template, doctor, on, exception, settings)
                try:
                    with session.begin_nested():  # a concurrent run loses on the unique (template, date)
                        _add_session(session, clinic_session, slots)
                except IntegrityError:
                    existing += 1
                else:
                    created.append(clinic_session.id)
            on += timedelta(days=7)
    return GenerateResult(created=created, existing=existing, skipped=skipped)


def create_session(session: Session, *, data: SessionCreate, settings: RegistrationSettings) -> ClinicSession:
    """An ad-hoc session (a holiday clinic, an extra one): bookable from now (or `booking_opens_at`)
    until it ends (or `booking_closes_at`)."""
    doctor = _doctor_of(session, doctor_id=data.doctor_id, department=data.department)
    starts_at, ends_at = data.starts_at.astimezone(UTC), data.ends_at.astimezone(UTC)
    slots = slot_capacities(
        starts_at=starts_at, ends_at=ends_at, slot_minutes=data.slot_minutes, quota=data.quota
    )
    fee_item, fee_fen = fee_of(doctor, settings)
    clinic_session = ClinicSession(
        id=str(uuid.uuid4()),
        department=data.department,
        doctor_id=doctor.id,
        date=data.date,
        period=data.period.value,
        kind=data.kind.value,
        starts_at=starts_at,
        ends_at=ends_at,
        quota=data.quota,
        slot_minutes=data.slot_minutes,
        fee_item=fee_item,
        fee_fen=fee_fen,
        booking_opens_at=(data.booking_opens_at or utcnow()).astimezone(UTC),
        booking_closes_at=(data.booking_closes_at or ends_at).astimezone(UTC),
    )
    _add_session(session, clinic_session, slots)
    return clinic_session


def get_clinic_session(session: Session, *, clinic_session_id: str) -> ClinicSession:
    clinic_session = repository.get_clinic_session(session, clinic_session_id)
    if clinic_session is None:
        raise ClinicSessionNotFound("No such clinic session.")
    return clinic_session


def to_public(clinic_session: ClinicSession) -> ClinicSessionPublic:
    return ClinicSessionPublic.model_validate(clinic_session, from_attributes=True)


def session_slots(session: Session, *, clinic_session_id: str, now: datetime | None = None) -> SessionSlots:
    """The session's slots and seats left; a hold past its time counts as free (it is released at the
    next booking that needs the seat, or by the sweep)."""
    clinic_session = get_clinic_session(session, clinic_session_id=clinic_session_id)
    lapsed = repository.lapsed_holds_by_slot(
        session, clinic_session_id=clinic_session.id, now=now or utcnow()
    )
    slots = [
        SlotPublic(
            starts_at=slot.starts_at,
            capacity=slot.capacity,
            free=slot.capacity - slot.taken + lapsed.get(slot.id or 0, 0),
        )
        for slot in repository.slots_of(session, clinic_session.id)
    ]
    bookable = clinic_session.status == "open"
    return SessionSlots(
        clinic_session_id=clinic_session.id,
        status=clinic_session.status,  # type: ignore[arg-type]
        free=sum(s.free for s in slots) if bookable else 0,
        slots=slots,
    )
