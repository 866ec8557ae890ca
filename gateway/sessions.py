"""Patient sessions: a kiosk or app proves the patient is present, then gets a patient token.

A kiosk sends the slip code printed at registration plus the birth date or the last four digits of
the registered phone; an app sends the identity number plus the one-time code that
`POST /v1/patient-sessions/challenges` had texted to that phone. Registration owns patient data, so
it checks the proof (and counts wrong tries per patient and per device); the gateway mints the token
(`gateway.patients`). Every refusal answers the same 403, whether the code, the factor or the
patient was wrong, or a lock was in force.
"""

from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from fastapi import APIRouter, Request, status

from gateway.errors import (
    BadGateway,
    ChallengeForbidden,
    PatientProofRefused,
    PatientSessionForbidden,
    ProofNotForKind,
)
from gateway.keys import Caller
from gateway.models import PATIENT_BOUND_KINDS
from gateway.patients import mint_patient_token
from gateway.schemas import (
    ChallengeAccepted,
    ChallengeCreate,
    PatientProof,
    PatientSession,
    SlipProof,
)
from gateway.upstreams import UpstreamResponse
from kit.auth import TokenSource, service_subject
from kit.errors import problem_responses

# Registration's scope for proof checks: no route of the table needs it, so no client key holds it.
PROOF_SCOPE = "registration:patient-proof"
# The phone line (电话查询) proves like an app: the identity number keyed in, then the texted code.
PROOF_BY_KIND = {"kiosk": "slip", "app": "otp", "phone": "otp"}
CHALLENGE_KINDS = frozenset(kind for kind, proof in PROOF_BY_KIND.items() if proof == "otp")


@lru_cache(maxsize=4)
def _proof_tokens(secret: str) -> TokenSource:
    return TokenSource(secret, service_subject("gateway"), {PROOF_SCOPE})


async def _ask_registration(request: Request, path: str, body: dict[str, Any]) -> UpstreamResponse:
    """POST to registration as the gateway itself, with the proof scope only the gateway holds."""
    proxy = request.app.state.proxy
    tokens = _proof_tokens(proxy.settings.internal_secret)
    response: UpstreamResponse = await proxy.call_registration("POST", path, tokens=tokens, body=body)
    return response


async def _patient_bound_caller(request: Request, route_key: str) -> Caller:
    proxy = request.app.state.proxy
    caller: Caller = await proxy.authenticate(request, act_for_patient=False)
    if caller.kind not in PATIENT_BOUND_KINDS:
        raise PatientSessionForbidden(caller.kind)
    proxy.limit_route(caller, route_key)
    return caller


router = APIRouter(tags=["patient sessions"])


@router.post(
    "/v1/patient-sessions",
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(PatientSessionForbidden, PatientProofRefused, ProofNotForKind),
    openapi_extra={
        "x-client-kinds": sorted(PATIENT_BOUND_KINDS),  # whatever their scopes
        "requestBody": {
            "content": {
                "application/json": {"example": {"slip_code": "K7M2Q9XD", "birth_date": "1949-12-31"}}
            }
        },
    },
)
async def start_patient_session(proof: PatientProof, request: Request) -> PatientSession:
    """Act for one patient: an `app` or `kiosk` client proves the patient is present and gets a token.

    A kiosk sends `slip_code` (printed when the visit opened, or reissued with
    `POST /v1/visits/{id}/slip`) with `birth_date` or `phone_last4`; an app sends `id_number` with the
    `otp` texted by `POST /v1/patient-sessions/challenges` (usable once). After 5 wrong tries the
    patient and the device are locked for a while. Every refusal is the same 403
    `patient-proof-refused`. The token works only with the API key of the client that started the
    session, and only for that patient's records.
    """
    caller = await _patient_bound_caller(request, "POST /patient-sessions")
    method = "slip" if isinstance(proof, SlipProof) else "otp"
    if PROOF_BY_KIND.get(caller.kind) != method:
        raise ProofNotForKind(caller.kind)
    body = {"client": caller.name, "proof": {"method": method, **proof.model_dump(mode="json")}}
    answer = await _ask_registration(request, "/session-proofs", body)
    if answer.status_code != 200:
        raise BadGateway(f"The registration service answered {answer.status_code}.", service="registration")
    verdict = answer.json()
    if not verdict.get("verified") or not isinstance(verdict.get("patient_id"), str):
        raise PatientProofRefused()
    settings = request.app.state.proxy.settings
    patient_id: str = verdict["patient_id"]
    token, expires = mint_patient_token(
        settings.internal_secret,
        client=caller.name,
        patient=patient_id,
        lifetime=settings.patient_token_seconds,
    )
    return PatientSession(token=token, patient_id=patient_id, expires_at=datetime.fromtimestamp(expires, UTC))


@router.post(
    "/v1/patient-sessions/challenges",
    status_code=status.HTTP_202_ACCEPTED,
    responses=problem_responses(ChallengeForbidden),
    openapi_extra={"x-client-kinds": sorted(CHALLENGE_KINDS)},
)
async def ask_for_one_time_code(data: ChallengeCreate, request: Request) -> ChallengeAccepted:
    """An app or the phone line asks for a one-time code: registration texts it to the phone registered
    for `id_number`.

    Always 202 with the same body, whether or not such a patient (or a phone) is on file. The code
    is valid for a few minutes and once; send it to `POST /v1/patient-sessions`.
    """
    caller = await _patient_bound_caller(request, "POST /patient-sessions/challenges")
    if caller.kind not in CHALLENGE_KINDS:
        raise ChallengeForbidden(caller.kind)
    body = {"client": caller.name, "id_number": data.id_number}
    answer = await _ask_registration(request, "/session-challenges", body)
    if answer.status_code != 202:
        raise BadGateway(f"The registration service answered {answer.status_code}.", service="registration")
    return ChallengeAccepted(detail="If this identity number has a phone on file, a code was sent to it.")
