"""Event hub endpoints: the log (page and stream), webhook subscriptions and the event catalogue."""

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Depends, Header, Path, Query, Request, Response, status
from fastapi.responses import StreamingResponse
from pydantic import ValidationError

from kit.auth import Caller, CallerDep, require_scope, require_service_caller
from kit.clock import hospital_date, utcnow
from kit.database import SessionDep
from kit.errors import BadRequest, Forbidden, problem_responses
from kit.params import MAX_POSITION, MAX_VERSION, CursorQuery, page_size
from services.events import catalogue, repository, service
from services.events.errors import (
    InvalidMetricsRange,
    RefusedWebhookUrl,
    SchemaNotFound,
    SubscriptionNotFound,
    UnknownDepartment,
    UnresolvedWebhookHost,
    VisitNotLogged,
)
from services.events.models import Subscription
from services.events.schemas import (
    MAX_METRICS_DAYS,
    DeliveryPublic,
    DeliveryStatus,
    LogPage,
    MetricsRange,
    ReplayResult,
    SubscriptionCreate,
    SubscriptionCreated,
    SubscriptionPublic,
    TicketReplay,
    VisitWaits,
    WaitMetrics,
)
from services.events.service import METRICS_SCOPE, READ_SCOPE, SUBSCRIBE_SCOPE
from services.events.stream import log_stream
from services.events.waits import GroupBy

router = APIRouter()
MAX_PAGE = 500

TypesQuery = Annotated[
    str | None,
    Query(max_length=1000, description="Only these types, comma-separated (`visit.opened,report.final`)"),
]
IdPath = Annotated[str, Path(min_length=1, max_length=36)]


def owned_subscription(subscription_id: IdPath, session: SessionDep, caller: CallerDep) -> Subscription:
    """The caller's own subscription: another client's, or one made for another patient, is a 404."""
    return service.owned_subscription(
        session, subscription_id=subscription_id, owner=caller.subject, patient_id=caller.patient
    )


OwnedSubscription = Annotated[Subscription, Depends(owned_subscription)]


def _types(raw: str | None) -> list[str] | None:
    types = [t.strip() for t in (raw or "").split(",") if t.strip()]
    return types or None


def _reader(caller: Caller) -> service.Audience:
    return service.audience(subject=caller.subject, scopes=caller.scopes, patient_id=caller.patient)


@router.get(
    "/log",
    dependencies=[require_scope(READ_SCOPE, patients=True)],
    tags=["events"],
    responses=problem_responses(Forbidden),
)
def read_log(
    session: SessionDep,
    caller: CallerDep,
    after: CursorQuery = 0,
    limit: Annotated[int, page_size(MAX_PAGE)] = 100,
    type: TypesQuery = None,
) -> LogPage:
    """Events of every service in causal order, after a cursor; pass `next_after` back to continue.

    You see the events of the services whose read scope you hold (and, acting for a patient, only that
    patient's). Delivery is at least once across retries: de-duplicate by `id`.
    """
    rows, next_after = service.read_page(
        session, _reader(caller), after=after, limit=limit, types=_types(type)
    )
    return LogPage(events=[service.event_json(r) for r in rows], next_after=next_after)


@router.get(
    "/log/stream",
    dependencies=[require_scope(READ_SCOPE, patients=True)],
    tags=["events"],
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}, **problem_responses(BadRequest, Forbidden)},
)
async def stream_log(
    request: Request,
    caller: CallerDep,
    after: Annotated[
        int | None,
        Query(
            ge=0,
            le=MAX_POSITION,
            description="Replay the events after this position first (0: the whole log); omit to start live",
        ),
    ] = None,
    type: TypesQuery = None,
    last_event_id: Annotated[str | None, Header(description="Resume after this position")] = None,
) -> StreamingResponse:
    """The same events as `GET /log`, live, as Server-Sent Events (`id:` is the position).

    Without `after` or `Last-Event-ID` the stream starts live: only events logged from now on. Pass
    `?after=0` to replay the whole log first. Reconnect with `Last-Event-ID` (browsers' EventSource does)
    to resume without gaps; a comment line every 15 s keeps the connection alive.
    """
    reader = _reader(caller)
    if last_event_id is not None:
        position = last_event_id.strip()
        if not (position.isascii() and position.isdigit()) or int(position) > MAX_POSITION:
            raise BadRequest("Last-Event-ID must be a position from this stream.")
        after = int(position)
    app = request.app
    body = log_stream(
        database=app.state.database,
        notifier=app.state.notifier,
        reader=reader,
        after=after,
        types=_types(type),
        heartbeat_seconds=app.state.settings.stream_heartbeat_seconds,
    )
    headers = {"cache-control": "no-cache", "x-accel-buffering": "no"}
    return StreamingResponse(body, media_type="text/event-stream", headers=headers)


def vetted_subscription(data: SubscriptionCreate, request: Request, caller: CallerDep) -> SubscriptionCreate:
    """The body of a subscription request, its URL checked. A dependency so that the check, which
    resolves the host (a network call), runs before the route's session dependency opens the unit of
    work: FastAPI resolves a route's dependencies in the order of its parameters."""
    caller.require(SUBSCRIBE_SCOPE)
    service.check_destination(data, destinations=request.app.state.settings.webhook_destinations())
    return data


@router.post(
    "/subscriptions",
    dependencies=[require_scope(SUBSCRIBE_SCOPE, patients=True)],
    status_code=status.HTTP_201_CREATED,
    tags=["subscriptions"],
    responses=problem_responses(Forbidden, RefusedWebhookUrl, UnresolvedWebhookHost),
)
def create_subscription(
    data: Annotated[SubscriptionCreate, Depends(vetted_subscription)], session: SessionDep, caller: CallerDep
) -> SubscriptionCreated:
    """Register a webhook: each event of the given types that you may see is POSTed to `url`, signed
    (Standard Webhooks), retried with backoff for three days, then kept as a dead letter you can replay.
    Events of one visit arrive in order. The `secret` is shown only in this answer. Link-local and
    unspecified addresses (and loopback, in production) are refused: 422 `webhook-url-refused`; so is
    a host name that does not resolve within `EVENTS_WEBHOOK_RESOLVE_TIMEOUT_SECONDS` (2 s): 422
    `webhook-host-unresolved`."""
    subscription = service.subscribe(
        session, data=data, owner=caller.subject, scopes=caller.scopes, patient_id=caller.patient
    )
    return SubscriptionCreated.model_validate(subscription, from_attributes=True)


@router.get(
    "/subscriptions",
    dependencies=[require_scope(SUBSCRIBE_SCOPE, patients=True)],
    tags=["subscriptions"],
    responses=problem_responses(Forbidden),
)
def list_subscriptions(session: SessionDep, caller: CallerDep) -> list[SubscriptionPublic]:
    """Your webhook subscriptions, oldest first."""
    rows = repository.owned_subscriptions(session, caller.subject, caller.patient)
    return [SubscriptionPublic.model_validate(r, from_attributes=True) for r in rows]


@router.get(
    "/subscriptions/{subscription_id}",
    dependencies=[require_scope(SUBSCRIBE_SCOPE, patients=True)],
    tags=["subscriptions"],
    responses=problem_responses(Forbidden, SubscriptionNotFound),
)
def read_subscription(subscription: OwnedSubscription) -> SubscriptionPublic:
    """One of your subscriptions (another client's is a 404)."""
    return SubscriptionPublic.model_validate(subscription, from_attributes=True)


@router.delete(
    "/subscriptions/{subscription_id}",
    dependencies=[require_scope(SUBSCRIBE_SCOPE, patients=True)],
    status_code=status.HTTP_204_NO_CONTENT,
    tags=["subscriptions"],
    responses=problem_responses(Forbidden, SubscriptionNotFound),
)
def delete_subscription(subscription: OwnedSubscription, session: SessionDep) -> Response:
    """Stop a subscription; its pending deliveries are dropped."""
    repository.delete_subscription(session, subscription)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.delete(
    "/owners/{owner}/subscriptions",
    tags=["subscriptions"],
    dependencies=[Depends(require_service_caller)],
    responses=problem_responses(Forbidden),
)
def delete_owner_subscriptions(
    owner: Annotated[str, Path(min_length=1, max_length=64)], session: SessionDep
) -> dict[str, int]:
    """Stop every subscription of one owner, dropping their pending deliveries (sibling services only).

    The gateway calls it before revoking a client, so a revoked client's webhooks stop too. Idempotent:
    a second call deletes nothing.
    """
    return {"deleted": service.unsubscribe_owner(session, owner=owner)}


@router.get(
    "/subscriptions/{subscription_id}/deliveries",
    dependencies=[require_scope(SUBSCRIBE_SCOPE, patients=True)],
    tags=["subscriptions"],
    responses=problem_responses(Forbidden, SubscriptionNotFound),
)
def list_deliveries(
    subscription: OwnedSubscription,
    session: SessionDep,
    status: DeliveryStatus | None = None,
    limit: Annotated[int, page_size(MAX_PAGE)] = 100,
) -> list[DeliveryPublic]:
    """A subscription's deliveries in log order: `pending` (with the next attempt), `delivered`, `dead`."""
    rows = repository.list_deliveries(
        session, subscription.id, status=status.value if status else None, limit=limit
    )
    return [DeliveryPublic.model_validate(r, from_attributes=True) for r in rows]


@router.post(
    "/subscriptions/{subscription_id}/replay",
    dependencies=[require_scope(SUBSCRIBE_SCOPE, patients=True)],
    tags=["subscriptions"],
    responses=problem_responses(Forbidden, SubscriptionNotFound),
)
def replay_dead_letters(
    subscription: OwnedSubscription, session: SessionDep, request: Request, after_commit: BackgroundTasks
) -> ReplayResult:
    """Send the dead letters again: each gets a fresh retry window, in log order."""
    replayed = service.replay_dead(session, subscription=subscription)
    after_commit.add_task(request.app.state.notifier.deliveries.bump)  # the idle delivery worker waits
    return ReplayResult(replayed=replayed)


@router.get(
    "/schemas",
    dependencies=[require_scope(READ_SCOPE, patients=True)],
    tags=["schemas"],
    responses=problem_responses(Forbidden),
)
def list_schemas() -> dict[str, list[dict[str, Any]]]:
    """The event catalogue: every event type and version with a JSON schema."""
    return {"schemas": catalogue.summaries()}


@router.get(
    "/schemas/{event_type}",
    dependencies=[require_scope(READ_SCOPE, patients=True)],
    tags=["schemas"],
    responses=problem_responses(Forbidden, SchemaNotFound),
)
def read_schema(
    event_type: Annotated[str, Path(max_length=64)],
    version: Annotated[int | None, Query(ge=1, le=MAX_VERSION, description="Default: the newest")] = None,
) -> dict[str, Any]:
    """The JSON schema (draft 2020-12) of one event type."""
    schema = catalogue.schema_of(event_type, version)
    if schema is None:
        raise SchemaNotFound("The catalogue has no schema for this event type.")
    return schema


# --- wait metrics (三长一短) ----------------------------------------------------------------------

DepartmentQuery = Annotated[
    str | None, Query(max_length=32, pattern=r"^[A-Za-z0-9_-]+$", description="Only this department's visits")
]
QueueQuery = Annotated[
    str | None,
    Query(
        max_length=32, pattern=r"^[A-Za-z0-9_-]+$", description="Only this queue (department, window, room)"
    ),
]


def metrics_range(
    from_date: Annotated[
        date | None, Query(description="First hospital day (Asia/Shanghai), included; default today")
    ] = None,
    to_date: Annotated[
        date | None, Query(description="Last hospital day, included; default from_date")
    ] = None,
) -> MetricsRange:
    """The days asked for; an inverted range, one over 31 days or a day off the calendar is a 400."""
    first = from_date or hospital_date(utcnow())
    try:
        return MetricsRange(from_date=first, to_date=to_date or first)
    except ValidationError as exc:
        message = "; ".join(str(error["msg"]).removeprefix("Value error, ") for error in exc.errors())
        raise InvalidMetricsRange(f"Invalid range: {message}.", max_days=MAX_METRICS_DAYS) from exc


def metrics_grouping(
    group_by: Annotated[
        str | None,
        Query(max_length=64, description="Comma-separated: `department`, `queue`, `hour`; omit for totals"),
    ] = None,
) -> list[GroupBy]:
    names = [name.strip() for name in (group_by or "").split(",") if name.strip()]
    try:
        dimensions = [GroupBy(name) for name in names]
    except ValueError:
        raise BadRequest(
            "group_by takes department, queue and hour, comma-separated.",
            slug="invalid-grouping",
            allowed=[g.value for g in GroupBy],
        ) from None
    return list(dict.fromkeys(dimensions))


RangeDep = Annotated[MetricsRange, Depends(metrics_range)]


@router.get(
    "/wait-metrics",
    dependencies=[require_scope(METRICS_SCOPE)],
    tags=["wait metrics"],
    responses=problem_responses(Forbidden, InvalidMetricsRange, UnknownDepartment),
)
def read_wait_metrics(
    session: SessionDep,
    request: Request,
    period: RangeDep,
    group_by: Annotated[list[GroupBy], Depends(metrics_grouping)],
    department: DepartmentQuery = None,
    queue: QueueQuery = None,
) -> WaitMetrics:
    """Waits (三长一短) of the intervals that began on these days: per interval kind
    (`registration_to_triage`, `registration_to_call`, `queue_wait`, `consultation`, `order_to_payment`,
    `payment_to_result`, `order_to_result`) and group, the count, mean, p90 (nearest rank), max and the
    share over the target (10 minutes), in minutes, and how many are still open. Computed from the log.

    400 `invalid-range` (inverted, over 31 days, off the calendar), `invalid-grouping`, or
    `unknown-department` / `unknown-queue` when no event ever named it.
    """
    return service.wait_metrics(
        session,
        period=period,
        group_by=group_by,
        department=department,
        queue=queue,
        target_minutes=request.app.state.settings.wait_target_minutes,
    )


@router.get(
    "/wait-metrics/tickets",
    dependencies=[require_scope(METRICS_SCOPE)],
    tags=["wait metrics"],
    responses=problem_responses(Forbidden, InvalidMetricsRange, UnknownDepartment),
)
def read_ticket_replays(
    session: SessionDep, period: RangeDep, queue: QueueQuery = None
) -> list[TicketReplay]:
    """Every ticket queued on these days (or in one queue) as it happened: queued, called, service start
    and end; no patient, visit or ticket id. `patientflow simulate --history` replays these."""
    return service.ticket_replays(session, period=period, queue=queue)


@router.get(
    "/wait-metrics/visits/{visit_id}",
    dependencies=[require_scope(METRICS_SCOPE)],
    tags=["wait metrics"],
    responses=problem_responses(Forbidden, VisitNotLogged),
)
def read_visit_waits(visit_id: IdPath, session: SessionDep, request: Request) -> VisitWaits:
    """One visit's intervals (registration → triage and call, each ticket's queue wait and consultation,
    each order's wait to payment and to its final report), finished or still open. 404 when the log has
    no journey event of the visit."""
    return service.visit_waits(
        session, visit_id=visit_id, target_minutes=request.app.state.settings.wait_target_minutes
    )
