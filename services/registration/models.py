"""Registration tables."""

from datetime import date, datetime

from sqlmodel import Field, SQLModel

from kit.models import (
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


class OutboxEvent(OutboxEventBase, RegistrationTable, table=True):
    __tablename__ = "outbox_event"


class FeedCursor(FeedCursorBase, RegistrationTable, table=True):
    __tablename__ = "feed_cursor"


class ConsumedEvent(ConsumedEventBase, RegistrationTable, table=True):
    __tablename__ = "consumed_event"
