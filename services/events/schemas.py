"""Event hub API shapes. Requests forbid unknown fields."""

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, StringConstraints

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
