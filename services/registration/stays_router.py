"""Registration endpoints for wards and beds, inpatient stays and closing visits (thin, as router.py)."""

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Query, status
from pydantic import BaseModel
from sqlmodel import Session

from kit.auth import Caller, CallerDep, require_scope
from kit.clock import utcnow
from kit.config import app_settings
from kit.database import SessionDep
from kit.errors import BadRequest, Conflict, UnprocessableContent, problem_responses
from kit.idempotency import IdempotencyKeyHeader, idempotent
from services.registration import closing, stays
from services.registration.config import RegistrationSettings
from services.registration.errors import (
    AdmissionRefused,
    BedOccupied,
    CloseRefused,
    DuplicateWard,
    NotAdmitted,
    StayNotFound,
    UnknownBed,
    VisitClosed,
    VisitNotFound,
    WardNotFound,
)
from services.registration.models import IdempotencyRecord
from services.registration.schemas import (
    AdmissionCreate,
    BedCreate,
    DischargeCreate,
    StayPublic,
    TransferCreate,
    VisitPublic,
    WardCreate,
    WardPublic,
)
from services.registration.service import get_visit

router = APIRouter()
SettingsDep = Annotated[RegistrationSettings, Depends(app_settings)]
WardCodePath = Annotated[str, Path(max_length=32, pattern=r"^[a-z0-9-]+$")]
VisitIdPath = Annotated[str, Path(max_length=36)]
# With an Idempotency-Key: 400 a malformed key, 422 the key reused with another body, 409 a twin in flight.
KEYED = (BadRequest, UnprocessableContent, Conflict)


def once(
    session: Session,
    caller: Caller,
    key: str | None,
    *,
    operation: str,
    visit_id: str,
    body: BaseModel | None,
    status_code: int,
    run: Callable[[], BaseModel],
) -> Any:
    """`run`, or with an Idempotency-Key the first answer to it again (a retried admission, transfer,
    discharge or close is not done twice, and gets the first answer back rather than a 409)."""
    if key is None:
        return run()
    payload = {"operation": operation, "visit_id": visit_id, "body": body}
    return idempotent(
        session,
        IdempotencyRecord,
        client=caller.subject,
        key=key,
        payload=payload,
        run=lambda: (status_code, run()),
    )


@router.post(
    "/wards",
    dependencies=[require_scope("registration:write")],
    status_code=status.HTTP_201_CREATED,
    tags=["wards"],
    responses=problem_responses(DuplicateWard),
)
def create_ward(data: WardCreate, session: SessionDep) -> WardPublic:
    """Add a ward (病区) of a department with its beds, each with its class (general, double, single,
    icu: what billing prices the bed by). A ward code already taken, or a bed code twice, is 409."""
    return stays.create_ward(session, data=data)


@router.post(
    "/wards/{ward_code}/beds",
    dependencies=[require_scope("registration:write")],
    status_code=status.HTTP_201_CREATED,
    tags=["wards"],
    responses=problem_responses(WardNotFound, DuplicateWard),
)
def add_bed(ward_code: WardCodePath, data: BedCreate, session: SessionDep) -> WardPublic:
    """Add a bed to a ward; its code must be new in the ward (409)."""
    return stays.add_bed(session, ward_code=ward_code, data=data)


@router.get("/wards", dependencies=[require_scope("registration:read")], tags=["wards"])
def read_wards(
    session: SessionDep,
    department: Annotated[str | None, Query(max_length=32, pattern=r"^[a-z0-9-]+$")] = None,
) -> list[WardPublic]:
    """Wards (of one department, if given) with each bed and the visit lying in it (床位一览)."""
    return stays.list_wards(session, department=department)


@router.get(
    "/wards/{ward_code}",
    dependencies=[require_scope("registration:read")],
    tags=["wards"],
    responses=problem_responses(WardNotFound),
)
def read_ward(ward_code: WardCodePath, session: SessionDep) -> WardPublic:
    """One ward with its beds and who lies in them."""
    return stays.ward_view(session, ward_code=ward_code)


@router.post(
    "/visits/{visit_id}/admission",
    dependencies=[require_scope("registration:write")],
    status_code=status.HTTP_201_CREATED,
    tags=["stays"],
    response_model=StayPublic,
    responses=problem_responses(
        *KEYED, VisitNotFound, VisitClosed, AdmissionRefused, UnknownBed, BedOccupied
    ),
)
def admit(
    visit_id: VisitIdPath,
    data: AdmissionCreate,
    session: SessionDep,
    settings: SettingsDep,
    caller: CallerDep,
    key: IdempotencyKeyHeader = None,
) -> Any:
    """Admit an outpatient or emergency visit (入院) to a ward's bed.

    The visit becomes `inpatient` in place: same id, same payment mode (a green channel carries over),
    same billing account. An emergency (observation) patient is admitted within
    `emergency_admission_hours` (24) of the emergency visit, later is 409 `admission-window-passed`.
    409 `bed-occupied` when someone lies in the bed (one patient per bed, kept by the database),
    `already-admitted`, `visit-closed`; 422 `unknown-bed`. With an `Idempotency-Key`, a retry gets the
    first answer back. Emits `visit.admitted`.
    """

    def run() -> StayPublic:
        by = caller.subject
        return stays.admit(
            session, visit_id=visit_id, data=data, recorded_by=by, now=utcnow(), settings=settings
        )

    return once(
        session, caller, key, operation="admission", visit_id=visit_id, body=data, status_code=201, run=run
    )


@router.post(
    "/visits/{visit_id}/transfers",
    dependencies=[require_scope("registration:write")],
    status_code=status.HTTP_201_CREATED,
    tags=["stays"],
    response_model=StayPublic,
    responses=problem_responses(*KEYED, VisitNotFound, VisitClosed, NotAdmitted, UnknownBed, BedOccupied),
)
def transfer(
    visit_id: VisitIdPath,
    data: TransferCreate,
    session: SessionDep,
    caller: CallerDep,
    key: IdempotencyKeyHeader = None,
) -> Any:
    """Transfer an admitted patient to another bed, of this department or another (转科 / 转床), with the
    handover note (交接记录); each transfer is kept in the stay's `movements`.

    409 `not-admitted`, `visit-closed`, `bed-occupied`, `same-bed`; 422 `unknown-bed`. With an
    `Idempotency-Key`, a retry gets the first answer back (one transfer). Emits `visit.transferred`.
    """

    def run() -> StayPublic:
        return stays.transfer(session, visit_id=visit_id, data=data, recorded_by=caller.subject, now=utcnow())

    return once(
        session, caller, key, operation="transfer", visit_id=visit_id, body=data, status_code=201, run=run
    )


@router.post(
    "/visits/{visit_id}/discharge",
    dependencies=[require_scope("registration:write")],
    tags=["stays"],
    response_model=StayPublic,
    responses=problem_responses(*KEYED, VisitNotFound, VisitClosed, NotAdmitted),
)
def discharge(
    visit_id: VisitIdPath,
    session: SessionDep,
    caller: CallerDep,
    data: Annotated[DischargeCreate | None, Body()] = None,
    key: IdempotencyKeyHeader = None,
) -> Any:
    """Discharge an admitted patient (出院): the bed is freed and the visit closed.

    Billing reads `visit.discharged` and marks the account for discharge settlement (出院结算), which the
    cashier then settles with every charge caused before it. 409 `not-admitted`, `visit-closed`. With
    an `Idempotency-Key`, a retry gets the first answer back. Emits `visit.discharged` and `visit.closed`.
    """
    body = data or DischargeCreate()

    def run() -> StayPublic:
        return stays.discharge(
            session, visit_id=visit_id, data=body, recorded_by=caller.subject, now=utcnow()
        )

    return once(
        session, caller, key, operation="discharge", visit_id=visit_id, body=body, status_code=200, run=run
    )


@router.get(
    "/visits/{visit_id}/stay",
    dependencies=[require_scope("registration:read", patients=True)],
    tags=["stays"],
    responses=problem_responses(VisitNotFound, StayNotFound),
)
def read_stay(visit_id: VisitIdPath, session: SessionDep, caller: CallerDep) -> StayPublic:
    """The visit's inpatient stay: where the patient lies now and every movement (admission, transfers
    with their handover notes, discharge). 404 for a visit never admitted."""
    get_visit(session, visit_id=visit_id, acting_for=caller.patient)
    return stays.stay_view(session, visit_id=visit_id)


@router.post(
    "/visits/{visit_id}/close",
    dependencies=[require_scope("registration:write")],
    tags=["visits"],
    response_model=VisitPublic,
    # No body, so a key cannot be reused with another one: no 422.
    responses=problem_responses(BadRequest, Conflict, VisitNotFound, VisitClosed, CloseRefused),
)
def close_visit(
    visit_id: VisitIdPath, session: SessionDep, caller: CallerDep, key: IdempotencyKeyHeader = None
) -> Any:
    """Close an outpatient or emergency visit at the desk (就诊结束): it takes no new work anywhere
    (409 `visit-closed` at triage, results and billing); work already done still lands.

    409 `visit-closed` when already closed, `admitted` for an inpatient stay (discharge it). With an
    `Idempotency-Key`, a retry gets the first answer back. Emits `visit.closed`.
    """

    def run() -> VisitPublic:
        visit = closing.close_at_desk(session, visit_id=visit_id, now=utcnow())
        return VisitPublic.model_validate(visit, from_attributes=True)

    return once(
        session,
        caller=caller,
        key=key,
        operation="close",
        visit_id=visit_id,
        body=None,
        status_code=200,
        run=run,
    )
