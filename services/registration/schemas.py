"""Registration API shapes. Requests forbid unknown fields; responses never carry a full identity number."""

from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

# Dates and instants a request may name: the hospital's calendar, not the whole of `date`'s range (at its
# ends, the day after or the hospital's midnight does not exist, which would be a 500, not a 4xx).
EARLIEST_DAY, LATEST_DAY = date(2000, 1, 1), date(2099, 12, 31)
HospitalDay = Annotated[date, Field(ge=EARLIEST_DAY, le=LATEST_DAY)]
HospitalInstant = Annotated[
    datetime,
    Field(ge=datetime(2000, 1, 1, tzinfo=UTC), le=datetime(2099, 12, 31, tzinfo=UTC)),
]


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


class VisitWithName(VisitPublic):
    """The visit with its patient's name, for a sibling that queues the visit under that name (one read
    where a visit and a patient were two)."""

    patient_name: str | None = Field(description="None for a patient registered without a name (无名氏)")


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


# --- directory, schedules and appointments (预约挂号) ---------------------------------------------------

DepartmentCode = Annotated[
    str, Field(min_length=1, max_length=32, pattern=r"^[a-z0-9-]+$", examples=["cardiology"])
]
# A quota or a count a clinic could really hold: past this it is a typo, refused before it reaches SQL.
MAX_QUOTA = 500
MAX_GENERATION_DAYS = 92


class DoctorTitle(StrEnum):
    """住院医师, 主治医师, 副主任医师, 主任医师: the title fixes the consultation fee."""

    resident = "resident"
    attending = "attending"
    associate_chief = "associate_chief"
    chief = "chief"


class Period(StrEnum):
    morning = "morning"
    afternoon = "afternoon"
    evening = "evening"
    full_day = "full_day"


class SessionKind(StrEnum):
    """普通, 专家, 延时 (extended hours), 周末, 节假日 clinics."""

    regular = "regular"
    expert = "expert"
    extended = "extended"
    weekend = "weekend"
    holiday = "holiday"


class SessionStatus(StrEnum):
    open = "open"
    suspended = "suspended"
    cancelled = "cancelled"


class ExceptionAction(StrEnum):
    skip = "skip"
    override = "override"


class Channel(StrEnum):
    """How the booking came: by phone, at the desk (现场), by a community clinic's referral, in the
    app, or by the doctor at the end of a visit (复诊预约)."""

    phone = "phone"
    onsite = "onsite"
    referral = "referral"
    app = "app"
    followup = "followup"


class AppointmentStatus(StrEnum):
    """FHIR Appointment statuses; `proposed` is a hold that lapses at `hold_expires_at`."""

    proposed = "proposed"
    booked = "booked"
    arrived = "arrived"
    fulfilled = "fulfilled"
    cancelled = "cancelled"
    noshow = "noshow"


class CancelReason(StrEnum):
    patient = "patient"
    hold_expired = "hold_expired"
    session_cancelled = "session_cancelled"
    rebooked = "rebooked"
    desk = "desk"


class DepartmentCreate(Request):
    code: DepartmentCode
    name: str = Field(min_length=1, max_length=100, examples=["心内科"])
    floor: str | None = Field(default=None, max_length=16, examples=["3F"])
    zone: str | None = Field(default=None, max_length=32, examples=["B"])


class DepartmentPublic(BaseModel):
    code: str
    name: str
    floor: str | None
    zone: str | None


class DoctorCreate(Request):
    name: str = Field(min_length=1, max_length=100, examples=["李医生"])
    title: DoctorTitle
    expert: bool = Field(default=False, description="A renowned expert (知名专家): the expert fee")
    profile: str | None = Field(default=None, max_length=1000, description="Short profile (专家介绍)")
    department: DepartmentCode


class DoctorPublic(BaseModel):
    id: str
    name: str
    title: DoctorTitle
    expert: bool
    profile: str | None
    department: str


class _SessionShape(Request):
    """What a template and an ad-hoc session share: quota, slot length, kind."""

    quota: int = Field(ge=1, le=MAX_QUOTA)
    slot_minutes: int = Field(default=15, ge=5, le=240, examples=[15, 30])
    kind: SessionKind = SessionKind.regular


class TemplateCreate(_SessionShape):
    """A weekly clinic. Times are local (Asia/Shanghai); omitted, they are the period's usual hours."""

    department: DepartmentCode
    doctor_id: str = Field(max_length=36)
    weekday: int = Field(ge=0, le=6, description="0 Monday … 6 Sunday")
    period: Period
    starts_at: time | None = None
    ends_at: time | None = None
    booking_opens_days: int = Field(default=7, ge=0, le=90, description="Booking opens this many days before")
    booking_opens_at: time = Field(default=time(8, 0), description="…at this local time")
    booking_closes_minutes: int = Field(
        default=0, ge=0, le=7 * 24 * 60, description="Advance booking closes this long before the start"
    )
    valid_from: HospitalDay
    valid_until: HospitalDay | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if (self.starts_at is None) != (self.ends_at is None):
            raise ValueError("give both starts_at and ends_at, or neither")
        if self.starts_at is not None and self.ends_at is not None and self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        if self.valid_until is not None and self.valid_until < self.valid_from:
            raise ValueError("valid_until must not be before valid_from")
        return self


class TemplatePublic(BaseModel):
    id: str
    department: str
    doctor_id: str
    weekday: int
    period: Period
    starts_at: time
    ends_at: time
    quota: int
    slot_minutes: int
    kind: SessionKind
    booking_opens_days: int
    booking_opens_at: time
    booking_closes_minutes: int
    valid_from: date
    valid_until: date | None
    active: bool


class ExceptionCreate(Request):
    """One date of the template: skipped, or with its own quota and/or local times."""

    date: HospitalDay
    action: ExceptionAction
    quota: int | None = Field(default=None, ge=1, le=MAX_QUOTA)
    starts_at: time | None = None
    ends_at: time | None = None
    reason: str | None = Field(default=None, max_length=200)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        overrides = (self.quota, self.starts_at, self.ends_at)
        if self.action is ExceptionAction.skip and any(v is not None for v in overrides):
            raise ValueError("a skipped date takes no quota or times")
        if self.action is ExceptionAction.override and all(v is None for v in overrides):
            raise ValueError("an override changes the quota or the times")
        if (self.starts_at is None) != (self.ends_at is None):
            raise ValueError("give both starts_at and ends_at, or neither")
        if self.starts_at is not None and self.ends_at is not None and self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        return self


class ExceptionPublic(BaseModel):
    template_id: str
    date: date
    action: ExceptionAction
    quota: int | None
    starts_at: time | None
    ends_at: time | None
    reason: str | None


class GenerateRequest(Request):
    """Generate the sessions of every active template (or one department's) for these dates, inclusive."""

    from_date: HospitalDay
    to_date: HospitalDay
    department: DepartmentCode | None = None

    @model_validator(mode="after")
    def _range(self) -> Self:
        if self.to_date < self.from_date:
            raise ValueError("to_date must not be before from_date")
        if (self.to_date - self.from_date).days >= MAX_GENERATION_DAYS:
            raise ValueError(f"generate at most {MAX_GENERATION_DAYS} days at once")
        return self


class GenerateResult(BaseModel):
    created: list[str] = Field(description="Ids of the sessions created by this run")
    existing: int = Field(description="Sessions that were already there (a re-run creates none)")
    skipped: int = Field(description="Dates skipped by an exception")


class SessionCreate(_SessionShape):
    """An ad-hoc session (a holiday clinic): its own instants; bookable from now until it ends unless told."""

    department: DepartmentCode
    doctor_id: str = Field(max_length=36)
    date: HospitalDay
    period: Period
    starts_at: HospitalInstant
    ends_at: HospitalInstant
    booking_opens_at: HospitalInstant | None = None
    booking_closes_at: HospitalInstant | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        instants = [self.starts_at, self.ends_at, self.booking_opens_at, self.booking_closes_at]
        if any(i is not None and i.tzinfo is None for i in instants):
            raise ValueError("instants need a timezone offset")
        if self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        if self.ends_at - self.starts_at > timedelta(hours=24):
            raise ValueError("a session lasts at most 24 hours")
        if (
            self.booking_opens_at
            and self.booking_closes_at
            and self.booking_closes_at <= self.booking_opens_at
        ):
            raise ValueError("booking_closes_at must be after booking_opens_at")
        return self


class ClinicSessionPublic(BaseModel):
    id: str
    template_id: str | None
    department: str
    doctor_id: str
    date: date
    period: Period
    kind: SessionKind
    starts_at: datetime
    ends_at: datetime
    quota: int
    slot_minutes: int
    fee_item: str = Field(
        description="The consultation fee's item in billing's catalogue, by the doctor's title"
    )
    fee_fen: int
    booking_opens_at: datetime
    booking_closes_at: datetime
    status: SessionStatus
    status_reason: str | None


class SlotPublic(BaseModel):
    starts_at: datetime
    capacity: int
    free: int = Field(description="Seats left; a lapsed hold counts as free")


class SessionSlots(BaseModel):
    clinic_session_id: str
    status: SessionStatus
    free: int
    slots: list[SlotPublic]


class AppointmentCreate(Request):
    """Book (or, with `hold`, hold for a few minutes) a seat of a session for a patient.

    Without `slot_starts_at` the earliest free slot is taken. A `referral` names `referring_clinic`; a
    `followup` names the visit it follows (`followup_of_visit_id`). `check_in` (onsite only) is a walk-in
    (现场挂号): booked and checked in at once, the visit opened.
    """

    clinic_session_id: str = Field(max_length=36)
    patient_id: str = Field(max_length=36)
    channel: Channel
    slot_starts_at: HospitalInstant | None = None
    referring_clinic: str | None = Field(default=None, min_length=1, max_length=100)
    followup_of_visit_id: str | None = Field(default=None, max_length=36)
    hold: bool = False
    check_in: bool = False
    payment_mode: PaymentMode = PaymentMode.prepay

    @model_validator(mode="after")
    def _channel_details(self) -> Self:
        if self.slot_starts_at is not None and self.slot_starts_at.tzinfo is None:
            raise ValueError("slot_starts_at needs a timezone offset")
        if (self.channel is Channel.referral) != (self.referring_clinic is not None):
            raise ValueError("referring_clinic is given for a referral, and only for one")
        if (self.channel is Channel.followup) != (self.followup_of_visit_id is not None):
            raise ValueError("followup_of_visit_id is given for a follow-up, and only for one")
        if self.check_in and self.channel is not Channel.onsite:
            raise ValueError("check_in at booking is for an onsite (walk-in) registration")
        if self.check_in and self.hold:
            raise ValueError("a walk-in is booked, not held")
        if self.payment_mode is PaymentMode.green_channel:
            raise ValueError("the green channel is for emergency visits, not appointments")
        return self


class CancelRequest(Request):
    """`patient` (the patient's own wish, up to the cut-off) or `desk` (staff, any time before arrival)."""

    reason: Literal["patient", "desk"] = "patient"


class CheckInRequest(Request):
    payment_mode: PaymentMode = PaymentMode.prepay

    @model_validator(mode="after")
    def _not_green(self) -> Self:
        if self.payment_mode is PaymentMode.green_channel:
            raise ValueError("the green channel is for emergency visits, not appointments")
        return self


class AppointmentPublic(BaseModel):
    id: str
    clinic_session_id: str
    patient_id: str
    department: str
    doctor_id: str
    channel: Channel
    status: AppointmentStatus
    slot_starts_at: datetime
    fee_item: str
    fee_fen: int
    referring_clinic: str | None
    followup_of_visit_id: str | None
    hold_expires_at: datetime | None
    visit_id: str | None
    cancel_reason: str | None
    created_at: datetime
    booked_at: datetime | None
    arrived_at: datetime | None
    cancelled_at: datetime | None
    noshow_at: datetime | None


class AppointmentAnswer(AppointmentPublic):
    """The appointment; after a check-in, also the visit it opened, with the slip code (shown once)."""

    visit: VisitOpened | None = None


# --- disrupted sessions (预约门诊变更、暂停、取消) ------------------------------------------------------


class DisruptionAction(StrEnum):
    """`change` new times or a substitute doctor (bookings kept); `suspend` no new bookings or check-ins
    (bookings kept); `resume` reopens a suspended session; `cancel` cancels it and every booking on it."""

    change = "change"
    suspend = "suspend"
    resume = "resume"
    cancel = "cancel"


class DisruptionCategory(StrEnum):
    """Whose reason: the doctor's (停诊: ill, called away), a patient-side one, or the hospital's."""

    doctor = "doctor"
    patient = "patient"
    hospital = "hospital"


class OfferStatus(StrEnum):
    offered = "offered"
    accepted = "accepted"
    declined = "declined"
    expired = "expired"
    superseded = "superseded"


class DisruptionCreate(Request):
    """Change, suspend, resume or cancel a session, with the reason the patients are told.

    `change` takes new `starts_at` (the slots and bookings move with it; `ends_at` defaults to the same
    shift) and/or a `substitute_doctor_id` of the same department. `cancel` and `suspend` offer each
    affected patient a rebooking: in `offered_session_id` if given, else the same doctor's (or the
    `substitute_doctor_id`'s) next open session with room, else one of the same department and period.
    """

    action: DisruptionAction
    category: DisruptionCategory
    reason: str = Field(min_length=1, max_length=200, examples=["专家临时停诊 (doctor called to surgery)"])
    starts_at: HospitalInstant | None = None
    ends_at: HospitalInstant | None = None
    substitute_doctor_id: str | None = Field(default=None, min_length=1, max_length=36)
    offered_session_id: str | None = Field(default=None, min_length=1, max_length=36)

    @model_validator(mode="after")
    def _fits_the_action(self) -> Self:
        if any(i is not None and i.tzinfo is None for i in (self.starts_at, self.ends_at)):
            raise ValueError("instants need a timezone offset")
        moves = self.starts_at is not None or self.ends_at is not None
        if self.action is DisruptionAction.change:
            if not moves and self.substitute_doctor_id is None:
                raise ValueError("a change gives new times (starts_at) or a substitute_doctor_id")
            if self.ends_at is not None and self.starts_at is None:
                raise ValueError("a change of times gives starts_at (ends_at is optional)")
            if self.starts_at and self.ends_at and self.ends_at <= self.starts_at:
                raise ValueError("ends_at must be after starts_at")
            if self.offered_session_id is not None:
                raise ValueError("a change keeps the bookings: it offers no other session")
        elif moves:
            raise ValueError("only a change takes new times")
        if self.action is DisruptionAction.resume and (self.substitute_doctor_id or self.offered_session_id):
            raise ValueError("a resume offers no other session")
        return self


class RebookingOfferPublic(BaseModel):
    """A disrupted patient's offer: the session it proposes (null: none with room found) and its status."""

    id: str
    disruption_id: str
    appointment_id: str = Field(description="The disrupted appointment")
    patient_id: str
    clinic_session_id: str | None
    doctor_id: str | None
    starts_at: datetime | None
    status: OfferStatus
    expires_at: datetime
    decided_at: datetime | None
    rebooked_appointment_id: str | None


class AffectedAppointment(BaseModel):
    appointment_id: str
    patient_id: str
    slot_starts_at: datetime
    status: AppointmentStatus = Field(description="After the disruption: booked (kept) or cancelled")
    outcome: Literal["kept", "cancelled"]
    offer: RebookingOfferPublic | None


class DisruptionPublic(BaseModel):
    id: str
    clinic_session_id: str
    action: DisruptionAction
    category: DisruptionCategory
    reason: str
    starts_at: datetime | None
    ends_at: datetime | None
    substitute_doctor_id: str | None
    offered_session_id: str | None
    session_status: SessionStatus
    created_at: datetime
    affected: list[AffectedAppointment]


class OfferDecisionAnswer(RebookingOfferPublic):
    """The offer after the decision; when accepted, the new appointment too."""

    appointment: AppointmentPublic | None = None


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


# --- statistics ------------------------------------------------------------------------------------

MAX_STATISTICS_DAYS = 366


class StatisticsRange(BaseModel):
    """Hospital days (Asia/Shanghai) from `from_date` to `to_date`, both included, at most a year."""

    from_date: HospitalDay
    to_date: HospitalDay

    @model_validator(mode="after")
    def _range(self) -> Self:
        if self.to_date < self.from_date:
            raise ValueError("to_date must not be before from_date")
        if (self.to_date - self.from_date).days >= MAX_STATISTICS_DAYS:
            raise ValueError(f"a range of at most {MAX_STATISTICS_DAYS} days")
        return self


class DayCount(BaseModel):
    date: date
    count: int


class AppointmentStatistics(BaseModel):
    """Appointments booked for the sessions held on these days (a hold that lapsed never counts)."""

    from_date: date
    to_date: date
    department: str | None
    appointments: int
    by_channel: dict[str, int]
    by_department: dict[str, int]
    by_day: list[DayCount] = Field(description="By the session's day; days without any are left out")
    by_status: dict[str, int] = Field(description="Where each stands now (booked, arrived, fulfilled, …)")
    followup_bookings: int = Field(description="Booked by a doctor at the end of a visit (复诊预约)")
    cancellations_by_reason: dict[str, int] = Field(
        description="patient, desk, session_cancelled (a disrupted session), rebooked, …"
    )
    noshows: int
    noshow_rate: float | None = Field(
        description="No-shows over the appointments that came or did not (arrived, fulfilled, noshow)"
    )
    outpatient_visits: int = Field(description="Outpatient visits opened on these days")
    appointment_visits: int = Field(description="Of those, visits an appointment's check-in opened")
    appointment_ratio: float | None = Field(description="appointment_visits / outpatient_visits (预约就诊率)")


class StayStatistics(BaseModel):
    """Inpatient movements on these days, and the length of stay of the patients discharged on them."""

    from_date: date
    to_date: date
    department: str | None
    admissions: int
    transfers: int
    discharges: int
    mean_length_of_stay_days: float | None = Field(
        description="Hospital days (住院天数); null without discharges"
    )
    median_length_of_stay_days: float | None
    longest_stay_days: int | None
