"""All of triage's SQL."""

from datetime import date

from sqlalchemy import func
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from services.triage.models import Assessment, Ticket, TicketCounter

ACTIVE_STATUSES = ("waiting", "called")


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


def waiting_tickets_of_visit(session: Session, visit_id: str) -> list[Ticket]:
    query = select(Ticket).where(Ticket.visit_id == visit_id, Ticket.status == "waiting")
    return list(session.exec(query.with_for_update()).all())


# Most urgent rank first, then first come first served; the number breaks ties within one instant.
CALL_ORDER = (col(Ticket.rank), col(Ticket.enqueued_at), col(Ticket.number))


def claim_next_waiting(session: Session, department: str) -> Ticket | None:
    """The next ticket to call, locked; tickets other callers hold are skipped rather than waited for.

    On SQLite `FOR UPDATE` renders as nothing: write transactions there are already serialized.
    """
    query = (
        select(Ticket)
        .where(Ticket.department == department, Ticket.status == "waiting")
        .order_by(*CALL_ORDER)
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    return session.exec(query).first()


def waiting_queue(session: Session, department: str) -> list[Ticket]:
    query = (
        select(Ticket)
        .where(Ticket.department == department, Ticket.status == "waiting")
        .order_by(*CALL_ORDER)
    )
    return list(session.exec(query).all())


def count_called(session: Session, department: str) -> int:
    query = select(func.count()).where(Ticket.department == department, Ticket.status == "called")
    count: int = session.exec(query).one()
    return count


def tickets_of_day(session: Session, *, department: str, service_date: date) -> list[Ticket]:
    query = select(Ticket).where(Ticket.department == department, Ticket.service_date == service_date)
    return list(session.exec(query).all())
