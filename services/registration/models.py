"""Registration tables."""

from datetime import date, datetime

from sqlalchemy import UniqueConstraint
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


class Patient(RegistrationTable, table=True):
    """A person known to the hospital; `identified=False` for an unidentified emergency patient (无名氏)."""

    id: str = Field(primary_key=True, max_length=36)
    identified: bool
    id_number: str | None = Field(default=None, max_length=18, unique=True)
    name: str | None = Field(default=None, max_length=100)
    sex: str | None = Field(default=None, max_length=8)
    birth_date: date | None = None
    phone: str | None = Field(default=None, max_length=20)
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


# The stays' writes honour Idempotency-Key (stays_router.py). MERGE NOTE: appointments may add this same
# table; keep one definition (and one create_table in the migrations).
class IdempotencyRecord(IdempotencyRecordBase, RegistrationTable, table=True):
    __tablename__ = "idempotency_record"
