"""Triage tables."""

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Index, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from kit.merges import MergedVisitBase
from kit.models import (
    ConsumedEventBase,
    FeedCursorBase,
    OutboxEventBase,
    Timestamp,
    UTCDateTime,
    new_registry,
)

# A ticket is "active" while it waits, is called or is held aside; a visit may hold one active ticket per
# department. Finished, no-show, cancelled and transferred tickets are closed.
ACTIVE_TICKET = text("status IN ('waiting', 'called', 'held')")


class TriageTable(SQLModel, registry=new_registry()):
    """Base of every triage table (its own metadata)."""


class Assessment(TriageTable, table=True):
    """One triage assessment (预检分诊) of a visit; a visit's latest assessment is the one that counts."""

    id: str = Field(primary_key=True, max_length=36)
    visit_id: str = Field(index=True, max_length=36)
    patient_id: str = Field(index=True, max_length=36)  # re-pointed when registration merges patients
    level: str = Field(max_length=4)
    zone: str = Field(max_length=8)
    response_minutes: int
    chief_complaint: str | None = Field(default=None, max_length=200)
    note: str | None = Field(default=None, max_length=500)
    assessed_at: datetime = Timestamp()
    # Assessment in depth (0007_vitals): the measured signs, the suggestion they gave and why, the
    # nurse's override reason, the re-triage deadline, and the department it routed the visit to.
    heart_rate: int | None = None
    systolic_bp: int | None = None
    diastolic_bp: int | None = None
    respiratory_rate: int | None = None
    spo2: int | None = None
    temperature: float | None = None
    consciousness: str | None = Field(default=None, max_length=1)
    pain_score: int | None = None
    suggested_level: str | None = Field(default=None, max_length=4)
    suggested_by: str | None = Field(default=None, max_length=32)
    suggestion_reason: str | None = Field(default=None, max_length=200)
    override_reason: str | None = Field(default=None, max_length=200)
    due_at: datetime | None = Field(default=None, sa_type=UTCDateTime, index=True)
    # Set once `triage.overdue` was emitted for this assessment (the timer fires once per assessment).
    overdue_emitted_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    department: str | None = Field(default=None, max_length=32)
    ticket_id: str | None = Field(default=None, max_length=36)


class Ticket(TriageTable, table=True):
    """A place in a department's waiting queue (排队叫号), numbered per department and hospital day."""

    __table_args__ = (
        UniqueConstraint("department", "service_date", "number", name="uq_ticket_department_day_number"),
        Index("ix_ticket_queue_order", "department", "status", "rank", "lined_up_at"),
        Index(
            "uq_ticket_active_visit",
            "visit_id",
            "department",
            unique=True,
            sqlite_where=ACTIVE_TICKET,
            postgresql_where=ACTIVE_TICKET,
        ),
    )

    id: str = Field(primary_key=True, max_length=36)
    visit_id: str = Field(index=True, max_length=36)
    patient_id: str = Field(index=True, max_length=36)  # re-pointed when registration merges patients
    department: str = Field(max_length=32)
    service_date: date
    number: int
    priority: str = Field(max_length=16)
    rank: int
    status: str = Field(default="waiting", max_length=16)
    counter: str | None = Field(default=None, max_length=16)
    # Only the masked name (张*三) the waiting-room board shows; the full name stays in registration.
    masked_name: str | None = Field(default=None, max_length=16)
    enqueued_at: datetime = Timestamp()
    called_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # The booked slot's time when the patient came by appointment (registration's `appointment.arrived`).
    appointment_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # --- Queue actions (issue 10) ---
    # The instant that places the ticket in the call order within its rank: its arrival, the original
    # arrival for a transferred ticket, moved back behind the next patients when it is skipped (过号).
    lined_up_at: datetime = Timestamp()
    skips: int = 0
    recalls: int = 0
    # The ticket this one continues (transfer keeping priority) and the one that continued it.
    transferred_from: str | None = Field(default=None, max_length=36)
    transferred_to: str | None = Field(default=None, max_length=36)
    # --- Queue rules (0009_queue_rules) ---
    # Simple or complex work (the bank lesson): set at queueing or by the desk; None is the queue's default.
    service_class: str | None = Field(default=None, max_length=16)
    # A skip (过号) keeps the place in line; the ticket sits out until this many others are called since
    # `skipped_at`, or until `skip_recall_at`, whichever is first (the queue's recall interval at the skip).
    skipped_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    skip_recall_calls: int | None = None
    skip_recall_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class TicketCounter(TriageTable, table=True):
    """The last number handed out in a department on a hospital day; its row lock keeps numbers gap-free."""

    __tablename__ = "ticket_counter"

    department: str = Field(primary_key=True, max_length=32)
    service_date: date = Field(primary_key=True)
    last: int = 0


class QueueSuspension(TriageTable, table=True):
    """A department's clinic session suspended (门诊暂停); the row exists only while the queue is suspended.

    Nobody is called from a suspended queue. Past suspensions live on as `queue.suspended`/`queue.resumed`
    events, which is where subscribers find the patients to tell.
    """

    __tablename__ = "queue_suspension"

    department: str = Field(primary_key=True, max_length=32)
    reason: str = Field(max_length=200)
    suspended_at: datetime = Timestamp()


# --- Queue actions (issue 10): queue kinds, stations and the skip rule ---
class QueueSetting(TriageTable, table=True):
    """How a queue is run: its kind, the wait target and the skip rule. A queue without a row runs on the
    defaults (`service.DEFAULT_SETTING`), so every department queue works before anyone configures it."""

    __tablename__ = "queue_setting"

    department: str = Field(primary_key=True, max_length=32)
    kind: str = Field(max_length=16)  # department, window or room
    window: str | None = Field(default=None, max_length=32)  # what a window serves: cashier, pharmacy, ...
    target_minutes: int
    skip_requeue_after: int  # a skipped ticket goes behind the next N waiting patients of its rank
    max_skips: int  # the skip after the K-th makes the ticket a no-show
    updated_at: datetime = Timestamp()
    # --- Queue rules (0009_queue_rules) ---
    skip_requeue_minutes: int | None = None  # ... or back in line after this many minutes
    station_cap: int | None = None  # at most this many called, not yet seen patients per station
    # The ordering (rules.QueueRules as JSON); None: the service's TRIAGE_QUEUE_RULES or the defaults.
    rules: dict[str, Any] | None = Field(default=None, sa_type=JSON)


class Station(TriageTable, table=True):
    """A counter, window or room a queue calls patients to; call-next's `counter` must name one when the
    queue has any."""

    __tablename__ = "station"

    department: str = Field(primary_key=True, max_length=32)
    code: str = Field(primary_key=True, max_length=16)
    label: str = Field(max_length=64)
    created_at: datetime = Timestamp()


# --- Wait estimates (0010_wait_estimates) ---
class NearlyUpNotice(TriageTable, table=True):
    """A ticket that reached the front of its queue (position ≤ `TRIAGE_NEARLY_UP_WITHIN`) and was told so
    (`queue.nearly_up`); the row makes the event once per ticket, however often it moves back and forth.
    A table of its own, not a ticket column: writing it never row-locks a ticket that call-next may claim."""

    __tablename__ = "nearly_up_notice"

    ticket_id: str = Field(primary_key=True, max_length=36)
    department: str = Field(max_length=32)
    position: int
    noticed_at: datetime = Timestamp()


class MergedVisit(MergedVisitBase, TriageTable, table=True):
    """A visit registration moved to another patient by a merge (身份确认后合并), as read from its feed.

    Assessments and tickets written for the visit afterwards name this patient, even when the visit was
    asked of registration just before the merge (see `repository.patient_for_visit`).
    """

    __tablename__ = "merged_visit"


class OutboxEvent(OutboxEventBase, TriageTable, table=True):
    __tablename__ = "outbox_event"


class FeedCursor(FeedCursorBase, TriageTable, table=True):
    __tablename__ = "feed_cursor"


class ConsumedEvent(ConsumedEventBase, TriageTable, table=True):
    __tablename__ = "consumed_event"
