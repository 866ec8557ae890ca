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


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class PatientCreate(Request):
    """An identified patient needs `id_number` and `name`; set `unidentified` for a 无名氏 emergency."""

    unidentified: bool = False
    id_number: str | None = Field(default=None, max_length=32, examples=["11010519491231002X"])
    name: str | None = Field(default=None, min_length=1, max_length=100, examples=["张三"])
    phone: str | None = Field(default=None, pattern=r"^\+?[0-9]{6,15}$", examples=["13800138000"])
    birth_date: date | None = Field(
        default=None, description="Taken from the identity number when there is one (must then agree)"
    )
    alias: str | None = Field(
        default=None, max_length=100, description="How staff call an unidentified patient"
    )


class PatientPublic(BaseModel):
    id: str
    identified: bool
    id_number_masked: str | None
    name: str | None
    sex: str | None
    birth_date: date | None
    alias: str | None
    merged_into_id: str | None
    created_at: datetime


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
    status: str = Field(
        description="`open`; `closed` once it takes no new work (`close_reason`); `settled`: an inpatient "
        "visit billing settled before discharge"
    )
    opened_at: datetime
    settled_at: datetime | None
    closed_at: datetime | None = None
    close_reason: str | None = Field(
        default=None, description="`settled`, `discharged`, `desk` or `end-of-day`, once closed"
    )


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


# --- inpatient stays (入院、转科、出院) ----------------------------------------------------------------

Code = Annotated[str, Field(min_length=1, max_length=16, pattern=r"^[A-Za-z0-9-]+$")]
WardCode = Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[a-z0-9-]+$", examples=["cardio-3"])]


class BedClass(StrEnum):
    """What a bed is priced by (床位费): a general ward bed, a double or single room, intensive care."""

    general = "general"
    double = "double"
    single = "single"
    icu = "icu"


class BedCreate(Request):
    code: Code = Field(examples=["12"])
    bed_class: BedClass = BedClass.general


class WardCreate(Request):
    """A ward (病区) of a department, with its beds."""

    code: WardCode
    department: str = Field(min_length=1, max_length=32, pattern=r"^[a-z0-9-]+$", examples=["cardiology"])
    name: str = Field(min_length=1, max_length=100, examples=["心内科三病区"])
    beds: list[BedCreate] = Field(default_factory=list, max_length=500)


class BedPublic(BaseModel):
    code: str
    bed_class: BedClass
    occupied_by_visit_id: str | None = Field(description="The visit lying in it now, or null when free")


class WardPublic(BaseModel):
    code: str
    department: str
    name: str
    beds: list[BedPublic]
    free_beds: int


class BedChoice(Request):
    """Where the patient goes: a ward and one of its beds."""

    ward: WardCode
    bed: Code


class AdmissionCreate(BedChoice):
    """Admit the visit (入院) to a bed; the ward says which department takes the patient."""

    note: str | None = Field(default=None, max_length=1000, description="Admission note (入院记录摘要)")


class TransferCreate(BedChoice):
    """Move the patient to another bed, in this department or another (转科 / 转床)."""

    note: str = Field(min_length=1, max_length=1000, description="The handover note (交接记录)")


class DischargeCreate(Request):
    note: str | None = Field(default=None, max_length=1000, description="Discharge note (出院小结摘要)")


class MovementKind(StrEnum):
    admission = "admission"
    transfer = "transfer"
    discharge = "discharge"


class MovementPublic(BaseModel):
    kind: MovementKind
    at: datetime
    department: str
    ward: str
    bed: str
    bed_class: BedClass
    from_department: str | None
    from_ward: str | None
    from_bed: str | None
    note: str | None
    recorded_by: str


class StayPublic(BaseModel):
    """An inpatient stay: where the patient lies now (null once discharged) and every movement."""

    visit_id: str
    patient_id: str
    admitted_from: VisitKind
    admitted_at: datetime
    discharged_at: datetime | None
    department: str
    ward: str
    bed: str | None
    bed_class: BedClass | None
    length_of_stay_days: int | None = Field(description="Hospital days, counted at discharge (住院天数)")
    movements: list[MovementPublic]


class ClosedVisits(BaseModel):
    """What one run of the end-of-day rule closed."""

    closed_visit_ids: list[str]
