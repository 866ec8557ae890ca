"""Registration endpoints (thin: parse, call the service, shape the answer)."""

from typing import Annotated

from fastapi import APIRouter, Depends, Response, status

from kit.auth import CallerDep, require_scope
from kit.config import app_settings
from kit.database import SessionDep
from kit.errors import problem_responses
from services.registration import service
from services.registration.config import RegistrationSettings
from services.registration.errors import (
    DuplicatePatient,
    InvalidIdNumber,
    MergeRefused,
    PatientNotFound,
    VisitNotFound,
    VisitRefused,
)
from services.registration.repository import list_visits
from services.registration.schemas import (
    MergePublic,
    MergeRequest,
    PatientCreate,
    PatientPublic,
    VisitCreate,
    VisitPublic,
)

router = APIRouter()
SettingsDep = Annotated[RegistrationSettings, Depends(app_settings)]


@router.post(
    "/patients",
    dependencies=[require_scope("registration:write")],
    status_code=status.HTTP_201_CREATED,
    tags=["patients"],
    responses=problem_responses(InvalidIdNumber, DuplicatePatient),
)
def register_patient(data: PatientCreate, session: SessionDep, response: Response) -> PatientPublic:
    """Register a patient by resident identity number, or an unidentified emergency patient.

    The identity number is validated with its GB 11643 check character. A number already on file
    answers 409 with `existing_patient_id`.
    """
    patient = service.register_patient(session, data=data)
    response.headers["Location"] = f"/v1/patients/{patient.id}"
    return service.to_public(patient)


@router.get(
    "/patients/{patient_id}",
    dependencies=[require_scope("registration:read", patients=True)],
    tags=["patients"],
    responses=problem_responses(PatientNotFound),
)
def read_patient(patient_id: str, session: SessionDep, caller: CallerDep) -> PatientPublic:
    """One patient, identity number masked. A merged record names the record it was merged into."""
    return service.to_public(service.get_patient(session, patient_id=patient_id, acting_for=caller.patient))


@router.post(
    "/patients/{patient_id}/merge",
    dependencies=[require_scope("registration:write")],
    tags=["patients"],
    responses=problem_responses(PatientNotFound, MergeRefused),
)
def merge_patient(patient_id: str, data: MergeRequest, session: SessionDep) -> MergePublic:
    """Merge an unidentified patient (`source_patient_id`) into this identified patient.

    The source's visits move to this patient; the source record remains, pointing here.
    """
    target, moved = service.merge_patients(session, target_id=patient_id, source_id=data.source_patient_id)
    return MergePublic(patient=service.to_public(target), moved_visit_ids=moved)


@router.get(
    "/patients/{patient_id}/visits",
    dependencies=[require_scope("registration:read", patients=True)],
    tags=["visits"],
    responses=problem_responses(PatientNotFound),
)
def read_patient_visits(patient_id: str, session: SessionDep, caller: CallerDep) -> list[VisitPublic]:
    """A patient's visits, oldest first."""
    service.get_patient(session, patient_id=patient_id, acting_for=caller.patient)
    return [VisitPublic.model_validate(v, from_attributes=True) for v in list_visits(session, patient_id)]


@router.post(
    "/visits",
    dependencies=[require_scope("registration:write")],
    status_code=status.HTTP_201_CREATED,
    tags=["visits"],
    responses=problem_responses(PatientNotFound, VisitRefused),
)
def open_visit(
    data: VisitCreate, session: SessionDep, settings: SettingsDep, response: Response
) -> VisitPublic:
    """Open a visit with its payment mode: `prepay` (default), `settle_later` or `green_channel`."""
    visit = service.open_visit(session, data=data, settings=settings)
    response.headers["Location"] = f"/v1/visits/{visit.id}"
    return VisitPublic.model_validate(visit, from_attributes=True)


@router.get(
    "/visits/{visit_id}",
    dependencies=[require_scope("registration:read", patients=True)],
    tags=["visits"],
    responses=problem_responses(VisitNotFound),
)
def read_visit(visit_id: str, session: SessionDep, caller: CallerDep) -> VisitPublic:
    """One visit: its patient, kind, department and payment mode."""
    visit = service.get_visit(session, visit_id=visit_id, acting_for=caller.patient)
    return VisitPublic.model_validate(visit, from_attributes=True)
