"""Results API shapes. Requests forbid unknown fields; clients never set an order's status or patient."""

from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, JsonValue, model_validator


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
    cancelled = "cancelled"  # billing reversed its charge before the lab started: never done


class PaymentHold(StrEnum):
    """Why an order awaits payment, shown to staff on the order: a `prepay` visit pays first; a
    `settle_later` visit's order whose charge would take the account past its credit limit (先诊疗后结算
    的信用额度) waits until that charge is paid."""

    prepay = "prepay"
    credit_limit = "credit_limit"


class ReportStatus(StrEnum):
    """A report's lifecycle (FHIR DiagnosticReport.status): registered → preliminary → final, then
    amended or corrected; cancelled from any of them. Only final, amended and corrected ever reach a
    patient, and only verified (see `release.releasable`)."""

    registered = "registered"  # 已登记: specimen or study received, no result yet
    preliminary = "preliminary"  # 初步报告
    final = "final"  # 正式报告
    amended = "amended"  # 修改报告: changed after final (new information)
    corrected = "corrected"  # 更正报告: an error in the final one put right
    cancelled = "cancelled"  # 作废


# The statuses a lab posts on an order (POST /orders/{id}/reports); after final, changes are amendments.
POSTABLE_STATUSES = frozenset({ReportStatus.registered, ReportStatus.preliminary, ReportStatus.final})
AMENDED_STATUSES = frozenset({ReportStatus.amended, ReportStatus.corrected})
FINAL_STATUSES = frozenset({ReportStatus.final, *AMENDED_STATUSES})


class Flag(StrEnum):
    """Abnormality flag: high, low, normal, or a critical value (危急值)."""

    H = "H"
    L = "L"
    N = "N"
    critical = "critical"


class InstitutionLevel(StrEnum):
    """A hospital's grade, lowest first: a result is recognised from the same grade or a higher one."""

    primary = "primary"  # 一级
    secondary = "secondary"  # 二级
    tertiary = "tertiary"  # 三级
    tertiary_a = "tertiary_a"  # 三级甲等

    @property
    def rank(self) -> int:
        return list(InstitutionLevel).index(self)


class DuplicateReason(StrEnum):
    """The recognised reasons to repeat a test a recognised result already answers."""

    condition_changed = "condition_changed"  # 病情变化
    fast_changing = "fast_changing"  # 检查项目变化快
    before_surgery_or_transfusion = "before_surgery_or_transfusion"  # 手术或输血前
    emergency = "emergency"  # 急诊、急救
    patient_request = "patient_request"  # 患者要求
    doctor_judgement = "doctor_judgement"  # 医生判断需要复查


DUPLICATE_REASON_ZH: dict[DuplicateReason, str] = {
    DuplicateReason.condition_changed: "病情变化",
    DuplicateReason.fast_changing: "检查项目变化快",
    DuplicateReason.before_surgery_or_transfusion: "手术或输血前",
    DuplicateReason.emergency: "急诊、急救",
    DuplicateReason.patient_request: "患者要求",
    DuplicateReason.doctor_judgement: "医生判断需要复查",
}


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class OrderableTestPublic(BaseModel):
    code: str
    name_zh: str
    name_en: str
    kind: OrderableKind
    specimen: str | None
    turnaround_minutes: int
    # Mutual recognition (互认, recognition.py): whether the item takes part, and for how many days a
    # result of it stands in for a new one (a blood count a week, imaging months).
    recognised: bool = False
    validity_days: int | None = Field(default=None, ge=1, le=3650)


class Priority(StrEnum):
    """How fast the lab must report (turnaround.py): an emergency visit's orders are `emergency`."""

    routine = "routine"  # 常规
    emergency = "emergency"  # 急诊


class OrderCreate(Request):
    """Order a test for a visit; the patient and payment mode come from registration, not the client."""

    visit_id: str = Field(min_length=1, max_length=36, pattern=r"^[A-Za-z0-9-]+$")
    test_code: str = Field(min_length=1, max_length=16, examples=["250101015"])
    ordered_by: str | None = Field(
        default=None, max_length=64, description="Ordering doctor, as HIS names them"
    )
    duplicate_reason: DuplicateReason | None = Field(
        default=None,
        description="Why the test is repeated although a recognised result exists (互认): without it such "
        "an order is 409 `recognised-result-exists`",
    )
    duplicate_note: str | None = Field(default=None, min_length=1, max_length=500)
    priority: Priority | None = Field(
        default=None, description="`emergency` or `routine`; by default `emergency` on an emergency visit"
    )
    department: str | None = Field(
        default=None,
        max_length=32,
        pattern=r"^[a-z0-9-]+$",
        examples=["neurology"],
        description="The ordering department (开单科室), e.g. a consult's; by default the visit's. Critical "
        "values go there, and billing shows it on the charge's line",
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
    released_at: datetime | None = Field(description="Released to the lab (payment gate), not the patient")
    hold_reason: PaymentHold | None = Field(
        default=None, description="While `awaiting_payment`: why (`prepay`, or `credit_limit`: settle-later)"
    )
    duplicate_reason: DuplicateReason | None = None
    duplicate_note: str | None = None
    priority: Priority = Priority.routine
    department: str | None = Field(default=None, description="The ordering department (开单科室)")
    target_minutes: int | None = Field(default=None, description="Turnaround target, ordered to reported")
    due_at: datetime | None = None
    collected_at: datetime | None = None
    received_at: datetime | None = None
    reported_at: datetime | None = Field(default=None, description="The first final report")
    releasable_at: datetime | None = Field(
        default=None, description="Released to the patient: the first time its report passed the release rule"
    )


class Observation(Request):
    """One measured item of a report (检验项目)."""

    code: str = Field(min_length=1, max_length=32, examples=["WBC"])
    name: str = Field(min_length=1, max_length=64, examples=["白细胞计数"])
    value: str = Field(max_length=64, examples=["6.2"])
    unit: str | None = Field(default=None, max_length=32, examples=["10^9/L"])
    reference_range: str | None = Field(default=None, max_length=64, examples=["3.5-9.5"])
    flag: Flag | None = None


PersonName = Annotated[str, Field(min_length=1, max_length=64, examples=["李技师"])]
Reason = Annotated[str, Field(min_length=1, max_length=500)]


class ReportContent(Request):
    """What a report says: its status, conclusion, observations, critical flag and who verified it."""

    status: ReportStatus
    conclusion: str = Field(default="", max_length=2000)
    observations: list[Observation] = Field(default_factory=list, max_length=100)
    critical: bool = Field(
        default=False,
        description="A critical value (危急值) a clinician must act on now; an observation flagged "
        "`critical` makes the report critical too",
    )
    critical_note: str | None = Field(
        default=None, min_length=1, max_length=500, examples=["血钾6.8 mmol/L，已电话通知急诊王医生"]
    )

    verified_by: PersonName | None = Field(
        default=None,
        description="The technician who verified (审核) a final, amended or corrected report, as the lab "
        "names them; a report reaches patients only once verified",
    )

    @model_validator(mode="after")
    def _note_only_when_critical(self) -> Self:
        if self.critical_note is not None and not self.critical:
            raise ValueError("critical_note is only accepted with critical: true")
        if self.verified_by is not None and self.status not in FINAL_STATUSES:
            raise ValueError("verified_by is only accepted on a final, amended or corrected report")
        return self

    @property
    def is_critical(self) -> bool:
        """Critical when flagged so, or when any observation is a critical value."""
        return self.critical or any(o.flag is Flag.critical for o in self.observations)


EXAMPLE_OBSERVATIONS: list[JsonValue] = [
    {
        "code": "K",
        "name": "钾",
        "value": "6.8",
        "unit": "mmol/L",
        "reference_range": "3.5-5.3",
        "flag": "critical",
    }
]
EXAMPLE_REPORT: dict[str, JsonValue] = {
    "status": "final",
    "conclusion": "高钾血症",
    "observations": EXAMPLE_OBSERVATIONS,
    "verified_by": "李技师",
}


class ReportCreate(ReportContent):
    """A report posted on an order: `registered`, `preliminary` or `final` (later changes are amendments)."""

    model_config = ConfigDict(json_schema_extra={"examples": [EXAMPLE_REPORT]})

    @model_validator(mode="after")
    def _postable(self) -> Self:
        if self.status not in POSTABLE_STATUSES:
            raise ValueError("post registered, preliminary or final; amend a final report instead")
        return self


class ReportAmendment(ReportContent):
    """A changed final report: `amended` or `corrected`, the whole new content, and why."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [EXAMPLE_REPORT | {"status": "corrected", "reason": "复核后更正"}]}
    )

    reason: Reason = Field(examples=["复核后更正血钾结果"])

    @model_validator(mode="after")
    def _amending(self) -> Self:
        if self.status not in AMENDED_STATUSES:
            raise ValueError("an amendment is amended or corrected")
        return self


class LisReport(ReportContent):
    """A report as a LIS/PACS sends it: its own id for the report, the order it answers, any status.

    The same `external_id` from the same LIS client always names the same report: a repeat updates it
    (or changes nothing when nothing changed), never a second one."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                EXAMPLE_REPORT
                | {"external_id": "LIS-2026-0001", "order_id": "6f1c2b0e-8a4d-4c1e-9b7a-3d2e1f0a9b8c"}
            ]
        }
    )

    external_id: str = Field(
        min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$", examples=["LIS-2026-0001"]
    )
    order_id: str = Field(min_length=1, max_length=36, pattern=r"^[A-Za-z0-9-]+$")
    reason: Reason | None = Field(default=None, description="Why, for an amendment or a cancellation")


class ReportVerification(Request):
    verified_by: PersonName


class ReportCancellation(Request):
    reason: Reason = Field(examples=["标本溶血，作废重做"])


class HoldAction(Request):
    """Withhold (暂缓发布) a report from the patient, or lift that, with the doctor's reason."""

    reason: Reason = Field(examples=["需当面告知病情"])


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
    verified_by: str | None = None
    verified_at: datetime | None = None
    withheld: bool = Field(default=False, description="Withheld from the patient by a doctor")
    version: int = Field(default=1, description="1, 2, 3, ... each time the content changed")
    external_id: str | None = Field(default=None, description="The LIS/PACS's own id of the report")
    performing_institution_code: str | None = Field(default=None, description="Who performed it (互认)")
    performing_institution_name: str | None = None
    institution_level: InstitutionLevel | None = None
    duplicate_reason: DuplicateReason | None = Field(
        default=None, description="Why it was repeated although a recognised result existed (互认)"
    )
    releasable_at: datetime | None = Field(
        default=None,
        description="The first time the release rule passed (final, verified, not withheld, paid where "
        "required); kept through amendments, later holds and cancellation. Null until then",
    )


class CriticalStatus(StrEnum):
    pending = "pending"  # not yet acknowledged by a clinician (escalated or not)
    acknowledged = "acknowledged"
    all = "all"


class CriticalAcknowledgement(Request):
    """A clinician acknowledges a critical value (危急值接收确认)."""

    acknowledged_by: PersonName = Field(examples=["王医生"])
    note: str | None = Field(default=None, min_length=1, max_length=500, examples=["已复查并处理"])


class CriticalValuePublic(BaseModel):
    """One critical value (危急值) of a report and who has acted on it."""

    id: str
    report_id: str
    order_id: str
    visit_id: str
    patient_id: str
    department: str | None
    test_code: str
    observation_code: str | None
    value: str | None
    unit: str | None
    raised_at: datetime
    escalated_at: datetime | None
    acknowledged_at: datetime | None
    acknowledged_by: str | None


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
    department: str | None = Field(default=None, description="Where critical values are sent")
    kind: str | None = Field(default=None, description="`emergency` visits order at emergency priority")


class BillingCredit(BaseModel):
    """The part of billing's credit check (`GET /visits/{id}/credit/{item_code}`) results relies on."""

    fits: bool
    price_fen: int | None = None
    credit_limit_fen: int | None = None
    remaining_credit_fen: int | None = None


class RegistrationPatient(BaseModel):
    """The part of registration's patient a printed report shows: who it is for (never the identity
    number, which registration only ever sends masked and results does not keep)."""

    id: str
    identified: bool = True
    name: str | None = None
    sex: str | None = None
    birth_date: date | None = None


class ReleasedReportPublic(ReportPublic):
    """A report released to the patient (kiosk, app, phone), with how often this version was printed."""

    version: int = Field(description="The report's version; copies are counted per version")
    printed_copies: int = Field(description="0: never printed, so `POST /visits/{id}/prints` prints it")
    patient_name_masked: str | None = Field(
        default=None,
        description="Whose report it is, masked (张**) as a kiosk screen may show it; the PDF carries the "
        "full name. Null when results has not learned the name (registration's feed) or for an "
        "unidentified patient",
    )


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


# --- mutual recognition (检验检查结果互认, recognition.py) ---


class ExternalResultCreate(Request):
    """A final, verified result received from another hospital, named by that hospital's code and its
    own id: a repeat of the same (institution, external id) updates it, never adds a second one."""

    external_id: str = Field(
        min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$", examples=["EXT-2026-0042"]
    )
    patient_id: str = Field(min_length=1, max_length=36, pattern=r"^[A-Za-z0-9-]+$")
    test_code: str = Field(min_length=1, max_length=16, examples=["250101015"])
    performed_at: datetime = Field(description="When the other hospital reported it (with a time zone)")
    institution_code: str = Field(
        min_length=1, max_length=32, pattern=r"^[A-Za-z0-9._-]+$", examples=["H310000001"]
    )
    institution_name: str = Field(min_length=1, max_length=64, examples=["上海市第一人民医院"])
    institution_level: InstitutionLevel
    conclusion: str = Field(default="", max_length=2000)
    observations: list[Observation] = Field(default_factory=list, max_length=100)
    verified_by: PersonName

    @model_validator(mode="after")
    def _aware(self) -> Self:
        if self.performed_at.tzinfo is None:
            raise ValueError("performed_at needs a time zone")
        return self


class ExternalResultPublic(BaseModel):
    id: str
    external_id: str
    patient_id: str
    test_code: str
    performed_at: datetime
    institution_code: str
    institution_name: str
    institution_level: InstitutionLevel
    conclusion: str
    observations: list[Observation]
    verified_by: str
    received_at: datetime


class RecognisedSource(StrEnum):
    report = "report"  # a report of this hospital
    external = "external"  # a result received from another hospital


class RecognisedResultPublic(BaseModel):
    """A result that stands in for a new test of the same item (互认) until `valid_until`."""

    source: RecognisedSource
    id: str
    test_code: str
    test_name: str
    performed_at: datetime
    valid_until: datetime
    institution_code: str
    institution_name: str
    institution_level: InstitutionLevel
    conclusion: str
    observations: list[Observation]


class DuplicateCount(BaseModel):
    reason: DuplicateReason
    department: str | None
    count: int


class DuplicateReportPublic(BaseModel):
    """Tests repeated although a recognised result existed, ordered on these days (hospital time)."""

    from_date: date
    to_date: date
    total: int
    by_reason: dict[str, int]
    by_department: dict[str, int]
    counts: list[DuplicateCount]


class OverdueOrderPublic(OrderPublic):
    """An order past its due time and not reported yet (the lab's overdue list)."""

    minutes_overdue: int = Field(description="Whole minutes since `due_at`")


class TurnaroundFigures(BaseModel):
    """TAT of one item at one priority, over the orders placed in the period (ordered → first final
    report). Medians and p90 are nearest-rank over the reported orders, in whole minutes rounded up."""

    test_code: str
    priority: Priority
    orders: int = Field(description="Orders placed in the period (with a target)")
    reported: int = Field(description="Of them, with a final report")
    median_minutes: int | None = Field(description="Nearest rank 50%; null when none is reported")
    p90_minutes: int | None = Field(description="Nearest rank 90%: `sorted[ceil(0.9 n) - 1]`")
    within_target: int = Field(description="Reported no later than due")
    overdue_unreported: int = Field(description="Not reported and already past due: misses too")
    within_target_share: Decimal | None = Field(
        description="within_target / (reported + overdue_unreported), 4 places; null when that is 0"
    )
    released: int = Field(default=0, description="Of them, released to the patient (`releasable_at`)")
    release_median_minutes: int | None = Field(
        default=None, description="Ordered → released to the patient, nearest rank 50%; null when none is"
    )
    release_p90_minutes: int | None = Field(default=None, description="Ordered → released, nearest rank 90%")
