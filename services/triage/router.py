"""Triage endpoints (thin: parse, call the service, shape the answer)."""

from dataclasses import dataclass
from datetime import date
from functools import partial
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response, status

from kit.auth import CallerDep, require_scope
from kit.client import ServiceClient, sibling
from kit.config import app_settings
from kit.database import SessionDep
from kit.errors import Forbidden, ServiceUnavailable, VisitClosed, problem_responses
from services.triage import repository, service, stations
from services.triage.config import TriageSettings
from services.triage.errors import (
    AlreadyQueued,
    OverrideReasonRequired,
    QueueEmpty,
    QueueNotSuspended,
    QueueSuspended,
    StationFull,
    TicketNotCalled,
    TicketNotFound,
    TicketWrongState,
    UnknownServiceClass,
    UnknownStation,
    VisitNotFound,
)
from services.triage.schemas import (
    DEPARTMENT_PATTERN,
    VISIT_ID_PATTERN,
    AssessmentCreate,
    AssessmentPublic,
    CalledTicket,
    CallNextRequest,
    QueueBoard,
    QueueOrder,
    QueuePublic,
    QueueSettingPublic,
    QueueSettingUpdate,
    QueueStats,
    RecallRequest,
    RegistrationVisit,
    ServiceClassUpdate,
    StationPublic,
    StationUpsert,
    SuspendRequest,
    TicketCreate,
    TicketPublic,
    TransferPublic,
    TransferRequest,
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
    """Ask registration for the visit and the patient's (masked) name, in one call.

    A dependency declared before the session, so the calls finish before the database gate is taken.
    """
    visit, masked_name = await service.fetch_named_visit(registration, visit_id=data.visit_id)
    return TicketRequest(data=data, visit=visit, masked_name=masked_name)


@dataclass(frozen=True, slots=True)
class AssessedVisit:
    """The visit to assess and, when the assessment routes it to a department, the board name."""

    visit: RegistrationVisit
    masked_name: str | None


async def resolve_assessed_visit(data: AssessmentCreate, registration: RegistrationDep) -> AssessedVisit:
    """The visit to assess, asked of registration before the session (as `resolve_ticket_request`)."""
    if data.department is None:
        return AssessedVisit(
            visit=await service.fetch_visit(registration, visit_id=data.visit_id), masked_name=None
        )
    visit, masked_name = await service.fetch_named_visit(registration, visit_id=data.visit_id)
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
    responses=problem_responses(VisitNotFound, AlreadyQueued, UnknownServiceClass, ServiceUnavailable),
)
def take_ticket(
    department: Department,
    request: Annotated[TicketRequest, Depends(resolve_ticket_request)],
    session: SessionDep,
    settings: SettingsDep,
    response: Response,
) -> TicketPublic:
    """Queue a visit in a department and give it the day's next number there.

    The queue's rules order it (`GET …/order` says why each patient is where): by default level I/II
    visits first, then level III and `priority` (老弱残) tickets, then everyone else, each in the order
    they queued. `service_class` (simple or complex work, one of the rules' `service_minutes`; 422
    `unknown-service-class` otherwise) counts when the rules serve shorter work first.
    A visit holding a waiting or called ticket here gets 409, a visit registration has closed 409
    `visit-closed`. The waiting-room board will show the patient's name masked (张*三); 503 when
    registration is down.
    """
    ticket = service.enqueue(
        session,
        visit=request.visit,
        masked_name=request.masked_name,
        department=department,
        data=request.data,
        queue_rules=service.rules_for(session, department=department, settings=settings),
    )
    response.headers["Location"] = f"/v1/tickets/{ticket.id}"
    return service.to_public(ticket)


@router.post(
    "/queues/{department}/call-next",
    dependencies=[require_scope("triage:write")],
    tags=["queues"],
    responses=problem_responses(QueueEmpty, QueueSuspended, UnknownStation, StationFull),
)
def call_next(
    department: Department, session: SessionDep, settings: SettingsDep, data: CallNextRequest | None = None
) -> CalledTicket:
    """Call the next patient (叫号) to `counter`: the first of `GET …/order`, with its `reason`.

    404 `queue-empty` when nobody waits, 409 `queue-suspended` while the session is suspended, 409
    `station-full` when the station already has the queue's `station_cap` patients called and not yet
    seen. Safe for several counters calling at once: each call gets a different ticket.
    """
    counter = data.counter if data else None
    ticket, reason = service.call_next(session, department=department, counter=counter, settings=settings)
    return CalledTicket(**service.to_public(ticket).model_dump(), reason=reason)


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
def read_queue(department: Department, session: SessionDep, settings: SettingsDep) -> QueuePublic:
    """Who is waiting in a department, in the order they will be called, and whether it is suspended."""
    return service.queue_view(session, department=department, settings=settings)


@router.get(
    "/queues/{department}/board",
    dependencies=[require_scope(BOARD_SCOPE)],
    tags=["queues"],
    responses=problem_responses(Forbidden),
)
def read_board(department: Department, session: SessionDep, settings: SettingsDep) -> QueueBoard:
    """The queue as the waiting-room screen (叫号屏) shows it; needs the `board:read` scope.

    Per called or waiting ticket: the display number, the patient's masked name (张*三), the status and,
    once called, the counter. No patient or visit ids, no full names, no triage level or complaint.
    """
    return service.board_view(session, department=department, settings=settings)


@router.post(
    "/queues/{department}/suspend",
    dependencies=[require_scope("triage:write")],
    tags=["queues"],
    responses=problem_responses(QueueSuspended),
)
def suspend_queue(
    department: Department, data: SuspendRequest, session: SessionDep, settings: SettingsDep
) -> QueuePublic:
    """Suspend a department's clinic session (门诊暂停): nobody is called until it is resumed.

    Waiting patients keep their places. The `queue.suspended` event lists their tickets so they can be
    told. Suspending a suspended queue is 409 `queue-suspended`.
    """
    service.suspend(session, department=department, data=data)
    return service.queue_view(session, department=department, settings=settings)


@router.post(
    "/queues/{department}/resume",
    dependencies=[require_scope("triage:write")],
    tags=["queues"],
    responses=problem_responses(QueueNotSuspended),
)
def resume_queue(department: Department, session: SessionDep, settings: SettingsDep) -> QueuePublic:
    """Resume a suspended session; calling continues in the queue's order. 409 when it is not suspended."""
    service.resume(session, department=department)
    return service.queue_view(session, department=department, settings=settings)


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


# --- Queue order (rules.py)


@router.get("/queues/{department}/order", dependencies=[require_scope("triage:read")], tags=["queues"])
def read_queue_order(department: Department, session: SessionDep, settings: SettingsDep) -> QueueOrder:
    """Who is next and why: the waiting tickets in the order the department's rules call them, each
    with the reason for its place ("level II, arrived 08:12, green channel: ahead of everyone").

    Call-next takes the first entry. The rules are the queue's settings' `rules`, else the service's
    `TRIAGE_QUEUE_RULES`, else the defaults (green channel I then II, level III and priority, everyone).
    """
    queue_rules = service.rules_for(session, department=department, settings=settings)
    return service.queue_order(session, department=department, queue_rules=queue_rules)


# --- Queue actions (issue 10): queue settings, stations, and actions on a ticket ---
StationCode = Annotated[str, Path(pattern=r"^[A-Za-z0-9-]{1,16}$", examples=["3"])]
ACTION_ERRORS = problem_responses(TicketNotFound, TicketNotCalled, TicketWrongState)


async def resolve_transferred_visit(
    ticket_id: str, request: Request, registration: RegistrationDep
) -> RegistrationVisit:
    """The transferred ticket's visit as registration knows it, asked before the session (a closed visit
    takes no new ticket); the ticket is looked up in a short read of its own."""
    ticket = await request.app.state.database.read(partial(repository.get_ticket, ticket_id=ticket_id))
    if ticket is None:
        raise TicketNotFound("No such ticket.")
    return await service.fetch_visit(registration, visit_id=ticket.visit_id)


@router.get("/queues/{department}/settings", dependencies=[require_scope("triage:read")], tags=["stations"])
def read_queue_setting(
    department: Department, session: SessionDep, settings: SettingsDep
) -> QueueSettingPublic:
    """How a queue is run (kind, wait target, skip rule, cap per station, ordering rules) and its stations;
    the defaults until configured."""
    return stations.queue_setting(session, department=department, settings=settings)


@router.put("/queues/{department}/settings", dependencies=[require_scope("triage:write")], tags=["stations"])
def configure_queue(
    department: Department, data: QueueSettingUpdate, session: SessionDep, settings: SettingsDep
) -> QueueSettingPublic:
    """Set a queue's kind — a department, a window (registration, cashier, pharmacy, result printing) or a
    room — its wait target; the skip rule: a skipped patient sits out until `skip_requeue_after` others
    are called or `skip_requeue_minutes` pass, and the skip after `max_skips` makes the ticket a no-show;
    `station_cap`, the most patients called and not yet seen per station; and `rules`, how the queue is
    ordered (null: the service's configuration)."""
    stations.configure_queue(session, department=department, data=data)
    return stations.queue_setting(session, department=department, settings=settings)


@router.put(
    "/queues/{department}/stations/{code}", dependencies=[require_scope("triage:write")], tags=["stations"]
)
def put_station(
    department: Department, code: StationCode, data: StationUpsert, session: SessionDep
) -> StationPublic:
    """Add or relabel a station (counter, window or room); once a queue has one, call-next's `counter`
    must name one of them (422 `unknown-station`)."""
    station = stations.put_station(session, department=department, code=code, data=data)
    return StationPublic(code=station.code, label=station.label)


@router.put(
    "/tickets/{ticket_id}/service-class",
    dependencies=[require_scope("triage:write")],
    tags=["queues"],
    responses=problem_responses(TicketNotFound, TicketWrongState, UnknownServiceClass),
)
def classify_ticket(
    ticket_id: str, data: ServiceClassUpdate, session: SessionDep, settings: SettingsDep
) -> TicketPublic:
    """The desk classifies a ticket's work (simple or complex), which counts when its queue's rules serve
    shorter work first; 422 `unknown-service-class` for a class the rules do not know, 409 when closed."""
    ticket = stations.classify(
        session, ticket_id=ticket_id, service_class=data.service_class, settings=settings
    )
    return service.to_public(ticket)


@router.post(
    "/tickets/{ticket_id}/recall",
    dependencies=[require_scope("triage:write")],
    tags=["queues"],
    responses=problem_responses(TicketNotFound, TicketNotCalled, UnknownStation, StationFull),
)
def recall_ticket(ticket_id: str, session: SessionDep, data: RecallRequest | None = None) -> TicketPublic:
    """Call a called patient again (重呼), to another station if `counter` names one; 409 unless called."""
    counter = data.counter if data else None
    return service.to_public(stations.recall(session, ticket_id=ticket_id, counter=counter))


@router.post(
    "/tickets/{ticket_id}/skip",
    dependencies=[require_scope("triage:write")],
    tags=["queues"],
    responses=ACTION_ERRORS,
)
def skip_ticket(ticket_id: str, session: SessionDep) -> TicketPublic:
    """The called patient did not come (过号): back in line by the queue's skip rule (see its settings),
    or `noshow` after too many skips. 409 unless called."""
    return service.to_public(stations.skip(session, ticket_id=ticket_id))


@router.post(
    "/tickets/{ticket_id}/hold",
    dependencies=[require_scope("triage:write")],
    tags=["queues"],
    responses=ACTION_ERRORS,
)
def hold_ticket(ticket_id: str, session: SessionDep) -> TicketPublic:
    """Set a waiting or called ticket aside; nobody calls it until it is released, at its old place."""
    return service.to_public(stations.hold(session, ticket_id=ticket_id))


@router.post(
    "/tickets/{ticket_id}/release",
    dependencies=[require_scope("triage:write")],
    tags=["queues"],
    responses=ACTION_ERRORS,
)
def release_ticket(ticket_id: str, session: SessionDep) -> TicketPublic:
    """Put a held ticket back in line at the place it had; 409 unless held."""
    return service.to_public(stations.release(session, ticket_id=ticket_id))


@router.post(
    "/tickets/{ticket_id}/no-show",
    dependencies=[require_scope("triage:write")],
    tags=["queues"],
    responses=ACTION_ERRORS,
)
def noshow_ticket(ticket_id: str, session: SessionDep) -> TicketPublic:
    """Close a called ticket whose patient never came, without re-queueing it; 409 unless called."""
    return service.to_public(stations.noshow(session, ticket_id=ticket_id))


@router.post(
    "/tickets/{ticket_id}/cancel",
    dependencies=[require_scope("triage:write")],
    tags=["queues"],
    responses=ACTION_ERRORS,
)
def cancel_ticket(ticket_id: str, session: SessionDep) -> TicketPublic:
    """Withdraw a waiting, called or held ticket; 409 for a closed one."""
    return service.to_public(stations.cancel(session, ticket_id=ticket_id))


@router.post(
    "/tickets/{ticket_id}/transfer",
    dependencies=[require_scope("triage:write")],
    tags=["queues"],
    responses=problem_responses(
        TicketNotFound, TicketWrongState, AlreadyQueued, VisitClosed, ServiceUnavailable
    ),
)
def transfer_ticket(
    ticket_id: str,
    data: TransferRequest,
    _visit: Annotated[RegistrationVisit, Depends(resolve_transferred_visit)],
    session: SessionDep,
    response: Response,
) -> TransferPublic:
    """Move the patient on to another queue keeping priority and arrival (consultation → payment → lab →
    back to the doctor): this ticket closes as `transferred`, a new one in `department` is called before
    anyone of its rank who arrived later. 409 for a closed ticket, a visit already queued there, or a
    visit registration has closed (`visit-closed`: a new queue is new work)."""
    closed, moved = stations.transfer(session, ticket_id=ticket_id, department=data.department)
    response.headers["Location"] = f"/v1/tickets/{moved.id}"
    return TransferPublic(closed=service.to_public(closed), ticket=service.to_public(moved))
