"""The transactional outbox and the event feed every service serves.

A state change and its event rows commit together or not at all. Consumers page through
`GET /events?after=<position>&limit=` and de-duplicate by `id`. Each event carries the `causes` its unit of
work noted (`kit.causes`): the hub merges the feeds by them.

**Positions become visible in commit order, so a reader paging by position never skips an event.**
`record_event` only builds the row; the rows enter the database in the session's `before_commit` hook,
just before COMMIT, and on PostgreSQL under a transaction-level advisory lock taken there (one per schema).
So the business part of concurrent writers runs in parallel; only "insert the events, COMMIT" is serialised.
Proof: every position is drawn by an INSERT made while holding the lock, and the lock is released only after
COMMIT has made the transaction visible (PostgreSQL releases locks after the commit record and the
proc-array update) or after it rolled back. So if writer A holds position p and writer B holds q > p, A drew
p before B took the lock, hence A's transaction ended (visible, or rolled back leaving p a gap for good)
before B drew q. A reader that sees q therefore already sees every committed position below q, and a cursor
that moved past q never leaves a committed event behind it. (A transaction that writes no event takes no
lock.) On SQLite the writer connection already serialises whole write transactions (`BEGIN IMMEDIATE`).

**`sequence` per aggregate is gap-free and in commit order.** It is `max(sequence) + 1` of the aggregate,
read in the hook under the same lock with a fresh READ COMMITTED statement snapshot: every earlier holder
of the lock has committed (its sequences are seen) or rolled back (none were kept), and no later writer can
draw until this one ends. Several events of one aggregate in one transaction count up in `record_event`
order. So the sequences of an aggregate are 1, 2, 3, … in position order, whatever the writers overlap.

The row returned by `record_event` is the one inserted: its `position` is set once the session commits.
"""

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy import event as sa_event
from sqlalchemy import func, text
from sqlalchemy.orm import Session as OrmSession
from sqlalchemy.orm import SessionTransaction
from sqlmodel import Session, col, select

from kit import causes
from kit.auth import require_service_caller
from kit.clock import as_utc
from kit.database import SessionDep
from kit.models import OutboxEventBase
from kit.params import CursorQuery, page_size

MAX_FEED_PAGE = 500
EVENT_VERSION = 1
"""The version of every event type's `data` shape (`services/events/catalogue/<type>.v<N>.json`).

Adding an optional field is not a new version; a breaking change to a type's data (a field removed,
renamed, retyped or newly required) becomes a new version with a new schema file.
"""
OUTBOX_LOCK = text("SELECT pg_advisory_xact_lock(hashtext('patientflow.outbox.' || current_schema()))")
_PENDING = "patientflow.outbox.pending"  # session.info key: events recorded, not yet inserted
_SAVEPOINTS = "patientflow.outbox.savepoints"  # open savepoint → how many events were pending at its start


def record_event(
    session: Session,
    outbox: type[OutboxEventBase],
    *,
    event_type: str,
    aggregate_type: str,
    aggregate_id: str,
    payload: dict[str, Any],
    visit_id: str | None = None,
    patient_id: str | None = None,
) -> OutboxEventBase:
    """Add an event to the current transaction; it is published only if the transaction commits.

    The row is inserted (position and `sequence` drawn) just before COMMIT: see the module docstring.
    """
    event = outbox(
        event_id=str(uuid.uuid4()),
        event_type=event_type,
        aggregate_type=aggregate_type,
        aggregate_id=aggregate_id,
        sequence=0,  # drawn in _insert_pending
        visit_id=visit_id,
        patient_id=patient_id,
        payload=payload,
        causes=[cause.to_json() for cause in causes.current()],
    )
    if not session.in_transaction():
        session.begin()  # the events belong to this unit of work, ended by commit, rollback or close
    session.info.setdefault(_PENDING, []).append(event)
    return event


@sa_event.listens_for(OrmSession, "before_commit")
def _insert_pending(session: OrmSession) -> None:
    """Draw positions and sequences for the events recorded in this session, under the outbox lock."""
    if session.in_nested_transaction():
        return  # a savepoint released: the events wait for the real COMMIT
    pending: list[OutboxEventBase] = session.info.pop(_PENDING, [])
    session.info.pop(_SAVEPOINTS, None)
    if not pending:
        return
    if session.get_bind().dialect.name == "postgresql":
        # One lock per schema: services sharing a database never wait on each other's outboxes.
        session.execute(OUTBOX_LOCK)
    drawn: dict[tuple[type[OutboxEventBase], str, str], int] = {}
    for event in pending:
        outbox = type(event)
        key = (outbox, event.aggregate_type, event.aggregate_id)
        if key not in drawn:
            last = select(func.max(outbox.sequence)).where(
                outbox.aggregate_type == event.aggregate_type, outbox.aggregate_id == event.aggregate_id
            )
            drawn[key] = session.execute(last).scalar_one() or 0
        drawn[key] += 1
        event.sequence = drawn[key]
        session.add(event)
        session.flush()  # positions in record_event order


@sa_event.listens_for(OrmSession, "after_transaction_create")
def _mark_savepoint(session: OrmSession, transaction: SessionTransaction) -> None:
    if transaction.nested:  # events recorded inside it vanish if it rolls back
        session.info.setdefault(_SAVEPOINTS, {})[transaction] = len(session.info.get(_PENDING, []))


@sa_event.listens_for(OrmSession, "after_soft_rollback")
def _forget_savepoint_events(session: OrmSession, rolled_back: SessionTransaction) -> None:
    """Events recorded inside a savepoint that rolled back vanish with its change."""
    mark = session.info.get(_SAVEPOINTS, {}).pop(rolled_back, None)
    if rolled_back.nested and mark is not None:
        del session.info.get(_PENDING, [])[mark:]


@sa_event.listens_for(OrmSession, "after_transaction_end")
def _forget_pending(session: OrmSession, transaction: SessionTransaction) -> None:
    """The unit of work ended (committed, rolled back or closed): nothing recorded in it is left over."""
    if transaction.parent is None and not transaction.nested:
        session.info.pop(_PENDING, None)
        session.info.pop(_SAVEPOINTS, None)


def event_to_json(event: OutboxEventBase, source: str) -> dict[str, Any]:
    """The wire form of an event, identical in every service's feed."""
    return {
        "id": event.event_id,
        "type": event.event_type,
        "version": EVENT_VERSION,
        "source": source,
        "position": event.position,
        "aggregate": {"type": event.aggregate_type, "id": event.aggregate_id},
        "sequence": event.sequence,
        "occurred_at": as_utc(event.occurred_at).isoformat(),
        "visit_id": event.visit_id,
        "patient_id": event.patient_id,
        "data": event.payload,
        "causes": event.causes or [],
    }


def feed_router(outbox: type[OutboxEventBase]) -> APIRouter:
    """`GET /events`: this service's events after a cursor, oldest first; for sibling services only."""
    router = APIRouter(tags=["events"], dependencies=[Depends(require_service_caller)])

    @router.get("/events", summary="Read this service's event feed")
    def read_feed(
        request: Request,
        session: SessionDep,
        after: CursorQuery = 0,
        limit: Annotated[int, page_size(MAX_FEED_PAGE)] = 100,
        type: Annotated[str | None, Query(description="Only events of this type")] = None,
    ) -> dict[str, Any]:
        """Events committed after `after`, at most `limit`; pass `next_after` back to continue.

        Delivery is at least once: de-duplicate by event `id`.
        """
        query = select(outbox).where(col(outbox.position) > after)
        if type:
            query = query.where(outbox.event_type == type)
        rows = session.exec(query.order_by(col(outbox.position)).limit(limit)).all()
        source = request.app.state.settings.service_name
        next_after = rows[-1].position if rows else after
        return {"events": [event_to_json(r, source) for r in rows], "next_after": next_after}

    @router.get("/events/head", summary="The position of this service's last committed event")
    def read_feed_head(session: SessionDep) -> dict[str, int]:
        """`position` of the newest committed event (0 when none): a reader whose cursor has reached it
        has applied everything this service committed before the call, e.g. before billing settles."""
        head = session.exec(select(func.max(outbox.position))).one()
        return {"position": head or 0}

    return router
