"""Event hub rules: who sees which event, how a batch enters the log, subscriptions and delivery outcomes."""

import random
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any

from sqlmodel import Session

from kit.auth import SERVICE_SUBJECT_PREFIX
from kit.clock import HOSPITAL_TZ, as_utc, utcnow
from services.events import repository, waits
from services.events.config import EventsSettings
from services.events.destinations import DestinationPolicy, RefusedDestination, ResolveTimeout
from services.events.errors import (
    RefusedWebhookUrl,
    SubscriptionNotFound,
    UnknownDepartment,
    UnresolvedWebhookHost,
    VisitNotLogged,
)
from services.events.models import Delivery, LogEvent, Subscription
from services.events.schemas import (
    DeliveryStatus,
    MetricsRange,
    SubscriptionCreate,
    TicketReplay,
    VisitInterval,
    VisitWaits,
    WaitFigures,
    WaitMetrics,
)
from services.events.signing import new_secret

# Tie-break order of sources for events of the same instant (and the order feeds are read in).
SOURCES = ("registration", "triage", "results", "billing")
READ_SCOPE, SUBSCRIBE_SCOPE = "events:read", "events:subscribe"
MAX_ERROR_LENGTH = 200
# Clinical alerts for staff: a patient's own app never sees them, so a preliminary or critical result
# (危急值) reaches the patient only through results' release rule, as the released report.
STAFF_ONLY_EVENT_TYPES = frozenset(
    {"report.preliminary", "report.critical", "critical.acknowledged", "critical.escalated"}
)


@dataclass(frozen=True, slots=True)
class Audience:
    """What one reader may see: events of the sources whose read scope it holds, and, when it acts
    for a patient, only that patient's events."""

    sources: frozenset[str]
    patient_id: str | None = None

    def sees(self, event: "LogEvent | _LoggedRow") -> bool:
        if event.source not in self.sources:
            return False
        if self.patient_id is None:
            return True
        return event.patient_id == self.patient_id and event.event_type not in STAFF_ONLY_EVENT_TYPES


def audience(*, subject: str, scopes: Sequence[str] | frozenset[str], patient_id: str | None) -> Audience:
    """The audience of a caller (or of a subscription, from what its owner held when subscribing)."""
    if subject.startswith(SERVICE_SUBJECT_PREFIX):
        return Audience(frozenset(SOURCES))  # a sibling service reads the whole log
    held = set(scopes)
    return Audience(frozenset(s for s in SOURCES if f"{s}:read" in held), patient_id)


def event_json(event: LogEvent) -> dict[str, Any]:
    """The wire form: `kit.outbox.event_to_json`'s fields with the hub's position, plus the source's
    position and the event's number within its visit."""
    return {
        "id": event.event_id,
        "type": event.event_type,
        "version": event.version,
        "source": event.source,
        "position": event.position,
        "source_position": event.source_position,
        "aggregate": {"type": event.aggregate_type, "id": event.aggregate_id},
        "sequence": event.sequence,
        "visit_sequence": event.visit_sequence,
        "occurred_at": as_utc(event.occurred_at).isoformat(),
        "visit_id": event.visit_id,
        "patient_id": event.patient_id,
        "data": event.payload,
    }


def log_head(session: Session) -> int:
    """The newest position in the log: a live stream starts after it."""
    return repository.last_position(session)


def read_page(
    session: Session, reader: Audience, *, after: int, limit: int, types: Collection[str] | None
) -> tuple[list[LogEvent], int]:
    """The reader's visible events after `after`, and the cursor to continue from.

    The cursor is the last position *scanned*, visible or not, so a reader that sees few events
    never re-reads the ones hidden from it. The bound is read first: log positions commit in order,
    so nothing at or below it can still appear.
    """
    upto = repository.last_position(session)
    sources = None if reader.sources == frozenset(SOURCES) else reader.sources
    rows = repository.read_log(
        session,
        after=after,
        upto=upto,
        limit=limit,
        types=types,
        sources=sources,
        patient_id=reader.patient_id,
        hidden_types=STAFF_ONLY_EVENT_TYPES if reader.patient_id is not None else (),
    )
    if len(rows) == limit:
        return rows, rows[-1].position or after
    return rows, max(upto, after)


# --- ingestion -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Logged:
    """What one `log_batch` wrote: events logged and webhook deliveries owed."""

    events: int
    deliveries: int


@dataclass(frozen=True, slots=True)
class _LoggedRow:
    source: str
    event_type: str
    patient_id: str | None


def log_batch(
    session: Session, taken: Sequence[tuple[str, dict[str, Any]]], *, cursors: dict[str, int]
) -> Logged:
    """Append source events (already in causal order) to the log, with their webhook deliveries and the
    source cursors, in the caller's one transaction. Events already logged are skipped (a redelivery).

    Rows go in as a few multi-row statements (SQLAlchemy Core): the hub logs every commit of every
    service, so per-row ORM work here was the largest cost of the hub under load.
    """
    repository.lock_log(session)
    seen = repository.logged_event_ids(session, {event["id"] for _, event in taken})
    fresh: list[dict[str, Any]] = []
    for source, event in taken:
        if event["id"] not in seen:
            seen.add(event["id"])
            fresh.append(_log_row(source, event))
    deliveries = 0
    if fresh:
        owners = repository.visit_owners(session, _visits_named(fresh))
        known = set(owners)
        for row in fresh:
            _follow_visits(owners, row)
        positions = repository.insert_log_rows(session, fresh)
        repository.save_visit_owners(session, owners, known=known)
        subscriptions = repository.subscribers(session)
        owed = [
            _delivery_row(subscription, row, position)
            for row, position in zip(fresh, positions, strict=True)
            for subscription in subscriptions
            if wants(subscription, _LoggedRow(row["source"], row["event_type"], row["patient_id"]))
        ]
        repository.insert_deliveries(session, owed)
        deliveries = len(owed)
    for source, position in cursors.items():
        repository.move_source_cursor(session, source, position)
    return Logged(events=len(fresh), deliveries=deliveries)


def _log_row(source: str, event: dict[str, Any]) -> dict[str, Any]:
    return {
        "event_id": event["id"],
        "event_type": event["type"],
        "version": event.get("version", 1),
        "source": source,
        "source_position": event["position"],
        "aggregate_type": event["aggregate"]["type"],
        "aggregate_id": event["aggregate"]["id"],
        "sequence": event["sequence"],
        "occurred_at": datetime.fromisoformat(event["occurred_at"]),
        "visit_id": event.get("visit_id"),
        "visit_sequence": None,
        "patient_id": event.get("patient_id"),
        "payload": event.get("data") or {},
        "ingested_at": utcnow(),
    }


def _visits_named(rows: Sequence[dict[str, Any]]) -> set[str]:
    visits = {row["visit_id"] for row in rows if row["visit_id"] is not None}
    for row in rows:
        if row["event_type"] == "patient.merged":
            visits.update(row["payload"].get("visit_ids") or [])
    return visits


def _follow_visits(owners: dict[str, repository.Owner], row: dict[str, Any]) -> None:
    """Keep the visit→patient map, number the visit's events, and stamp the visit's current patient.

    The map wins over the event's own `patient_id`: after a merge (身份确认后合并) a service may still
    name the merged-away record, but the visit, and whoever may follow it, now belongs to the survivor.
    """
    if row["event_type"] == "patient.merged":
        target = row["payload"].get("target_patient_id")
        for visit_id in row["payload"].get("visit_ids") or []:
            owners.setdefault(visit_id, repository.Owner()).patient_id = target
    visit_id = row["visit_id"]
    if visit_id is None:
        return
    owner = owners.setdefault(visit_id, repository.Owner())
    if row["event_type"] == "visit.opened" and row["patient_id"]:
        owner.patient_id = row["patient_id"]
    owner.patient_id = owner.patient_id or row["patient_id"]
    owner.last_sequence += 1
    row["patient_id"], row["visit_sequence"] = owner.patient_id, owner.last_sequence


def wants(subscription: repository.Subscriber, event: "LogEvent | _LoggedRow") -> bool:
    """Whether a subscription gets this event: a type it asked for, and one its owner may see."""
    if "*" not in subscription.event_types and event.event_type not in subscription.event_types:
        return False
    reader = audience(
        subject=subscription.owner, scopes=subscription.scopes, patient_id=subscription.patient_id
    )
    return reader.sees(event)


def _delivery_row(subscription: repository.Subscriber, row: dict[str, Any], position: int) -> dict[str, Any]:
    now = utcnow()
    return {
        "subscription_id": subscription.id,
        "position": position,
        "event_id": row["event_id"],
        "event_type": row["event_type"],
        "order_key": row["visit_id"] or row["aggregate_id"],
        "status": "pending",
        "attempts": 0,
        "created_at": now,
        "next_attempt_at": now,
    }


# --- subscriptions ---------------------------------------------------------------------------------


def check_destination(data: SubscriptionCreate, *, destinations: DestinationPolicy) -> None:
    """Refuse a webhook URL the hub must not send to. It resolves the host (a network call, bounded):
    call it before the unit of work is opened."""
    try:
        destinations.check_url(str(data.url))
    except RefusedDestination as exc:
        raise RefusedWebhookUrl(f"The hub does not send webhooks there: {exc}.") from None
    except ResolveTimeout:
        raise UnresolvedWebhookHost(
            "The destination host could not be resolved in time "
            f"({destinations.resolve_timeout_seconds:g} s); use a name that resolves promptly, or an address."
        ) from None


def subscribe(
    session: Session,
    *,
    data: SubscriptionCreate,
    owner: str,
    scopes: frozenset[str],
    patient_id: str | None,
) -> Subscription:
    """A new webhook, its URL already checked (`check_destination`); it keeps the owner's scopes and
    patient as they are now, to filter what it gets."""
    subscription = Subscription(
        id=str(uuid.uuid4()),
        owner=owner,
        url=str(data.url),
        event_types=sorted(set(data.event_types)),
        description=data.description,
        secret=new_secret(),
        scopes=sorted(scopes),
        patient_id=patient_id,
    )
    session.add(subscription)
    return subscription


def owned_subscription(
    session: Session, *, subscription_id: str, owner: str, patient_id: str | None
) -> Subscription:
    """One of the owner's subscriptions. An app acting for a patient reaches only that patient's: its
    others, with their deliveries, would tell it about other patients' visits."""
    subscription = repository.owned_subscription(session, subscription_id, owner, patient_id)
    if subscription is None:
        raise SubscriptionNotFound("You have no such subscription.")
    return subscription


def unsubscribe_owner(session: Session, *, owner: str) -> int:
    """Drop every subscription of an owner with its pending deliveries: a revoked client must stop
    receiving events (the gateway calls this before it revokes). Returns how many there were."""
    subscriptions = repository.owned_subscriptions(session, owner, None)
    for subscription in subscriptions:
        repository.delete_subscription(session, subscription)
    return len(subscriptions)


def replay_dead(session: Session, *, subscription: Subscription) -> int:
    """Give the dead letters of a subscription another retry window."""
    return repository.revive_dead(session, subscription.id, utcnow())


# --- delivery outcomes -----------------------------------------------------------------------------


def retry_delay(settings: EventsSettings, attempts: int) -> float:
    """Capped exponential backoff with jitter (half fixed, half random), after `attempts` failures."""
    ceiling = min(
        settings.webhook_retry_cap_seconds, settings.webhook_retry_base_seconds * 2 ** (attempts - 1)
    )
    return ceiling / 2 + random.uniform(0, ceiling / 2)


def record_attempt(
    delivery: Delivery,
    *,
    settings: EventsSettings,
    at: datetime,
    status_code: int | None,
    error: str | None,
) -> None:
    """Apply one attempt's outcome: delivered on 2xx; else retry later, or dead once the window is over."""
    delivery.attempts += 1
    delivery.first_attempt_at = delivery.first_attempt_at or at
    delivery.last_attempt_at = at
    delivery.last_status_code = status_code
    if status_code is not None and 200 <= status_code < 300:
        delivery.status, delivery.delivered_at, delivery.last_error = DeliveryStatus.delivered.value, at, None
        return
    delivery.last_error = (error or f"HTTP {status_code}")[:MAX_ERROR_LENGTH]
    window = timedelta(seconds=settings.webhook_retry_window_seconds)
    if at - as_utc(delivery.first_attempt_at) >= window:
        delivery.status = DeliveryStatus.dead.value
    else:
        delivery.next_attempt_at = at + timedelta(seconds=retry_delay(settings, delivery.attempts))


# --- wait metrics (三长一短; the arithmetic is services/events/waits.py) ----------------------------

METRICS_SCOPE = "metrics:read"
# Events naming a department (registration's visits) and a queue (triage's tickets).
DEPARTMENT_TYPES, QUEUE_TYPES = ("visit.opened",), ("ticket.queued",)


def _journey_event(row: Any) -> waits.JourneyEvent:
    return waits.JourneyEvent(row.event_type, row.visit_id, row.occurred_at, row.payload or {})


def _day_bounds(period: MetricsRange) -> tuple[datetime, datetime]:
    """The UTC instants of the first day's hospital midnight and of the one after the last day."""
    start = datetime.combine(period.from_date, time(), HOSPITAL_TZ)
    end = datetime.combine(period.to_date + timedelta(days=1), time(), HOSPITAL_TZ)
    return start.astimezone(UTC), end.astimezone(UTC)


def check_known(session: Session, *, department: str | None, queue: str | None) -> None:
    """A department or queue no event ever named is a 400 (a typo), not an empty answer."""
    if department is not None and not repository.department_seen(
        session, department=department, field="department", types=DEPARTMENT_TYPES
    ):
        raise UnknownDepartment(f"No visit was ever registered in department {department!r}.")
    if queue is not None and not repository.department_seen(
        session, department=queue, field="department", types=QUEUE_TYPES
    ):
        raise UnknownDepartment(f"No ticket was ever queued in queue {queue!r}.", slug="unknown-queue")


def intervals_started(
    session: Session, *, period: MetricsRange, department: str | None = None, queue: str | None = None
) -> list[waits.Interval]:
    """The intervals that began on these hospital days, of the department's visits and the queue."""
    start, end = _day_bounds(period)
    rows = repository.journey_events_started(session, types=waits.JOURNEY_TYPES, start=start, end=end)
    found = [
        interval
        for visit_id, events in waits.journeys(map(_journey_event, rows)).items()
        for interval in waits.visit_intervals(visit_id, events)
        if start <= interval.started_at < end
    ]
    return [
        i
        for i in found
        if (department is None or i.department == department) and (queue is None or i.queue == queue)
    ]


def wait_metrics(
    session: Session,
    *,
    period: MetricsRange,
    group_by: Sequence[waits.GroupBy],
    department: str | None,
    queue: str | None,
    target_minutes: int,
) -> WaitMetrics:
    check_known(session, department=department, queue=queue)
    found = intervals_started(session, period=period, department=department, queue=queue)
    figures = [
        WaitFigures.model_validate(
            dict(zip([g.value for g in group_by], a.group, strict=True))
            | {
                "interval": a.kind,
                "count": a.count,
                "open": a.open,
                "mean_minutes": _round(a.mean_minutes),
                "p90_minutes": _round(a.p90_minutes),
                "max_minutes": _round(a.max_minutes),
                "over_target_share": None if a.over_target_share is None else round(a.over_target_share, 4),
            }
        )
        for a in waits.aggregate(found, group_by=group_by, target=target_minutes)
    ]
    return WaitMetrics(
        from_date=period.from_date,
        to_date=period.to_date,
        target_minutes=target_minutes,
        group_by=list(group_by),
        figures=figures,
    )


def _round(minutes: float | None) -> float | None:
    return None if minutes is None else round(minutes, 2)


def visit_waits(session: Session, *, visit_id: str, target_minutes: int) -> VisitWaits:
    rows = repository.journey_events_of_visit(session, visit_id=visit_id, types=waits.JOURNEY_TYPES)
    if not rows:
        raise VisitNotLogged("The log holds no journey event of this visit.")
    intervals = waits.visit_intervals(visit_id, map(_journey_event, rows))
    department = next((i.department for i in intervals if i.department), None)
    return VisitWaits(
        visit_id=visit_id,
        department=department,
        target_minutes=target_minutes,
        intervals=[
            VisitInterval(
                interval=i.kind,
                subject=i.subject,
                department=i.department,
                queue=i.queue,
                started_at=i.started_at,
                ended_at=i.ended_at,
                minutes=_round(i.minutes),
            )
            for i in intervals
        ],
    )


def ticket_replays(session: Session, *, period: MetricsRange, queue: str | None) -> list[TicketReplay]:
    """The tickets queued on these days (of one queue), as they happened, in queueing order."""
    check_known(session, department=None, queue=queue)
    start, end = _day_bounds(period)
    rows = repository.journey_events_started(session, types=waits.JOURNEY_TYPES, start=start, end=end)
    return [
        TicketReplay(
            queue=t.queue,
            department=t.department,
            queued_at=t.queued_at,
            called_at=t.called_at,
            service_started_at=t.service_started_at,
            ended_at=t.ended_at,
        )
        for t in waits.ticket_histories(map(_journey_event, rows))
        if start <= t.queued_at < end and (queue is None or t.queue == queue)
    ]
