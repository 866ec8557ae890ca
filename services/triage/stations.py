"""Queues and stations: how each queue is run (kind, wait target, skip rule), its stations, and the actions
on a ticket besides calling and finishing — recall, skip (过号), hold and release, no-show, cancel, and
transfer keeping priority.

Every action is one unit of work on the locked ticket row: it checks the ticket's status against
`ALLOWED_FROM` (anything else is 409), changes the row, and records its event in the same transaction, so
the queue after a restart is exactly the queue before it (nothing is kept in memory).
"""

import uuid
from datetime import timedelta

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from kit.clock import hospital_date, utcnow
from kit.database import upsert
from services.triage import repository
from services.triage.config import TriageSettings
from services.triage.errors import AlreadyQueued, TicketNotCalled, TicketNotFound, TicketWrongState
from services.triage.models import QueueSetting, Station, Ticket
from services.triage.schemas import (
    QueueKind,
    QueueSettingPublic,
    QueueSettingUpdate,
    StationPublic,
    StationUpsert,
    TicketStatus,
    WindowService,
)
from services.triage.service import (
    WAIT_TARGET_MINUTES,
    check_service_class,
    check_station,
    check_station_cap,
    record_ticket_event,
    rules_for,
)

# A queue nobody configured: a department's queue with the 10-minute target; a skipped patient lets the
# next 3 patients be called first, the third skip makes the ticket a no-show; no cap per station.
DEFAULT_SETTING = QueueSettingUpdate(
    kind=QueueKind.department, target_minutes=WAIT_TARGET_MINUTES, skip_requeue_after=3, max_skips=2
)

W, C, H = TicketStatus.waiting, TicketStatus.called, TicketStatus.held
# The statuses each action applies to; the target status is the action's own.
ALLOWED_FROM: dict[str, frozenset[TicketStatus]] = {
    "recall": frozenset({C}),
    "skip": frozenset({C}),
    "hold": frozenset({W, C}),
    "release": frozenset({H}),
    "noshow": frozenset({C}),
    "cancel": frozenset({W, C, H}),
    "transfer": frozenset({W, C, H}),
    "classify": frozenset({W, C, H}),
}


def queue_setting(session: Session, *, department: str, settings: TriageSettings) -> QueueSettingPublic:
    """A queue's settings and stations, with the ordering rules in force; the defaults while nobody has
    configured it."""
    row = repository.get_queue_setting(session, department)
    data = _setting(session, department)
    return QueueSettingPublic(
        department=department,
        kind=data.kind,
        window=data.window,
        target_minutes=data.target_minutes,
        skip_requeue_after=data.skip_requeue_after,
        max_skips=data.max_skips,
        skip_requeue_minutes=data.skip_requeue_minutes,
        station_cap=data.station_cap,
        rules=rules_for(session, department=department, settings=settings),
        rules_configured=data.rules is not None,
        configured=row is not None,
        stations=[
            StationPublic(code=s.code, label=s.label) for s in repository.list_stations(session, department)
        ],
    )


def configure_queue(session: Session, *, department: str, data: QueueSettingUpdate) -> QueueSetting:
    """Set how a queue is run (replacing what was set); tickets already queued keep their places in line,
    and are ordered by the new rules from the next call on."""
    values = {
        "department": department,
        "kind": data.kind.value,
        "window": data.window.value if isinstance(data.window, WindowService) else None,
        "target_minutes": data.target_minutes,
        "skip_requeue_after": data.skip_requeue_after,
        "max_skips": data.max_skips,
        "skip_requeue_minutes": data.skip_requeue_minutes,
        "station_cap": data.station_cap,
        "rules": data.rules.model_dump(mode="json") if data.rules else None,
        "updated_at": utcnow(),
    }
    upsert(
        session, QueueSetting, values, keys=["department"], update=[k for k in values if k != "department"]
    )
    row = session.get(QueueSetting, department, populate_existing=True)
    assert row is not None
    return row


def put_station(session: Session, *, department: str, code: str, data: StationUpsert) -> Station:
    """Add a station (counter, window or room) to a queue, or relabel it."""
    values = {"department": department, "code": code, "label": data.label, "created_at": utcnow()}
    upsert(session, Station, values, keys=["department", "code"], update=["label"])
    station = session.get(Station, (department, code), populate_existing=True)
    assert station is not None
    return station


def _setting(session: Session, department: str) -> QueueSettingUpdate:
    row = repository.get_queue_setting(session, department)
    return QueueSettingUpdate.model_validate(row, from_attributes=True) if row else DEFAULT_SETTING


def _locked_ticket(session: Session, ticket_id: str, action: str) -> Ticket:
    """The ticket, row-locked for the action, after checking the action applies to its status."""
    ticket = repository.get_ticket(session, ticket_id, for_update=True)
    if ticket is None:
        raise TicketNotFound("No such ticket.")
    allowed = ALLOWED_FROM[action]
    if TicketStatus(ticket.status) not in allowed:
        names = ", ".join(sorted(allowed))
        detail = f"Cannot {action} a ticket that is {ticket.status}; only one that is {names}."
        error = TicketNotCalled if allowed == {C} else TicketWrongState
        raise error(detail, ticket_status=ticket.status, allowed_from=sorted(allowed))
    return ticket


def recall(session: Session, *, ticket_id: str, counter: str | None) -> Ticket:
    """Call the same patient again (重呼), to the same station unless another is named (which must have
    room under the queue's cap per station: 409 `station-full`)."""
    ticket = _locked_ticket(session, ticket_id, "recall")
    if counter is not None:
        check_station(session, department=ticket.department, counter=counter)
        if counter != ticket.counter:
            check_station_cap(session, department=ticket.department, counter=counter)
        ticket.counter = counter
    ticket.recalls += 1
    ticket.called_at = utcnow()  # the board shows the latest call first
    session.add(ticket)
    record_ticket_event(session, ticket, "ticket.recalled", counter=ticket.counter, recalls=ticket.recalls)
    return ticket


def skip(session: Session, *, ticket_id: str) -> Ticket:
    """The called patient did not come (过号): back to waiting at the same place in line, sitting out
    until the next N patients are called (all who wait, when fewer do) or M minutes have passed,
    whichever is first; a no-show once the ticket has been skipped K times already.

    N, M and K are the queue's `skip_requeue_after`, `skip_requeue_minutes` and `max_skips`. The rule
    engine keeps the interval (rules.Waiting), so patients more urgent than the skipped one stay ahead of
    it, as the call order always has them; the green channel never sits out.
    """
    ticket = _locked_ticket(session, ticket_id, "skip")
    setting = _setting(session, ticket.department)
    if ticket.skips >= setting.max_skips:
        ticket.skips += 1
        return _close_as_noshow(session, ticket)
    now = utcnow()
    sits_out = min(setting.skip_requeue_after, repository.count_waiting(session, ticket.department))
    ticket.status = TicketStatus.waiting.value
    ticket.skips += 1
    ticket.skipped_at = now
    ticket.skip_recall_calls = sits_out
    minutes = setting.skip_requeue_minutes
    ticket.skip_recall_at = now + timedelta(minutes=minutes) if minutes else None
    ticket.counter = None
    session.add(ticket)
    recall_at = ticket.skip_recall_at.isoformat() if ticket.skip_recall_at else None
    record_ticket_event(
        session, ticket, "ticket.skipped", skips=ticket.skips, requeued_behind=sits_out, recall_at=recall_at
    )
    return ticket


def classify(session: Session, *, ticket_id: str, service_class: str, settings: TriageSettings) -> Ticket:
    """The desk sets a ticket's service class (simple or complex work), one its queue's rules know."""
    ticket = _locked_ticket(session, ticket_id, "classify")
    check_service_class(rules_for(session, department=ticket.department, settings=settings), service_class)
    ticket.service_class = service_class
    session.add(ticket)
    return ticket


def _close_as_noshow(session: Session, ticket: Ticket) -> Ticket:
    ticket.status = TicketStatus.noshow.value
    ticket.finished_at = utcnow()
    session.add(ticket)
    record_ticket_event(session, ticket, "ticket.noshow", skips=ticket.skips)
    return ticket


def noshow(session: Session, *, ticket_id: str) -> Ticket:
    """Close a called ticket whose patient never came (爽约/未到), without re-queueing it."""
    return _close_as_noshow(session, _locked_ticket(session, ticket_id, "noshow"))


def hold(session: Session, *, ticket_id: str) -> Ticket:
    """Set a ticket aside (挂起): nobody calls it, and released it is back at the place it had."""
    ticket = _locked_ticket(session, ticket_id, "hold")
    held_from = ticket.status
    ticket.status = TicketStatus.held.value
    ticket.counter = None
    session.add(ticket)
    record_ticket_event(session, ticket, "ticket.held", held_from=held_from)
    return ticket


def release(session: Session, *, ticket_id: str) -> Ticket:
    """Put a held ticket back in line at its old place (`lined_up_at` never changed while held)."""
    ticket = _locked_ticket(session, ticket_id, "release")
    ticket.status = TicketStatus.waiting.value
    session.add(ticket)
    record_ticket_event(session, ticket, "ticket.released")
    return ticket


def cancel(session: Session, *, ticket_id: str) -> Ticket:
    """Withdraw a waiting, called or held ticket (the patient left or no longer needs the queue)."""
    ticket = _locked_ticket(session, ticket_id, "cancel")
    cancelled_from = ticket.status
    ticket.status = TicketStatus.cancelled.value
    ticket.finished_at = utcnow()
    session.add(ticket)
    record_ticket_event(session, ticket, "ticket.cancelled", cancelled_from=cancelled_from)
    return ticket


def transfer(session: Session, *, ticket_id: str, department: str) -> tuple[Ticket, Ticket]:
    """Move a patient on to another queue keeping priority and arrival (consultation → payment → lab →
    back to the doctor): the old ticket closes as `transferred`, the new one takes the next queue's next
    number with the same priority and rank and the original place in line, so it is called before those
    who arrived later. Its service class starts as the next queue's default (other work there). A visit
    already holding a ticket in that queue is 409 `already-queued`.
    """
    ticket = _locked_ticket(session, ticket_id, "transfer")
    existing = repository.active_ticket(session, visit_id=ticket.visit_id, department=department)
    if existing is not None:
        raise AlreadyQueued(
            f"This visit already holds ticket {existing.number} ({existing.status}) in {department}.",
            existing_ticket_id=existing.id,
        )
    now = utcnow()
    service_date = hospital_date(now)
    number = repository.next_ticket_number(session, department=department, service_date=service_date)
    moved = Ticket(
        id=str(uuid.uuid4()),
        visit_id=ticket.visit_id,
        patient_id=ticket.patient_id,
        department=department,
        service_date=service_date,
        number=number,
        priority=ticket.priority,
        rank=ticket.rank,
        masked_name=ticket.masked_name,
        enqueued_at=now,
        lined_up_at=min(ticket.lined_up_at, now),
        appointment_at=ticket.appointment_at,
        transferred_from=ticket.id,
    )
    ticket.status = TicketStatus.transferred.value
    ticket.finished_at = now
    ticket.transferred_to = moved.id
    ticket.counter = None
    session.add(ticket)
    session.flush()  # the old ticket leaves the active index before the new one joins it
    try:
        with session.begin_nested():  # a concurrent ticket of the visit there loses, not with a 500
            session.add(moved)
    except IntegrityError:
        raise AlreadyQueued(f"This visit already holds a ticket in {department}.") from None
    record_ticket_event(
        session,
        ticket,
        "ticket.transferred",
        to_ticket_id=moved.id,
        to_department=department,
        to_number=moved.number,
    )
    record_ticket_event(session, moved, "ticket.queued", priority=moved.priority)
    return ticket, moved
