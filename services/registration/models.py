"""Registration tables."""

from datetime import date, datetime, time

from sqlalchemy import CheckConstraint, Index, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from kit.idempotency import IdempotencyRecordBase
from kit.models import (
    BigIntId,
    ConsumedEventBase,
    FeedCursorBase,
    OutboxEventBase,
    Timestamp,
    UTCDateTime,
    new_registry,
)


class RegistrationTable(SQLModel, registry=new_registry()):
    """Base of every registration table (its own metadata)."""


# Names are searched by prefix (`LIKE '张%'`): on PostgreSQL only a pattern-ops index serves that
# under any collation; SQLite uses the plain index.
_NAME_PREFIX_INDEX = Index("ix_patient_name", "name", postgresql_ops={"name": "text_pattern_ops"})


class Patient(RegistrationTable, table=True):
    """A person known to the hospital; `identified=False` for an unidentified emergency patient (无名氏).

    `card_number` is the medical card (就诊卡号), issued at registration or recorded from a card the
    patient already holds; `insurance_scheme` is how the patient is insured (医保类别), for billing.
    """

    __table_args__ = (_NAME_PREFIX_INDEX,)

    id: str = Field(primary_key=True, max_length=36)
    identified: bool
    id_number: str | None = Field(default=None, max_length=18, unique=True)
    card_number: str | None = Field(default=None, max_length=20, unique=True)
    insurance_scheme: str = Field(default="self_pay", max_length=24)
    name: str | None = Field(default=None, max_length=100)
    sex: str | None = Field(default=None, max_length=8)
    birth_date: date | None = None
    phone: str | None = Field(default=None, max_length=20, index=True)
    alias: str | None = Field(default=None, max_length=100)
    merged_into_id: str | None = Field(default=None, foreign_key="patient.id", max_length=36)
    created_at: datetime = Timestamp()


class Visit(RegistrationTable, table=True):
    """One encounter (就诊): outpatient, emergency or inpatient, with its payment mode.

    `status`: `open`; `closed` once it takes no new work (settled, discharged, closed at the desk or at
    the end of the day: `close_reason`); `settled` for an inpatient visit billing settled before its
    discharge. An admitted visit becomes `inpatient` in place (its stay: `InpatientStay`).
    """

    id: str = Field(primary_key=True, max_length=36)
    patient_id: str = Field(foreign_key="patient.id", index=True, max_length=36)
    kind: str = Field(max_length=16)
    department: str = Field(max_length=32)
    payment_mode: str = Field(max_length=16)
    status: str = Field(default="open", max_length=16)
    opened_at: datetime = Timestamp()
    settled_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    closed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    close_reason: str | None = Field(default=None, max_length=16)


class SlipCode(RegistrationTable, table=True):
    """A code printed on the patient's slip (凭条): with a second factor it opens a kiosk session.

    Only a keyed digest of the code is stored; the patient is the visit's (so a merge carries it along).
    """

    __tablename__ = "slip_code"

    id: int | None = Field(default=None, primary_key=True, sa_type=BigIntId)
    code_digest: str = Field(max_length=64, unique=True)
    visit_id: str = Field(foreign_key="visit.id", index=True, max_length=36)
    issued_at: datetime = Timestamp()
    expires_at: datetime = Field(sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class OneTimeCode(RegistrationTable, table=True):
    """A 6-digit code sent to the patient's phone for an app session; used once, then spent."""

    __tablename__ = "one_time_code"

    id: int | None = Field(default=None, primary_key=True, sa_type=BigIntId)
    patient_id: str = Field(foreign_key="patient.id", index=True, max_length=36)
    code_digest: str = Field(max_length=64)
    issued_at: datetime = Timestamp()
    expires_at: datetime = Field(sa_type=UTCDateTime)
    spent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class SessionLock(RegistrationTable, table=True):
    """Wrong tries of one patient (`patient:<id>`) or one device (`client:<name>`), and its lock."""

    __tablename__ = "session_lock"

    key: str = Field(primary_key=True, max_length=80)
    failures: int = 0
    last_failure_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    locked_until: datetime | None = Field(default=None, sa_type=UTCDateTime)


class SessionAttempt(RegistrationTable, table=True):
    """The audit of every try to open a patient session, and of every one-time code asked for.

    `method`: slip, otp or challenge. `outcome`: ok, wrong-factor, locked, unknown, expired (a slip or
    code past its time, or replaced), sent or no-phone (challenges). `presented` is a short keyed
    digest of the slip code or identity number tried: repeated guesses show, the value never does.
    """

    __tablename__ = "session_attempt"

    id: int | None = Field(default=None, primary_key=True, sa_type=BigIntId)
    at: datetime = Timestamp(index=True)
    client: str = Field(max_length=64, index=True)
    method: str = Field(max_length=16)
    patient_id: str | None = Field(default=None, max_length=36, index=True)
    outcome: str = Field(max_length=16)
    presented: str = Field(max_length=16)


class Department(RegistrationTable, table=True):
    """A clinical department of the published directory (科室), where its clinics sit (floor, zone)."""

    code: str = Field(primary_key=True, max_length=32)
    name: str = Field(max_length=100)
    floor: str | None = Field(default=None, max_length=16)
    zone: str | None = Field(default=None, max_length=32)
    created_at: datetime = Timestamp()


class Doctor(RegistrationTable, table=True):
    """A doctor of the directory: title (resident … chief) and expert status fix the consultation fee."""

    id: str = Field(primary_key=True, max_length=36)
    name: str = Field(max_length=100)
    title: str = Field(max_length=24)
    expert: bool = False
    profile: str | None = Field(default=None, max_length=1000)
    department: str = Field(foreign_key="department.code", index=True, max_length=32)
    created_at: datetime = Timestamp()


class ScheduleTemplate(RegistrationTable, table=True):
    """A weekly clinic (出诊): this doctor, this weekday and period, from which sessions are generated.

    Times are the hospital's local wall-clock times. Booking opens `booking_opens_days` before the
    session's date at `booking_opens_at` (local) and closes `booking_closes_minutes` before it starts.
    """

    __tablename__ = "schedule_template"

    id: str = Field(primary_key=True, max_length=36)
    department: str = Field(foreign_key="department.code", index=True, max_length=32)
    doctor_id: str = Field(foreign_key="doctor.id", index=True, max_length=36)
    weekday: int  # 0 Monday … 6 Sunday
    period: str = Field(max_length=16)
    starts_at: time
    ends_at: time
    quota: int
    slot_minutes: int
    kind: str = Field(max_length=16)
    booking_opens_days: int
    booking_opens_at: time
    booking_closes_minutes: int
    valid_from: date
    valid_until: date | None = None
    active: bool = True
    created_at: datetime = Timestamp()


class ScheduleException(RegistrationTable, table=True):
    """One date of a template that differs: skipped (`skip`), or with its own quota or times (`override`)."""

    __tablename__ = "schedule_exception"
    __table_args__ = (UniqueConstraint("template_id", "date", name="uq_schedule_exception_template_date"),)

    id: int | None = Field(default=None, primary_key=True, sa_type=BigIntId)
    template_id: str = Field(foreign_key="schedule_template.id", max_length=36)
    date: date
    action: str = Field(max_length=16)
    quota: int | None = None
    starts_at: time | None = None
    ends_at: time | None = None
    reason: str | None = Field(default=None, max_length=200)
    created_at: datetime = Timestamp()


class ClinicSession(RegistrationTable, table=True):
    """One clinic of one doctor on one date and period (门诊出诊), with its quota cut into slots.

    Generated from a template (at most one per template and date) or ad hoc (`template_id` null).
    `status`: open, suspended or cancelled. `booked` counts the seats taken across its slots.
    """

    __tablename__ = "clinic_session"
    __table_args__ = (
        UniqueConstraint("template_id", "date", name="uq_clinic_session_template_date"),
        Index("ix_clinic_session_department_date", "department", "date"),
        Index("ix_clinic_session_doctor_date", "doctor_id", "date"),
    )

    id: str = Field(primary_key=True, max_length=36)
    template_id: str | None = Field(default=None, foreign_key="schedule_template.id", max_length=36)
    department: str = Field(foreign_key="department.code", max_length=32)
    doctor_id: str = Field(foreign_key="doctor.id", max_length=36)
    date: date
    period: str = Field(max_length=16)
    kind: str = Field(max_length=16)
    starts_at: datetime = Field(sa_type=UTCDateTime)
    ends_at: datetime = Field(sa_type=UTCDateTime)
    quota: int
    slot_minutes: int
    fee_item: str = Field(max_length=32)
    fee_fen: int
    booking_opens_at: datetime = Field(sa_type=UTCDateTime)
    booking_closes_at: datetime = Field(sa_type=UTCDateTime)
    status: str = Field(default="open", max_length=16)
    status_reason: str | None = Field(default=None, max_length=200)
    created_at: datetime = Timestamp()


class SessionSlot(RegistrationTable, table=True):
    """A time slot of a session and its seats. `taken` only moves by a conditional update
    (`taken < capacity`), and the check constraint refuses an overbooked row whatever the code does."""

    __tablename__ = "session_slot"
    __table_args__ = (
        UniqueConstraint("clinic_session_id", "starts_at", name="uq_session_slot_session_start"),
        CheckConstraint("taken >= 0 AND taken <= capacity", name="seats"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigIntId)
    clinic_session_id: str = Field(foreign_key="clinic_session.id", max_length=36)
    starts_at: datetime = Field(sa_type=UTCDateTime)
    capacity: int
    taken: int = 0


# An appointment holds a seat (and the patient's one booking of the session) while it is active.
ACTIVE_APPOINTMENT = text("status IN ('proposed', 'booked', 'arrived')")


class Appointment(RegistrationTable, table=True):
    """A booked (or held) seat of a session for a patient (预约挂号), with FHIR-style status:
    proposed (a hold until `hold_expires_at`), booked, arrived, fulfilled, cancelled, noshow."""

    __table_args__ = (
        Index(
            "uq_appointment_active_patient",
            "clinic_session_id",
            "patient_id",
            unique=True,
            sqlite_where=ACTIVE_APPOINTMENT,
            postgresql_where=ACTIVE_APPOINTMENT,
        ),
        Index("ix_appointment_status_slot", "status", "slot_starts_at"),
        Index("ix_appointment_slot_status", "slot_id", "status"),
    )

    id: str = Field(primary_key=True, max_length=36)
    clinic_session_id: str = Field(foreign_key="clinic_session.id", max_length=36)
    slot_id: int = Field(foreign_key="session_slot.id", sa_type=BigIntId)
    slot_starts_at: datetime = Field(sa_type=UTCDateTime)
    patient_id: str = Field(foreign_key="patient.id", index=True, max_length=36)
    channel: str = Field(max_length=16)
    status: str = Field(max_length=16)
    referring_clinic: str | None = Field(default=None, max_length=100)
    followup_of_visit_id: str | None = Field(default=None, foreign_key="visit.id", max_length=36)
    hold_expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    visit_id: str | None = Field(default=None, foreign_key="visit.id", index=True, max_length=36)
    booked_by: str = Field(max_length=64)
    cancel_reason: str | None = Field(default=None, max_length=32)
    created_at: datetime = Timestamp()
    booked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    arrived_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    cancelled_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    noshow_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class SessionDisruption(RegistrationTable, table=True):
    """A clinic session changed, suspended, resumed or cancelled (预约门诊变更、暂停、取消), with its reason:
    `category` doctor, patient or hospital, and the text the patients are told. A change records the new
    times or the substitute doctor; a cancel or suspension may name the session rebooking is offered in."""

    __tablename__ = "session_disruption"

    id: str = Field(primary_key=True, max_length=36)
    clinic_session_id: str = Field(foreign_key="clinic_session.id", index=True, max_length=36)
    action: str = Field(max_length=16)
    category: str = Field(max_length=16)
    reason: str = Field(max_length=200)
    starts_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    ends_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    substitute_doctor_id: str | None = Field(default=None, foreign_key="doctor.id", max_length=36)
    offered_session_id: str | None = Field(default=None, foreign_key="clinic_session.id", max_length=36)
    created_by: str = Field(max_length=64)
    created_at: datetime = Timestamp()


class DisruptedAppointment(RegistrationTable, table=True):
    """An appointment a disruption touched, and what it did to it: `kept` (still booked) or `cancelled`."""

    __tablename__ = "disrupted_appointment"

    disruption_id: str = Field(foreign_key="session_disruption.id", primary_key=True, max_length=36)
    appointment_id: str = Field(foreign_key="appointment.id", primary_key=True, max_length=36)
    patient_id: str = Field(max_length=36)
    outcome: str = Field(max_length=16)


class RebookingOffer(RegistrationTable, table=True):
    """A disrupted patient's offer of another session (the same doctor's next one, or a substitute's),
    which the patient or the desk accepts (booking it) or declines. `clinic_session_id` is null when no
    session with room was found. `status`: offered, accepted, declined or superseded (a later disruption
    of the same appointment made a new offer); an offer past `expires_at` is expired."""

    __tablename__ = "rebooking_offer"

    id: str = Field(primary_key=True, max_length=36)
    disruption_id: str = Field(foreign_key="session_disruption.id", index=True, max_length=36)
    appointment_id: str = Field(foreign_key="appointment.id", index=True, max_length=36)
    patient_id: str = Field(index=True, max_length=36)
    clinic_session_id: str | None = Field(default=None, foreign_key="clinic_session.id", max_length=36)
    status: str = Field(default="offered", max_length=16)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    decided_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    decided_by: str | None = Field(default=None, max_length=64)
    rebooked_appointment_id: str | None = Field(default=None, foreign_key="appointment.id", max_length=36)
    created_at: datetime = Timestamp()


class IdempotencyRecord(IdempotencyRecordBase, RegistrationTable, table=True):
    __tablename__ = "idempotency_record"


# --- inpatient stays (入院、转科、出院) -------------------------------------------------------------------


class Ward(RegistrationTable, table=True):
    """A ward (病区) of a department; its beds are `Bed` rows."""

    code: str = Field(primary_key=True, max_length=32)
    department: str = Field(max_length=32, index=True)
    name: str = Field(max_length=100)
    created_at: datetime = Timestamp()


class Bed(RegistrationTable, table=True):
    """A bed of a ward, with its class (general, double, single, icu: what the bed fee is priced by)."""

    __table_args__ = (UniqueConstraint("ward_code", "code", name="uq_bed_ward_code_code"),)

    id: int | None = Field(default=None, primary_key=True, sa_type=BigIntId)
    ward_code: str = Field(foreign_key="ward.code", max_length=32)
    code: str = Field(max_length=16)
    bed_class: str = Field(max_length=16)
    created_at: datetime = Timestamp()


class InpatientStay(RegistrationTable, table=True):
    """The inpatient stay (住院) of an admitted visit: at most one per visit.

    `bed_id` is the bed the patient lies in now, unique: the database itself refuses a second patient
    in one bed, however many admissions or transfers race for it. Discharge empties it. The patient is
    the visit's (so a merge of an unidentified patient carries the stay along).
    """

    __tablename__ = "inpatient_stay"

    visit_id: str = Field(primary_key=True, foreign_key="visit.id", max_length=36)
    admitted_from: str = Field(max_length=16)
    department: str = Field(max_length=32)
    ward_code: str = Field(foreign_key="ward.code", max_length=32)
    bed_id: int | None = Field(default=None, foreign_key="bed.id", unique=True, sa_type=BigIntId)
    admitted_at: datetime = Timestamp()
    discharged_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class StayMovement(RegistrationTable, table=True):
    """One step of a stay, kept as history: `admission`, `transfer` (with the handover note, 交接记录)
    or `discharge`; where the patient went to (for a discharge: the bed they left) and came from."""

    __tablename__ = "stay_movement"

    id: int | None = Field(default=None, primary_key=True, sa_type=BigIntId)
    visit_id: str = Field(foreign_key="inpatient_stay.visit_id", index=True, max_length=36)
    kind: str = Field(max_length=16)
    department: str = Field(max_length=32)
    ward_code: str = Field(max_length=32)
    bed_code: str = Field(max_length=16)
    bed_class: str = Field(max_length=16)
    from_department: str | None = Field(default=None, max_length=32)
    from_ward_code: str | None = Field(default=None, max_length=32)
    from_bed_code: str | None = Field(default=None, max_length=16)
    note: str | None = Field(default=None, max_length=1000)
    recorded_by: str = Field(max_length=64)
    at: datetime = Timestamp()


class OutboxEvent(OutboxEventBase, RegistrationTable, table=True):
    __tablename__ = "outbox_event"


class FeedCursor(FeedCursorBase, RegistrationTable, table=True):
    __tablename__ = "feed_cursor"


class ConsumedEvent(ConsumedEventBase, RegistrationTable, table=True):
    __tablename__ = "consumed_event"
