"""The shapes the gateway reads and writes itself: the admin API's API clients, the seed keys file,
patient sessions, the journey view and the calling board. Forwarded calls keep the services' own shapes."""

from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from gateway.models import ClientKind
from gateway.routes import known_scopes
from kit.clock import utcnow

MAX_GRACE_SECONDS = 7 * 24 * 3600
ApiClientStatus = Literal["active", "expired", "revoked"]
ID_NUMBER = r"^[0-9]{17}[0-9Xx]$"  # ASCII digits: `\d` takes ٠ and ０ too

# --- API clients (the admin API, `patientflow keys`) -----------------------------------------------


class ApiClientCreate(BaseModel):
    """A new API client. Scopes must be ones some route or gateway feature uses."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$", examples=["his-east-wing"])
    kind: ClientKind
    scopes: list[str] = Field(default_factory=list, max_length=64, examples=[["registration:read"]])
    expires_at: AwareDatetime | None = None
    rate_limit_per_second: float | None = Field(default=None, gt=0, le=100_000)
    rate_burst: int | None = Field(default=None, ge=1, le=1_000_000)

    @field_validator("scopes")
    @classmethod
    def _known_scopes(cls, scopes: list[str]) -> list[str]:
        unknown = sorted(set(scopes) - known_scopes())
        if unknown:
            raise ValueError(f"unknown scopes: {', '.join(unknown)}")
        return sorted(set(scopes))

    @field_validator("expires_at")
    @classmethod
    def _in_the_future(cls, expires_at: datetime | None) -> datetime | None:
        if expires_at is not None and expires_at <= utcnow():
            raise ValueError("must be in the future")
        # In UTC, as the database hands it back: the create answer says what rotate and list say.
        return expires_at.astimezone(UTC) if expires_at is not None else None


class KeyRotation(BaseModel):
    """How long the old key keeps working beside the new one (0: it stops at once)."""

    model_config = ConfigDict(extra="forbid")

    grace_seconds: int = Field(default=0, ge=0, le=MAX_GRACE_SECONDS)


class ApiClientPublic(BaseModel):
    """An API client as operators see it: never its key or the key's hash."""

    name: str
    kind: str
    scopes: list[str]
    status: ApiClientStatus
    key_prefix: str | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    previous_key_expires_at: datetime | None
    rate_limit_per_second: float | None
    rate_burst: int | None


class ApiClientWithKey(ApiClientPublic):
    """An API client with its new plaintext key: shown this once, never retrievable again."""

    key: str


class KeyEntry(BaseModel):
    """One API client in the seed keys file: `{"client", "kind", "sha256", "scopes"}`."""

    model_config = ConfigDict(extra="forbid")

    client: str = Field(min_length=1, max_length=64)
    kind: str = Field(min_length=1, max_length=32)
    sha256: str = Field(pattern=r"^[0-9a-fA-F]{64}$")
    scopes: list[str]

    @field_validator("sha256")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.lower()


class KeyFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    keys: list[KeyEntry]


# --- patient sessions ------------------------------------------------------------------------------


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


# --- the journey view ------------------------------------------------------------------------------


class TimelineEntry(BaseModel):
    at: datetime
    stage: str = Field(examples=["queued"])
    service: str = Field(examples=["triage"])
    details: dict[str, Any] = Field(examples=[{"ticket": "I007", "department": "internal"}])


class StageWait(BaseModel):
    """How long the patient waited (or has waited so far) for one stage."""

    stage: str = Field(
        description="`registration_to_triage`, `queue` (per ticket), `order_to_report` (per order), "
        "`charge_to_payment` (per charge, prepaying visits only)",
        examples=["queue"],
    )
    service: str
    started_at: datetime
    ended_at: datetime | None = Field(description="Null while still waiting")
    minutes: float = Field(description="Until `ended_at`, or until now while still waiting")
    waiting: bool
    exceeded: bool = Field(description="Longer than `target_minutes`")
    target_minutes: int = Field(
        description="The target this wait is judged against: the window target (`wait_target_minutes`), "
        "or for `order_to_report` the order's turnaround target (emergency 2 h, routine 24 h, per item)"
    )
    details: dict[str, Any] = Field(default_factory=dict)


class MissingPart(BaseModel):
    service: str
    part: str = Field(examples=["orders"])
    status: int = Field(description="What the gateway got instead: 502, 503, 504, or the service's status")
    detail: str


class WithheldPart(BaseModel):
    service: str
    part: str
    scope: str = Field(description="The read scope the client would need to see this part")


class JourneyPublic(BaseModel):
    visit_id: str
    patient_id: str
    kind: str
    department: str
    payment_mode: str
    status: str
    timeline: list[TimelineEntry] = Field(description="Everything that happened, oldest first")
    waits: list[StageWait]
    wait_target_minutes: int
    partial: bool = Field(description="True when a part is missing because its service did not answer")
    missing: list[MissingPart]
    withheld: list[WithheldPart]


# --- the calling board (gateway/board.py) -----------------------------------------------------------


class BoardSessionPublic(BaseModel):
    """A board session opened: the screen's cookie now carries it (never the key)."""

    client: str = Field(description="The board client the screen acts as", examples=["board-hall-1"])
    expires_at: datetime = Field(description="Renewed while the screen is in use")


class BoardCall(BaseModel):
    """A patient called: the number to recognise, the masked name, and the room or window to go to."""

    display_number: str = Field(examples=["A007"])
    name: str | None = Field(description="Masked (张*三), 无名氏 when unidentified", examples=["张*三"])
    counter: str | None = Field(description="Room or window", examples=["3"])


class BoardNext(BaseModel):
    """A patient among the next to be called."""

    display_number: str = Field(examples=["A008"])
    name: str | None = Field(examples=["欧**娜"])


class BoardScreen(BaseModel):
    """What a waiting-room screen shows: numbers, masked names and rooms; no ids, no clinical text."""

    department: str
    suspended: bool = Field(description="True while calling is suspended")
    calls: list[BoardCall] = Field(description="Current calls, the latest first")
    next: list[BoardNext] = Field(description="The next few in call order")
    waiting_count: int = Field(description="Everyone waiting, the next few included")
