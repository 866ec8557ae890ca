"""Registration API shapes. Requests forbid unknown fields; responses never carry a full identity number."""

from datetime import date, datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


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
    phone: str | None = Field(default=None, pattern=r"^\+?\d{6,15}$", examples=["13800138000"])
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
    status: str = Field(description="`open`, or `settled` once billing has settled the visit (结算)")
    opened_at: datetime
    settled_at: datetime | None
