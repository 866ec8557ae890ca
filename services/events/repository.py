"""All of the event hub's SQL."""

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy import func, text
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, delete, exists, select, update

from services.events.models import (
    Delivery,
    LogEvent,
    PublisherCursor,
    SourceCursor,
    Subscription,
    VisitOwner,
)

# One writer of the log at a time, so positions become visible in commit order (as in kit.outbox).
# Tables for the Core statements of `log_batch` (SQLModel's classes do not type `__table__`).
_LOG: sa.Table = LogEvent.__table__  # type: ignore[attr-defined]
_VISIT_OWNER: sa.Table = VisitOwner.__table__  # type: ignore[attr-defined]
_DELIVERY: sa.Table = Delivery.__table__  # type: ignore[attr-defined]
_SOURCE_CURSOR: sa.Table = SourceCursor.__table__  # type: ignore[attr-defined]
_SUBSCRIPTION: sa.Table = Subscription.__table__  # type: ignore[attr-defined]
# `log_batch`'s reads, built once with bound parameters: it runs for every commit of every service, and
# building a statement per call (ORM select, values baked into `IN`) cost more than running it.
_LOGGED_IDS = sa.select(_LOG.c.event_id).where(_LOG.c.event_id.in_(sa.bindparam("ids", expanding=True)))
_OWNERS = sa.select(_VISIT_OWNER.c.visit_id, _VISIT_OWNER.c.patient_id, _VISIT_OWNER.c.last_sequence).where(
    _VISIT_OWNER.c.visit_id.in_(sa.bindparam("ids", expanding=True))
)
_SUBSCRIBERS = sa.select(
    _SUBSCRIPTION.c.id,
    _SUBSCRIPTION.c.owner,
    _SUBSCRIPTION.c.event_types,
    _SUBSCRIPTION.c.scopes,
    _SUBSCRIPTION.c.patient_id,
)
_CURSOR_POSITION: sa.BindParameter[Any] = sa.bindparam("position")
_MOVE_CURSOR = (
    sa.update(_SOURCE_CURSOR)
    .where(_SOURCE_CURSOR.c.source == sa.bindparam("cursor_source"))
    .values(
        position=sa.case(
            (_SOURCE_CURSOR.c.position < _CURSOR_POSITION, _CURSOR_POSITION), else_=_SOURCE_CURSOR.c.position
        )
    )
)
_ADD_CURSOR = sa.insert(_SOURCE_CURSOR)
_ADD_LOG_ROWS = sa.insert(_LOG).returning(_LOG.c.position, sort_by_parameter_order=True)
_MOVE_OWNERS = (
    sa.update(_VISIT_OWNER)
    .where(_VISIT_OWNER.c.visit_id == sa.bindparam("key"))
    .values(patient_id=sa.bindparam("patient_id"), last_sequence=sa.bindparam("last_sequence"))
)
_ADD_OWNERS = sa.insert(_VISIT_OWNER)
LOG_LOCK = text("SELECT pg_advisory_xact_lock(hashtext('patientflow.events.log.' || current_schema()))")


def lock_log(session: Session) -> None:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(LOG_LOCK)


def source_cursors(session: Session) -> dict[str, int]:
    return {row.source: row.position for row in session.exec(select(SourceCursor)).all()}


def move_source_cursor(session: Session, source: str, position: int) -> None:
    """Move the source's cursor forward to `position` (never back), creating it on first use."""
    connection = session.connection()
    moved = connection.execute(_MOVE_CURSOR, {"cursor_source": source, "position": position})
    if moved.rowcount == 0:
        connection.execute(_ADD_CURSOR, {"source": source, "position": position})


def logged_event_ids(session: Session, event_ids: Collection[str]) -> set[str]:
    if not event_ids:
        return set()
    return set(session.connection().execute(_LOGGED_IDS, {"ids": list(event_ids)}).scalars())


@dataclass(slots=True)
class Owner:
    """A visit's current patient and its hub event counter, as `log_batch` moves them."""

    patient_id: str | None = None
    last_sequence: int = 0


def visit_owners(session: Session, visit_ids: Collection[str]) -> dict[str, Owner]:
    """The known owners of these visits (a visit not yet seen is absent)."""
    if not visit_ids:
        return {}
    rows = session.connection().execute(_OWNERS, {"ids": list(visit_ids)})
    return {row.visit_id: Owner(row.patient_id, row.last_sequence) for row in rows}


def save_visit_owners(session: Session, owners: dict[str, Owner], *, known: Collection[str]) -> None:
    """Write back the owners `log_batch` moved: update the `known` ones, insert the rest."""
    changed = [
        {"key": visit_id, "patient_id": o.patient_id, "last_sequence": o.last_sequence}
        for visit_id, o in owners.items()
        if visit_id in known
    ]
    added = [
        {"visit_id": visit_id, "patient_id": o.patient_id, "last_sequence": o.last_sequence}
        for visit_id, o in owners.items()
        if visit_id not in known
    ]
    if changed:
        session.connection().execute(_MOVE_OWNERS, changed)
    if added:
        session.connection().execute(_ADD_OWNERS, added)


def insert_log_rows(session: Session, rows: Sequence[dict[str, Any]]) -> list[int]:
    """Insert log rows in the order given; their positions, in that order (= causal order)."""
    return [row.position for row in session.connection().execute(_ADD_LOG_ROWS, list(rows))]


def insert_deliveries(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        session.connection().execute(sa.insert(_DELIVERY), list(rows))


def last_position(session: Session) -> int:
    return session.exec(select(func.max(LogEvent.position))).one() or 0


def read_log(
    session: Session,
    *,
    after: int,
    upto: int,
    limit: int,
    types: Collection[str] | None,
    sources: Collection[str] | None,
    patient_id: str | None,
    hidden_types: Collection[str] = (),
) -> list[LogEvent]:
    """Events in (after, upto] that pass the filters, oldest first; None filters let everything through,
    and `hidden_types` never do."""
    query = select(LogEvent).where(col(LogEvent.position) > after, col(LogEvent.position) <= upto)
    if types:
        query = query.where(col(LogEvent.event_type).in_(list(types)))
    if sources is not None:
        query = query.where(col(LogEvent.source).in_(list(sources)))
    if patient_id is not None:
        query = query.where(LogEvent.patient_id == patient_id)
    if hidden_types:
        query = query.where(col(LogEvent.event_type).not_in(list(hidden_types)))
    return list(session.exec(query.order_by(col(LogEvent.position)).limit(limit)).all())


def events_at(session: Session, positions: Collection[int]) -> dict[int, LogEvent]:
    rows = session.exec(select(LogEvent).where(col(LogEvent.position).in_(list(positions)))).all()
    return {row.position: row for row in rows if row.position is not None}


def publisher_cursor(session: Session, name: str) -> int:
    row = session.get(PublisherCursor, name)
    return row.position if row else 0


def move_publisher_cursor(session: Session, name: str, position: int) -> None:
    row = session.get(PublisherCursor, name) or PublisherCursor(name=name)
    row.position = max(row.position, position)
    session.add(row)


class Subscriber(Protocol):
    """What logging reads of a subscription to owe it deliveries (a Core row of `subscription`)."""

    id: str
    owner: str
    event_types: list[str]
    scopes: list[str]
    patient_id: str | None


def subscribers(session: Session) -> list[Subscriber]:
    """Every subscription, as much of it as `log_batch` needs (Core rows: read for every batch)."""
    return list(session.connection().execute(_SUBSCRIBERS))  # type: ignore[arg-type]


def owned_subscriptions(session: Session, owner: str, patient_id: str | None) -> list[Subscription]:
    """The owner's subscriptions; acting for a patient, only the ones that follow that patient."""
    query = select(Subscription).where(Subscription.owner == owner)
    if patient_id is not None:
        query = query.where(Subscription.patient_id == patient_id)
    return list(session.exec(query.order_by(col(Subscription.created_at), col(Subscription.id))).all())


def owned_subscription(
    session: Session, subscription_id: str, owner: str, patient_id: str | None
) -> Subscription | None:
    query = select(Subscription).where(Subscription.id == subscription_id, Subscription.owner == owner)
    if patient_id is not None:
        query = query.where(Subscription.patient_id == patient_id)
    return session.exec(query).first()


def delete_subscription(session: Session, subscription: Subscription) -> None:
    session.exec(delete(Delivery).where(col(Delivery.subscription_id) == subscription.id))
    session.delete(subscription)


def list_deliveries(
    session: Session, subscription_id: str, *, status: str | None, limit: int
) -> list[Delivery]:
    query = select(Delivery).where(Delivery.subscription_id == subscription_id)
    if status:
        query = query.where(Delivery.status == status)
    return list(session.exec(query.order_by(col(Delivery.position)).limit(limit)).all())


def revive_dead(session: Session, subscription_id: str, now: datetime) -> int:
    """Dead deliveries back to pending with a fresh retry window; returns how many."""
    result = session.exec(
        update(Delivery)
        .where(col(Delivery.subscription_id) == subscription_id, col(Delivery.status) == "dead")
        .values(status="pending", attempts=0, first_attempt_at=None, next_attempt_at=now)
    )
    return int(result.rowcount)


def due_deliveries(session: Session, now: datetime, limit: int) -> list[Delivery]:
    """Pending deliveries whose time has come and that nothing earlier of the same order key holds back."""
    earlier = aliased(Delivery)
    blocked = exists().where(
        col(earlier.subscription_id) == col(Delivery.subscription_id),
        col(earlier.order_key) == col(Delivery.order_key),
        col(earlier.status) == "pending",
        col(earlier.position) < col(Delivery.position),
    )
    query = (
        select(Delivery)
        .where(Delivery.status == "pending", col(Delivery.next_attempt_at) <= now, ~blocked)
        .order_by(col(Delivery.position))
        .limit(limit)
    )
    return list(session.exec(query).all())


def next_retry_at(session: Session, now: datetime) -> datetime | None:
    """When the soonest pending delivery not yet due becomes due (None: none is waiting for a time)."""
    query = select(func.min(Delivery.next_attempt_at)).where(
        Delivery.status == "pending", col(Delivery.next_attempt_at) > now
    )
    return session.exec(query).one()


def subscriptions_by_id(session: Session, ids: Collection[str]) -> dict[str, Subscription]:
    rows = session.exec(select(Subscription).where(col(Subscription.id).in_(list(ids)))).all()
    return {row.id: row for row in rows}


def pending_count(session: Session) -> int:
    return session.exec(select(func.count()).select_from(Delivery).where(Delivery.status == "pending")).one()


def lock_deliveries(session: Session, ids: Sequence[int]) -> list[Delivery]:
    """The deliveries still there, row-locked in id order: one deleted meanwhile (its owner revoked, or
    replayed) is simply absent, so recording the others' outcomes never fails on it (PostgreSQL)."""
    query = select(Delivery).where(col(Delivery.id).in_(list(ids))).order_by(col(Delivery.id))
    return list(session.exec(query.with_for_update()).all())


# --- wait metrics (services/events/waits.py) ------------------------------------------------------


def _journey_columns() -> sa.Select[Any]:
    log = _LOG
    return sa.select(log.c.event_type, log.c.visit_id, log.c.occurred_at, log.c.payload)


def journey_events_started(
    session: Session, *, types: Sequence[str], start: datetime, end: datetime
) -> list[sa.Row[Any]]:
    """Every event of these types of the visits with one of them in [start, end), in log order.

    The visits are found with the (type, occurred_at) index; their events with the visit index, whenever
    they happened, so a wait that began in the range and ended after it is complete.
    """
    log = _LOG
    visits = (
        sa.select(log.c.visit_id)
        .where(log.c.event_type.in_(types), log.c.occurred_at >= start, log.c.occurred_at < end)
        .where(log.c.visit_id.is_not(None))
        .distinct()
    )
    # The visits' other events are filtered here, not in SQL: a type filter there lets PostgreSQL, on
    # stale statistics, AND the visit index with the type index (58k rows per visit: 10 s, not 0.2 s).
    query = _journey_columns().where(log.c.visit_id.in_(visits)).order_by(log.c.position)
    wanted = set(types)
    return [row for row in session.execute(query) if row.event_type in wanted]


def journey_events_of_visit(session: Session, *, visit_id: str, types: Sequence[str]) -> list[sa.Row[Any]]:
    log = _LOG
    query = (
        _journey_columns()
        .where(log.c.visit_id == visit_id, log.c.event_type.in_(types))
        .order_by(log.c.position)
    )
    return list(session.execute(query).all())


def department_seen(session: Session, *, department: str, field: str, types: Sequence[str]) -> bool:
    """Whether any event of these types named this `data.<field>` (a department, a queue)."""
    named = _LOG.c.payload[field].as_string()
    query = sa.select(_LOG.c.position).where(_LOG.c.event_type.in_(types), named == department).limit(1)
    return session.execute(query).first() is not None
