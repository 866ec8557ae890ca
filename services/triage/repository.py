"""All of triage's SQL."""

from collections.abc import Sequence
from datetime import date, datetime

from sqlalchemy import bindparam, exists, func, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, or_, select, update

from kit import merges
from services.triage.models import (
    Assessment,
    MergedVisit,
    NearlyUpNotice,
    QueueSetting,
    QueueSuspension,
    Station,
    Ticket,
    TicketCounter,
)

ACTIVE_STATUSES = ("waiting", "called", "held")
_QUEUE_KEY = "hashtext('patientflow.queue.' || current_schema() || '.' || :department)"
QUEUE_LOCK = text(f"SELECT pg_advisory_xact_lock({_QUEUE_KEY})")
QUEUE_LOCK_SHARED = text(f"SELECT pg_advisory_xact_lock_shared({_QUEUE_KEY})")


def list_assessments(session: Session, visit_id: str) -> list[Assessment]:
    query = select(Assessment).where(Assessment.visit_id == visit_id).order_by(col(Assessment.assessed_at))
    return list(session.exec(query).all())


def latest_assessment(session: Session, visit_id: str) -> Assessment | None:
    query = (
        select(Assessment)
        .where(Assessment.visit_id == visit_id)
        .order_by(col(Assessment.assessed_at).desc())
        .limit(1)
    )
    return session.exec(query).first()


def next_ticket_number(session: Session, *, department: str, service_date: date) -> int:
    """Take the next number of a department's day in one upsert.

    The upsert holds the counter row's lock until the transaction ends, so a rolled-back ticket gives
    its number back and numbers stay gap-free; concurrent first tickets of the day do not collide.
    """
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    first = insert(TicketCounter).values(department=department, service_date=service_date, last=1)
    upsert = first.on_conflict_do_update(
        index_elements=["department", "service_date"], set_={"last": col(TicketCounter.last) + 1}
    ).returning(col(TicketCounter.last))
    number: int = session.execute(upsert).scalar_one()
    return number


def get_ticket(session: Session, ticket_id: str, *, for_update: bool = False) -> Ticket | None:
    return session.get(Ticket, ticket_id, with_for_update=for_update)


def active_ticket(session: Session, *, visit_id: str, department: str) -> Ticket | None:
    query = select(Ticket).where(
        Ticket.visit_id == visit_id,
        Ticket.department == department,
        col(Ticket.status).in_(ACTIVE_STATUSES),
    )
    return session.exec(query).first()


def list_visit_tickets(session: Session, visit_id: str) -> list[Ticket]:
    """A visit's tickets in every department, oldest first (the number breaks ties within one instant)."""
    query = select(Ticket).where(Ticket.visit_id == visit_id)
    return list(session.exec(query.order_by(col(Ticket.enqueued_at), col(Ticket.number))).all())


def waiting_tickets_of_visit(session: Session, visit_id: str) -> list[Ticket]:
    query = select(Ticket).where(Ticket.visit_id == visit_id, Ticket.status == "waiting")
    return list(session.exec(query.with_for_update()).all())


# A stable pre-order for lists (held tickets); who is called next is the rule engine's (service._live_order).
CALL_ORDER = (col(Ticket.rank), col(Ticket.lined_up_at), col(Ticket.number))


def lock_if_waiting(session: Session, ticket_id: str) -> Ticket | None:
    """The ticket, row-locked, if it is still waiting once the lock is had (None if an action changed it).

    On PostgreSQL the blocked `FOR UPDATE` re-checks the status on the committed row; on SQLite it renders
    as nothing: write transactions there are already serialized.
    """
    query = (
        select(Ticket)
        .where(Ticket.id == ticket_id, Ticket.status == "waiting")
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return session.exec(query).first()


def waiting_queue(session: Session, department: str) -> list[Ticket]:
    query = (
        select(Ticket)
        .where(Ticket.department == department, Ticket.status == "waiting")
        .order_by(*CALL_ORDER)
    )
    return list(session.exec(query).all())


def called_tickets(session: Session, department: str) -> list[Ticket]:
    """Tickets called and not yet finished, the latest call first (the top of the waiting-room board)."""
    query = select(Ticket).where(Ticket.department == department, Ticket.status == "called")
    return list(session.exec(query.order_by(col(Ticket.called_at).desc(), col(Ticket.number).desc())).all())


def count_called(session: Session, department: str, *, counter: str | None = None) -> int:
    """Called, not yet finished tickets of a queue, or of one station of it."""
    query = select(func.count()).where(Ticket.department == department, Ticket.status == "called")
    if counter is not None:
        query = query.where(Ticket.counter == counter)
    count: int = session.exec(query).one()
    return count


def tickets_of_day(session: Session, *, department: str, service_date: date) -> list[Ticket]:
    query = select(Ticket).where(Ticket.department == department, Ticket.service_date == service_date)
    return list(session.exec(query).all())


def lock_queue(session: Session, department: str, *, exclusive: bool) -> None:
    """Order suspending against calling on PostgreSQL: callers share the lock, suspend/resume take it alone.

    So a suspension never commits while a call is in flight, and a call never starts its claim on a queue
    whose suspension is about to commit. SQLite writers are already serialised (BEGIN IMMEDIATE).
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(QUEUE_LOCK if exclusive else QUEUE_LOCK_SHARED, {"department": department})


def get_suspension(session: Session, department: str) -> QueueSuspension | None:
    return session.get(QueueSuspension, department)


def patient_for_visit(session: Session, *, visit_id: str, registered: str) -> str:
    """The patient a new assessment or ticket of the visit names (kit.merges); first in the unit of work."""
    return merges.patient_for_visit(session, MergedVisit, visit_id=visit_id, registered=registered)


def repoint_patient(session: Session, *, visit_ids: Sequence[str], source_id: str, target_id: str) -> None:
    """Move assessments and tickets of merged visits (and any left on the merged record) to the survivor,
    and note the visits so later writes follow (kit.merges)."""
    merges.note_merged_visits(session, MergedVisit, visit_ids=visit_ids, target_id=target_id)
    for table in (Assessment, Ticket):
        belongs = or_(col(table.visit_id).in_(list(visit_ids)), col(table.patient_id) == source_id)
        session.exec(update(table).where(belongs).values(patient_id=target_id))


# --- Queue order (rules.py)


def latest_levels(session: Session, visit_ids: Sequence[str]) -> dict[str, str]:
    """Each visit's level from its latest assessment (visits never assessed are absent).

    Two columns, not whole assessments: every queue order reads this, for each ticket in the queue."""
    if not visit_ids:
        return {}
    query = (
        select(Assessment.visit_id, Assessment.level)
        .where(col(Assessment.visit_id).in_(set(visit_ids)))
        .order_by(col(Assessment.assessed_at))
    )
    return {visit_id: level for visit_id, level in session.exec(query).all()}  # the newest one wins


# --- Queue actions (issue 10) ---
def get_queue_setting(session: Session, department: str) -> QueueSetting | None:
    return session.get(QueueSetting, department)


def list_stations(session: Session, department: str) -> list[Station]:
    query = select(Station).where(Station.department == department).order_by(col(Station.code))
    return list(session.exec(query).all())


def count_waiting(session: Session, department: str) -> int:
    query = select(func.count()).where(Ticket.department == department, Ticket.status == "waiting")
    count: int = session.exec(query).one()
    return count


def held_tickets(session: Session, department: str) -> list[Ticket]:
    query = select(Ticket).where(Ticket.department == department, Ticket.status == "held")
    return list(session.exec(query.order_by(*CALL_ORDER)).all())


# --- Assessment in depth: re-triage timers (0007_vitals) ---


def latest_assessments(session: Session, visit_ids: set[str]) -> dict[str, Assessment]:
    """Each visit's latest assessment, by visit id (visits never assessed are absent)."""
    if not visit_ids:
        return {}
    query = (
        select(Assessment)
        .where(col(Assessment.visit_id).in_(visit_ids))
        .order_by(col(Assessment.assessed_at))
    )
    return {a.visit_id: a for a in session.exec(query).all()}  # the newest one wins


def overdue_candidates(session: Session, *, now: datetime) -> list[Assessment]:
    """Latest assessments past their deadline, of visits still waiting in a queue, whose overdue event
    has not been emitted; locked (others skip them), oldest deadline first."""
    newer = aliased(Assessment)
    superseded = exists().where(
        col(newer.visit_id) == col(Assessment.visit_id), col(newer.assessed_at) > col(Assessment.assessed_at)
    )
    waiting = exists().where(
        col(Ticket.visit_id) == col(Assessment.visit_id), col(Ticket.status) == "waiting"
    )
    query = (
        select(Assessment)
        .where(
            col(Assessment.due_at) < now,
            col(Assessment.overdue_emitted_at).is_(None),
            ~superseded,
            waiting,
        )
        .order_by(col(Assessment.due_at))
        .limit(500)
        .with_for_update(skip_locked=True, of=Assessment)
    )
    return list(session.exec(query).all())


# --- Wait estimates (positions.py, 0010_wait_estimates) ---
_NEARLY_UP_KEY = "hashtext('patientflow.nearly_up.' || current_schema() || '.' || :department)"
NEARLY_UP_LOCK = text(f"SELECT pg_advisory_xact_lock({_NEARLY_UP_KEY})")


def service_spells(session: Session, *, department: str, since: datetime) -> list[Ticket]:
    """The queue's tickets at a station now, or finished since `since`: what its stations have been doing."""
    at_station = col(Ticket.status) == "called"
    finished = (col(Ticket.status) == "finished") & (col(Ticket.finished_at) >= since)
    query = select(Ticket).where(
        Ticket.department == department, col(Ticket.called_at).is_not(None), or_(at_station, finished)
    )
    return list(session.exec(query).all())


def count_stations(session: Session, department: str) -> int:
    query = select(func.count()).where(Station.department == department)
    count: int = session.exec(query).one()
    return count


def lock_nearly_up(session: Session, department: str) -> None:
    """Serialise the nearly-up check of one queue on PostgreSQL until commit: a concurrent call-next's
    check then sees this one's calls, so nobody who reached the front between two calls is missed.
    Taken only just before COMMIT (no other lock after it but the outbox's), so it cannot deadlock."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(NEARLY_UP_LOCK, {"department": department})


# Built once: they run at the commit of every change to a queue (positions.announce_nearly_up).
_ANYONE_UNTOLD = (
    select(Ticket.id)
    .where(
        Ticket.department == bindparam("department"),
        Ticket.status == "waiting",
        ~exists().where(col(NearlyUpNotice.ticket_id) == col(Ticket.id)),
    )
    .limit(1)
)
_TOLD_NEARLY_UP = select(NearlyUpNotice.ticket_id).where(
    col(NearlyUpNotice.ticket_id).in_(bindparam("ticket_ids", expanding=True))
)


def anyone_untold(session: Session, department: str) -> bool:
    """Whether a ticket waits in the queue that was never told it is nearly up (one indexed look-up)."""
    return session.execute(_ANYONE_UNTOLD, {"department": department}).first() is not None


def told_nearly_up(session: Session, ticket_ids: Sequence[str]) -> set[str]:
    """Those of these tickets already told they are nearly up."""
    if not ticket_ids:
        return set()
    return set(session.execute(_TOLD_NEARLY_UP, {"ticket_ids": list(ticket_ids)}).scalars())


def note_nearly_up(session: Session, *, ticket_id: str, department: str, position: int, at: datetime) -> bool:
    """Record that the ticket was told it is nearly up; False if it was already (one statement, so two
    racing writers never both win)."""
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    statement = (
        insert(NearlyUpNotice)
        .values(ticket_id=ticket_id, department=department, position=position, noticed_at=at)
        .on_conflict_do_nothing(index_elements=["ticket_id"])
        .returning(col(NearlyUpNotice.ticket_id))
    )
    return session.execute(statement).first() is not None
