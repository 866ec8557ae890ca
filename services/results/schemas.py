"""Results API shapes. Requests forbid unknown fields; clients never set an order's status or patient."""

from datetime import datetime
from enum import StrEnum
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator


class OrderableKind(StrEnum):
    lab = "lab"  # 检验
    imaging = "imaging"  # 检查 (X-ray, CT, ultrasound, ECG)


class PaymentMode(StrEnum):
    """The visit's payment mode, as registration agreed it; it decides whether an order waits for payment."""

    prepay = "prepay"
    settle_later = "settle_later"
    green_channel = "green_channel"


class OrderStatus(StrEnum):
    awaiting_payment = "awaiting_payment"
    released = "released"  # the lab may start
    reported = "reported"  # a final report is out


class ReportStatus(StrEnum):
    preliminary = "preliminary"  # 初步报告
    final = "final"  # 正式报告


class Flag(StrEnum):
    """Abnormality flag: high, low, normal, or a critical value (危急值)."""

    H = "H"
    L = "L"
    N = "N"
    critical = "critical"


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class OrderableTestPublic(BaseModel):
    code: str
    name_zh: str
    name_en: str
    kind: OrderableKind
    specimen: str | None
    turnaround_minutes: int


class OrderCreate(Request):
    """Order a test for a visit; the patient and payment mode come from registration, not the client."""

    visit_id: str = Field(min_length=1, max_length=36, pattern=r"^[A-Za-z0-9-]+$")
    test_code: str = Field(min_length=1, max_length=16, examples=["250101015"])
    ordered_by: str | None = Field(
        default=None, max_length=64, description="Ordering doctor, as HIS names them"
    )


class OrderPublic(BaseModel):
    id: str
    visit_id: str
    patient_id: str
    test_code: str
    test_name: str
    payment_mode: PaymentMode
    status: OrderStatus
    ordered_at: datetime
    released_at: datetime | None


class Observation(Request):
    """One measured item of a report (检验项目)."""

    code: str = Field(min_length=1, max_length=32, examples=["WBC"])
    name: str = Field(min_length=1, max_length=64, examples=["白细胞计数"])
    value: str = Field(max_length=64, examples=["6.2"])
    unit: str | None = Field(default=None, max_length=32, examples=["10^9/L"])
    reference_range: str | None = Field(default=None, max_length=64, examples=["3.5-9.5"])
    flag: Flag | None = None


class ReportCreate(Request):
    status: ReportStatus
    conclusion: str = Field(max_length=2000)
    observations: list[Observation] = Field(default_factory=list, max_length=100)
    critical: bool = Field(
        default=False,
        description="A critical value (危急值) a clinician must act on now; an observation flagged "
        "`critical` makes the report critical too",
    )
    critical_note: str | None = Field(
        default=None, min_length=1, max_length=500, examples=["血钾6.8 mmol/L，已电话通知急诊王医生"]
    )

    @model_validator(mode="after")
    def _note_only_when_critical(self) -> Self:
        if self.critical_note is not None and not self.critical:
            raise ValueError("critical_note is only accepted with critical: true")
        return self

    @property
    def is_critical(self) -> bool:
        """Critical when flagged so, or when any observation is a critical value."""
        return self.critical or any(o.flag is Flag.critical for o in self.observations)


class ReportPublic(BaseModel):
    id: str
    order_id: str
    visit_id: str
    patient_id: str
    test_code: str
    test_name: str
    status: ReportStatus
    conclusion: str
    observations: list[Observation]
    critical: bool
    critical_note: str | None
    reported_at: datetime


class ResultAccessPublic(BaseModel):
    """One audit record: who looked at which results, and what they got back."""

    id: int
    at: datetime
    client: str
    action: str
    patient_id: str | None
    visit_id: str | None
    report_id: str | None
    report_ids: list[str]
    outcome: str
    request_id: str | None
    acting_for: str | None = None
    client_kind: str | None = None
    source_address: str | None = None


class RegistrationVisit(BaseModel):
    """The part of registration's visit that results relies on."""

    id: str
    patient_id: str
    status: str = Field(default="open", description="`closed`: the visit takes no new work")
    payment_mode: PaymentMode


class ReleasedReportPublic(ReportPublic):
    """A report released to the patient (kiosk, app, phone), with how often this version was printed."""

    version: int = Field(description="The report's version; copies are counted per version")
    printed_copies: int = Field(description="0: never printed, so `POST /visits/{id}/prints` prints it")


class PrintCreate(Request):
    """A print request; the body may be empty (`{}`): one call prints one copy of each report."""

    printer: str | None = Field(
        default=None, max_length=64, description="The kiosk's printer, as the kiosk names it (not stored)"
    )


class PrintPublic(BaseModel):
    """One printed copy: copy 1 is the original, later copies of the same version are marked 副本."""

    id: str
    report_id: str
    report_version: int
    copy_number: int
    is_copy: bool
    visit_id: str
    patient_id: str
    client: str
    printed_at: datetime
    pdf_url: str = Field(description="The printable PDF of this copy (re-fetching it prints nothing new)")


class VisitPrintsPublic(BaseModel):
    """What `POST /visits/{id}/prints` printed: every released report of the visit not printed before."""

    visit_id: str
    prints: list[PrintPublic]
