"""Registration endpoints (thin: parse, call the service, shape the answer)."""

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Body, Depends, Path, Query, Request, Response, status
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from sqlmodel import Session

from kit.auth import Caller, CallerDep, require_scope, require_service_caller
from kit.config import app_settings
from kit.database import ReadConnectionDep, SessionDep
from kit.errors import BadRequest, Conflict, Forbidden, UnprocessableContent, problem_responses
from kit.idempotency import IdempotencyKeyHeader, idempotent
from kit.params import page_size
from services.registration import disruptions, proofs, service
from services.registration.config import RegistrationSettings
from services.registration.errors import (
    ClinicSessionNotFound,
    DisruptionInvalid,
    DisruptionRefused,
    DuplicatePatient,
    InvalidIdNumber,
    MergeRefused,
    PatientNotFound,
    RebookingOfferClosed,
    RebookingOfferNotFound,
    VisitNotFound,
    VisitRefused,
)
from services.registration.models import IdempotencyRecord
from services.registration.notifier import Notifier, build_notifier
from services.registration.repository import list_session_attempts, list_visits
from services.registration.schemas import (
    ChallengeRequest,
    CodeProof,
    DisruptionCreate,
    DisruptionPublic,
    MergePublic,
    MergeRequest,
    OfferDecisionAnswer,
    PatientCreate,
    PatientPublic,
    ProofCheck,
    ProofVerdict,
    RebookingOfferPublic,
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
NotifierDep = Annotated[Notifier, Depends(notifier)]


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


# --- disrupted sessions -----------------------------------------------------------------------------------

ID_PATTERN = r"^[A-Za-z0-9-]{1,36}$"  # ids are uuids: anything else is refused before it reaches SQL
OfferIdPath = Annotated[str, Path(pattern=ID_PATTERN)]
ClinicSessionIdPath = Annotated[str, Path(pattern=ID_PATTERN)]
KEYED_WRITE_ERRORS = (BadRequest, Conflict, UnprocessableContent)


def _once_per_key(
    session: Session, caller: Caller, key: str | None, payload: dict[str, Any], run: Callable[[], Any]
) -> JSONResponse:
    """Run once per `Idempotency-Key` when one is sent (a retry gets the first answer), else just run."""
    if key is None:
        return JSONResponse(jsonable_encoder(run()), status.HTTP_201_CREATED)
    return idempotent(
        session, IdempotencyRecord, client=caller.subject, key=key, payload=payload, run=lambda: (201, run())
    )


@router.post(
    "/clinic-sessions/{clinic_session_id}/disruptions",
    dependencies=[require_scope("schedules:write")],
    status_code=status.HTTP_201_CREATED,
    response_model=DisruptionPublic,
    tags=["disruptions"],
    responses=problem_responses(
        *KEYED_WRITE_ERRORS, ClinicSessionNotFound, DisruptionRefused, DisruptionInvalid
    ),
)
def disrupt_session(
    clinic_session_id: ClinicSessionIdPath,
    data: DisruptionCreate,
    session: SessionDep,
    caller: CallerDep,
    settings: SettingsDep,
    key: IdempotencyKeyHeader = None,
) -> JSONResponse:
    """Change, suspend, resume or cancel a clinic session, with the reason (doctor, patient, hospital).

    Honours `Idempotency-Key`. The answer lists every affected hold and booking (not yet checked in).
    `cancel` cancels each of them (`session_cancelled`: billing refunds paid fees) and leaves no seat to
    book; `suspend` refuses new bookings and check-ins and keeps the bookings; `resume` reopens;
    `change` moves the times or names a substitute doctor and keeps the bookings. `cancel` and
    `suspend` offer each patient a rebooking (`offer`). A session in the wrong state for the action is
    409 `disruption-refused`. Emits `session.changed|suspended|resumed|cancelled` and one
    `appointment.disrupted` per affected patient.
    """
    return _once_per_key(
        session,
        caller,
        key,
        {"operation": "disruption", "clinic_session_id": clinic_session_id, "body": data},
        lambda: disruptions.disrupt_session(
            session,
            clinic_session_id=clinic_session_id,
            data=data,
            created_by=caller.subject,
            settings=settings,
        ),
    )


@router.get(
    "/clinic-sessions/{clinic_session_id}/disruptions",
    dependencies=[require_scope("registration:read")],
    tags=["disruptions"],
    responses=problem_responses(ClinicSessionNotFound),
)
def read_disruptions(clinic_session_id: ClinicSessionIdPath, session: SessionDep) -> list[DisruptionPublic]:
    """The session's disruptions, oldest first, each with every appointment it touched as it is now and
    the rebooking offered."""
    return disruptions.list_disruptions(session, clinic_session_id=clinic_session_id)


@router.get(
    "/rebooking-offers/{offer_id}",
    dependencies=[require_scope("registration:read", patients=True)],
    tags=["disruptions"],
    responses=problem_responses(RebookingOfferNotFound),
)
def read_rebooking_offer(
    offer_id: OfferIdPath, session: SessionDep, caller: CallerDep
) -> RebookingOfferPublic:
    """A disrupted patient's rebooking offer (an app sees only its own patient's)."""
    return disruptions.read_offer(session, offer_id=offer_id, acting_for=caller.patient)


@router.post(
    "/rebooking-offers/{offer_id}/accept",
    dependencies=[require_scope("appointments:write", patients=True)],
    status_code=status.HTTP_201_CREATED,
    response_model=OfferDecisionAnswer,
    tags=["disruptions"],
    responses=problem_responses(*KEYED_WRITE_ERRORS, RebookingOfferNotFound, RebookingOfferClosed),
)
def accept_rebooking_offer(
    offer_id: OfferIdPath,
    session: SessionDep,
    caller: CallerDep,
    settings: SettingsDep,
    key: IdempotencyKeyHeader = None,
) -> JSONResponse:
    """Accept: book the offered session for the patient (the patient's app, or the desk).

    Honours `Idempotency-Key`. Booked like any booking: a full or closed session is 409 (the offer stays
    open); an offer accepted, declined, superseded or expired is 409 `rebooking-offer-closed`. A booking
    of a suspended session still held is given up for the new one. Emits `appointment.booked` and
    `appointment.rebooked`.
    """
    return _once_per_key(
        session,
        caller,
        key,
        {"operation": "accept-offer", "offer_id": offer_id, "patient": caller.patient},
        lambda: disruptions.accept_offer(
            session,
            offer_id=offer_id,
            acting_for=caller.patient,
            decided_by=caller.subject,
            settings=settings,
        ),
    )


@router.post(
    "/rebooking-offers/{offer_id}/decline",
    dependencies=[require_scope("appointments:write", patients=True)],
    tags=["disruptions"],
    responses=problem_responses(RebookingOfferNotFound, RebookingOfferClosed),
)
def decline_rebooking_offer(
    offer_id: OfferIdPath, session: SessionDep, caller: CallerDep
) -> OfferDecisionAnswer:
    """Decline: a cancelled appointment stays cancelled (a paid fee is refunded already); a suspended
    session's booking is kept. Declining again answers the same; an accepted or expired offer is 409."""
    return disruptions.decline_offer(
        session, offer_id=offer_id, acting_for=caller.patient, decided_by=caller.subject
    )
