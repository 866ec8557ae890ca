"""Billing API shapes. Requests forbid unknown fields; every amount is an integer number of fen."""

from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# Ids travel into registration's URL when billing looks a visit up: keep them to uuid characters.
ID_PATTERN = r"^[A-Za-z0-9-]{1,36}$"
EntityId = Annotated[str, Field(pattern=ID_PATTERN, max_length=36)]
# Strict: a JSON 12.5 (or "12") is refused rather than coerced; money is never a float.
Fen = Annotated[int, Field(strict=True, ge=0, le=10**12)]
PositiveFen = Annotated[int, Field(strict=True, ge=1, le=10**12)]
ChargeStatus = Literal["unpaid", "paid"]


class Category(StrEnum):
    """The catalogue's categories (the 一日清单 subtotals by them)."""

    registration = "registration"  # 挂号/诊察
    examination = "examination"  # 检查
    laboratory = "laboratory"  # 检验
    imaging = "imaging"  # 影像
    treatment = "treatment"  # 治疗
    nursing = "nursing"  # 护理
    bed = "bed"  # 床位
    drug = "drug"  # 药品
    material = "material"  # 卫生材料


class InsuranceClass(StrEnum):
    """医保 class of an item: 甲 fully in scope, 乙 partly self-paid, 丙 fully self-paid."""

    jia = "甲"
    yi = "乙"
    bing = "丙"


class Pricing(StrEnum):
    """How an entry's price is set: the tariff's `list` price; a drug's `concession` (a stated share below
    the approved retail price); or `zero_markup` (零加成: the purchase price, unchanged)."""

    list = "list"
    concession = "concession"
    zero_markup = "zero_markup"


class PaymentMethod(StrEnum):
    cash = "cash"
    card = "card"
    wechat = "wechat"
    alipay = "alipay"
    mobile = "mobile"  # any other mobile wallet
    insurance = "insurance"
    deposit = "deposit"  # taken from the visit's deposit (住院押金), never money handed over


class ChargeOrigin(StrEnum):
    """Who asked for the charge: a cashier or HIS call, the visit's registration fee, or a results order."""

    manual = "manual"
    registration = "registration"
    order = "order"
    reversal = "reversal"  # a correction line cancelling an earlier charge (冲销)
    inpatient_day = "inpatient_day"  # a bed or nursing day posted by the nightly job


class CatalogueItemPublic(BaseModel):
    """A catalogue item with the price in force on the day asked (价格公示). `code` is the hospital's own
    code (what charges name), `national_code` the national service or 医保 code. Items no longer in the
    catalogue (`active` false) show their last price and no period."""

    code: str
    national_code: str | None
    name_zh: str
    name_en: str
    unit: str
    price_fen: int
    category: Category
    insurance_class: InsuranceClass | None
    pricing: Pricing | None
    base_price_fen: int | None = Field(description="Approved retail (concession) or purchase (zero mark-up)")
    concession_percent: str | None = Field(description="e.g. `10` or `12.5`: below the approved retail price")
    effective_from: date | None
    effective_to: date | None = Field(description="Last day of the price (inclusive); null: open-ended")
    catalogue_version: int | None
    active: bool


class RowError(BaseModel):
    """One bad row (or header) of an uploaded file: its line number (1 is the header) and why."""

    line: int
    column: str | None
    message: str


class CatalogueVersionPublic(BaseModel):
    id: int
    source: str
    loaded_by: str
    sha256: str
    item_count: int
    entry_count: int
    loaded_at: datetime
    current: bool = Field(description="The catalogue in force (the newest load)")


class CatalogueEntryPublic(BaseModel):
    line: int
    code: str
    national_code: str
    name_zh: str
    name_en: str
    unit: str
    category: Category
    insurance_class: InsuranceClass
    pricing: Pricing
    price_fen: int
    base_price_fen: int | None
    concession_percent: str | None
    effective_from: date
    effective_to: date | None


class CatalogueVersionDetail(CatalogueVersionPublic):
    entries: list[CatalogueEntryPublic]


class RuleKind(StrEnum):
    """A charging rule's kind (see `services.billing.service.rules`)."""

    includes = "includes"
    excludes = "excludes"
    max_per_day = "max_per_day"
    max_per_stay = "max_per_stay"
    visit_kinds = "visit_kinds"


class ChargeRulePublic(BaseModel):
    id: int
    line: int
    rule: RuleKind
    item_code: str
    other_item_code: str | None
    max_quantity: int | None
    visit_kinds: list[str] | None
    note: str | None


class ChargeRuleVersionPublic(BaseModel):
    id: int
    source: str
    loaded_by: str
    sha256: str
    rule_count: int
    loaded_at: datetime
    current: bool


class ChargeRuleVersionDetail(ChargeRuleVersionPublic):
    rules: list[ChargeRulePublic]


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ChargeCreate(Request):
    """A charge posted by a cashier or the HIS; the price always comes from the catalogue."""

    visit_id: EntityId
    item_code: str = Field(min_length=1, max_length=32, examples=["120400006"])
    quantity: int = Field(strict=True, ge=1, le=999)
    service_date: date | None = Field(
        default=None, description="The day the service was given (defaults to today, hospital time)"
    )
    note: str | None = Field(default=None, max_length=200)


class ChargePublic(BaseModel):
    id: str
    visit_id: str
    patient_id: str
    item_code: str
    item_name: str
    unit: str
    unit_price_fen: int
    quantity: int
    amount_fen: int
    origin: ChargeOrigin
    order_id: str | None
    status: ChargeStatus
    payment_id: str | None
    note: str | None
    charged_at: datetime
    service_date: date
    supplementary: bool = Field(description="Read after settlement: due on the supplementary bill (补费)")
    reversal_of: str | None = Field(default=None, description="A reversal line: the charge it cancels")
    reversal_reason: str | None = None
    operator: str | None = Field(default=None, description="Who reversed it (a reversal line only)")
    department: str | None = Field(
        default=None,
        description="The ordering department (开单科室): an order's, the ward's for a bed or nursing day, "
        "else the visit's; null when billing does not know it",
    )


class ReversalCreate(Request):
    """Cancel a charge by a reversal line (冲销): never an edit or a delete of the charge itself."""

    reason: str = Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")
    operator: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[^\x00-\x1f\x7f]+$",
        description="The staff member reversing it",
    )


class PaymentCreate(Request):
    """Pay the listed charges of a visit, or all its unpaid charges when `charge_ids` is omitted."""

    visit_id: EntityId
    charge_ids: list[EntityId] | None = Field(default=None, min_length=1, max_length=500)
    amount_fen: Fen | None = Field(default=None, description="If given, must equal the total due")
    method: PaymentMethod


class VisitRefundCreate(Request):
    """Give back money the account owes the patient (退费: paid beyond its charges, e.g. a paid charge
    reversed before settlement), split back over the tenders that paid it."""

    amount_fen: PositiveFen | None = Field(default=None, description="Default: all that is owed back")
    reason: str = Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")
    operator: str = Field(
        min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f]+$", description="The cashier refunding"
    )


class RefundPartPublic(BaseModel):
    """The part of a refund one tender gets back: one negative payment and (but the insurer's) one
    receipt per method."""

    payment_id: str = Field(description="The negative payment recording it")
    refund_of: str | None = Field(description="The payment whose tender is given back")
    method: PaymentMethod
    amount_fen: int = Field(description="Given back, positive")
    receipt_number: str | None = Field(description="Null for the insurer's (a clawback, no receipt)")


class VisitRefundPublic(BaseModel):
    visit_id: str
    amount_fen: int
    parts: list[RefundPartPublic]


class PaymentPublic(BaseModel):
    id: str
    visit_id: str
    amount_fen: int
    method: PaymentMethod
    charge_ids: list[str]
    paid_at: datetime
    deposit_fen: int = Field(default=0, description="The part taken from the visit's deposit")
    receipt_number: str | None = Field(default=None, description="Its receipt (收据), when issued now")
    invoice_number: str | None = Field(
        default=None, description="Paying the supplementary bill after settlement: the new invoice (发票)"
    )
    insurer_fen: int = Field(default=0, description="What the insurer pays of it (a separate payment)")
    insurance_scheme: str | None = Field(default=None, description="The insurer's payments: its scheme")
    refund_of: str | None = Field(
        default=None, description="Money given back (negative): the payment whose tender it returns"
    )


class InvoiceLinePublic(BaseModel):
    line: int
    charge_id: str
    item_code: str
    item_name: str
    insurance_class: str = Field(description="甲/乙/丙 (丙 when the line has no catalogue entry)")
    quantity: int
    amount_fen: int


class InvoicePublic(BaseModel):
    """An issued invoice (发票): never changed; a correction is a new invoice that `supersedes` it."""

    id: str
    number: str
    visit_id: str
    patient_id: str
    insurance_scheme: str
    total_fen: int
    insurer_fen: int = Field(description="The insurer's share (统筹支付), rounded half up per class")
    patient_fen: int = Field(description="The patient's own share: exactly total − insurer")
    paid_by: dict[str, int] = Field(description="Fen by method; `insurance` is the insurer's share")
    supersedes: str | None
    superseded_by: str | None = None
    issued_at: datetime
    lines: list[InvoiceLinePublic]


class ReconciliationLine(BaseModel):
    kind: Literal[
        "charge",
        "reversal",
        "payment",
        "payment_refund",
        "deposit",
        "deposit_applied",
        "deposit_refund",
        "booking_payment",
        "refund",
        "insurer_share",
    ]
    id: str
    visit_id: str | None
    method: str | None
    amount_fen: int
    at: datetime
    appointment_id: str | None = Field(
        default=None, description="A booking fee's payment or refund: its appointment (no visit yet)"
    )


class ReconciliationPublic(BaseModel):
    """One hospital day's money (对账): every line, totals by kind and by method, and the check."""

    date: date
    lines: list[ReconciliationLine]
    totals_by_kind: dict[str, int]
    totals_by_method: dict[str, dict[str, int]] = Field(description="kind → method → fen")
    balanced: bool = Field(
        description="The day's line totals equal the database's own sums, the insurer shares equal the "
        "insurance payments, and each account touched that day has balance = sum of its lines"
    )
    mismatches: list[str]


class AccountPublic(BaseModel):
    visit_id: str
    patient_id: str
    kind: str
    payment_mode: str
    status: str
    settled_at: datetime | None
    discharged_at: datetime | None = Field(
        default=None, description="When registration discharged the inpatient (出院): settle at discharge"
    )
    awaiting_discharge_settlement: bool = Field(
        default=False, description="Discharged and not yet settled: the cashier's discharge settlement is due"
    )
    charges_total_fen: int
    paid_fen: int
    balance_fen: int
    supplementary_total_fen: int = Field(description="Charges read after settlement (补费)")
    supplementary_due_fen: int = Field(description="What of the supplementary bill is still unpaid")
    charges: list[ChargePublic]
    payments: list[PaymentPublic]


class SettlementCreate(Request):
    """Close the account, paying whatever is still unpaid (出院结算 / 先诊疗后结算 / 先救治后付费)."""

    method: PaymentMethod
    amount_fen: Fen | None = Field(default=None, description="If given, must equal the total due")


class SettlementPublic(BaseModel):
    visit_id: str
    patient_id: str
    status: str
    payment: PaymentPublic | None
    total_fen: int
    settled_at: datetime
    deposit_applied_fen: int = Field(default=0, description="What the deposit paid of the settlement")
    deposit_refundable_fen: int = Field(
        default=0, description="Deposit left over: refund it with POST /visits/{id}/deposit-refunds"
    )
    insurer_fen: int = Field(default=0, description="The insurer's share of what this settlement paid")
    patient_fen: int = Field(default=0, description="The patient's own share of it (deposit included)")
    invoice: InvoicePublic | None = Field(default=None, description="Null when nothing was due")
    refunds: list[RefundPartPublic] = Field(
        default_factory=list,
        description="What the account owed back at settlement (a paid charge reversed before it), "
        "given back over the tenders that paid (多退)",
    )


class DailyBillLine(BaseModel):
    charge_id: str
    item_code: str = Field(description="The hospital's own code (院内编码)")
    national_code: str | None = Field(default=None, description="国家医保编码, when the catalogue has it")
    item_name: str
    category: str | None = Field(default=None, description="The catalogue category (bed, nursing, …)")
    unit: str
    unit_price_fen: int
    quantity: int
    amount_fen: int
    insurance_class: str | None = Field(default=None, description="甲/乙/丙, when the catalogue has it")
    department: str | None = Field(
        default=None, description="The ordering department (开单科室) of the line's charge, if known"
    )
    status: ChargeStatus
    charged_at: datetime


class CategorySubtotal(BaseModel):
    category: str
    amount_fen: int


class DailyBillPublic(BaseModel):
    """The 一日清单: every charge of one hospital day, with totals that equal the sum of the lines,
    the stay's running total up to that day, the deposit and the balance (预交金 − 累计费用 + 已付)."""

    visit_id: str
    patient_id: str
    date: date
    lines: list[DailyBillLine]
    subtotals: list[CategorySubtotal] = Field(default_factory=list)
    total_fen: int
    paid_fen: int
    unpaid_fen: int
    running_total_fen: int = Field(default=0, description="Every charge up to and including this day")
    deposit_fen: int = Field(default=0, description="Deposits received up to the end of this day")
    balance_fen: int = Field(
        default=0, description="Deposits and payments minus refunds and the running total; < 0 is owed"
    )
    acknowledged_at: datetime | None = Field(default=None, description="When the patient confirmed it")


BookingFeeStatus = Literal["due", "paid", "refunded", "void", "on_visit"]


class BookingFeePaymentCreate(Request):
    """Pay an appointment's consultation fee at booking (e.g. in the app, or at the desk)."""

    method: PaymentMethod
    amount_fen: Fen | None = Field(default=None, description="If given, must equal the fee")


class BookingPaymentPublic(BaseModel):
    id: str
    amount_fen: int
    method: PaymentMethod
    paid_at: datetime


class RefundPublic(BaseModel):
    id: str
    payment_id: str
    amount_fen: int
    method: PaymentMethod = Field(description="Refunded the way it was paid")
    reason: str = Field(description="Why the appointment was cancelled, e.g. `session_cancelled`")
    refunded_at: datetime


class BookingFeePublic(BaseModel):
    """An appointment's consultation fee (诊察费): due, paid, refunded, void (cancelled unpaid) or
    on_visit (moved onto the visit's account at check-in)."""

    appointment_id: str
    patient_id: str
    clinic_session_id: str
    department: str
    item_code: str
    item_name: str
    unit: str
    amount_fen: int
    status: BookingFeeStatus
    booked_at: datetime
    cancelled_at: datetime | None
    cancel_reason: str | None
    visit_id: str | None = Field(description="The visit the fee moved onto at check-in")
    charge_id: str | None = Field(description="Its charge on that visit's account")
    payment: BookingPaymentPublic | None
    refund: RefundPublic | None


class RejectedChargePublic(BaseModel):
    event_id: str
    source: str
    visit_id: str | None
    item_code: str | None
    order_id: str | None
    reason: str
    rejected_at: datetime


class RegistrationVisit(BaseModel):
    """The part of registration's visit billing opens an account from, for a visit it has not read yet."""

    id: str
    patient_id: str
    kind: str
    payment_mode: str
    opened_at: datetime
    status: str = Field(default="open", description="`closed`: the visit takes no new manual charge")
    department: str | None = Field(default=None, max_length=32, description="Of its registration fee")


# --- deposits, receipts, standing (service/deposits.py) ---------------------------------------------


class DepositCreate(Request):
    """A deposit or top-up (住院押金 / 预交金) paid in by the patient."""

    amount_fen: Annotated[int, Field(strict=True, ge=1, le=10**10)]
    method: PaymentMethod
    low_balance_threshold_fen: Fen | None = Field(
        default=None, description="Alert when the balance falls to this (default: the service's setting)"
    )

    @field_validator("method")
    @classmethod
    def _money_handed_over(cls, method: "PaymentMethod") -> "PaymentMethod":
        if method == PaymentMethod.deposit:
            raise ValueError("a deposit is paid in cash, card, mobile or insurance, not from a deposit")
        return method


class DepositPublic(BaseModel):
    id: str
    visit_id: str
    amount_fen: int
    method: PaymentMethod
    receipt_number: str
    received_at: datetime


class DepositRefundCreate(Request):
    """Give back what is left of the deposit after the discharge settlement (退押金)."""

    method: PaymentMethod | None = Field(default=None, description="Default: how the last deposit was paid")

    @field_validator("method")
    @classmethod
    def _money_handed_back(cls, method: "PaymentMethod | None") -> "PaymentMethod | None":
        if method == PaymentMethod.deposit:
            raise ValueError("a refund is handed back in cash, card, mobile or insurance")
        return method


class DepositRefundPublic(BaseModel):
    id: str
    visit_id: str
    amount_fen: int
    method: PaymentMethod
    receipt_number: str
    refunded_at: datetime


class DepositsPublic(BaseModel):
    """The visit's deposits against its running total: `balance_fen` < 0 is money owed."""

    visit_id: str
    patient_id: str
    deposits: list[DepositPublic]
    refunds: list[DepositRefundPublic]
    deposit_total_fen: int
    deposit_applied_fen: int = Field(description="Taken from the deposit by payments and settlement")
    deposit_refunded_fen: int
    deposit_held_fen: int = Field(description="Still held: deposits − applied − refunded")
    charges_total_fen: int = Field(description="The running total (累计费用)")
    balance_fen: int
    low_balance_threshold_fen: int | None
    low_balance: bool


class ReceiptPublic(BaseModel):
    number: str
    visit_id: str
    patient_id: str
    kind: Literal["deposit", "payment", "deposit_refund", "refund"] = Field(
        description="`refund`: the patient's part given back after a settled bill's correction"
    )
    amount_fen: int
    method: PaymentMethod
    reference_id: str
    issued_at: datetime
    insurer_fen: int = Field(
        default=0, description="A payment's receipt of an insured visit: the insurer's share beside it"
    )


class ReliefCategory(StrEnum):
    """Why a green-channel patient's bill is followed up (疾病应急救助 and the like)."""

    unidentified = "unidentified"  # 无名氏, three-no patient
    no_means = "no_means"  # cannot pay: emergency relief fund (疾病应急救助基金)
    insurance_pending = "insurance_pending"
    public_emergency = "public_emergency"  # disaster, mass casualty
    paid_in_full = "paid_in_full"  # followed up: nothing to relieve


class ReliefCreate(Request):
    category: ReliefCategory
    note: str | None = Field(default=None, max_length=200)


class StandingPublic(BaseModel):
    """How the account stands against its payment mode: prepay pays before orders are released,
    settle-later runs on credit up to `credit_limit_fen` (charges beyond are posted, and held: due now),
    green-channel has no limit and is flagged until followed up."""

    visit_id: str
    patient_id: str
    payment_mode: str
    status: str
    unpaid_fen: int
    deposit_held_fen: int
    balance_fen: int
    credit_limit_fen: int | None
    credit_used_fen: int
    over_credit_limit: bool
    held_charge_ids: list[str] = Field(description="Unpaid charges beyond the credit limit: due now")
    needs_follow_up: bool
    relief_category: ReliefCategory | None
    followed_up_at: datetime | None


class CreditCheckPublic(BaseModel):
    """Whether one more charge of an item fits the account's credit (for results, before it places an
    order): for a settle-later visit, `fits` when its price is within `remaining_credit_fen`; every other
    mode, and an item billing cannot price today, fits (nothing to hold it against)."""

    visit_id: str
    payment_mode: str
    item_code: str
    price_fen: int | None = Field(description="Today's catalogue price × quantity; None if not priced")
    credit_limit_fen: int | None = Field(description="Settle-later only")
    remaining_credit_fen: int | None = Field(description="Deposit + limit − unpaid charges; settle-later")
    fits: bool


# --- inpatient days and daily bills (service/inpatient_days.py, service/daily_bill.py) ------------


HospitalDay = date  # a field named `date` hides the type inside its class


class RunCreate(Request):
    date: HospitalDay | None = Field(default=None, description="Hospital day; default yesterday")


class InpatientDaysRunPublic(BaseModel):
    date: date
    stays: int = Field(description="Stays looked at")
    posted: int = Field(description="Bed and nursing days posted now (missed earlier days included)")
    refused: int = Field(description="Days whose item the catalogue does not price")


class DailyBillsRunPublic(BaseModel):
    date: date
    bills: int
    lines: int
    issued: int = Field(description="Bills issued for the first time (each emitted `daily_bill.ready`)")


class AcknowledgementCreate(Request):
    date: date


class AcknowledgementPublic(BaseModel):
    visit_id: str
    date: date
    acknowledged_at: datetime


class AcknowledgementReport(BaseModel):
    """知情率: of the daily bills issued for a date, how many the patients acknowledged."""

    date: date
    issued: int
    acknowledged: int
    rate: float | None = Field(description="acknowledged / issued (None when none were issued)")
    unacknowledged_visit_ids: list[str]
