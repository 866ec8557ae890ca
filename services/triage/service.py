"""Triage rules: levels and zones, who is called first, gap-free ticket numbers, and wait statistics."""

import bisect
import uuid
from datetime import date, datetime
from typing import Any, TypeVar

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from kit.auth import visible_to
from kit.client import ServiceClient
from kit.clock import as_utc, hospital_date, utcnow
from kit.errors import ServiceUnavailable, ensure_visit_open
from kit.outbox import record_event
from kit.stats import nearest_rank
from services.triage import repository, rules
from services.triage.assessment import due_at, suggest_level
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
    UnknownServiceClass,
    UnknownStation,
    VisitNotFound,
)
from services.triage.models import Assessment, OutboxEvent, QueueSuspension, Ticket
from services.triage.schemas import (
    AssessmentCreate,
    AssessmentPublic,
    BoardTicket,
    OrderEntry,
    QueueBoard,
    QueueOrder,
    QueuePriority,
    QueuePublic,
    QueueStats,
    RegistrationVisit,
    RegistrationVisitWithName,
    SuspendRequest,
    SuspensionPublic,
    TicketCreate,
    TicketPublic,
    TicketStatus,
    TriageLevel,
    VitalSigns,
    WaitMinutes,
    Zone,
)

# "Three longs, one short" (三长一短): the wait from queueing to being called should stay within this.
WAIT_TARGET_MINUTES = 10
ZONES = {
    TriageLevel.I: Zone.red,
    TriageLevel.II: Zone.red,
    TriageLevel.III: Zone.yellow,
    TriageLevel.IV: Zone.green,
}
# What the board shows for a patient registration knows no name of (无名氏). An unidentified patient's
# alias is never shown: staff may describe the patient in it ("车祸伤者"), which is clinical text.
UNNAMED = "无名氏"
# Masked characters shown at most, so a long name's length does not show either.
MAX_MASKED = 3


OpenVisit = TypeVar("OpenVisit", bound=RegistrationVisit)


async def fetch_visit(registration: ServiceClient, *, visit_id: str) -> RegistrationVisit:
    """The visit as registration knows it; awaited before the unit of work, so none waits on the network."""
    return _open_visit(await registration.get(RegistrationVisit, "/visits/{visit_id}", visit_id=visit_id))


async def fetch_named_visit(registration: ServiceClient, *, visit_id: str) -> tuple[RegistrationVisit, str]:
    """`fetch_visit` and the patient's board name (`mask_name`), in one call to registration: what a
    ticket needs. The full name is masked as soon as registration answers and never kept."""
    named = _open_visit(
        await registration.get(RegistrationVisitWithName, "/visits/{visit_id}/with-name", visit_id=visit_id)
    )
    visit = RegistrationVisit(id=named.id, patient_id=named.patient_id, status=named.status)
    return visit, mask_name(named.patient_name)


def _open_visit(visit: OpenVisit | None) -> OpenVisit:
    """The visit registration answered with, if it exists and is open (404 / 409 `visit-closed`)."""
    if visit is None:
        raise VisitNotFound("Registration has no such visit.")
    ensure_visit_open(visit.id, visit.status)
    return visit


def mask_name(name: str | None) -> str:
    """A name as the waiting-room board shows it (张*三): the first and last character, the middle masked.

    Enough for patients to recognise themselves beside their number, too little to identify anyone:
    a two-character name keeps its first (张*), a one-character name is masked whole, no name is 无名氏.
    """
    name = (name or "").strip()
    if len(name) <= 1:
        return "*" if name else UNNAMED
    if len(name) == 2:
        return name[0] + "*"
    return name[0] + "*" * min(len(name) - 2, MAX_MASKED) + name[-1]


def rank_of(*, level: TriageLevel | None, priority: QueuePriority) -> int:
    """Call rank: 0 for level I/II, 1 for level III or the elderly/frail/disabled (老弱残), else 2."""
    if level in (TriageLevel.I, TriageLevel.II):
        return 0
    if level is TriageLevel.III or priority is QueuePriority.priority:
        return 1
    return 2


def assess(
    session: Session,
    *,
    visit: RegistrationVisit,
    data: AssessmentCreate,
    settings: TriageSettings,
    masked_name: str | None = None,
) -> Assessment:
    """Record an assessment; the visit's waiting tickets move to the rank the new level gives them.

    Vital signs give a suggested level (`assessment.suggest_level`); the nurse's level counts, and one
    that differs from the suggestion needs a reason (422 `override-reason-required`). A level that
    differs from the visit's previous assessment is `triage.level_changed`; `department` queues the
    visit there (`masked_name` is the board name, asked of registration beforehand).
    """
    suggestion = None
    vitals = data.vitals or VitalSigns()
    if vitals.measured() or data.pain_score is not None:
        suggestion = suggest_level(vitals, pain_score=data.pain_score, rules=settings.vital_rules)
    level = data.level or (suggestion.level if suggestion else None)
    assert level is not None  # AssessmentCreate requires a level or signs
    if suggestion is not None and level is not suggestion.level and not data.override_reason:
        raise OverrideReasonRequired(
            f"The vital signs suggest level {suggestion.level.value} ({suggestion.reason}); "
            f"say why the level is {level.value}.",
            suggested_level=suggestion.level.value,
        )
    patient_id = repository.patient_for_visit(session, visit_id=visit.id, registered=visit.patient_id)
    previous = repository.latest_assessment(session, visit.id)
    now = utcnow()
    limit = min(settings.response_minutes.of(level), settings.reassess_minutes.of(level))
    assessment = Assessment(
        id=str(uuid.uuid4()),
        visit_id=visit.id,
        patient_id=patient_id,
        level=level.value,
        zone=ZONES[level].value,
        response_minutes=settings.response_minutes.of(level),
        chief_complaint=data.chief_complaint,
        note=data.note,
        assessed_at=now,
        **vitals.model_dump(mode="json"),
        pain_score=data.pain_score,
        suggested_level=suggestion.level.value if suggestion else None,
        suggested_by=suggestion.sign if suggestion else None,
        suggestion_reason=suggestion.reason if suggestion else None,
        override_reason=data.override_reason if suggestion is None or level is not suggestion.level else None,
        due_at=due_at(now, limit),
        department=data.department,
    )
    session.add(assessment)
    for ticket in repository.waiting_tickets_of_visit(session, visit.id):
        ticket.rank = rank_of(level=level, priority=QueuePriority(ticket.priority))
        session.add(ticket)
    record_triage_event(
        session,
        "visit.triaged",
        visit_id=visit.id,
        patient_id=patient_id,
        payload={
            "assessment_id": assessment.id,
            "level": assessment.level,
            "zone": assessment.zone,
            "suggested_level": assessment.suggested_level,
            "green_channel": is_green_channel(level),
        },
    )
    if previous is not None and previous.level != assessment.level:
        record_triage_event(
            session,
            "triage.level_changed",
            visit_id=visit.id,
            patient_id=patient_id,
            payload={
                "assessment_id": assessment.id,
                "previous_assessment_id": previous.id,
                "from_level": previous.level,
                "to_level": assessment.level,
                "zone": assessment.zone,
            },
        )
    if data.department is not None:
        assessment.ticket_id = _route(
            session, visit=visit, department=data.department, masked_name=masked_name
        )
    session.flush()
    return assessment


def assessment_public(assessment: Assessment) -> AssessmentPublic:
    public = AssessmentPublic.model_validate(assessment, from_attributes=True)
    public.green_channel = is_green_channel(public.level)
    return public


def is_green_channel(level: TriageLevel) -> bool:
    """Level I and II patients are treated first and pay later (绿色通道, 先救治后付费)."""
    return level in (TriageLevel.I, TriageLevel.II)


def _route(session: Session, *, visit: RegistrationVisit, department: str, masked_name: str | None) -> str:
    """Outpatient 分诊: the visit's ticket in `department`, queued now unless it already holds one there
    (which the new level has just re-ranked)."""
    existing = repository.active_ticket(session, visit_id=visit.id, department=department)
    if existing is not None:
        return existing.id
    session.flush()  # the new assessment ranks the ticket
    ticket = enqueue(
        session,
        visit=visit,
        masked_name=masked_name or mask_name(None),
        department=department,
        data=TicketCreate(visit_id=visit.id),
    )
    return ticket.id


def with_triage(
    session: Session, tickets: list[Ticket], *, now: datetime | None = None
) -> list[TicketPublic]:
    """Tickets as shown to staff, each with its visit's latest level and re-triage deadline; a waiting
    ticket past the deadline is `overdue`."""
    now = now or utcnow()
    latest = repository.latest_assessments(session, {t.visit_id for t in tickets})
    shown = []
    for ticket in tickets:
        public = to_public(ticket)
        assessment = latest.get(ticket.visit_id)
        if assessment is not None:
            public.level = TriageLevel(assessment.level)
            public.due_at = assessment.due_at
            public.overdue = (
                ticket.status == TicketStatus.waiting.value
                and assessment.due_at is not None
                and assessment.due_at < now
            )
        shown.append(public)
    return shown


def emit_overdue(session: Session, *, now: datetime) -> list[str]:
    """The re-triage timer: emit `triage.overdue` once for each latest assessment whose deadline has
    passed while its visit still waits in a queue; the ids of the assessments it fired for."""
    fired = []
    for assessment in repository.overdue_candidates(session, now=now):
        waiting = repository.waiting_tickets_of_visit(session, assessment.visit_id)
        assessment.overdue_emitted_at = now
        session.add(assessment)
        assert assessment.due_at is not None
        record_triage_event(
            session,
            "triage.overdue",
            visit_id=assessment.visit_id,
            patient_id=assessment.patient_id,
            payload={
                "assessment_id": assessment.id,
                "level": assessment.level,
                "zone": assessment.zone,
                "due_at": as_utc(assessment.due_at).isoformat(),
                "waited_minutes": round(_minutes(now, assessment.assessed_at), 1),
                "ticket_ids": [t.id for t in waiting],
            },
        )
        fired.append(assessment.id)
    return fired


def _already_queued(existing: Ticket) -> AlreadyQueued:
    return AlreadyQueued(
        f"This visit already holds ticket {existing.number} ({existing.status}) in {existing.department}.",
        existing_ticket_id=existing.id,
    )


def enqueue(
    session: Session,
    *,
    visit: RegistrationVisit,
    masked_name: str,
    department: str,
    data: TicketCreate,
    appointment_at: datetime | None = None,
    queue_rules: rules.QueueRules | None = None,
) -> Ticket:
    """Give a visit the department's next number; one waiting or called ticket per visit and department.

    `masked_name` is what the waiting-room board will show (see `mask_name`); `appointment_at` is the
    booked slot's time of a patient who came by appointment; a `service_class` must be one the queue's
    rules (`queue_rules`) know (422 `unknown-service-class`).
    """
    if data.service_class is not None:
        check_service_class(queue_rules or rules.QueueRules(), data.service_class)
    patient_id = repository.patient_for_visit(session, visit_id=visit.id, registered=visit.patient_id)
    existing = repository.active_ticket(session, visit_id=visit.id, department=department)
    if existing:
        raise _already_queued(existing)
    latest_level = repository.latest_levels(session, [visit.id]).get(visit.id)  # two columns, not the row
    level = TriageLevel(latest_level) if latest_level else None
    service_date = hospital_date(utcnow())
    number = repository.next_ticket_number(session, department=department, service_date=service_date)
    enqueued_at = utcnow()  # taken after the number, so call order and numbers agree
    ticket = Ticket(
        id=str(uuid.uuid4()),
        visit_id=visit.id,
        patient_id=patient_id,
        department=department,
        service_date=service_date,
        number=number,
        priority=data.priority.value,
        rank=rank_of(level=level, priority=data.priority),
        masked_name=masked_name,
        enqueued_at=enqueued_at,
        lined_up_at=enqueued_at,
        appointment_at=appointment_at,
        service_class=data.service_class,
    )
    try:
        with session.begin_nested():  # a concurrent twin loses on the partial unique index, not with a 500
            session.add(ticket)
    except IntegrityError:
        existing = repository.active_ticket(session, visit_id=visit.id, department=department)
        if existing is None:
            raise
        raise _already_queued(existing) from None
    record_ticket_event(session, ticket, "ticket.queued", priority=ticket.priority)
    return ticket


def call_next(
    session: Session, *, department: str, counter: str | None, settings: TriageSettings
) -> tuple[Ticket, str]:
    """Call the head of the rule engine's order (`queue_order`'s first entry) and say why it was next;
    concurrent callers each get a different ticket.

    Callers of one queue take its lock in turn (PostgreSQL: an advisory lock; SQLite: one writer), so
    each computes the order from what the previous call committed. The chosen row is then locked and
    re-read, and a ticket another action changed meanwhile (held, cancelled, sent on) is given up for
    the next head. A suspended queue calls nobody (409); a queue with stations calls only to one of them
    (422 `unknown-station`), and not to one already at its cap (409 `station-full`).
    """
    check_station(session, department=department, counter=counter)
    repository.lock_queue(session, department, exclusive=True)
    suspension = repository.get_suspension(session, department)
    if suspension is not None:
        raise QueueSuspended(f"{department} is suspended ({suspension.reason}); resume it to call patients.")
    if counter is not None:
        check_station_cap(session, department=department, counter=counter)
    queue_rules = rules_for(session, department=department, settings=settings)
    for _ in range(CLAIM_ATTEMPTS):
        now = utcnow()
        head, _ = _live_order(
            session, department=department, queue_rules=queue_rules, now=now, head_only=True
        )
        if not head:
            raise QueueEmpty("Nobody is waiting in this queue.")
        placed = head[0]
        ticket = repository.lock_if_waiting(session, placed.ticket.key)
        if ticket is not None:
            break
        session.expire_all()  # another action changed that ticket: read the queue afresh
    else:
        raise ServiceUnavailable("The queue kept changing under the call; call again.", retry_after=1)
    ticket.status = TicketStatus.called.value
    ticket.called_at = now
    ticket.counter = counter
    ticket.skipped_at = ticket.skip_recall_at = ticket.skip_recall_calls = None
    session.add(ticket)
    record_ticket_event(session, ticket, "ticket.called", wait_seconds=wait_seconds(ticket))
    return ticket, placed.reason


# Each failed claim follows another transaction's committed change to the chosen ticket.
CLAIM_ATTEMPTS = 20


def check_station_cap(session: Session, *, department: str, counter: str) -> None:
    """The cap per room: a station with `station_cap` patients called and not yet seen takes no more."""
    setting = repository.get_queue_setting(session, department)
    cap = setting.station_cap if setting else None
    called_there = repository.count_called(session, department, counter=counter) if cap else 0
    full = rules.station_full(station=counter, called_there=called_there, cap=cap)
    if full is not None:
        raise StationFull(full[0].upper() + full[1:] + ".", station=counter, station_cap=cap)


def check_service_class(queue_rules: rules.QueueRules, service_class: str) -> None:
    """A ticket's class must have an expected service time in its queue's rules."""
    if service_class not in queue_rules.service_minutes:
        known = sorted(queue_rules.service_minutes)
        raise UnknownServiceClass(
            f"This queue's service classes are {', '.join(known)}; {service_class!r} is none of them.",
            service_classes=known,
        )


def rules_for(session: Session, *, department: str, settings: TriageSettings) -> rules.QueueRules:
    """The queue's ordering: the `rules` of its settings if set, else `TRIAGE_QUEUE_RULES`, else defaults."""
    setting = repository.get_queue_setting(session, department)
    if setting is not None and setting.rules is not None:
        return rules.QueueRules.model_validate(setting.rules)
    return settings.rules_for(department)


def check_station(session: Session, *, department: str, counter: str | None) -> None:
    """A queue that has stations calls to one of them; a queue without any takes any counter name."""
    if counter is None:
        return
    stations = [s.code for s in repository.list_stations(session, department)]  # one read, known or not
    if stations and counter not in stations:
        raise UnknownStation(
            f"{department} has no station {counter!r}; its stations are {', '.join(stations)}.",
            stations=stations,
        )


def finish(session: Session, *, ticket_id: str) -> Ticket:
    """Close a called ticket (the patient was seen); a waiting or finished ticket cannot be finished."""
    ticket = repository.get_ticket(session, ticket_id, for_update=True)
    if ticket is None:
        raise TicketNotFound("No such ticket.")
    if ticket.status != TicketStatus.called.value:
        raise TicketNotCalled(f"Only a called ticket can be finished; this one is {ticket.status}.")
    ticket.status = TicketStatus.finished.value
    ticket.finished_at = utcnow()
    session.add(ticket)
    record_ticket_event(session, ticket, "ticket.finished")
    return ticket


def suspend(session: Session, *, department: str, data: SuspendRequest) -> QueueSuspension:
    """Suspend a department's session (门诊暂停); the event names the waiting tickets, so they can be told.

    Waiting tickets keep their places and new ones may still be taken; only calling stops.
    """
    repository.lock_queue(session, department, exclusive=True)
    existing = repository.get_suspension(session, department)
    if existing is not None:
        raise QueueSuspended(f"{department} is already suspended ({existing.reason}).")
    suspension = QueueSuspension(department=department, reason=data.reason, suspended_at=utcnow())
    session.add(suspension)
    waiting = repository.waiting_queue(session, department)
    _record_queue_event(
        session,
        department,
        "queue.suspended",
        reason=suspension.reason,
        waiting_ticket_ids=[t.id for t in waiting],
    )
    return suspension


def resume(session: Session, *, department: str) -> None:
    """End a department's suspension; calling goes on in the order the queue already had."""
    repository.lock_queue(session, department, exclusive=True)
    suspension = repository.get_suspension(session, department)
    if suspension is None:
        raise QueueNotSuspended(f"{department} is not suspended.")
    session.delete(suspension)
    session.flush()  # so the queue view read in this transaction no longer sees it
    _record_queue_event(session, department, "queue.resumed")


def _record_queue_event(session: Session, department: str, event_type: str, **extra: Any) -> None:
    # A queue event belongs to no visit: subscribers reach patients through `waiting_ticket_ids`.
    record_event(
        session,
        OutboxEvent,
        event_type=event_type,
        aggregate_type="queue",
        aggregate_id=department,
        payload={"department": department, **extra},
    )


def queue_view(session: Session, *, department: str, settings: TriageSettings) -> QueuePublic:
    """Who is waiting in a department in call order (the rule engine's), and whether it is suspended."""
    waiting = ordered_waiting(session, department=department, settings=settings)
    suspension = repository.get_suspension(session, department)
    return QueuePublic(
        department=department,
        suspended=suspension is not None,
        suspension=SuspensionPublic.model_validate(suspension, from_attributes=True) if suspension else None,
        waiting=with_triage(session, waiting),
        waiting_count=len(waiting),
        called_count=repository.count_called(session, department),
        held=[to_public(t) for t in repository.held_tickets(session, department)],
    )


def board_view(session: Session, *, department: str, settings: TriageSettings) -> QueueBoard:
    """A queue for the waiting-room screen: numbers, masked names, counters; no ids, no clinical text."""
    waiting = ordered_waiting(session, department=department, settings=settings)
    tickets = repository.called_tickets(session, department) + waiting
    return QueueBoard(
        department=department,
        suspended=repository.get_suspension(session, department) is not None,
        tickets=[
            BoardTicket(
                display_number=display_number(ticket),
                name=ticket.masked_name,
                status=TicketStatus(ticket.status),
                counter=ticket.counter,
            )
            for ticket in tickets
        ],
    )


def record_triage_event(
    session: Session, event_type: str, *, visit_id: str, patient_id: str, payload: dict[str, Any]
) -> None:
    """An event about the visit (its triage: assessed, level changed, overdue), naming its patient."""
    record_event(
        session,
        OutboxEvent,
        event_type=event_type,
        aggregate_type="visit",
        aggregate_id=visit_id,
        visit_id=visit_id,
        patient_id=patient_id,
        payload=payload,
    )


def record_ticket_event(session: Session, ticket: Ticket, event_type: str, **extra: Any) -> None:
    record_event(
        session,
        OutboxEvent,
        event_type=event_type,
        aggregate_type="ticket",
        aggregate_id=ticket.id,
        visit_id=ticket.visit_id,
        patient_id=ticket.patient_id,
        payload={"ticket_id": ticket.id, "department": ticket.department, "number": ticket.number, **extra},
    )


def get_ticket(session: Session, *, ticket_id: str, acting_for: str | None = None) -> Ticket:
    """The ticket; acting for another patient, 404 exactly as for one that does not exist."""
    ticket = repository.get_ticket(session, ticket_id)
    if ticket is None or not visible_to(acting_for, ticket.patient_id):
        raise TicketNotFound("No such ticket.")
    return ticket


def wait_seconds(ticket: Ticket) -> int | None:
    if ticket.called_at is None:
        return None
    return round((ticket.called_at - ticket.enqueued_at).total_seconds())


def display_number(ticket: Ticket) -> str:
    """What the waiting-room screen shows: the department's initial and the number (I007)."""
    return f"{ticket.department[0].upper()}{ticket.number:03d}"


def to_public(ticket: Ticket) -> TicketPublic:
    return TicketPublic(
        id=ticket.id,
        visit_id=ticket.visit_id,
        patient_id=ticket.patient_id,
        department=ticket.department,
        number=ticket.number,
        display_number=display_number(ticket),
        priority=QueuePriority(ticket.priority),
        rank=ticket.rank,
        status=TicketStatus(ticket.status),
        enqueued_at=ticket.enqueued_at,
        called_at=ticket.called_at,
        finished_at=ticket.finished_at,
        counter=ticket.counter,
        wait_seconds=wait_seconds(ticket),
        appointment_at=ticket.appointment_at,
        lined_up_at=ticket.lined_up_at,
        skips=ticket.skips,
        recalls=ticket.recalls,
        transferred_from=ticket.transferred_from,
        transferred_to=ticket.transferred_to,
        service_class=ticket.service_class,
        skipped_at=ticket.skipped_at,
        skip_recall_calls=ticket.skip_recall_calls,
        skip_recall_at=ticket.skip_recall_at,
    )


def today() -> date:
    """The hospital's calendar day now (Asia/Shanghai), which numbers and statistics are kept by."""
    return hospital_date(utcnow())


def queue_stats(session: Session, *, department: str, day: date) -> QueueStats:
    """A department's day measured against the 10-minute target: how long called patients waited."""
    tickets = repository.tickets_of_day(session, department=department, service_date=day)
    waits = sorted(_minutes(t.called_at, t.enqueued_at) for t in tickets if t.called_at is not None)
    setting = repository.get_queue_setting(session, department)
    target_minutes = setting.target_minutes if setting else WAIT_TARGET_MINUTES
    within = sum(1 for w in waits if w <= target_minutes)
    return QueueStats(
        department=department,
        date=day,
        target_minutes=target_minutes,
        tickets=len(tickets),
        called=len(waits),
        waiting=sum(1 for t in tickets if t.status == TicketStatus.waiting.value),
        wait_minutes=WaitMinutes(
            p50=round(nearest_rank(waits, 50), 1) if waits else None,
            p90=round(nearest_rank(waits, 90), 1) if waits else None,
            max=round(waits[-1], 1) if waits else None,
        ),
        within_target_share=round(within / len(waits), 4) if waits else None,
    )


def _minutes(later: datetime, earlier: datetime) -> float:
    return (later - earlier).total_seconds() / 60


# --- Queue order (rules.py): the one ordering of the live queue, read by call-next, the queue, the board
# and the order route alike


def _as_waiting(ticket: Ticket, levels: dict[str, str], calls_since_skip: int = 0) -> rules.Waiting:
    priority = rules.PriorityKind.priority if ticket.priority == QueuePriority.priority.value else None
    return rules.Waiting(
        key=ticket.id,
        number=ticket.number,
        # Its place in line: the arrival, kept by a transfer (stations.py); a skip leaves it be.
        arrived_at=ticket.lined_up_at,
        level=levels.get(ticket.visit_id),
        priority=priority,
        appointment_at=ticket.appointment_at,
        service_class=ticket.service_class,
        skipped_at=ticket.skipped_at,
        recall_after_calls=ticket.skip_recall_calls or 0,
        recall_at=ticket.skip_recall_at,
        calls_since_skip=calls_since_skip,
    )


def _live_order(
    session: Session,
    *,
    department: str,
    queue_rules: rules.QueueRules,
    now: datetime,
    head_only: bool = False,
    front: int | None = None,
) -> tuple[list[rules.Placed], dict[str, Ticket]]:
    """The waiting tickets as `queue_rules` order them at `now` (only the first when `head_only`, the
    first `front` if given), and the tickets by id.

    The day's calls so far are replayed first, so a ratio or a late insertion continues where it is, and
    each skipped ticket counts the calls made since its skip. Without a ratio, a late insertion or a
    skipped ticket the order is the waiting tickets' alone, and the day's tickets (more with every
    patient seen) are not read: call-next and every commit's nearly-up check run this.
    """
    waiting_tickets = repository.waiting_queue(session, department)  # earlier days' too
    replayed = _replays_calls(queue_rules) or any(t.skipped_at for t in waiting_tickets)
    day = hospital_date(now)
    tickets = repository.tickets_of_day(session, department=department, service_date=day) if replayed else []
    levels = repository.latest_levels(session, [t.visit_id for t in [*tickets, *waiting_tickets]])
    state = rules.QueueState()
    called = sorted((as_utc(t.called_at), t.number, t) for t in tickets if t.called_at)
    for called_at, _, ticket in called:
        state = rules.advance(state, _as_waiting(ticket, levels), queue_rules, now=called_at)
    call_times = [called_at for called_at, _, _ in called]
    waiting = [
        _as_waiting(t, levels, _calls_since(t, call_times) if t.skipped_at else 0) for t in waiting_tickets
    ]
    by_id = {t.id: t for t in waiting_tickets}
    if head_only:
        head = rules.next_in_queue(waiting, rules=queue_rules, now=now, state=state)
        return ([head] if head else []), by_id
    return rules.order_queue(waiting, rules=queue_rules, now=now, state=state, limit=front), by_id


def _replays_calls(queue_rules: rules.QueueRules) -> bool:
    """Whether the rules keep count of earlier calls (`rules.QueueState`: a ratio, a late insertion)."""
    return queue_rules.normal_per_priority is not None or queue_rules.late_every is not None


def _calls_since(ticket: Ticket, call_times: list[datetime]) -> int:
    """Other patients called since the ticket's skip (at or after its instant; its own call not counted)."""
    assert ticket.skipped_at is not None
    skipped_at = as_utc(ticket.skipped_at)
    own = 1 if ticket.called_at is not None and as_utc(ticket.called_at) >= skipped_at else 0
    return len(call_times) - bisect.bisect_left(call_times, skipped_at) - own


def ordered_waiting(session: Session, *, department: str, settings: TriageSettings) -> list[Ticket]:
    """The waiting tickets in the order call-next will call them."""
    queue_rules = rules_for(session, department=department, settings=settings)
    placed, by_id = _live_order(session, department=department, queue_rules=queue_rules, now=utcnow())
    return [by_id[p.ticket.key] for p in placed]


def queue_order(
    session: Session, *, department: str, queue_rules: rules.QueueRules, front: int | None = None
) -> QueueOrder:
    """The waiting tickets in the order `queue_rules` (the queue's: `rules_for`) call them, each with its
    reason: call-next takes the first. `front`: only that many first places (the nearly-up check)."""
    placed, by_id = _live_order(
        session, department=department, queue_rules=queue_rules, now=utcnow(), front=front
    )
    return QueueOrder(
        department=department,
        rules=queue_rules,
        order=[
            OrderEntry(
                position=p.position,
                ticket_id=p.ticket.key,
                display_number=display_number(by_id[p.ticket.key]),
                reason=p.reason,
            )
            for p in placed
        ],
    )
