"""Registration tables."""

from datetime import date, datetime

from sqlalchemy import Index
from sqlmodel import Field, SQLModel

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
    """One encounter (就诊): outpatient, emergency or inpatient, with its payment mode; `settled` once
    billing has settled its account (read from billing's `visit.settled`)."""

    id: str = Field(primary_key=True, max_length=36)
    patient_id: str = Field(foreign_key="patient.id", index=True, max_length=36)
    kind: str = Field(max_length=16)
    department: str = Field(max_length=32)
    payment_mode: str = Field(max_length=16)
    status: str = Field(default="open", max_length=16)
    opened_at: datetime = Timestamp()
    settled_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


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


class OutboxEvent(OutboxEventBase, RegistrationTable, table=True):
    __tablename__ = "outbox_event"


class FeedCursor(FeedCursorBase, RegistrationTable, table=True):
    __tablename__ = "feed_cursor"


class ConsumedEvent(ConsumedEventBase, RegistrationTable, table=True):
    __tablename__ = "consumed_event"
