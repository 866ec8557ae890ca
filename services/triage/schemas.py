"""Triage API shapes. Requests forbid unknown fields."""

from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.triage.rules import SERVICE_CLASS_PATTERN, QueueRules

DEPARTMENT_PATTERN = r"^[a-z0-9-]{1,32}$"
# Visit ids go into a registration URL path, so only id characters are accepted.
VISIT_ID_PATTERN = r"^[A-Za-z0-9-]{1,36}$"


class TriageLevel(StrEnum):
    """China's four emergency levels (急诊预检分级): I 急危, II 急重, III 急症, IV 亚急症/非急症."""

    I = "I"  # noqa: E741 - the level's official name
    II = "II"
    III = "III"
    IV = "IV"


class Zone(StrEnum):
    """Where the patient is treated: red (抢救区), yellow (优先诊疗区) or green (普通诊疗区)."""

    red = "red"
    yellow = "yellow"
    green = "green"


class QueuePriority(StrEnum):
    """`priority` is for the elderly, frail and disabled (老弱残), who are called before others."""

    normal = "normal"
    priority = "priority"


class TicketStatus(StrEnum):
    waiting = "waiting"
    called = "called"
    finished = "finished"
    # Queue actions (issue 10): set aside, and the ways a ticket closes without being finished.
    held = "held"
    noshow = "noshow"
    cancelled = "cancelled"
    transferred = "transferred"


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


# --- Assessment in depth: vital signs, suggested level, override, department routing (0007_vitals) ---


class Consciousness(StrEnum):
    """AVPU: Alert, responds to Voice, to Pain, Unresponsive."""

    A = "A"
    V = "V"
    P = "P"
    U = "U"


class VitalSigns(Request):
    """Vital signs as measured at triage; each optional (not every sign is taken), each within what a
    living patient can show, so a typo (HR 1200, 375 °C) is refused rather than graded."""

    heart_rate: int | None = Field(default=None, ge=0, le=300, description="Beats per minute")
    systolic_bp: int | None = Field(default=None, ge=0, le=300, description="mmHg")
    diastolic_bp: int | None = Field(default=None, ge=0, le=200, description="mmHg")
    respiratory_rate: int | None = Field(default=None, ge=0, le=80, description="Breaths per minute")
    spo2: int | None = Field(default=None, ge=0, le=100, description="Oxygen saturation, %")
    temperature: float | None = Field(default=None, ge=25, le=45, description="°C")
    consciousness: Consciousness | None = None

    @model_validator(mode="after")
    def _pressure_order(self) -> Self:
        systolic, diastolic = self.systolic_bp, self.diastolic_bp
        if systolic is not None and diastolic is not None and diastolic >= systolic:
            raise ValueError("diastolic_bp must be below systolic_bp")
        return self

    def measured(self) -> bool:
        return any(v is not None for v in self.model_dump().values())


class AssessmentCreate(Request):
    """An assessment: vital signs give a suggested level; `level` is the nurse's, defaulting to it.

    A `level` that differs from the suggestion needs an `override_reason`; with no vital signs the
    nurse's `level` is required. `department` (outpatient 分诊) queues the visit there.
    """

    visit_id: str = Field(pattern=VISIT_ID_PATTERN)
    level: TriageLevel | None = None
    chief_complaint: str | None = Field(default=None, max_length=200, examples=["胸痛30分钟"])
    note: str | None = Field(default=None, max_length=500)
    vitals: VitalSigns | None = None
    pain_score: int | None = Field(default=None, ge=0, le=10, description="Numeric rating scale 0–10")
    override_reason: str | None = Field(default=None, min_length=1, max_length=200)
    department: str | None = Field(
        default=None, pattern=DEPARTMENT_PATTERN, description="Route to this department's queue (分诊)"
    )

    @model_validator(mode="after")
    def _level_or_signs(self) -> Self:
        measured = (self.vitals is not None and self.vitals.measured()) or self.pain_score is not None
        if self.level is None and not measured:
            raise ValueError("give the level, or vital signs to suggest one")
        return self


class AssessmentPublic(BaseModel):
    id: str
    visit_id: str
    patient_id: str
    level: TriageLevel = Field(description="The level that counts: the nurse's, else the suggestion")
    zone: Zone
    response_minutes: int = Field(description="How soon a doctor must see the patient; 0 is immediately")
    chief_complaint: str | None
    note: str | None
    assessed_at: datetime
    heart_rate: int | None = None
    systolic_bp: int | None = None
    diastolic_bp: int | None = None
    respiratory_rate: int | None = None
    spo2: int | None = None
    temperature: float | None = None
    consciousness: Consciousness | None = None
    pain_score: int | None = None
    suggested_level: TriageLevel | None = Field(default=None, description="From vital signs; null without")
    suggested_by: str | None = Field(default=None, description="The sign that decided the suggestion")
    suggestion_reason: str | None = Field(default=None, examples=["level I: heart rate 190 > 180"])
    override_reason: str | None = Field(default=None, description="Why the nurse chose another level")
    due_at: datetime | None = Field(default=None, description="Overdue for a doctor or re-assessment after")
    green_channel: bool = Field(default=False, description="Level I/II: the green channel (绿色通道)")
    department: str | None = None
    ticket_id: str | None = Field(default=None, description="The ticket the department routing gave")


ServiceClass = Annotated[
    str,
    Field(
        pattern=SERVICE_CLASS_PATTERN,
        description="Simple or complex work (a key of the queue's `service_minutes`)",
        examples=["complex"],
    ),
]


class TicketCreate(Request):
    visit_id: str = Field(pattern=VISIT_ID_PATTERN)
    priority: QueuePriority = QueuePriority.normal
    service_class: ServiceClass | None = Field(default=None, description="Null: the queue's default class")


class ServiceClassUpdate(Request):
    """The desk's classification of a ticket's work (simple or complex), for shortest work first."""

    service_class: ServiceClass


class CallNextRequest(Request):
    counter: str | None = Field(
        default=None, min_length=1, max_length=16, description="Where to go: a room or window", examples=["3"]
    )


class TicketPublic(BaseModel):
    id: str
    visit_id: str
    patient_id: str
    department: str
    number: int = Field(description="Gap-free per department and hospital day, from 1")
    display_number: str = Field(description="What the waiting-room screen shows", examples=["I007"])
    priority: QueuePriority
    rank: int = Field(description="0 for triage level I/II, 1 for priority or level III, otherwise 2")
    status: TicketStatus
    enqueued_at: datetime
    called_at: datetime | None
    finished_at: datetime | None
    counter: str | None
    wait_seconds: int | None = Field(description="From enqueue to call; null until called")
    appointment_at: datetime | None = Field(
        default=None, description="The booked slot's time, for a patient who came by appointment"
    )
    lined_up_at: datetime | None = Field(
        default=None,
        description="Sets the place in the call order within the rank: the arrival (the original one for a "
        "transferred ticket), moved back when the ticket is skipped",
    )
    skips: int = Field(default=0, description="How often the patient was called and did not come (过号)")
    recalls: int = Field(default=0, description="How often the same call was repeated")
    transferred_from: str | None = Field(default=None, description="The ticket this one continues")
    transferred_to: str | None = Field(default=None, description="The ticket that continues this one")
    # Re-triage timer (0007_vitals): filled in queue and visit views from the visit's latest assessment.
    level: TriageLevel | None = Field(default=None, description="The visit's latest triage level")
    due_at: datetime | None = Field(default=None, description="Overdue after this while still waiting")
    overdue: bool = Field(default=False, description="Waiting past the level's response limit: re-assess")
    # Queue rules (0009_queue_rules).
    service_class: str | None = Field(default=None, description="Null: the queue's default class")
    skipped_at: datetime | None = Field(default=None, description="The last skip (过号), while it waits")
    skip_recall_calls: int | None = Field(
        default=None, description="A skipped ticket sits out until this many others are called"
    )
    skip_recall_at: datetime | None = Field(default=None, description="… or until this instant")


class CalledTicket(TicketPublic):
    """Call-next's answer: the ticket called, and why it was next."""

    reason: str = Field(
        description="Why this patient was next, in the rule engine's words (as `GET …/order` said)",
        examples=["level I, arrived 08:12, green channel: ahead of everyone"],
    )


class SuspendRequest(Request):
    reason: str = Field(min_length=1, max_length=200, examples=["专家停诊：临时手术"])


class SuspensionPublic(BaseModel):
    reason: str
    suspended_at: datetime


class QueuePublic(BaseModel):
    department: str
    suspended: bool = Field(description="True while the session is suspended: nobody is called")
    suspension: SuspensionPublic | None = Field(description="Why and since when; null unless suspended")
    waiting: list[TicketPublic] = Field(description="Waiting tickets in call order")
    waiting_count: int
    called_count: int
    held: list[TicketPublic] = Field(
        default_factory=list, description="Tickets set aside; released, each is back at its place"
    )


class BoardTicket(BaseModel):
    """One line of the waiting-room board: what a patient needs to recognise their turn, nothing more."""

    display_number: str = Field(examples=["I007"])
    name: str | None = Field(
        description="Masked (张*三); 无名氏 when unidentified; null on tickets older than the board",
        examples=["张*三"],
    )
    status: TicketStatus = Field(description="`called` or `waiting`")
    counter: str | None = Field(description="The room or window to go to; null until called", examples=["3"])


class QueueBoard(BaseModel):
    """A queue as the waiting-room screen (叫号屏) shows it: no ids, no full names, no clinical text."""

    department: str
    suspended: bool = Field(description="True while the session is suspended: nobody is called")
    tickets: list[BoardTicket] = Field(
        description="Called tickets (the latest call first), then waiting tickets in call order"
    )


class WaitMinutes(BaseModel):
    """Nearest-rank percentiles of the waits of called tickets; null when nobody was called."""

    p50: float | None
    p90: float | None
    max: float | None


class QueueStats(BaseModel):
    department: str
    date: date
    target_minutes: int
    tickets: int
    called: int
    waiting: int
    wait_minutes: WaitMinutes
    within_target_share: float | None = Field(description="Share of called tickets seen within the target")


# --- Queue actions (issue 10): queue kinds, stations, ticket actions ---
class QueueKind(StrEnum):
    """A department's queue (科室), a service window (窗口) or a single consulting/examination room (诊室)."""

    department = "department"
    window = "window"
    room = "room"


class WindowService(StrEnum):
    """What a window queue serves."""

    registration = "registration"
    cashier = "cashier"
    pharmacy = "pharmacy"
    result_printing = "result-printing"


class QueueSettingUpdate(Request):
    kind: QueueKind
    window: WindowService | None = Field(default=None, description="Required for, and only for, a window")
    target_minutes: int = Field(default=10, ge=1, le=240, description="The wait target (三长一短: 10)")
    skip_requeue_after: int = Field(
        default=3, ge=0, le=50, description="A skipped ticket goes behind the next N waiting patients"
    )
    max_skips: int = Field(default=2, ge=0, le=10, description="The skip after the K-th makes it a no-show")
    skip_requeue_minutes: int | None = Field(
        default=None, ge=1, le=240, description="… or back in line after M minutes, whichever is first"
    )
    station_cap: int | None = Field(
        default=None, ge=1, le=50, description="At most N patients called and not yet seen per station"
    )
    rules: QueueRules | None = Field(
        default=None, description="How the queue is ordered; null: the service's configuration"
    )

    @model_validator(mode="after")
    def _window_for_windows(self) -> "QueueSettingUpdate":
        if (self.kind is QueueKind.window) != (self.window is not None):
            raise ValueError("`window` is required for a window queue and not allowed for any other kind")
        return self


class StationUpsert(Request):
    label: str = Field(min_length=1, max_length=64, examples=["3号诊室"])


class StationPublic(BaseModel):
    code: str
    label: str


class QueueSettingPublic(BaseModel):
    department: str
    kind: QueueKind
    window: WindowService | None
    target_minutes: int
    skip_requeue_after: int
    max_skips: int
    skip_requeue_minutes: int | None
    station_cap: int | None
    rules: QueueRules = Field(description="The ordering in force: the queue's own, else the service's")
    rules_configured: bool = Field(description="True when the queue's settings carry its own rules")
    configured: bool = Field(description="False while the queue runs on the defaults")
    stations: list[StationPublic]


class RecallRequest(Request):
    counter: str | None = Field(
        default=None, min_length=1, max_length=16, description="Another station to call to; default the same"
    )


class TransferRequest(Request):
    department: str = Field(pattern=DEPARTMENT_PATTERN, description="The queue the patient goes on to")


class TransferPublic(BaseModel):
    closed: TicketPublic = Field(description="The ticket left behind, now `transferred`")
    ticket: TicketPublic = Field(
        description="The ticket in the next queue, with the same priority and arrival"
    )


class RegistrationVisit(BaseModel):
    """The part of registration's visit that triage relies on."""

    id: str
    patient_id: str
    status: str = Field(default="open", description="`closed`: the visit takes no new work")


class RegistrationVisitWithName(RegistrationVisit):
    """A visit with its patient's name (registration's `GET /visits/{id}/with-name`), read once for a
    ticket: the name is masked at once (`mask_name`) and never kept."""

    patient_name: str | None = None


class RegistrationPatient(BaseModel):
    """The part of registration's patient the board needs: the name, masked at once (`mask_name`)."""

    name: str | None = None


# --- Queue order (rules.py): who is next, and why


class OrderEntry(BaseModel):
    position: int = Field(description="1 is the next to be called")
    ticket_id: str
    display_number: str = Field(examples=["I007"])
    reason: str = Field(
        description="Why this place, in words a nurse can read out",
        examples=["level II, arrived 08:12, green channel: ahead of everyone"],
    )


class QueueOrder(BaseModel):
    department: str
    rules: QueueRules = Field(description="The queue's configuration the order follows")
    order: list[OrderEntry] = Field(description="Waiting tickets in the order the rules would call them")


# --- Wait estimates (positions.py, estimates.py): a patient's place and an honest band, not a minute
class WaitBandPublic(BaseModel):
    """When the patient should expect to be called: between `low_minutes` and `high_minutes` from now."""

    low_minutes: int = Field(examples=[10])
    high_minutes: int = Field(examples=[18])
    expected_minutes: float = Field(description="The estimator's mean, inside the band", examples=[13.5])


class EstimateBasis(BaseModel):
    """What the queue's bands are estimated from: no patient in it."""

    recent_services: int = Field(description="Services finished in the last hour that were timed")
    mean_service_minutes: float = Field(description="Their mean, called → finished (a prior before any)")
    stations: int = Field(description="Stations estimated to be calling")
    busy: int = Field(description="Patients at a station now")


class QueuePosition(BaseModel):
    """One of the visit's places in a queue, as the patient's app or kiosk shows it; no other patient's
    data: only how many are ahead."""

    ticket_id: str
    department: str
    display_number: str = Field(examples=["I007"])
    status: TicketStatus
    counter: str | None = Field(default=None, description="Where to go, once called")
    position: int | None = Field(
        default=None, description="1 is the next to be called, in the queue rules' order; null unless waiting"
    )
    ahead: int | None = Field(default=None, description="Patients to be called first")
    nearly_up: bool = Field(default=False, description="Within the first `TRIAGE_NEARLY_UP_WITHIN` places")
    suspended: bool = Field(default=False, description="The queue's session is suspended: nobody is called")
    wait: WaitBandPublic | None = Field(
        default=None, description="Estimated wait; null unless waiting in a queue that is calling"
    )


class VisitQueuePositions(BaseModel):
    visit_id: str
    as_of: datetime
    positions: list[QueuePosition] = Field(description="The visit's waiting, called and held tickets")


class PlaceEstimate(BaseModel):
    position: int
    ticket_id: str
    display_number: str
    wait: WaitBandPublic


class QueueEstimates(BaseModel):
    """A queue's wait estimates for staff: every waiting ticket's band, and a newcomer's."""

    department: str
    as_of: datetime
    basis: EstimateBasis
    newcomer: WaitBandPublic = Field(description="The band a patient joining the end of the queue now gets")
    waiting: list[PlaceEstimate]
