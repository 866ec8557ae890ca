"""Event hub API shapes. Requests forbid unknown fields."""

from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Any, Self

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, StringConstraints, model_validator

from services.events.waits import GroupBy, IntervalKind

# `visit.opened`, `report.critical`, ... or `*` for every type.
EventTypeName = Annotated[
    str, StringConstraints(pattern=r"^(\*|[a-z][a-z_]*(\.[a-z][a-z_]*)+)$", max_length=64)
]


class DeliveryStatus(StrEnum):
    pending = "pending"  # not yet delivered; retried with backoff
    delivered = "delivered"  # the receiver answered 2xx
    dead = "dead"  # the retry window ran out: a dead letter, until replayed


class LogPage(BaseModel):
    """A page of the log; pass `next_after` back as `after` to continue (it moves past hidden events too)."""

    events: list[dict[str, Any]]
    next_after: int


class SubscriptionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    url: HttpUrl = Field(
        description="Where to POST each event (http or https)", examples=["https://his.example/hooks"]
    )
    event_types: list[EventTypeName] = Field(
        min_length=1,
        max_length=100,
        description='Event types to receive, or `["*"]` for all',
        examples=[["visit.opened", "report.final"]],
    )
    description: str | None = Field(default=None, max_length=200)


class SubscriptionPublic(BaseModel):
    id: str
    url: str
    event_types: list[str]
    description: str | None
    patient_id: str | None = Field(description="Set when the subscription follows one patient only")
    created_at: datetime


class SubscriptionCreated(SubscriptionPublic):
    secret: str = Field(description="Signing secret (`whsec_...`); shown only in this answer")


class DeliveryPublic(BaseModel):
    id: int
    event_id: str
    event_type: str
    position: int
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime
    first_attempt_at: datetime | None
    last_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    delivered_at: datetime | None


class ReplayResult(BaseModel):
    replayed: int = Field(description="Dead deliveries put back to pending")


# --- wait metrics (三长一短) ----------------------------------------------------------------------

EARLIEST_DAY, LATEST_DAY = date(2000, 1, 1), date(2099, 12, 31)  # the hospital's calendar (4xx outside)
MAX_METRICS_DAYS = 31


class MetricsRange(BaseModel):
    """Hospital days (Asia/Shanghai) from `from_date` to `to_date`, both included, at most 31."""

    from_date: Annotated[date, Field(ge=EARLIEST_DAY, le=LATEST_DAY)]
    to_date: Annotated[date, Field(ge=EARLIEST_DAY, le=LATEST_DAY)]

    @model_validator(mode="after")
    def _range(self) -> Self:
        if self.to_date < self.from_date:
            raise ValueError("to_date must not be before from_date")
        if (self.to_date - self.from_date).days >= MAX_METRICS_DAYS:
            raise ValueError(f"a range of at most {MAX_METRICS_DAYS} days")
        return self


class WaitFigures(BaseModel):
    """One interval kind in one group. Figures are over the finished intervals that started in the range
    (minutes); null when none has finished."""

    interval: IntervalKind
    department: str | None = Field(default=None, description="With `group_by=department`")
    queue: str | None = Field(default=None, description="With `group_by=queue`; null outside queues")
    hour: int | None = Field(default=None, description="With `group_by=hour`: the hospital hour it began")
    count: int = Field(description="Finished intervals")
    open: int = Field(description="Begun in the range and not finished yet (still waiting)")
    mean_minutes: float | None
    p90_minutes: float | None = Field(description="Nearest rank: an observed value, 90% at or below it")
    max_minutes: float | None
    over_target_share: float | None = Field(description="Share longer than the target (0-1)")


class WaitMetrics(BaseModel):
    from_date: date
    to_date: date
    target_minutes: int
    group_by: list[GroupBy]
    figures: list[WaitFigures]


class VisitInterval(BaseModel):
    interval: IntervalKind
    subject: str = Field(description="The visit, ticket or order the interval is about")
    department: str | None
    queue: str | None
    started_at: datetime
    ended_at: datetime | None = Field(description="Null while still going on")
    minutes: float | None


class VisitWaits(BaseModel):
    visit_id: str
    department: str | None
    target_minutes: int
    intervals: list[VisitInterval]


class TicketReplay(BaseModel):
    """One ticket as it happened (no patient, visit or ticket id): what the simulator replays."""

    queue: str
    department: str | None
    queued_at: datetime
    called_at: datetime | None = Field(description="First call; null if never called")
    service_started_at: datetime | None = Field(description="Last call or recall before the end")
    ended_at: datetime | None = Field(description="Finished (or transferred on); null if not")
