"""Results endpoints (thin: parse, call the service, shape the answer)."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Response, status

from kit.auth import CallerDep, require_scope
from kit.client import ServiceClient, sibling
from kit.database import SessionDep, WriteSessionDep
from kit.errors import (
    BadGateway,
    BadRequest,
    Conflict,
    ServiceUnavailable,
    problem_response,
    problem_responses,
)
from kit.idempotency import IdempotencyKeyHeader, idempotent
from kit.params import page_size
from services.results import repository, service
from services.results.errors import (
    OrderAwaitingPayment,
    OrderNotFound,
    ReportAlreadyFinal,
    ReportNotFound,
    UnknownTest,
    VisitClosed,
    VisitNotFound,
)
from services.results.models import IdempotencyRecord
from services.results.schemas import (
    OrderableTestPublic,
    OrderCreate,
    OrderPublic,
    OrderStatus,
    RegistrationVisit,
    ReportCreate,
    ReportPublic,
    ResultAccessPublic,
)

router = APIRouter()
MAX_PAGE = 200


# Lookups record who looked, so their GETs need a write session.
AuditedSessionDep = WriteSessionDep
RegistrationDep = Annotated[ServiceClient, Depends(sibling("registration"))]
LimitQuery = Annotated[int, page_size(MAX_PAGE)]
# Ids are UUIDs; the bound keeps an oversized path from reaching the audit table's columns.
IdPath = Annotated[str, Path(min_length=1, max_length=36)]


async def resolve_visit(data: OrderCreate, registration: RegistrationDep) -> RegistrationVisit:
    """The ordered visit as registration knows it: a dependency declared before the session, so the
    call is over before the database gate is taken and no transaction waits on registration."""
    return await service.fetch_visit(registration, visit_id=data.visit_id)


@router.get("/tests", dependencies=[require_scope("results:read", patients=True)], tags=["tests"])
def list_tests(session: SessionDep) -> list[OrderableTestPublic]:
    """The lab and imaging tests results can run; `code` is the billing catalogue code."""
    tests = service.list_orderable_tests(session)
    return [OrderableTestPublic.model_validate(t, from_attributes=True) for t in tests]


@router.post(
    "/orders",
    dependencies=[require_scope("orders:write")],
    status_code=status.HTTP_201_CREATED,
    response_model=OrderPublic,
    tags=["orders"],
    # BadRequest and Conflict are kit.idempotency's: a malformed key, or a twin still in flight.
    responses=problem_responses(
        BadRequest, VisitNotFound, Conflict, VisitClosed, UnknownTest, BadGateway, ServiceUnavailable
    ),
)
def place_order(
    data: OrderCreate,
    visit: Annotated[RegistrationVisit, Depends(resolve_visit)],
    session: SessionDep,
    caller: CallerDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Any:
    """Order a test for a visit. `prepay` visits wait for payment (`awaiting_payment`); `settle_later` and
    `green_channel` visits are `released` to the lab at once.

    A visit registration has closed is 409 `visit-closed` (a report for an order placed before still
    lands). With an `Idempotency-Key`, a retry with the same body gets the first answer back. 503
    `upstream-unavailable` when registration does not answer, 502 `upstream-error` when its answer is
    unusable.
    """

    def run() -> tuple[int, OrderPublic]:
        return status.HTTP_201_CREATED, service.order_public(
            service.place_order(session, visit=visit, data=data)
        )

    if idempotency_key is None:
        return run()[1]
    return idempotent(
        session, IdempotencyRecord, client=caller.subject, key=idempotency_key, payload=data, run=run
    )


@router.get("/orders", dependencies=[require_scope("results:read")], tags=["orders"])
def list_orders(
    session: SessionDep, status: OrderStatus | None = None, limit: LimitQuery = 50
) -> list[OrderPublic]:
    """Orders, oldest first; `status=released` is the lab's worklist."""
    orders = repository.list_orders(session, status=status.value if status else None, limit=limit)
    return [service.order_public(o) for o in orders]


@router.get(
    "/orders/{order_id}",
    dependencies=[require_scope("results:read", patients=True)],
    tags=["orders"],
    responses=problem_responses(OrderNotFound),
)
def read_order(order_id: IdPath, session: SessionDep, caller: CallerDep) -> OrderPublic:
    """One order and where it stands: `awaiting_payment`, `released` or `reported`."""
    return service.order_public(service.get_order(session, order_id=order_id, acting_for=caller.patient))


@router.get(
    "/visits/{visit_id}/orders", dependencies=[require_scope("results:read", patients=True)], tags=["orders"]
)
def read_visit_orders(visit_id: IdPath, session: SessionDep, caller: CallerDep) -> list[OrderPublic]:
    """A visit's orders, oldest first (empty when results has none for it)."""
    orders = service.visit_orders(session, visit_id=visit_id, acting_for=caller.patient)
    return [service.order_public(o) for o in orders]


@router.post(
    "/orders/{order_id}/reports",
    dependencies=[require_scope("results:write")],
    status_code=status.HTTP_201_CREATED,
    tags=["reports"],
    responses=problem_responses(OrderNotFound, OrderAwaitingPayment, ReportAlreadyFinal),
)
def post_report(
    order_id: IdPath, data: ReportCreate, session: SessionDep, caller: CallerDep, response: Response
) -> ReportPublic:
    """Post a `preliminary` or `final` report. 402 while the order awaits payment; 409 after the final one."""
    report = service.post_report(session, order_id=order_id, data=data, reported_by=caller.subject)
    response.headers["Location"] = f"/v1/reports/{report.id}"
    return service.report_public(report)


@router.get(
    "/visits/{visit_id}/reports",
    dependencies=[require_scope("results:read", patients=True)],
    tags=["reports"],
)
def read_visit_reports(
    visit_id: IdPath, session: AuditedSessionDep, caller: CallerDep, limit: LimitQuery = 100
) -> list[ReportPublic]:
    """A visit's reports, newest first. Every lookup is recorded in the result-access audit."""
    reports = service.visit_reports(
        session, visit_id=visit_id, client=caller.subject, limit=limit, acting_for=caller.patient
    )
    return [service.report_public(r) for r in reports]


@router.get(
    "/patients/{patient_id}/reports",
    dependencies=[require_scope("results:read", patients=True)],
    tags=["reports"],
)
def read_patient_reports(
    patient_id: IdPath, session: AuditedSessionDep, caller: CallerDep, limit: LimitQuery = 100
) -> list[ReportPublic]:
    """A patient's reports, newest first. Every lookup is recorded in the result-access audit."""
    reports = service.patient_reports(
        session, patient_id=patient_id, client=caller.subject, limit=limit, acting_for=caller.patient
    )
    return [service.report_public(r) for r in reports]


@router.get(
    "/reports/{report_id}",
    dependencies=[require_scope("results:read", patients=True)],
    response_model=ReportPublic,
    tags=["reports"],
    responses=problem_responses(ReportNotFound),
)
def read_report(
    report_id: IdPath,
    session: AuditedSessionDep,
    caller: CallerDep,
    patient_id: Annotated[
        str | None,
        Query(max_length=36, description="Only if it is this patient's (a kiosk's verified patient)"),
    ] = None,
) -> Any:
    """One report, audited. "Not found" and "not this patient's" get the same 404."""
    report = service.read_report(
        session, report_id=report_id, patient_id=patient_id, client=caller.subject, acting_for=caller.patient
    )
    if report is None:
        # Returned, not raised: raising would roll back the audit row of the failed lookup.
        return problem_response(ReportNotFound("No such report.").to_problem())
    return service.report_public(report)


@router.get("/audit/result-access", dependencies=[require_scope("audit:read")], tags=["audit"])
def read_result_access(
    session: SessionDep, patient_id: str | None = None, limit: Annotated[int, page_size(500)] = 100
) -> list[ResultAccessPublic]:
    """The result-access audit trail, newest first (for administrators)."""
    rows = repository.list_result_access(session, patient_id=patient_id, limit=limit)
    return [ResultAccessPublic.model_validate(r, from_attributes=True) for r in rows]
