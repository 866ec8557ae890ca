"""Patient sessions: a kiosk or app proves the patient is present, then gets a patient token.

A kiosk sends the slip code printed at registration plus the birth date or the last four digits of
the registered phone; an app sends the identity number plus the one-time code that
`POST /v1/patient-sessions/challenges` had texted to that phone. Registration owns patient data, so
it checks the proof (and counts wrong tries per patient and per device); the gateway mints the token
(`gateway.patients`). Every refusal answers the same 403, whether the code, the factor or the
patient was wrong, or a lock was in force.
"""

from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Annotated, Any, Self

import httpx
from fastapi import APIRouter, Request, status
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

from gateway.keys import Principal
from gateway.models import PATIENT_BOUND_KINDS
from gateway.patients import PatientSessionForbidden, mint_patient_token
from kit.auth import TokenSource, service_subject
from kit.errors import BadGateway, Forbidden, UnprocessableContent, problem_responses

# Registration's scope for proof checks: no route of the table needs it, so no client key holds it.
PROOF_SCOPE = "registration:patient-proof"
PROOF_BY_KIND = {"kiosk": "slip", "app": "otp"}
ID_NUMBER = r"^[0-9]{17}[0-9Xx]$"  # ASCII digits: `\d` takes ٠ and ０ too


class PatientProofRefused(Forbidden):
    """The one answer to every failed proof: nothing in it tells a wrong code from a locked patient."""

    slug = "patient-proof-refused"

    def __init__(self) -> None:
        super().__init__("The patient could not be verified.")


class ProofNotForKind(UnprocessableContent):
    slug = "proof-not-for-client-kind"

    def __init__(self, kind: str) -> None:
        wanted = "slip_code with birth_date or phone_last4" if kind == "kiosk" else "id_number with otp"
        super().__init__(f"A {kind} client opens a patient session with {wanted}.")


class ChallengeForbidden(Forbidden):
    slug = "patient-session-forbidden"

    def __init__(self, kind: str) -> None:
        super().__init__(f"Only app clients ask for one-time codes; this client is a {kind}.")


class SlipProof(BaseModel):
    """A kiosk's proof: the code on the patient's slip and one second factor."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    slip_code: str = Field(min_length=4, max_length=16, examples=["K7M2Q9XD"])
    birth_date: date | None = Field(default=None, examples=["1949-12-31"])
    phone_last4: str | None = Field(default=None, pattern=r"^[0-9]{4}$", examples=["8000"])

    @model_validator(mode="after")
    def _one_second_factor(self) -> Self:
        if (self.birth_date is None) == (self.phone_last4 is None):
            raise ValueError("give exactly one of birth_date and phone_last4")
        return self


class CodeProof(BaseModel):
    """An app's proof: the identity number and the one-time code texted to the registered phone."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    id_number: str = Field(pattern=ID_NUMBER, examples=["11010519491231002X"])
    otp: str = Field(pattern=r"^[0-9]{6}$", examples=["042137"])


def _proof_kind(body: Any) -> str | None:
    # A JSON list, string or number (or a body not sent as JSON) has no fields: 422, not a crash.
    fields = body if isinstance(body, dict) else getattr(body, "__dict__", {})
    if "slip_code" in fields:
        return "slip"
    if "id_number" in fields or "otp" in fields:
        return "otp"
    return None  # neither (a bare patient_id, say): 422


PatientProof = Annotated[
    Annotated[SlipProof, Tag("slip")] | Annotated[CodeProof, Tag("otp")], Discriminator(_proof_kind)
]


class ChallengeCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    id_number: str = Field(pattern=ID_NUMBER, examples=["11010519491231002X"])


class ChallengeAccepted(BaseModel):
    detail: str


class PatientSession(BaseModel):
    """Send `token` as `X-Patient-Token` (beside your API key) until `expires_at`."""

    token: str
    patient_id: str
    expires_at: datetime


@lru_cache(maxsize=4)
def _proof_tokens(secret: str) -> TokenSource:
    return TokenSource(secret, service_subject("gateway"), {PROOF_SCOPE})


async def _ask_registration(request: Request, path: str, body: dict[str, Any]) -> httpx.Response:
    """POST to registration as the gateway itself, with the proof scope only the gateway holds."""
    proxy = request.app.state.proxy
    tokens = _proof_tokens(proxy.settings.internal_secret)
    response: httpx.Response = await proxy.call_registration("POST", path, tokens=tokens, body=body)
    return response


async def _patient_bound_client(request: Request, route_key: str) -> Principal:
    proxy = request.app.state.proxy
    principal: Principal = await proxy.authenticate(request, act_for_patient=False)
    if principal.kind not in PATIENT_BOUND_KINDS:
        raise PatientSessionForbidden(principal.kind)
    proxy.limit_route(principal, route_key)
    return principal


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
    principal = await _patient_bound_client(request, "POST /patient-sessions")
    method = "slip" if isinstance(proof, SlipProof) else "otp"
    if PROOF_BY_KIND.get(principal.kind) != method:
        raise ProofNotForKind(principal.kind)
    body = {"client": principal.name, "proof": {"method": method, **proof.model_dump(mode="json")}}
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
        client=principal.name,
        patient=patient_id,
        lifetime=settings.patient_token_seconds,
    )
    return PatientSession(token=token, patient_id=patient_id, expires_at=datetime.fromtimestamp(expires, UTC))


@router.post(
    "/v1/patient-sessions/challenges",
    status_code=status.HTTP_202_ACCEPTED,
    responses=problem_responses(ChallengeForbidden),
    openapi_extra={"x-client-kinds": ["app"]},
)
async def ask_for_one_time_code(data: ChallengeCreate, request: Request) -> ChallengeAccepted:
    """An app asks for a one-time code: registration texts it to the phone registered for `id_number`.

    Always 202 with the same body, whether or not such a patient (or a phone) is on file. The code
    is valid for a few minutes and once; send it to `POST /v1/patient-sessions`.
    """
    principal = await _patient_bound_client(request, "POST /patient-sessions/challenges")
    if principal.kind != "app":
        raise ChallengeForbidden(principal.kind)
    body = {"client": principal.name, "id_number": data.id_number}
    answer = await _ask_registration(request, "/session-challenges", body)
    if answer.status_code != 202:
        raise BadGateway(f"The registration service answered {answer.status_code}.", service="registration")
    return ChallengeAccepted(detail="If this identity number has a phone on file, a code was sent to it.")
