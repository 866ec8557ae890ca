"""One clock for the whole system, so tests and services agree on what "now" and "today" mean."""

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

HOSPITAL_TZ = ZoneInfo("Asia/Shanghai")


def utcnow() -> datetime:
    """The current instant, timezone-aware in UTC."""
    return datetime.now(UTC)


def hospital_date(instant: datetime) -> date:
    """The calendar day an instant falls on at the hospital (bills and ticket numbers use it)."""
    if instant.tzinfo is None:  # SQLite hands back naive datetimes; we only ever store UTC.
        instant = instant.replace(tzinfo=UTC)
    return instant.astimezone(HOSPITAL_TZ).date()


def as_utc(instant: datetime) -> datetime:
    """Attach UTC to a naive datetime read back from SQLite."""
    return instant if instant.tzinfo else instant.replace(tzinfo=UTC)
