"""Registration endpoints (thin: parse, call the service, shape the answer)."""

from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Body, Depends, Query, Request, Response, status

from kit.auth import Caller, CallerDep, require_scope, require_service_caller
from kit.config import app_settings
from kit.database import ReadConnectionDep, SessionDep
from kit.errors import Forbidden, problem_responses
from kit.params import page_size
from services.registration import patient_index, proofs, service
from services.registration.config import RegistrationSettings
from services.registration.errors import (
    DuplicateCard,
    DuplicatePatient,
    IdentityMismatch,
    InvalidIdNumber,
    InvalidSearch,
    MergeRefused,
    PatientMerged,
    PatientNotFound,
    VisitNotFound,
    VisitRefused,
)
from services.registration.notifier import Notifier, build_notifier
from services.registration.repository import list_session_attempts, list_visits
from services.registration.schemas import (
    CARD_NUMBER_PATTERN,
    PHONE_PATTERN,
    ChallengeRequest,
    CodeProof,
    MergePublic,
    MergeRequest,
    PatientCreate,
    PatientPage,
    PatientPublic,
    PatientUpdate,
    ProofCheck,
    ProofVerdict,
    SessionAttemptPublic,
    SlipPublic,
    SlipRequest,
    VisitCreate,
    VisitOpened,
    VisitPublic,
)

router = APIRouter()
SettingsDep = Annotated[RegistrationSettings, Depends(app_settings)]
# The gateway asks for patient-session proofs with this scope; no route of its table needs it, so no
# client key can hold it, and a client's forwarded call can never reach these routes.
PROOF_SCOPE = "registration:patient-proof"


async def require_proof_caller(caller: Annotated[Caller, Depends(require_service_caller)]) -> Caller:
    """Only the gateway (a service caller with PROOF_SCOPE) checks proofs and asks for codes."""
    if PROOF_SCOPE not in caller.scopes:
        raise Forbidden("Only the gateway may check patient-session proofs.")
    return caller


def notifier(request: Request) -> Notifier:
    """The app's notifier, built from its settings on first use (tests may set `app.state.notifier`)."""
    state = request.app.state
    if getattr(state, "notifier", None) is None:
        state.notifier = build_notifier(state.settings)
    found: Notifier = state.notifier
    return found


ProofCallerDep = Annotated[Caller, Depends(require_proof_caller)]
# The kit's page cap for lists a desk pages through (the gateway's own cap is the same by default).
SEARCH_PAGE_MAX = 100
NotifierDep = Annotated[Notifier, Depends(notifier)]


@router.post(
    "/patients",
    dependencies=[require_scope("registration:write")],
    status_code=status.HTTP_201_CREATED,
    tags=["patients"],
    responses=problem_responses(InvalidIdNumber, IdentityMismatch, DuplicatePatient, DuplicateCard),
)
def register_patient(data: PatientCreate, session: SessionDep, response: Response) -> PatientPublic:
    """Register a patient by resident identity number, or an unidentified emergency patient.

    The identity number is validated with its GB 11643 check character; a `birth_date` or `sex` it
    contradicts is 422 `birth-date-mismatch` / `sex-mismatch` naming the `field`. The patient gets the
    medical card given (`card_number`) or a newly issued one. A number or card already on file answers
    409 with `existing_patient_id`.
    """
    patient = service.register_patient(session, data=data)
    response.headers["Location"] = f"/v1/patients/{patient.id}"
    return service.to_public(patient)


@router.get(
    "/patients",
    dependencies=[require_scope("registration:read")],
    tags=["patients"],
    responses=problem_responses(InvalidSearch),
)
def search_patients(
    session: SessionDep,
    caller: CallerDep,
    id_number: Annotated[str | None, Query(max_length=32, description="Exact, after normalising")] = None,
    card_number: Annotated[str | None, Query(pattern=CARD_NUMBER_PATTERN, description="Exact")] = None,
    phone: Annotated[str | None, Query(pattern=PHONE_PATTERN, description="Exact")] = None,
    name: Annotated[str | None, Query(max_length=100, description="By prefix (张 finds 张三)")] = None,
    after: Annotated[str | None, Query(max_length=36, description="`next_after` of the page before")] = None,
    limit: Annotated[int, page_size(SEARCH_PAGE_MAX)] = 20,
) -> PatientPage:
    """Find patients by identity number, medical-card number, phone or name (患者索引); several keys must
    all match. For staff desks only, never for a client acting for a patient.

    The identity number is always masked in the answer; the name and phone are masked or in full by the
    caller's client kind (`masked` says which). A bad key is 400 naming the key, never repeating it.
    """
    query = patient_index.PatientQuery(id_number=id_number, card_number=card_number, phone=phone, name=name)
    found, next_after = patient_index.search(session, query=query, after=after, limit=limit)
    return PatientPage(
        patients=[patient_index.to_hit(p, kind=caller.kind) for p in found], next_after=next_after
    )


@router.patch(
    "/patients/{patient_id}",
    dependencies=[require_scope("registration:write")],
    tags=["patients"],
    responses=problem_responses(PatientNotFound, PatientMerged, DuplicateCard),
)
def update_patient(patient_id: str, data: PatientUpdate, session: SessionDep) -> PatientPublic:
    """Change the patient's insurance scheme, or record another medical card in place of the one on
    file. Visits opened afterwards carry the new scheme in `visit.opened`; a merged record is 409."""
    return service.to_public(service.update_patient(session, patient_id=patient_id, data=data))


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
) -> VisitOpened:
    """Open a visit with its payment mode: `prepay` (default), `settle_later` or `green_channel`.

    The answer carries `slip_code`, to print on the patient's slip: with their birth date (or the
    last four digits of their phone) it opens a kiosk session. It is shown this once.
    """
    visit = service.open_visit(session, data=data, settings=settings)
    code, slip = proofs.issue_slip(session, visit=visit, settings=settings)
    response.headers["Location"] = f"/v1/visits/{visit.id}"
    public = VisitPublic.model_validate(visit, from_attributes=True)
    return VisitOpened(**public.model_dump(), slip_code=code, slip_expires_at=slip.expires_at)


@router.get(
    "/visits/{visit_id}",
    dependencies=[require_scope("registration:read", patients=True)],
    tags=["visits"],
    responses=problem_responses(VisitNotFound),
)
async def read_visit(visit_id: str, reader: ReadConnectionDep, caller: CallerDep) -> VisitPublic:
    """One visit: its patient, kind, department and payment mode."""
    # The hot read of every sibling: a lean path (kit.database.ReadConnection.run).
    return await reader.run(service.read_visit, visit_id=visit_id, acting_for=caller.patient)


@router.post(
    "/visits/{visit_id}/slip",
    dependencies=[require_scope("registration:write")],
    status_code=status.HTTP_201_CREATED,
    tags=["visits"],
    responses=problem_responses(VisitNotFound),
)
def reissue_slip(
    visit_id: str,
    session: SessionDep,
    settings: SettingsDep,
    data: Annotated[SlipRequest | None, Body()] = None,
) -> SlipPublic:
    """A new slip code for the visit (a lost or expired slip); the visit's earlier codes stop working.

    `valid_seconds` may shorten the configured lifetime, never lengthen it. Shown this once.
    """
    visit = service.get_visit(session, visit_id=visit_id)
    valid_seconds = data.valid_seconds if data else None
    code, slip = proofs.issue_slip(session, visit=visit, settings=settings, valid_seconds=valid_seconds)
    return SlipPublic(visit_id=visit.id, slip_code=code, expires_at=slip.expires_at)


@router.post("/session-proofs", tags=["patient sessions"], include_in_schema=False)
def check_session_proof(
    data: ProofCheck, session: SessionDep, settings: SettingsDep, _caller: ProofCallerDep
) -> ProofVerdict:
    """For the gateway: the patient a proof names, or `verified: false` whatever went wrong.

    Always 200, so the audit row and the failure count of a refused try are committed.
    """
    proof = data.proof
    if isinstance(proof, CodeProof):
        patient_id = proofs.check_one_time_code(
            session, client=data.client, id_number=proof.id_number, code=proof.otp, settings=settings
        )
    else:
        patient_id = proofs.check_slip(
            session,
            client=data.client,
            slip_code=proof.slip_code,
            birth_date=proof.birth_date,
            phone_last4=proof.phone_last4,
            settings=settings,
        )
    return ProofVerdict(verified=patient_id is not None, patient_id=patient_id)


@router.post(
    "/session-challenges",
    status_code=status.HTTP_202_ACCEPTED,
    tags=["patient sessions"],
    include_in_schema=False,
)
def send_session_challenge(
    data: ChallengeRequest,
    session: SessionDep,
    settings: SettingsDep,
    sender: NotifierDep,
    background: BackgroundTasks,
    _caller: ProofCallerDep,
) -> dict[str, str]:
    """For the gateway: text a one-time code to the registered phone, if there is one. Always 202.

    The message goes out after the code is committed (a background task: no call to an SMS gateway
    while the database is held).
    """
    message = proofs.send_challenge(session, client=data.client, id_number=data.id_number, settings=settings)
    if message is not None:
        background.add_task(sender.send, message)
    return {"status": "accepted"}


@router.get("/audit/session-attempts", dependencies=[require_scope("audit:read")], tags=["audit"])
def read_session_attempts(
    session: SessionDep,
    patient_id: Annotated[str | None, Query(max_length=36)] = None,
    client: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, page_size(500)] = 100,
) -> list[SessionAttemptPublic]:
    """Every try to open a patient session and every code asked for, newest first (administrators).

    Never holds a slip code, identity number or one-time code: `presented` is a short keyed digest.
    """
    rows = list_session_attempts(session, patient_id=patient_id, client=client, limit=limit)
    return [SessionAttemptPublic.model_validate(r, from_attributes=True) for r in rows]
