"""Event hub tables: the log, ingest cursors, the visit→patient map, webhook subscriptions, deliveries."""

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from kit.models import BigIntId, FeedCursorBase, OutboxEventBase, Timestamp, UTCDateTime, new_registry


class EventsTable(SQLModel, registry=new_registry()):
    """Base of every event hub table (its own metadata)."""


class LogEvent(EventsTable, table=True):
    """One event of some service, in the hub's causal order (`position`); `event_id` is the source's id."""

    __tablename__ = "log_event"
    # Wait metrics read a date range of a few event types (services/events/waits.py).
    __table_args__ = (Index("ix_log_event_type_occurred", "event_type", "occurred_at"),)

    position: int | None = Field(default=None, primary_key=True, sa_type=BigIntId)
    event_id: str = Field(max_length=36, unique=True)
    event_type: str = Field(max_length=64, index=True)
    version: int = 1  # of the type's data shape (catalogue/<type>.v<N>.json)
    source: str = Field(max_length=32)
    source_position: int = Field(sa_type=BigInteger)
    aggregate_type: str = Field(max_length=32)
    aggregate_id: str = Field(max_length=36)
    sequence: int
    occurred_at: datetime = Field(sa_type=UTCDateTime)
    visit_id: str | None = Field(default=None, max_length=36, index=True)
    visit_sequence: int | None = None
    patient_id: str | None = Field(default=None, max_length=36, index=True)
    payload: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    ingested_at: datetime = Timestamp()


class SourceCursor(FeedCursorBase, EventsTable, table=True):
    """How far the hub has taken each source's feed into the log."""

    __tablename__ = "source_cursor"


class PublisherCursor(EventsTable, table=True):
    """How far an outbound publisher (NATS JetStream) has pushed the log."""

    __tablename__ = "publisher_cursor"

    name: str = Field(primary_key=True, max_length=32)
    position: int = Field(default=0, sa_type=BigInteger)


class VisitOwner(EventsTable, table=True):
    """Whose visit this is (from `visit.opened`, moved by `patient.merged`), and its hub event counter."""

    __tablename__ = "visit_owner"

    visit_id: str = Field(primary_key=True, max_length=36)
    patient_id: str | None = Field(default=None, max_length=36)
    last_sequence: int = 0


class Subscription(EventsTable, table=True):
    """A webhook: where to POST which event types, with what the owner could see when subscribing."""

    id: str = Field(primary_key=True, max_length=36)
    owner: str = Field(index=True, max_length=64)
    url: str = Field(max_length=2083)  # pydantic HttpUrl's limit
    event_types: list[str] = Field(default_factory=list, sa_type=JSON)
    description: str | None = Field(default=None, max_length=200)
    secret: str = Field(max_length=64)
    scopes: list[str] = Field(default_factory=list, sa_type=JSON)
    patient_id: str | None = Field(default=None, max_length=36)
    created_at: datetime = Timestamp()


class Delivery(EventsTable, table=True):
    """One event owed to one subscription; created in the transaction that logs the event.

    `order_key` (the visit, else the aggregate) orders deliveries: one is sent only when no earlier
    pending delivery of the same subscription and key is left.
    """

    __table_args__ = (
        UniqueConstraint("subscription_id", "position"),
        Index("ix_delivery_subscription_order", "subscription_id", "order_key", "position"),
        Index("ix_delivery_status_due", "status", "next_attempt_at"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigIntId)
    subscription_id: str = Field(foreign_key="subscription.id", ondelete="CASCADE", max_length=36)
    position: int = Field(sa_type=BigInteger)
    event_id: str = Field(max_length=36)
    event_type: str = Field(max_length=64)
    order_key: str = Field(max_length=36)
    status: str = Field(default="pending", max_length=16)
    attempts: int = 0
    created_at: datetime = Timestamp()
    next_attempt_at: datetime = Timestamp()
    first_attempt_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_attempt_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_status_code: int | None = None
    last_error: str | None = Field(default=None, max_length=200)
    delivered_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class OutboxEvent(OutboxEventBase, EventsTable, table=True):
    """The kernel's outbox: the hub emits no events of its own, but serves the standard (empty) feed."""

    __tablename__ = "outbox_event"
