"""A patient's live place in their queues, an honest wait band for each, and the "nearly up" event.

Positions follow the queue rules' order (`service.queue_order`, the engine's projection); bands come
from `estimates.estimate_wait`, the same pure function the simulator's replay measures, fed with the
queue's recent services (called → finished) and its stations calling.

`queue.nearly_up` is emitted once per ticket when it reaches one of the first `nearly_up_within` places,
in the transaction of the change that moved it there — whatever that change is (a call, a cancel, a
skip, a re-triage, a new arrival, an action added later): every flush of a changed ticket notes its
queue (`after_flush`), and just before COMMIT (`before_commit`, ahead of the outbox drawing its
positions) the noted queues' fronts are checked. A `nearly_up_notice` row per ticket makes it once,
however often the ticket moves back and forth. An ageing bound passed with nothing else changing is
seen at the queue's next change.
"""

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from weakref import WeakKeyDictionary

from sqlalchemy import Engine, event
from sqlalchemy.orm import Session as OrmSession
from sqlmodel import Session

from kit.auth import visible_to
from kit.clock import as_utc, utcnow
from kit.database import Database
from kit.outbox import record_event
from services.triage import estimates, repository, service
from services.triage.config import TriageSettings, get_settings
from services.triage.models import OutboxEvent, Ticket
from services.triage.schemas import (
    EstimateBasis,
    PlaceEstimate,
    QueueEstimates,
    QueuePosition,
    TicketStatus,
    VisitQueuePositions,
    WaitBandPublic,
)

_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_CHANGED_QUEUES = "triage.changed_queues"  # Session.info: departments whose tickets this unit of work changed
_SETTINGS: "WeakKeyDictionary[Engine, TriageSettings]" = WeakKeyDictionary()
SHOWN = (TicketStatus.waiting.value, TicketStatus.called.value, TicketStatus.held.value)


def _minute(instant: datetime) -> float:
    return (as_utc(instant) - _EPOCH).total_seconds() / 60


class QueueSnapshot:
    """One queue now: its waiting tickets in the rules' order and what its bands are estimated from."""

    def __init__(self, session: Session, *, department: str, settings: TriageSettings, now: datetime) -> None:
        rules = service.rules_for(session, department=department, settings=settings)
        self.order = service.queue_order(session, department=department, queue_rules=rules).order
        self.places = {entry.ticket_id: entry.position for entry in self.order}
        self.suspended = repository.get_suspension(session, department) is not None
        since = now - timedelta(minutes=estimates.WINDOW_MINUTES)
        spells = [
            estimates.ServiceSpell(
                start=_minute(t.called_at),
                end=_minute(t.finished_at)
                if t.status == TicketStatus.finished.value and t.finished_at
                else None,
                station=t.counter,
            )
            for t in repository.service_spells(session, department=department, since=since)
            if t.called_at is not None
        ]
        minute = _minute(now)
        self.durations = estimates.recent_durations(spells, now=minute)
        configured = repository.count_stations(session, department) or None
        self.stations = estimates.active_stations(spells, now=minute, configured=configured)
        self.busy = sum(1 for s in spells if s.end is None)

    def band(self, ahead: int) -> estimates.WaitBand:
        return estimates.estimate_wait(
            ahead=ahead, busy=self.busy, stations=self.stations, service_minutes=self.durations
        )


def _band_public(band: estimates.WaitBand) -> WaitBandPublic:
    return WaitBandPublic(
        low_minutes=band.low_minutes, high_minutes=band.high_minutes, expected_minutes=band.expected_minutes
    )


def visit_positions(
    session: Session, *, visit_id: str, acting_for: str | None, settings: TriageSettings
) -> VisitQueuePositions:
    """The visit's places in its queues, each with the number ahead and a wait band. Acting for another
    patient, the visit answers as one with no tickets; no other patient's data is ever in the answer."""
    now = utcnow()
    tickets = [
        t
        for t in repository.list_visit_tickets(session, visit_id)
        if t.status in SHOWN and visible_to(acting_for, t.patient_id)
    ]
    snapshots: dict[str, QueueSnapshot] = {}
    positions = []
    for ticket in tickets:
        shown = QueuePosition(
            ticket_id=ticket.id,
            department=ticket.department,
            display_number=service.display_number(ticket),
            status=TicketStatus(ticket.status),
            counter=ticket.counter if ticket.status == TicketStatus.called.value else None,
        )
        if ticket.status == TicketStatus.waiting.value:
            if ticket.department not in snapshots:
                snapshots[ticket.department] = QueueSnapshot(
                    session, department=ticket.department, settings=settings, now=now
                )
            snapshot = snapshots[ticket.department]
            place = snapshot.places.get(ticket.id)
            if place is not None:
                shown.position, shown.ahead = place, place - 1
                shown.nearly_up = place <= settings.nearly_up_within
                shown.suspended = snapshot.suspended
                # No band while suspended: nobody knows when the session resumes.
                shown.wait = None if snapshot.suspended else _band_public(snapshot.band(place - 1))
        positions.append(shown)
    return VisitQueuePositions(visit_id=visit_id, as_of=now, positions=positions)


def queue_estimates(session: Session, *, department: str, settings: TriageSettings) -> QueueEstimates:
    """Staff's view: each waiting ticket's band in the rules' order, a newcomer's, and their basis."""
    now = utcnow()
    snapshot = QueueSnapshot(session, department=department, settings=settings, now=now)
    newcomer = snapshot.band(len(snapshot.order))
    return QueueEstimates(
        department=department,
        as_of=now,
        basis=EstimateBasis(
            recent_services=newcomer.basis.services,
            mean_service_minutes=newcomer.basis.mean_service_minutes,
            stations=newcomer.basis.stations,
            busy=newcomer.basis.busy,
        ),
        newcomer=_band_public(newcomer),
        waiting=[
            PlaceEstimate(
                position=entry.position,
                ticket_id=entry.ticket_id,
                display_number=entry.display_number,
                wait=_band_public(snapshot.band(entry.position - 1)),
            )
            for entry in snapshot.order
        ],
    )


# --- queue.nearly_up


def watch(database: Database, settings: TriageSettings) -> None:
    """Check queue fronts with these settings in every unit of work on this database (app start-up)."""
    for engine in (database.writer, database.reader):
        _SETTINGS[engine] = settings


def announce_nearly_up(
    session: Session, *, departments: Iterable[str], settings: TriageSettings
) -> list[str]:
    """Emit `queue.nearly_up` for each ticket now within the first `nearly_up_within` places of these
    queues and never told before; the ids of the tickets told."""
    within = settings.nearly_up_within
    if within <= 0:
        return []
    told = []
    now = utcnow()
    for department in sorted(set(departments)):  # one lock order, so two queues' writers never deadlock
        repository.lock_nearly_up(session, department)
        # Under the lock, so a concurrent change's check sees this one's as before. When everyone
        # waiting was told, whatever the order nobody new is in front: no order to compute (a call
        # emptying a short queue, a finish, a recall).
        if not repository.anyone_untold(session, department):
            continue
        rules = service.rules_for(session, department=department, settings=settings)
        front = service.queue_order(session, department=department, queue_rules=rules, front=within).order
        already = repository.told_nearly_up(session, [entry.ticket_id for entry in front])
        for entry in (e for e in front if e.ticket_id not in already):
            noted = repository.note_nearly_up(
                session, ticket_id=entry.ticket_id, department=department, position=entry.position, at=now
            )
            ticket = repository.get_ticket(session, entry.ticket_id) if noted else None
            if ticket is not None:
                # The queue's event (its sequence is the queue's), naming the visit and patient told.
                record_event(
                    session,
                    OutboxEvent,
                    event_type="queue.nearly_up",
                    aggregate_type="queue",
                    aggregate_id=department,
                    visit_id=ticket.visit_id,
                    patient_id=ticket.patient_id,
                    payload={
                        "ticket_id": ticket.id,
                        "department": department,
                        "number": ticket.number,
                        "display_number": entry.display_number,
                        "position": entry.position,
                        "ahead": entry.position - 1,
                    },
                )
                told.append(ticket.id)
    return told


@event.listens_for(OrmSession, "after_flush")
def _note_changed_queues(session: OrmSession, _context: object) -> None:
    changed = {o.department for o in (*session.new, *session.dirty) if isinstance(o, Ticket)}
    if changed:
        session.info.setdefault(_CHANGED_QUEUES, set()).update(changed)


# insert=True: before kit.outbox's own before_commit, which draws the positions of the events recorded.
@event.listens_for(OrmSession, "before_commit", insert=True)
def _check_changed_queues(session: OrmSession) -> None:
    if session.in_nested_transaction():
        return  # a savepoint released: the real COMMIT checks
    if any(isinstance(o, Ticket) for o in (*session.new, *session.dirty)):
        session.flush()  # ticket changes not flushed yet note their queues now
    departments = session.info.pop(_CHANGED_QUEUES, None)
    if not departments or not isinstance(session, Session):
        return
    bind = session.get_bind()
    settings = _SETTINGS.get(bind) if isinstance(bind, Engine) else None
    announce_nearly_up(session, departments=departments, settings=settings or get_settings())
    session.info.pop(_CHANGED_QUEUES, None)  # the check's own reads flushed nothing of a ticket's


@event.listens_for(OrmSession, "after_rollback")
def _forget_changed_queues(session: OrmSession) -> None:
    session.info.pop(_CHANGED_QUEUES, None)
