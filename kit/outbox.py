"""The transactional outbox and the event feed every service serves.

A state change and its event row commit together or not at all. Consumers page through
`GET /events?after=<position>&limit=` and de-duplicate by `id`; positions only ever grow in commit
order, because on PostgreSQL writers of the outbox take a transaction-level advisory lock (without
it, a transaction that took position 5 could commit after one that took 6, and a reader that had
already moved past 6 would never see 5).
"""

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy import func, text
from sqlmodel import Session, col, select

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
    """Add an event to the current transaction; it is published only if the transaction commits."""
    bind = session.get_bind()
    if bind.dialect.name == "postgresql":
        # One lock per schema: services sharing a database never wait on each other's outboxes.
        session.execute(OUTBOX_LOCK)
    last = session.exec(
        select(func.max(outbox.sequence)).where(
            outbox.aggregate_type == aggregate_type, outbox.aggregate_id == aggregate_id
        )
    ).one()
    event = outbox(
        event_id=str(uuid.uuid4()),
        event_type=event_type,
        aggregate_type=aggregate_type,
        aggregate_id=aggregate_id,
        sequence=(last or 0) + 1,
        visit_id=visit_id,
        patient_id=patient_id,
        payload=payload,
    )
    session.add(event)
    return event


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
