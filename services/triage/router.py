"""Triage endpoints (thin: parse, call the service, shape the answer)."""

from dataclasses import dataclass
from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response, status

from kit.auth import CallerDep, require_scope
from kit.client import ServiceClient, sibling
from kit.config import app_settings
from kit.database import SessionDep
from kit.errors import Forbidden, ServiceUnavailable, problem_responses
from services.triage import repository, service
from services.triage.config import TriageSettings
from services.triage.errors import (
    AlreadyQueued,
    OverrideReasonRequired,
    QueueEmpty,
    QueueNotSuspended,
    QueueSuspended,
    TicketNotCalled,
    TicketNotFound,
    VisitClosed,
    VisitNotFound,
)
from services.triage.schemas import (
    DEPARTMENT_PATTERN,
    VISIT_ID_PATTERN,
    AssessmentCreate,
    AssessmentPublic,
    CallNextRequest,
    QueueBoard,
    QueuePublic,
    QueueStats,
    RegistrationVisit,
    SuspendRequest,
    TicketCreate,
    TicketPublic,
)

router = APIRouter()
Department = Annotated[str, Path(pattern=DEPARTMENT_PATTERN, examples=["internal"])]
VisitId = Annotated[str, Path(pattern=VISIT_ID_PATTERN)]


SettingsDep = Annotated[TriageSettings, Depends(app_settings)]
RegistrationDep = Annotated[ServiceClient, Depends(sibling("registration"))]
# The waiting-room board's own scope: its screens see the board projection and nothing else of triage.
BOARD_SCOPE = "board:read"


@dataclass(frozen=True, slots=True)
class TicketRequest:
    """A ticket request with what registration says of its visit, resolved before the unit of work."""

    data: TicketCreate
    visit: RegistrationVisit
    masked_name: str


async def resolve_ticket_request(data: TicketCreate, registration: RegistrationDep) -> TicketRequest:
    """Ask registration for the visit and the patient's (masked) name.

    A dependency declared before the session, so the calls finish before the database gate is taken.
    """
    visit = await service.fetch_visit(registration, visit_id=data.visit_id)
    masked_name = await service.fetch_masked_name(registration, patient_id=visit.patient_id)
    return TicketRequest(data=data, visit=visit, masked_name=masked_name)


@dataclass(frozen=True, slots=True)
class AssessedVisit:
    """The visit to assess and, when the assessment routes it to a department, the board name."""

    visit: RegistrationVisit
    masked_name: str | None


async def resolve_assessed_visit(data: AssessmentCreate, registration: RegistrationDep) -> AssessedVisit:
    """The visit to assess, asked of registration before the session (as `resolve_ticket_request`)."""
    visit = await service.fetch_visit(registration, visit_id=data.visit_id)
    masked_name = None
    if data.department is not None:
        masked_name = await service.fetch_masked_name(registration, patient_id=visit.patient_id)
    return AssessedVisit(visit=visit, masked_name=masked_name)


@router.post(
    "/assessments",
    dependencies=[require_scope("triage:write")],
    status_code=status.HTTP_201_CREATED,
    tags=["assessments"],
    responses=problem_responses(VisitNotFound, VisitClosed, OverrideReasonRequired, ServiceUnavailable),
)
def assess_visit(
    data: AssessmentCreate,
    assessed: Annotated[AssessedVisit, Depends(resolve_assessed_visit)],
    session: SessionDep,
    settings: SettingsDep,
    response: Response,
) -> AssessmentPublic:
    """Assess a visit at one of the four emergency levels (I 急危 … IV 非急症).

    Vital signs (`vitals`, `pain_score`) give a suggested level and the sign that decided it; the nurse's
    `level` counts, defaulting to the suggestion, and needs an `override_reason` when it differs (422
    `override-reason-required`). The level sets the zone (I/II red, III yellow, IV green), how soon a
    doctor must see the patient (`due_at`, after which a waiting patient is overdue) and, for I/II, the
    green channel. `department` (分诊) queues the visit there (`ticket_id`).
    A visit may be re-assessed; the latest assessment counts, also for tickets already waiting.
    A visit registration has closed is 409 `visit-closed`.
    """
    visit = assessed.visit
    assessment = service.assess(
        session, visit=visit, data=data, settings=settings, masked_name=assessed.masked_name
    )
    response.headers["Location"] = f"/v1/visits/{visit.id}/assessments"
    return service.assessment_public(assessment)


@router.get(
    "/visits/{visit_id}/assessments",
    dependencies=[require_scope("triage:read", patients=True)],
    tags=["assessments"],
)
def read_assessments(visit_id: str, session: SessionDep, caller: CallerDep) -> list[AssessmentPublic]:
    """A visit's assessments, newest last (empty for a visit never assessed)."""
    # Acting for a patient: another patient's visit answers as one never assessed.
    rows = [a for a in repository.list_assessments(session, visit_id) if caller.sees(a.patient_id)]
    return [service.assessment_public(a) for a in rows]


@router.post(
    "/queues/{department}/tickets",
    dependencies=[require_scope("triage:write")],
    status_code=status.HTTP_201_CREATED,
    tags=["queues"],
    responses=problem_responses(VisitNotFound, AlreadyQueued, ServiceUnavailable),
)
def take_ticket(
    department: Department,
    request: Annotated[TicketRequest, Depends(resolve_ticket_request)],
    session: SessionDep,
    response: Response,
) -> TicketPublic:
    """Queue a visit in a department and give it the day's next number there.

    Level I/II visits are called first, then level III and `priority` (老弱残) tickets, then everyone
    else, each in the order they queued. A visit holding a waiting or called ticket here gets 409, a
    visit registration has closed 409 `visit-closed`.
    The waiting-room board will show the patient's name masked (张*三); 503 when registration is down.
    """
    ticket = service.enqueue(
        session,
        visit=request.visit,
        masked_name=request.masked_name,
        department=department,
        data=request.data,
    )
    response.headers["Location"] = f"/v1/tickets/{ticket.id}"
    return service.to_public(ticket)


@router.post(
    "/queues/{department}/call-next",
    dependencies=[require_scope("triage:write")],
    tags=["queues"],
    responses=problem_responses(QueueEmpty, QueueSuspended),
)
def call_next(
    department: Department, session: SessionDep, data: CallNextRequest | None = None
) -> TicketPublic:
    """Call the next patient (叫号) to `counter`; 404 `queue-empty` when nobody waits, 409 `queue-suspended`
    while the session is suspended.

    Safe for several counters calling at once: each call gets a different ticket.
    """
    counter = data.counter if data else None
    return service.to_public(service.call_next(session, department=department, counter=counter))


@router.post(
    "/tickets/{ticket_id}/finish",
    dependencies=[require_scope("triage:write")],
    tags=["queues"],
    responses=problem_responses(TicketNotFound, TicketNotCalled),
)
def finish_ticket(ticket_id: str, session: SessionDep) -> TicketPublic:
    """Close a called ticket once the patient has been seen; only a called ticket can be finished."""
    return service.to_public(service.finish(session, ticket_id=ticket_id))


@router.get(
    "/tickets/{ticket_id}",
    dependencies=[require_scope("triage:read", patients=True)],
    tags=["queues"],
    responses=problem_responses(TicketNotFound),
)
def read_ticket(ticket_id: str, session: SessionDep, caller: CallerDep) -> TicketPublic:
    """One ticket with its number, status and wait."""
    return service.to_public(service.get_ticket(session, ticket_id=ticket_id, acting_for=caller.patient))


@router.get(
    "/visits/{visit_id}/tickets", dependencies=[require_scope("triage:read", patients=True)], tags=["queues"]
)
def read_visit_tickets(visit_id: VisitId, session: SessionDep, caller: CallerDep) -> list[TicketPublic]:
    """A visit's tickets in every department, oldest first, with when each was queued, called and finished.

    Empty for a visit that never queued (triage does not ask registration whether the visit exists).
    """
    tickets = repository.list_visit_tickets(session, visit_id)
    return service.with_triage(session, [t for t in tickets if caller.sees(t.patient_id)])


@router.get("/queues/{department}", dependencies=[require_scope("triage:read")], tags=["queues"])
def read_queue(department: Department, session: SessionDep) -> QueuePublic:
    """Who is waiting in a department, in the order they will be called, and whether it is suspended."""
    return service.queue_view(session, department=department)


@router.get(
    "/queues/{department}/board",
    dependencies=[require_scope(BOARD_SCOPE)],
    tags=["queues"],
    responses=problem_responses(Forbidden),
)
def read_board(department: Department, session: SessionDep) -> QueueBoard:
    """The queue as the waiting-room screen (叫号屏) shows it; needs the `board:read` scope.

    Per called or waiting ticket: the display number, the patient's masked name (张*三), the status and,
    once called, the counter. No patient or visit ids, no full names, no triage level or complaint.
    """
    return service.board_view(session, department=department)


@router.post(
    "/queues/{department}/suspend",
    dependencies=[require_scope("triage:write")],
    tags=["queues"],
    responses=problem_responses(QueueSuspended),
)
def suspend_queue(department: Department, data: SuspendRequest, session: SessionDep) -> QueuePublic:
    """Suspend a department's clinic session (门诊暂停): nobody is called until it is resumed.

    Waiting patients keep their places. The `queue.suspended` event lists their tickets so they can be
    told. Suspending a suspended queue is 409 `queue-suspended`.
    """
    service.suspend(session, department=department, data=data)
    return service.queue_view(session, department=department)


@router.post(
    "/queues/{department}/resume",
    dependencies=[require_scope("triage:write")],
    tags=["queues"],
    responses=problem_responses(QueueNotSuspended),
)
def resume_queue(department: Department, session: SessionDep) -> QueuePublic:
    """Resume a suspended session; calling continues in the queue's order. 409 when it is not suspended."""
    service.resume(session, department=department)
    return service.queue_view(session, department=department)


@router.get(
    "/queues/{department}/stats", dependencies=[require_scope("triage:read", patients=True)], tags=["queues"]
)
def read_queue_stats(
    department: Department,
    session: SessionDep,
    day: Annotated[date | None, Query(alias="date", description="Hospital day; default today")] = None,
) -> QueueStats:
    """A day's waits from queueing to being called, against the 10-minute target (三长一短)."""
    return service.queue_stats(session, department=department, day=day or service.today())
