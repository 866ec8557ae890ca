"""Registration API shapes. Requests forbid unknown fields; responses never carry a full identity number."""

from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator


class VisitKind(StrEnum):
    outpatient = "outpatient"
    emergency = "emergency"
    inpatient = "inpatient"


class PaymentMode(StrEnum):
    """How the visit pays: at each step, after diagnosis (先诊疗后结算), or after rescue (先救治后付费)."""

    prepay = "prepay"
    settle_later = "settle_later"
    green_channel = "green_channel"


class InsuranceScheme(StrEnum):
    """How the patient is insured (医保类别): 城镇职工, 城镇居民, 新农合 or 自费; billing reads it from
    `visit.opened`."""

    employee = "employee"
    urban_resident = "urban_resident"
    rural_cooperative = "rural_cooperative"
    self_pay = "self_pay"


class Sex(StrEnum):
    male = "male"
    female = "female"


# A medical-card number (就诊卡号): digits only, as printed on the card or read from its stripe.
CARD_NUMBER_PATTERN = r"^[0-9]{6,20}$"
PHONE_PATTERN = r"^\+?[0-9]{6,15}$"
CardNumber = Annotated[str, Field(pattern=CARD_NUMBER_PATTERN, examples=["100234567890"])]
Phone = Annotated[str, Field(pattern=PHONE_PATTERN, examples=["13800138000"])]


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class PatientCreate(Request):
    """An identified patient needs `id_number` and `name`; set `unidentified` for a 无名氏 emergency."""

    unidentified: bool = False
    id_number: str | None = Field(default=None, max_length=32, examples=["11010519491231002X"])
    name: str | None = Field(default=None, min_length=1, max_length=100, examples=["张三"])
    phone: Phone | None = None
    birth_date: date | None = Field(
        default=None, description="Taken from the identity number when there is one (must then agree)"
    )
    sex: Sex | None = Field(
        default=None, description="Taken from the identity number when there is one (must then agree)"
    )
    card_number: CardNumber | None = Field(
        default=None, description="A medical card the patient already holds; omitted: one is issued"
    )
    insurance_scheme: InsuranceScheme = InsuranceScheme.self_pay
    alias: str | None = Field(
        default=None, max_length=100, description="How staff call an unidentified patient"
    )


class PatientUpdate(Request):
    """Change what may change on a patient record: the insurance scheme, or a medical card recorded
    in place of the one on file (a lost card, a card from another hospital of the group)."""

    insurance_scheme: InsuranceScheme | None = None
    card_number: CardNumber | None = None

    @model_validator(mode="after")
    def _something_to_change(self) -> Self:
        if self.insurance_scheme is None and self.card_number is None:
            raise ValueError("give insurance_scheme, card_number or both")
        return self


class PatientPublic(BaseModel):
    id: str
    identified: bool
    id_number_masked: str | None
    card_number: str | None
    insurance_scheme: InsuranceScheme
    name: str | None
    sex: str | None
    birth_date: date | None
    alias: str | None
    merged_into_id: str | None
    created_at: datetime


class PatientSearchHit(PatientPublic):
    """A patient found by search. The identity number is always masked; `name` and `phone` are in full
    or masked as the caller's client kind allows (`masked` lists which are masked)."""

    phone: str | None
    masked: list[str] = Field(description='The fields of this answer shown masked, e.g. `["phone"]`')


class PatientPage(BaseModel):
    """One page of search hits, in a stable order; pass `next_after` as `after` for the next page."""

    patients: list[PatientSearchHit]
    next_after: str | None


class MergeRequest(Request):
    """Merge an unidentified patient's record into this identified patient (身份确认后合并)."""

    source_patient_id: str = Field(max_length=36)


class MergePublic(BaseModel):
    patient: PatientPublic
    moved_visit_ids: list[str]


class VisitCreate(Request):
    patient_id: str = Field(max_length=36)
    kind: VisitKind
    department: str = Field(min_length=1, max_length=32, pattern=r"^[a-z0-9-]+$", examples=["internal"])
    payment_mode: PaymentMode = PaymentMode.prepay


class VisitPublic(BaseModel):
    id: str
    patient_id: str
    kind: VisitKind
    department: str
    payment_mode: PaymentMode
    status: str = Field(description="`open`, or `settled` once billing has settled the visit (结算)")
    opened_at: datetime
    settled_at: datetime | None


class VisitOpened(VisitPublic):
    """The new visit, with the slip code to print for the patient: shown this once, never again."""

    slip_code: str
    slip_expires_at: datetime


class SlipRequest(Request):
    """Reissue a visit's slip (the old code stops working); optionally valid for less than the default."""

    valid_seconds: int | None = Field(default=None, ge=1, description="At most the configured lifetime")


class SlipPublic(BaseModel):
    """A slip code to print for the patient: shown this once, never again."""

    visit_id: str
    slip_code: str
    expires_at: datetime


# --- patient-session proofs: called by the gateway only (never forwarded from a client) ---------------

DeviceName = Annotated[str, Field(min_length=1, max_length=64)]
IdNumberText = Annotated[str, Field(min_length=1, max_length=32)]


class SlipProof(Request):
    """A kiosk's proof: the slip code plus the patient's birth date or the last four phone digits."""

    method: Literal["slip"]
    slip_code: str = Field(min_length=1, max_length=32)
    birth_date: date | None = None
    phone_last4: str | None = Field(default=None, pattern=r"^[0-9]{4}$")

    @model_validator(mode="after")
    def _one_second_factor(self) -> Self:
        if (self.birth_date is None) == (self.phone_last4 is None):
            raise ValueError("give exactly one of birth_date and phone_last4")
        return self


class CodeProof(Request):
    """An app's proof: the identity number plus the one-time code sent to the registered phone."""

    method: Literal["otp"]
    id_number: IdNumberText
    otp: str = Field(pattern=r"^[0-9]{6}$")


class ProofCheck(Request):
    """Who is trying (`client`: the device, for its own lockout) and what they offer."""

    client: DeviceName
    proof: SlipProof | CodeProof = Field(discriminator="method")


class ProofVerdict(BaseModel):
    """`patient_id` when the proof holds; otherwise only `verified: false`, whatever the reason."""

    verified: bool
    patient_id: str | None = None


class ChallengeRequest(Request):
    """Send a one-time code to the phone registered for this identity number (if there is one)."""

    client: DeviceName
    id_number: IdNumberText


class SessionAttemptPublic(BaseModel):
    id: int
    at: datetime
    client: str
    method: str
    patient_id: str | None
    outcome: str
    presented: str
