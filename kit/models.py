"""Table mixins the kernel's mechanisms need; each service declares its own tables from them.

Services keep separate metadata (one registry each), so the same table name can live in every
service's database without clashing when tests import them all into one process.
"""

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Dialect, Integer, MetaData
from sqlalchemy.orm import registry
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

from kit.clock import as_utc, utcnow

# Deterministic constraint names, so migrations are the same on SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


# SQLite only autoincrements an INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit identity.
BigIntId = BigInteger().with_variant(Integer(), "sqlite")


def new_registry() -> registry:
    """A registry with its own metadata, for one service's tables."""
    return registry(metadata=MetaData(naming_convention=NAMING_CONVENTION))


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and read back timezone-aware on SQLite as on PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: patientflow stores only timezone-aware instants")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return as_utc(value) if value is not None else None


def Timestamp(**kwargs: Any) -> Any:
    """A timezone-aware UTC timestamp column defaulting to now."""
    return Field(default_factory=utcnow, sa_type=UTCDateTime, **kwargs)


class OutboxEventBase(SQLModel):
    """One event, written in the same transaction as the change it describes."""

    position: int | None = Field(default=None, primary_key=True, sa_type=BigIntId)
    event_id: str = Field(max_length=36, unique=True)
    event_type: str = Field(max_length=64, index=True)
    aggregate_type: str = Field(max_length=32)
    aggregate_id: str = Field(max_length=36, index=True)
    sequence: int
    visit_id: str | None = Field(default=None, max_length=36, index=True)
    patient_id: str | None = Field(default=None, max_length=36, index=True)
    occurred_at: datetime = Timestamp()
    payload: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    # The feed positions the writing unit of work read first (`kit.causes`), as [{source, position}].
    causes: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSON)


class FeedCursorBase(SQLModel):
    """How far this service has read another service's event feed."""

    source: str = Field(primary_key=True, max_length=32)
    position: int = Field(default=0, sa_type=BigInteger)


class ConsumedEventBase(SQLModel):
    """Event ids already applied: the de-duplication record of an at-least-once consumer."""

    event_id: str = Field(primary_key=True, max_length=36)
    source: str = Field(max_length=32)
    consumed_at: datetime = Timestamp()
