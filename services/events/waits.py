"""Wait metrics (三长一短: long waits to register, to be seen, to pay and for results; a short consultation),
computed from the log. Pure: no database, no FastAPI, so the arithmetic is tested on its own.

A visit's intervals come from its events in log order (`visit_intervals`):

| interval | from | to | per |
|---|---|---|---|
| `registration_to_triage` | `visit.opened` | first `visit.triaged` | visit (triaged, or emergency) |
| `registration_to_call` | `visit.opened` | first `ticket.called` | visit (once it queued) |
| `queue_wait` | `ticket.queued` | first `ticket.called` | ticket |
| `consultation` | last `ticket.called`/`recalled` | `ticket.finished` or `.transferred` | ticket |
| `order_to_payment` | `order.placed` awaiting payment | first `charge.paid` naming the order | order |
| `payment_to_result` | that `charge.paid` | first `report.final` of the order | order |
| `order_to_result` | `order.placed` | first `report.final` of the order | order |

An interval is still open (waiting) until its end event; one that can no longer end is not counted at
all: a ticket cancelled or a no-show before its call, a visit closed before it was triaged or called, an
outpatient visit nobody triages (only emergencies wait for triage).

The hub sees no arrival before registration: a walk-in is registered as they arrive, a booked patient's
check-in opens the visit (`appointment.arrived` and `visit.opened` are one transaction). A window's own
queue (registration, cashier, pharmacy, result printing) is a triage queue like a department's, so its
waits are `queue_wait` under that queue's code.

Aggregates (`aggregate`) give count, mean, p90, max and the share over the target (10 minutes, strictly
more) of the finished intervals, and how many are still open. **p90 is the nearest rank**: the smallest
observed value with at least 90% of the observations at or below it, `sorted[ceil(0.9 n) - 1]` — an
observed wait, never an interpolation (the same definition as `patientflow simulate`).
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from kit.clock import HOSPITAL_TZ, as_utc
from kit.stats import nearest_rank


class IntervalKind(StrEnum):
    registration_to_triage = "registration_to_triage"
    registration_to_call = "registration_to_call"
    queue_wait = "queue_wait"
    consultation = "consultation"
    order_to_payment = "order_to_payment"
    payment_to_result = "payment_to_result"
    order_to_result = "order_to_result"


class GroupBy(StrEnum):
    department = "department"  # the visit's department (registration's)
    queue = "queue"  # the triage queue (department, window or room); null for intervals outside queues
    hour = "hour"  # the hospital hour (Asia/Shanghai, 0-23) the interval started in


# The event types the intervals are made of (the query reads only these).
JOURNEY_TYPES = (
    "visit.opened", "visit.triaged", "ticket.queued", "ticket.called", "ticket.recalled",
    "ticket.finished", "ticket.transferred", "ticket.cancelled", "ticket.noshow", "order.placed",
    "charge.paid", "report.final", "visit.closed",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class JourneyEvent:
    """What the metrics need of one logged event."""

    event_type: str
    visit_id: str
    occurred_at: datetime
    payload: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Interval:
    """One wait or service of one visit; `ended_at` None while it is still going on."""

    kind: IntervalKind
    visit_id: str
    subject: str  # the visit, ticket or order id it is about
    department: str | None  # None when the visit's opening is not in the log
    queue: str | None
    started_at: datetime
    ended_at: datetime | None

    @property
    def minutes(self) -> float | None:
        return None if self.ended_at is None else (self.ended_at - self.started_at).total_seconds() / 60

    @property
    def hour(self) -> int:
        return self.started_at.astimezone(HOSPITAL_TZ).hour

    def key(self, group_by: Sequence[GroupBy]) -> tuple[str | int | None, ...]:
        return tuple(getattr(self, dimension.value) for dimension in group_by)


@dataclass(slots=True)
class _Ticket:
    queue: str
    queued_at: datetime
    first_called_at: datetime | None = None
    last_called_at: datetime | None = None
    ended_at: datetime | None = None  # finished, or transferred after a call
    abandoned: bool = False  # cancelled, a no-show, or moved on before it was served


@dataclass(slots=True)
class _Order:
    placed_at: datetime
    awaiting_payment: bool
    paid_at: datetime | None = None
    reported_at: datetime | None = None


@dataclass(slots=True)
class _Visit:
    opened_at: datetime | None = None
    department: str | None = None
    emergency: bool = False
    closed: bool = False
    triaged_at: datetime | None = None
    first_called_at: datetime | None = None
    tickets: dict[str, _Ticket] = field(default_factory=dict)
    orders: dict[str, _Order] = field(default_factory=dict)


def _apply(visit: _Visit, event: JourneyEvent) -> None:
    """Move one visit's milestones by one event (events arrive in log order, so firsts come first)."""
    data, at = event.payload, as_utc(event.occurred_at)
    kind = event.event_type
    if kind == "visit.opened":
        visit.opened_at, visit.department = at, data.get("department")
        visit.emergency = data.get("kind") == "emergency"
    elif kind == "visit.closed":
        visit.closed = True
    elif kind == "visit.triaged":
        visit.triaged_at = visit.triaged_at or at
    elif kind.startswith("ticket."):
        _apply_ticket(visit, kind, data, at)
    elif kind == "order.placed" and data.get("order_id"):
        awaiting = data.get("status") == "awaiting_payment"
        visit.orders.setdefault(data["order_id"], _Order(placed_at=at, awaiting_payment=awaiting))
    elif kind == "charge.paid" and (order := visit.orders.get(data.get("order_id") or "")):
        order.paid_at = order.paid_at or at
    elif kind == "report.final" and (order := visit.orders.get(data.get("order_id") or "")):
        order.reported_at = order.reported_at or at


def _apply_ticket(visit: _Visit, kind: str, data: Mapping[str, Any], at: datetime) -> None:
    ticket_id = data.get("ticket_id")
    if not ticket_id:
        return
    if kind == "ticket.queued":
        visit.tickets.setdefault(ticket_id, _Ticket(queue=data.get("department") or "", queued_at=at))
        return
    ticket = visit.tickets.get(ticket_id)
    if ticket is None or ticket.ended_at is not None:
        return
    if kind in ("ticket.called", "ticket.recalled"):
        ticket.first_called_at = ticket.first_called_at or at
        ticket.last_called_at = at
        visit.first_called_at = visit.first_called_at or at
    elif kind in ("ticket.finished", "ticket.transferred") and ticket.last_called_at is not None:
        ticket.ended_at = at
    elif kind in ("ticket.cancelled", "ticket.noshow", "ticket.transferred"):
        ticket.abandoned = True


def visit_intervals(visit_id: str, events: Iterable[JourneyEvent]) -> list[Interval]:
    """The intervals of one visit, from its events in log order. An interval needs its start event in
    the log: an order whose `order.placed` is missing has no `order_to_result`."""
    visit = _Visit()
    for event in events:
        _apply(visit, event)
    found: list[Interval] = []

    def add(
        kind: IntervalKind,
        subject: str,
        start: datetime | None,
        end: datetime | None,
        queue: str | None,
        *,
        may_end: bool = True,
    ) -> None:
        if start is not None and (end is not None or may_end):
            found.append(Interval(kind, visit_id, subject, visit.department, queue, start, end))

    still_open = not visit.closed
    add(
        IntervalKind.registration_to_triage, visit_id, visit.opened_at, visit.triaged_at, None,
        may_end=still_open and visit.emergency,
    )  # fmt: skip
    queued = any(not t.abandoned or t.first_called_at for t in visit.tickets.values())
    add(
        IntervalKind.registration_to_call, visit_id, visit.opened_at, visit.first_called_at, None,
        may_end=still_open and queued,
    )  # fmt: skip
    for ticket_id, ticket in visit.tickets.items():
        live = not ticket.abandoned
        add(
            IntervalKind.queue_wait,
            ticket_id,
            ticket.queued_at,
            ticket.first_called_at,
            ticket.queue,
            may_end=live,
        )
        add(
            IntervalKind.consultation,
            ticket_id,
            ticket.last_called_at,
            ticket.ended_at,
            ticket.queue,
            may_end=live,
        )
    for order_id, order in visit.orders.items():
        if order.awaiting_payment:
            add(IntervalKind.order_to_payment, order_id, order.placed_at, order.paid_at, None)
            add(IntervalKind.payment_to_result, order_id, order.paid_at, order.reported_at, None)
        add(IntervalKind.order_to_result, order_id, order.placed_at, order.reported_at, None)
    return found


def journeys(events: Iterable[JourneyEvent]) -> dict[str, list[JourneyEvent]]:
    """Events grouped by visit, each visit's in the order given (log order)."""
    by_visit: dict[str, list[JourneyEvent]] = {}
    for event in events:
        by_visit.setdefault(event.visit_id, []).append(event)
    return by_visit


@dataclass(frozen=True, slots=True)
class Aggregate:
    """One interval kind within one group: figures over the finished intervals, in minutes."""

    kind: IntervalKind
    group: tuple[str | int | None, ...]
    count: int
    open: int
    mean_minutes: float | None
    p90_minutes: float | None
    max_minutes: float | None
    over_target_share: float | None


def summarise(
    kind: IntervalKind, group: tuple[str | int | None, ...], intervals: Sequence[Interval], *, target: float
) -> Aggregate:
    minutes = sorted(m for i in intervals if (m := i.minutes) is not None)
    open_count = len(intervals) - len(minutes)
    if not minutes:
        return Aggregate(kind, group, 0, open_count, None, None, None, None)
    over = sum(1 for m in minutes if m > target)
    return Aggregate(
        kind=kind,
        group=group,
        count=len(minutes),
        open=open_count,
        mean_minutes=sum(minutes) / len(minutes),
        p90_minutes=nearest_rank(minutes, 90),
        max_minutes=minutes[-1],
        over_target_share=over / len(minutes),
    )


def aggregate(
    intervals: Iterable[Interval], *, group_by: Sequence[GroupBy], target: float
) -> list[Aggregate]:
    """Figures per interval kind and group, in kind order then group order (nulls first)."""
    buckets: dict[tuple[IntervalKind, tuple[str | int | None, ...]], list[Interval]] = {}
    for interval in intervals:
        buckets.setdefault((interval.kind, interval.key(group_by)), []).append(interval)
    kinds = list(IntervalKind)

    def order(item: tuple[IntervalKind, tuple[str | int | None, ...]]) -> tuple[Any, ...]:
        kind, group = item
        return (kinds.index(kind), *((value is not None, value) for value in group))

    return [
        summarise(kind, group, buckets[(kind, group)], target=target)
        for kind, group in sorted(buckets, key=order)
    ]


@dataclass(frozen=True, slots=True)
class TicketHistory:
    """One ticket as it happened, for replaying a day (`patientflow simulate --history`)."""

    queue: str
    department: str | None
    queued_at: datetime
    called_at: datetime | None
    service_started_at: datetime | None
    ended_at: datetime | None


def ticket_histories(events: Iterable[JourneyEvent]) -> list[TicketHistory]:
    """Every ticket of these events (all visits), in the order they were queued."""
    found: list[TicketHistory] = []
    for visit_events in journeys(events).values():
        visit = _Visit()
        for event in visit_events:
            _apply(visit, event)
        found += [
            TicketHistory(
                t.queue, visit.department, t.queued_at, t.first_called_at, t.last_called_at, t.ended_at
            )
            for t in visit.tickets.values()
        ]
    return sorted(found, key=lambda t: t.queued_at)
