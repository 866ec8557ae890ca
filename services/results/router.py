"""Results endpoints (thin: parse, call the service, shape the answer)."""

from collections.abc import Callable, Iterator
from datetime import date
from enum import StrEnum
from functools import partial
from typing import Annotated, Any, TypedDict

from fastapi import APIRouter, Depends, Path, Query, Request, Response, status
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, StreamingResponse
from sqlmodel import Session

from kit.auth import Caller, CallerDep, require_scope
from kit.client import ServiceClient, sibling
from kit.config import app_settings
from kit.database import SessionDep, WriteSessionDep
from kit.errors import (
    BadGateway,
    BadRequest,
    Conflict,
    ServiceUnavailable,
    VisitClosed,
    problem_response,
    problem_responses,
)
from kit.idempotency import IdempotencyKeyHeader, idempotent
from kit.outbox import hold_read
from kit.params import HoldQuery, page_size
from services.results import (
    audit,
    critical,
    lifecycle,
    printing,
    recognition,
    release,
    repository,
    service,
    turnaround,
)
from services.results.config import ResultsSettings
from services.results.errors import (
    BadDateRange,
    CriticalAlreadyAcknowledged,
    CriticalValueNotFound,
    ExternalReportConflict,
    HoldUnchanged,
    LisClientRequired,
    OrderAwaitingPayment,
    OrderNotFound,
    RecognisedResultExists,
    ReportAlreadyFinal,
    ReportAlreadyVerified,
    ReportCancelled,
    ReportNotFinal,
    ReportNotFound,
    ResultInFuture,
    ResultSourceRequired,
    StaffOnly,
    UnknownTest,
    UnknownTestCode,
    VisitNotFound,
)
from services.results.models import IdempotencyRecord
from services.results.release import ReleasePolicy, policy_for
from services.results.renderings import Renderer
from services.results.schemas import (
    BillingCredit,
    CriticalAcknowledgement,
    CriticalStatus,
    CriticalValuePublic,
    DuplicateReportPublic,
    ExternalResultCreate,
    ExternalResultPublic,
    HoldAction,
    LisReport,
    OrderableTestPublic,
    OrderCreate,
    OrderPublic,
    OrderStatus,
    PrintCreate,
    PrintPublic,
    RecognisedResultPublic,
    RecognisedSource,
    RegistrationVisit,
    ReleasedReportPublic,
    ReportAmendment,
    ReportCancellation,
    ReportCreate,
    ReportPublic,
    ReportVerification,
    ResultAccessPublic,
    VisitPrintsPublic,
)


async def note_origin(request: Request, caller: CallerDep) -> None:
    """Every route: the audit rows this request writes name the client's kind and where it came from
    (the X-Forwarded-For the gateway sets; the peer for a sibling's direct call)."""
    audit.note_origin(
        client_kind=caller.kind,
        forwarded_for=request.headers.get("x-forwarded-for"),
        peer=request.client.host if request.client else None,
    )


router = APIRouter(dependencies=[Depends(note_origin)])
MAX_PAGE = 200


# Lookups record who looked, so their GETs need a write session.
AuditedSessionDep = WriteSessionDep
RegistrationDep = Annotated[ServiceClient, Depends(sibling("registration"))]
BillingDep = Annotated[ServiceClient, Depends(sibling("billing"))]
LimitQuery = Annotated[int, page_size(MAX_PAGE)]
# Ids are UUIDs; the bound keeps an oversized path from reaching the audit table's columns.
IdPath = Annotated[str, Path(min_length=1, max_length=36)]
SettingsDep = Annotated[ResultsSettings, Depends(app_settings)]


def app_renderer(request: Request) -> Renderer:
    renderer: Renderer = request.app.state.renderer
    return renderer


RendererDep = Annotated[Renderer, Depends(app_renderer)]


# `async` (here and below) though they await nothing: a plain `def` dependency costs a worker-thread hop.
async def lis_client(caller: CallerDep) -> None:
    """Refuse any client but a LIS/PACS before its body is read (403 before a 422)."""
    lifecycle.require_lis_client(caller)


async def release_policy(caller: CallerDep, settings: SettingsDep) -> ReleasePolicy | None:
    """The release rule a lookup applies: for a patient-facing caller (app, kiosk, phone), or none."""
    return policy_for(caller, require_payment=settings.release_requires_payment)


ReleaseDep = Annotated[ReleasePolicy | None, Depends(release_policy)]


class Lookup(TypedDict):
    """Who looks, as every audited report lookup takes it: the client (audited), the patient it acts
    for, and the release rule a patient-facing caller gets (None: staff see every report)."""

    client: str
    acting_for: str | None
    release: ReleasePolicy | None


# `async def` though it awaits nothing: a plain `def` dependency would cost a worker-thread hop.
async def lookup(caller: CallerDep, release: ReleaseDep) -> Lookup:
    return Lookup(client=caller.subject, acting_for=caller.patient, release=release)


LookupDep = Annotated[Lookup, Depends(lookup)]


class PaperLookup(TypedDict):
    """Who looks, as printing's audited lookups take it (printing applies the release rule itself)."""

    client: str
    acting_for: str | None
    require_payment: bool


async def paper_lookup(caller: CallerDep, settings: SettingsDep) -> PaperLookup:
    return PaperLookup(
        client=caller.subject, acting_for=caller.patient, require_payment=settings.release_requires_payment
    )


PaperLookupDep = Annotated[PaperLookup, Depends(paper_lookup)]
PDF = "application/pdf"
FHIR_JSON = "application/fhir+json"


async def resolve_visit(data: OrderCreate, registration: RegistrationDep) -> RegistrationVisit:
    """The ordered visit as registration knows it: a dependency declared before the session, so the
    call is over before the database gate is taken and no transaction waits on registration."""
    return await service.fetch_visit(registration, visit_id=data.visit_id)


VisitDep = Annotated[RegistrationVisit, Depends(resolve_visit)]


async def resolve_credit(data: OrderCreate, visit: VisitDep, billing: BillingDep) -> BillingCredit | None:
    """Billing's word on a settle-later order's credit, also before the session (None: not asked, or
    billing did not answer; `service.fetch_credit`)."""
    return await service.fetch_credit(billing, visit=visit, test_code=data.test_code)


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
        BadRequest,
        VisitNotFound,
        Conflict,
        VisitClosed,
        RecognisedResultExists,
        UnknownTest,
        BadGateway,
        ServiceUnavailable,
    ),
)
def place_order(
    data: OrderCreate,
    visit: VisitDep,
    credit: Annotated[BillingCredit | None, Depends(resolve_credit)],
    session: SessionDep,
    caller: CallerDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Any:
    """Order a test for a visit. `prepay` visits wait for payment (`awaiting_payment`, `hold_reason`
    prepay); `settle_later` visits are `released` to the lab at once while the test's price fits the
    account's credit, billing says, and wait for payment past it (`hold_reason` credit_limit, event
    `order.held`); `green_channel` visits are always `released` at once. Billing not answering does not
    stop the order: it is released, and held later if billing's `charge.held` arrives before a specimen
    is collected.

    A visit registration has closed is 409 `visit-closed` (a report for an order placed before still
    lands). When the patient has a recognised result of the item (互认, `GET
    /patients/{id}/recognised-results`), 409 `recognised-result-exists` lists them unless the order
    names a `duplicate_reason` (kept, and raised as `order.duplicate_justified`). With an
    `Idempotency-Key`, a retry with the same body gets the first answer back. 503
    `upstream-unavailable` when registration does not answer, 502 `upstream-error` when its answer is
    unusable.
    """

    def run() -> tuple[int, OrderPublic]:
        recognised = recognition.guard_order(session, visit=visit, data=data, settings=settings)
        order = service.place_order(session, visit=visit, data=data, credit=credit)
        recognition.justify(session, order, data, recognised)
        # Its priority, turnaround target and due time (turnaround.py).
        targets = turnaround.Targets.of(settings)
        turnaround.schedule(order, visit=visit, requested=data.priority, targets=targets)
        return status.HTTP_201_CREATED, service.order_public(order)

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
    response_model=OrderPublic,
    responses=problem_responses(OrderNotFound),
)
async def read_order(
    request: Request,
    order_id: IdPath,
    caller: CallerDep,
    wait: HoldQuery = 0,
    while_status: Annotated[
        OrderStatus | None, Query(description="With `wait`: answer once the order's status is another")
    ] = None,
) -> Response:
    """One order and where it stands: `awaiting_payment` (and why: `hold_reason`), `released`,
    `reported`, or `cancelled` (billing reversed its charge before the lab started).

    With `wait` and `while_status` (a lab screen waiting for payment: `while_status=awaiting_payment`),
    the answer is held until the order's status is another, or `wait` seconds; either way it is the
    order as it then stands, so the caller reads `status`, and may ask again."""
    # Core on a reader connection (kit.database), serialised once; woken by the commits that move an
    # order's status, never by the others.
    read = partial(service.read_order, order_id=order_id, acting_for=caller.patient)
    order = await hold_read(
        request,
        read,
        ready=lambda found: while_status is None or found.status != while_status,
        wait=wait if while_status is not None else 0,
        wanted=frozenset({service.ORDER_STATUS_MOVED}),
    )
    return Response(order.model_dump_json(), media_type="application/json")


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
    order_id: IdPath,
    data: ReportCreate,
    session: SessionDep,
    caller: CallerDep,
    response: Response,
    settings: SettingsDep,
) -> ReportPublic:
    """Post the order's report as `registered`, `preliminary` or `final` (with `verified_by`, the
    technician who verified it: a report reaches patients only final and verified). The first post
    creates the report, later ones move the same report forward. 402 while the order awaits payment;
    409 `report-already-final` after the final one (amend it instead). Emits `report.preliminary` or
    `report.final`, and `report.critical` when it brings a critical value (危急值)."""
    report = lifecycle.post_report(
        session,
        order_id=order_id,
        data=data,
        reported_by=caller.subject,
        require_payment=settings.release_requires_payment,
    )
    recognition.stamp_report(session, report, settings)
    response.headers["Location"] = f"/v1/reports/{report.id}"
    return service.report_public(report)


@router.get(
    "/visits/{visit_id}/reports",
    dependencies=[require_scope("results:read", patients=True)],
    tags=["reports"],
)
def read_visit_reports(
    visit_id: IdPath, session: AuditedSessionDep, looking: LookupDep, limit: LimitQuery = 100
) -> list[ReportPublic]:
    """A visit's reports, newest first; an app, kiosk or phone line gets the released ones only. Every
    lookup is recorded in the result-access audit."""
    reports = service.visit_reports(session, visit_id=visit_id, limit=limit, **looking)
    return [service.report_public(r) for r in reports]


@router.get(
    "/patients/{patient_id}/reports",
    dependencies=[require_scope("results:read", patients=True)],
    tags=["reports"],
)
def read_patient_reports(
    patient_id: IdPath, session: AuditedSessionDep, looking: LookupDep, limit: LimitQuery = 100
) -> list[ReportPublic]:
    """A patient's reports, newest first; an app, kiosk or phone line gets the released ones only.
    Every lookup is recorded in the result-access audit."""
    reports = service.patient_reports(session, patient_id=patient_id, limit=limit, **looking)
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
    looking: LookupDep,
    patient_id: Annotated[
        str | None,
        Query(max_length=36, description="Only if it is this patient's (a kiosk's verified patient)"),
    ] = None,
) -> Any:
    """One report, audited. "Not found", "not this patient's" and, for an app, kiosk or phone line,
    "not released" (not final, not verified, withheld, or unpaid where the hospital requires it) get
    the same 404."""
    report = service.read_report(session, report_id=report_id, patient_id=patient_id, **looking)
    if report is None:
        # Returned, not raised: raising would roll back the audit row of the failed lookup.
        return problem_response(ReportNotFound("No such report.").to_problem())
    return service.report_public(report)


class AuditFormat(StrEnum):
    json = "json"
    fhir = "fhir"  # a FHIR R4 Bundle of AuditEvent resources


@router.get(
    "/audit/result-access",
    dependencies=[require_scope("audit:read")],
    tags=["audit"],
    response_model=list[ResultAccessPublic],
    responses={200: {"content": {FHIR_JSON: {}}}},
)
def read_result_access(
    session: SessionDep,
    patient_id: Annotated[str | None, Query(max_length=36)] = None,
    limit: Annotated[int, page_size(500)] = 100,
    format: AuditFormat = AuditFormat.json,
) -> Any:
    """The result-access audit trail, newest first (for administrators): every read, print and refusal,
    with the client, its kind, the patient acted for and the address the request came from.
    `format=fhir`: the same rows as a FHIR R4 `Bundle` of `AuditEvent`s (`application/fhir+json`)."""
    rows = repository.list_result_access(session, patient_id=patient_id, limit=limit)
    if format is AuditFormat.fhir:
        return JSONResponse(audit.audit_bundle(rows), media_type=FHIR_JSON)
    return [ResultAccessPublic.model_validate(r, from_attributes=True) for r in rows]


@router.post(
    "/lis/reports",
    dependencies=[require_scope("results:write"), Depends(lis_client)],
    tags=["reports"],
    openapi_extra={"x-client-kinds": ["lis"]},
    responses=problem_responses(
        LisClientRequired,
        OrderNotFound,
        OrderAwaitingPayment,
        ExternalReportConflict,
        ReportAlreadyFinal,
        ReportNotFinal,
        ReportCancelled,
    ),
)
def intake_lis_report(
    data: LisReport, session: SessionDep, caller: CallerDep, response: Response, settings: SettingsDep
) -> ReportPublic:
    """A LIS/PACS (client kind `lis`) posts or updates its report by its own `external_id`: 201 when
    this created it, 200 when it updated it or nothing changed (a repeat is harmless, and two posts
    racing make one report). Any status; after final, `amended` or `corrected` (readers of the old
    version each get `report.amended_notice`) or `cancelled`. 403 `lis-client-required` for other
    clients; 409 when the id names another order's report or the order has a report from elsewhere."""
    report, created, _ = lifecycle.intake_lis_report(
        session, data=data, caller=caller, require_payment=settings.release_requires_payment
    )
    recognition.stamp_report(session, report, settings)
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    response.headers["Location"] = f"/v1/reports/{report.id}"
    return service.report_public(report)


@router.post(
    "/reports/{report_id}/verification",
    dependencies=[require_scope("results:write")],
    tags=["reports"],
    responses=problem_responses(ReportNotFound, ReportNotFinal, ReportAlreadyVerified),
)
def verify_report(
    report_id: IdPath, data: ReportVerification, session: SessionDep, settings: SettingsDep
) -> ReportPublic:
    """Record the technician who verified (审核) a final report posted without one; 409 if not final or
    already verified."""
    report = lifecycle.verify_report(
        session, report_id=report_id, data=data, require_payment=settings.release_requires_payment
    )
    return service.report_public(report)


@router.post(
    "/reports/{report_id}/amendments",
    dependencies=[require_scope("results:write")],
    tags=["reports"],
    responses=problem_responses(ReportNotFound, ReportNotFinal, ReportCancelled),
)
def amend_report(
    report_id: IdPath, data: ReportAmendment, session: SessionDep, caller: CallerDep, settings: SettingsDep
) -> ReportPublic:
    """Amend or correct a final report: its whole new content (verified again by `verified_by`) and the
    reason. The report keeps its id, its version goes up, the old content is kept, and each reader of
    the old version (the result-access audit) gets one `report.amended_notice`."""
    report = lifecycle.amend_report(
        session,
        report_id=report_id,
        data=data,
        reported_by=caller.subject,
        require_payment=settings.release_requires_payment,
    )
    return service.report_public(report)


@router.post(
    "/reports/{report_id}/cancellation",
    dependencies=[require_scope("results:write")],
    tags=["reports"],
    responses=problem_responses(ReportNotFound, ReportCancelled),
)
def cancel_report(
    report_id: IdPath, data: ReportCancellation, session: SessionDep, caller: CallerDep
) -> ReportPublic:
    """Cancel (作废) a report, with the reason; the order goes back to the lab, and readers of a final
    one are notified (`report.amended_notice`, status `cancelled`)."""
    report = lifecycle.cancel_report(session, report_id=report_id, data=data, cancelled_by=caller.subject)
    return service.report_public(report)


@router.post(
    "/reports/{report_id}/withhold",
    dependencies=[require_scope("orders:write")],
    tags=["reports"],
    responses=problem_responses(ReportNotFound, HoldUnchanged),
)
def withhold_report(
    report_id: IdPath, data: HoldAction, session: SessionDep, caller: CallerDep, settings: SettingsDep
) -> ReportPublic:
    """A doctor withholds the report from the patient (暂缓发布: e.g. to tell them in person), with the
    reason; staff still see it. 409 `hold-unchanged` if already withheld."""
    return _set_withheld(session, report_id, data, caller, settings, withhold=True)


@router.post(
    "/reports/{report_id}/unwithhold",
    dependencies=[require_scope("orders:write")],
    tags=["reports"],
    responses=problem_responses(ReportNotFound, HoldUnchanged),
)
def unwithhold_report(
    report_id: IdPath, data: HoldAction, session: SessionDep, caller: CallerDep, settings: SettingsDep
) -> ReportPublic:
    """Lift a doctor's hold, with the reason: the report reaches the patient again if released."""
    return _set_withheld(session, report_id, data, caller, settings, withhold=False)


def _set_withheld(
    session: Session,
    report_id: str,
    data: HoldAction,
    caller: Caller,
    settings: ResultsSettings,
    *,
    withhold: bool,
) -> ReportPublic:
    """Both hold routes: the hold set or lifted by the calling client."""
    report = lifecycle.set_withheld(
        session,
        report_id=report_id,
        withhold=withhold,
        data=data,
        client=caller.subject,
        require_payment=settings.release_requires_payment,
    )
    return service.report_public(report)


@router.get("/critical-values", dependencies=[require_scope("results:read")], tags=["critical values"])
def list_critical_values(
    session: SessionDep,
    status: CriticalStatus = CriticalStatus.pending,
    department: Annotated[str | None, Query(max_length=32)] = None,
    limit: LimitQuery = 100,
) -> list[CriticalValuePublic]:
    """Critical values (危急值), oldest first: `pending` (the default: not yet acknowledged, escalated or
    not), `acknowledged` or `all`; `department` is the ordering department."""
    values = critical.list_values(session, status=status, department=department, limit=limit)
    return [critical.critical_public(v) for v in values]


@router.post(
    "/critical-values/{critical_id}/acknowledgement",
    dependencies=[require_scope("critical:ack")],
    tags=["critical values"],
    responses=problem_responses(CriticalValueNotFound, CriticalAlreadyAcknowledged),
)
def acknowledge_critical_value(
    critical_id: IdPath, data: CriticalAcknowledgement, session: SessionDep, caller: CallerDep
) -> CriticalValuePublic:
    """A clinician (scope `critical:ack`) acknowledges a critical value (危急值接收确认), naming
    themselves; emits `critical.acknowledged`. 409 if it already was."""
    value = critical.acknowledge(session, critical_id=critical_id, data=data, client=caller.subject)
    return critical.critical_public(value)


# --- kiosk printing and patient reading (printing.py) ---

PDF_RESPONSE: dict[int | str, dict[str, Any]] = {200: {"content": {PDF: {}}, "description": "A PDF"}}


def _pdf(render: Callable[[], bytes] | None, filename: str) -> Response:
    """The PDF, fetched or rendered only as the answer is sent: after the audit row is committed and the
    database gate released, so a ~0.1 s render never holds SQLite's one writer (renderings.py: the
    stored paper of the report's version, stamped for a print)."""
    if render is None:
        # Returned, not raised: raising would roll back the audit row of the refused look.
        return problem_response(ReportNotFound("No such report.").to_problem())

    def body() -> Iterator[bytes]:
        yield render()

    disposition = f'inline; filename="{filename}.pdf"'
    return StreamingResponse(body(), media_type=PDF, headers={"content-disposition": disposition})


@router.get(
    "/patients/{patient_id}/released-reports",
    dependencies=[require_scope("results:read", patients=True)],
    tags=["printing"],
)
def read_released_reports(
    patient_id: IdPath, session: AuditedSessionDep, looking: PaperLookupDep, limit: LimitQuery = 100
) -> list[ReleasedReportPublic]:
    """The reports released to the patient (what a kiosk, app or phone may show), newest first, each
    with how many copies of its version were printed and whose it is, masked (`patient_name_masked`,
    张**). Audited; another patient's is an empty list."""
    found = printing.released_reports(session, patient_id=patient_id, limit=limit, **looking)
    patients = printing.paper_patients(session, [report for report, _ in found])
    return [printing.released_public(r, copies, patients.get(r.patient_id)) for r, copies in found]


@router.get(
    "/reports/{report_id}/pdf",
    dependencies=[require_scope("results:read", patients=True)],
    tags=["printing"],
    response_class=Response,
    responses={**PDF_RESPONSE, **problem_responses(ReportNotFound)},
)
def read_report_pdf(
    report_id: IdPath, session: AuditedSessionDep, looking: PaperLookupDep, renderer: RendererDep
) -> Response:
    """A released report as a PDF to read (an app's download), naming the patient (姓名, 性别, 年龄); no
    print is recorded. Audited. A missing report, another patient's, or one not released yet are the
    same 404. Asks registration nothing: it prints while registration is down."""
    report = printing.report_to_read(session, report_id=report_id, **looking)
    patient = printing.paper_patient(session, report) if report else None
    return _pdf(partial(renderer.pdf, report, patient=patient) if report else None, f"report-{report_id}")


@router.post(
    "/reports/{report_id}/prints",
    dependencies=[require_scope("results:read", patients=True)],
    status_code=status.HTTP_201_CREATED,
    response_model=PrintPublic,
    tags=["printing"],
    responses=problem_responses(BadRequest, ReportNotFound, Conflict),
)
def print_report(
    report_id: IdPath,
    session: AuditedSessionDep,
    caller: CallerDep,
    looking: PaperLookupDep,
    data: PrintCreate | None = None,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Any:
    """Print one copy of a released report (a kiosk): the first copy of its version is the original,
    later ones are reprints marked 副本. Fetch the paper from `pdf_url`. Raises `report.printed`;
    audited. With an `Idempotency-Key` a retry gets the same copy back, never a second one. A missing,
    another patient's or unreleased report is 404 (and nothing is printed)."""

    def run() -> tuple[int, PrintPublic | None]:
        printed = printing.print_report(session, report_id=report_id, client_kind=caller.kind, **looking)
        return status.HTTP_201_CREATED, printing.print_public(printed) if printed else None

    if idempotency_key is None:
        code, body = run()
    else:
        # A refusal is not stored under the key: the audit row stays, and a retry is refused again.
        if not printing.printable(
            session,
            report_id=report_id,
            acting_for=looking["acting_for"],
            require_payment=looking["require_payment"],
        ):
            code, body = run()
        else:
            payload = {"report_id": report_id, **(data or PrintCreate()).model_dump()}
            return idempotent(
                session,
                IdempotencyRecord,
                client=caller.subject,
                key=idempotency_key,
                payload=payload,
                run=run,
            )
    if body is None:
        return problem_response(ReportNotFound("No such report.").to_problem())
    return JSONResponse(jsonable_encoder(body), status_code=code)


@router.post(
    "/visits/{visit_id}/prints",
    dependencies=[require_scope("results:read", patients=True)],
    status_code=status.HTTP_201_CREATED,
    response_model=VisitPrintsPublic,
    tags=["printing"],
    responses=problem_responses(BadRequest, Conflict),
)
def print_visit(
    visit_id: IdPath,
    session: AuditedSessionDep,
    caller: CallerDep,
    looking: PaperLookupDep,
    data: PrintCreate | None = None,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Any:
    """Print every released report of a visit (the slip's) not printed before: one print each, oldest
    first, every PDF at its `pdf_url`. Nothing left is an empty list (another patient's visit too,
    audited as refused). With an `Idempotency-Key` a retry gets the same prints back."""

    def run() -> tuple[int, VisitPrintsPublic]:
        prints = printing.print_visit(session, visit_id=visit_id, client_kind=caller.kind, **looking)
        return status.HTTP_201_CREATED, VisitPrintsPublic(
            visit_id=visit_id, prints=[printing.print_public(p) for p in prints]
        )

    if idempotency_key is None:
        return run()[1]
    payload = {"visit_id": visit_id, **(data or PrintCreate()).model_dump()}
    return idempotent(
        session, IdempotencyRecord, client=caller.subject, key=idempotency_key, payload=payload, run=run
    )


@router.get(
    "/prints/{print_id}/pdf",
    dependencies=[require_scope("results:read", patients=True)],
    tags=["printing"],
    response_class=Response,
    responses={**PDF_RESPONSE, **problem_responses(ReportNotFound)},
)
def read_print_pdf(
    print_id: IdPath, session: AuditedSessionDep, looking: PaperLookupDep, renderer: RendererDep
) -> Response:
    """The PDF of one printed copy, naming the patient (a reprint says 副本 at the top); fetching it
    again prints nothing new. Audited; a missing print, another patient's, or one whose report is no
    longer released (withheld or cancelled since) is 404."""
    found = printing.printed_copy(session, print_id=print_id, **looking)
    patient = printing.paper_patient(session, found[0]) if found else None
    render = partial(renderer.pdf, found[0], found[1], patient=patient) if found else None
    return _pdf(render, f"print-{print_id}")


# --- mutual recognition (互认, recognition.py) ---


# A patient-facing client (app, kiosk, phone) never reaches these: they are for ordering doctors.
staff_only = release.staff_only("This is for staff ordering tests, not patient-facing clients.")


@router.get(
    "/patients/{patient_id}/recognised-results",
    dependencies=[require_scope("results:read"), Depends(staff_only)],
    tags=["recognition"],
    responses=problem_responses(StaffOnly, UnknownTestCode),
)
def read_recognised_results(
    patient_id: IdPath,
    session: AuditedSessionDep,
    caller: CallerDep,
    settings: SettingsDep,
    test_code: Annotated[str, Query(min_length=1, max_length=16)],
) -> list[RecognisedResultPublic]:
    """Before ordering (互认): the patient's final, verified results of `test_code` still within the item's
    validity window, from this hospital or institutions of the same grade or higher, results received
    from other hospitals included; newest first, empty for an item that does not take part. Audited."""
    found = recognition.recognised_results(
        session, patient_id=patient_id, test_code=test_code, settings=settings, in_query=True
    )
    own = [r.id for r in found if r.source is RecognisedSource.report]
    service._audit(
        session,
        client=caller.subject,
        acting_for=None,
        action="recognised_results",
        outcome="found" if found else "empty",
        reports=repository.reports_by_id(session, own),
        patient_id=patient_id,
    )
    return found


@router.post(
    "/external-results",
    dependencies=[require_scope("results:write")],
    tags=["recognition"],
    openapi_extra={"x-client-kinds": ["lis", "his"]},
    responses=problem_responses(ResultSourceRequired, UnknownTest, ResultInFuture),
)
def post_external_result(
    data: ExternalResultCreate, session: SessionDep, caller: CallerDep, response: Response
) -> ExternalResultPublic:
    """A LIS/PACS or HIS posts a result received from another hospital (外院结果) for recognition: 201
    when this created it, 200 when the same (institution_code, external_id) was posted before (its
    content is replaced, never a second row). 403 for other clients."""
    result, created = recognition.intake_external(session, data=data, caller=caller)
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return ExternalResultPublic.model_validate(result, from_attributes=True)


@router.get(
    "/recognition/duplicates",
    dependencies=[require_scope("results:read"), Depends(staff_only)],
    tags=["recognition"],
    responses=problem_responses(StaffOnly, BadDateRange),
)
def read_duplicates(session: SessionDep, from_date: date, to_date: date) -> DuplicateReportPublic:
    """Tests ordered again although a recognised result existed, placed from `from_date` to `to_date`
    (hospital days, inclusive), counted by reason and by ordering department."""
    return recognition.duplicates_report(session, from_date=from_date, to_date=to_date)
