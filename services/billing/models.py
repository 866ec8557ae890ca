"""Billing tables. Money is integer fen in BIGINT columns: never float, never SQLite NUMERIC (a REAL)."""

from datetime import date, datetime
from typing import Literal

from sqlalchemy import JSON, BigInteger, Index, UniqueConstraint, false
from sqlmodel import Field, SQLModel

from kit.idempotency import IdempotencyRecordBase
from kit.models import (
    BigIntId,
    ConsumedEventBase,
    FeedCursorBase,
    OutboxEventBase,
    Timestamp,
    UTCDateTime,
    new_registry,
)


class BillingTable(SQLModel, registry=new_registry()):
    """Base of every billing table (its own metadata)."""


class CatalogueItem(BillingTable, table=True):
    """A priced item of the hospital's price list (医疗服务项目价格); only active items may be charged."""

    __tablename__ = "catalogue_item"

    code: str = Field(primary_key=True, max_length=32)
    name_zh: str = Field(max_length=100)
    name_en: str = Field(max_length=100)
    unit: str = Field(max_length=16)
    price_fen: int
    category: str = Field(max_length=16, index=True)
    active: bool = True
    updated_at: datetime = Timestamp()


class CatalogueVersion(BillingTable, table=True):
    """One load of the price catalogue (a CSV file at start, or an upload): every load is kept, the
    newest is the catalogue in force, older ones stay queryable (which price applied when)."""

    __tablename__ = "catalogue_version"

    id: int | None = Field(default=None, primary_key=True, sa_type=BigIntId)
    source: str = Field(max_length=100)
    loaded_by: str = Field(max_length=64)
    sha256: str = Field(max_length=64)
    item_count: int
    entry_count: int
    loaded_at: datetime = Timestamp()


class CatalogueEntry(BillingTable, table=True):
    """One price period of one item in one catalogue version: the price in force from `effective_from`
    to `effective_to` (inclusive; open-ended when null). A charge is priced by its service date.

    `pricing`: `list` (the tariff's price), `concession` (a drug sold `concession_bp` basis points below
    the approved retail price `base_price_fen`) or `zero_markup` (零加成: sold at its purchase price
    `base_price_fen`); `price_fen` is always the resulting integer price."""

    __tablename__ = "catalogue_entry"
    __table_args__ = (Index("ix_catalogue_entry_version_id_code", "version_id", "code"),)

    id: int | None = Field(default=None, primary_key=True, sa_type=BigIntId)
    version_id: int = Field(foreign_key="catalogue_version.id", sa_type=BigInteger)
    line: int
    code: str = Field(max_length=32)
    national_code: str = Field(max_length=50)
    name_zh: str = Field(max_length=100)
    name_en: str = Field(max_length=100)
    unit: str = Field(max_length=16)
    category: str = Field(max_length=16)
    insurance_class: str = Field(max_length=1)
    pricing: str = Field(max_length=16)
    price_fen: int = Field(sa_type=BigInteger)
    base_price_fen: int | None = Field(default=None, sa_type=BigInteger)
    concession_bp: int | None = None
    effective_from: date
    effective_to: date | None = None


class ChargeRuleVersion(BillingTable, table=True):
    """One load of the charging rules (收费规则); the newest is in force, older ones are kept."""

    __tablename__ = "charge_rule_version"

    id: int | None = Field(default=None, primary_key=True, sa_type=BigIntId)
    source: str = Field(max_length=100)
    loaded_by: str = Field(max_length=64)
    sha256: str = Field(max_length=64)
    rule_count: int
    loaded_at: datetime = Timestamp()


class ChargeRule(BillingTable, table=True):
    """A charging rule as data: `includes` (item includes `other_item_code`: never both on one day),
    `excludes` (mutually exclusive on one day), `max_per_day` / `max_per_stay` (`max_quantity`),
    `visit_kinds` (the item only for visits of `visit_kinds`, space-separated)."""

    __tablename__ = "charge_rule"

    id: int | None = Field(default=None, primary_key=True, sa_type=BigIntId)
    version_id: int = Field(foreign_key="charge_rule_version.id", index=True, sa_type=BigInteger)
    line: int
    rule: str = Field(max_length=16)
    item_code: str = Field(max_length=32)
    other_item_code: str | None = Field(default=None, max_length=32)
    max_quantity: int | None = None
    visit_kinds: str | None = Field(default=None, max_length=64)
    note: str | None = Field(default=None, max_length=200)


class VisitAccount(BillingTable, table=True):
    """The bill of one visit: `open` while charges may be posted, `settled` once closed (结算).

    `discharged_at`: registration discharged the inpatient (`visit.discharged`), so the account awaits
    its discharge settlement (出院结算) at the cashier; `kind` follows the visit into `inpatient`.
    """

    __tablename__ = "visit_account"

    visit_id: str = Field(primary_key=True, max_length=36)
    patient_id: str = Field(index=True, max_length=36)
    kind: str = Field(max_length=16)
    payment_mode: str = Field(max_length=16)
    status: str = Field(default="open", max_length=16)
    opened_at: datetime = Timestamp()
    settled_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    discharged_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # deposits.py: set when `deposit.low_balance` was emitted, cleared when a top-up lifts the balance
    # back over the threshold, so the event fires once per crossing.
    low_balance_alerted: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    # The balance (deposits + payments − charges) at or below which `deposit.low_balance` fires; set
    # with the first deposit (None: no deposit, no alert).
    low_balance_threshold_fen: int | None = Field(default=None, sa_type=BigInteger)
    # Green channel (先救治后付费): the emergency-relief category (疾病应急救助) recorded at follow-up.
    relief_category: str | None = Field(default=None, max_length=32)
    followed_up_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    followed_up_by: str | None = Field(default=None, max_length=64)
    # The patient's insurance scheme (医保类别) as registration's `visit.opened` said when the visit
    # opened; a later change of the patient's scheme does not move an open visit. None: not read yet
    # (settlement, which first reads every committed event, then splits as `self_pay`).
    insurance_scheme: str | None = Field(default=None, max_length=32)
    # The visit's department as registration said (`visit.opened`, then the ward's on admission and
    # transfer): the department of its registration and manual charges. None: not read yet.
    department: str | None = Field(default=None, max_length=32)


class Payment(BillingTable, table=True):
    """Money received against a visit's charges; each paid charge points at its payment.

    Money given back is a payment of its own with the amount negated; `refund_of` names the payment
    whose tender it gives back (tenders.py: never more per method than that payment took by it).
    `insurance_scheme`: on the insurer's payments (method `insurance`), the scheme it pays under; a
    patient's own tender by method `insurance` (个人账户) has none, so refunds tell them apart."""

    id: str = Field(primary_key=True, max_length=36)
    visit_id: str = Field(foreign_key="visit_account.visit_id", index=True, max_length=36)
    amount_fen: int = Field(sa_type=BigInteger)
    method: str = Field(max_length=16)
    paid_at: datetime = Timestamp()
    refund_of: str | None = Field(default=None, index=True, max_length=36)
    insurance_scheme: str | None = Field(default=None, max_length=32)


class Charge(BillingTable, table=True):
    """One bill line. Name, unit and price are copied from the catalogue when posted, so a later price
    change never rewrites a bill. `source_event_id` and `order_id` are unique: a replayed event or a
    re-announced order can never be charged twice (重复收费). `supplementary`: caused before, read after
    the account was settled, so it is due on the supplementary bill (补费) instead of being dropped.

    A correction is a reversal line (冲销), never an edit: `reversal_of` names the charge it cancels
    (unique: a charge is reversed at most once), with the negated quantity and amount, the reason and
    the operator. `price_entry_id`: the catalogue entry (version, period) the line was priced from.

    `department`: the ordering department (开单科室) the daily bill shows: an order's own, the ward's for
    a bed or nursing day, the visit's for its registration fee and manual charges (None: not known)."""

    __table_args__ = (
        Index("ix_charge_visit_id_service_date", "visit_id", "service_date"),
        Index("ix_charge_visit_id_item_code", "visit_id", "item_code"),
        UniqueConstraint("reversal_of", name="uq_charge_reversal_of"),
    )

    id: str = Field(primary_key=True, max_length=36)
    visit_id: str = Field(foreign_key="visit_account.visit_id", max_length=36)
    item_code: str = Field(foreign_key="catalogue_item.code", max_length=32)
    item_name: str = Field(max_length=100)
    unit: str = Field(max_length=16)
    unit_price_fen: int
    quantity: int
    amount_fen: int = Field(sa_type=BigInteger)
    origin: str = Field(max_length=16)
    order_id: str | None = Field(default=None, max_length=36, unique=True)
    source_event_id: str | None = Field(default=None, max_length=36, unique=True)
    note: str | None = Field(default=None, max_length=200)
    payment_id: str | None = Field(default=None, foreign_key="payment.id", index=True, max_length=36)
    charged_at: datetime = Timestamp()
    service_date: date
    supplementary: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    price_entry_id: int | None = Field(default=None, foreign_key="catalogue_entry.id", sa_type=BigInteger)
    reversal_of: str | None = Field(default=None, foreign_key="charge.id", max_length=36)
    reversal_reason: str | None = Field(default=None, max_length=200)
    operator: str | None = Field(default=None, max_length=64)
    department: str | None = Field(default=None, max_length=32)

    @property
    def status(self) -> Literal["unpaid", "paid"]:
        return "unpaid" if self.payment_id is None else "paid"


class BookingFee(BillingTable, table=True):
    """The consultation fee (诊察费) of one appointment, read from registration's `appointment.booked` (or
    `.held`), priced from the catalogue when read. Payable at booking; `status`: `due`, `paid`,
    `refunded` (cancelled after payment), `void` (cancelled unpaid) or `on_visit` (checked in: a paid fee
    moved onto the visit's account with its payment, an unpaid one charged there instead)."""

    __tablename__ = "booking_fee"

    appointment_id: str = Field(primary_key=True, max_length=36)
    patient_id: str = Field(index=True, max_length=36)
    clinic_session_id: str = Field(index=True, max_length=36)
    department: str = Field(max_length=32)
    item_code: str = Field(foreign_key="catalogue_item.code", max_length=32)
    item_name: str = Field(max_length=100)
    unit: str = Field(max_length=16)
    amount_fen: int = Field(sa_type=BigInteger)
    status: str = Field(default="due", max_length=16)
    booked_at: datetime = Timestamp()
    cancelled_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    cancel_reason: str | None = Field(default=None, max_length=32)
    visit_id: str | None = Field(default=None, foreign_key="visit_account.visit_id", max_length=36)
    charge_id: str | None = Field(default=None, max_length=36)


class BookingPayment(BillingTable, table=True):
    """The payment of a booking fee, before any visit exists. At check-in it is carried onto the visit's
    account as a `Payment` with the same id, so the visit's charge points at the money really taken."""

    __tablename__ = "booking_payment"

    id: str = Field(primary_key=True, max_length=36)
    appointment_id: str = Field(foreign_key="booking_fee.appointment_id", unique=True, max_length=36)
    amount_fen: int = Field(sa_type=BigInteger)
    method: str = Field(max_length=16)
    paid_at: datetime = Timestamp()


class Refund(BillingTable, table=True):
    """Money given back for a paid booking fee whose appointment was cancelled (退费): a record of its own,
    never an edit of the payment. Unique per appointment and per payment, so a replayed or repeated
    cancellation can never refund twice."""

    id: str = Field(primary_key=True, max_length=36)
    appointment_id: str = Field(foreign_key="booking_fee.appointment_id", unique=True, max_length=36)
    payment_id: str = Field(foreign_key="booking_payment.id", unique=True, max_length=36)
    amount_fen: int = Field(sa_type=BigInteger)
    method: str = Field(max_length=16)
    reason: str = Field(max_length=32)
    source_event_id: str = Field(max_length=36)
    refunded_at: datetime = Timestamp()


class RejectedCharge(BillingTable, table=True):
    """An event that asked for a charge billing must not post (unknown item, duplicate order, …).

    Kept for the cashier to review instead of inventing a charge or silently dropping the event.
    """

    __tablename__ = "rejected_charge"

    id: int | None = Field(default=None, primary_key=True, sa_type=BigIntId)
    event_id: str = Field(max_length=36, unique=True)
    source: str = Field(max_length=32)
    visit_id: str | None = Field(default=None, max_length=36, index=True)
    item_code: str | None = Field(default=None, max_length=64)
    order_id: str | None = Field(default=None, max_length=36)
    reason: str = Field(max_length=32)
    rejected_at: datetime = Timestamp()


class Deposit(BillingTable, table=True):
    """Money paid in ahead of charges (住院押金 / 预交金): the first deposit and every top-up, each with
    its receipt. Never edited: what is spent of it is a `DepositApplication`, what is given back a
    `DepositRefund`."""

    id: str = Field(primary_key=True, max_length=36)
    visit_id: str = Field(foreign_key="visit_account.visit_id", index=True, max_length=36)
    amount_fen: int = Field(sa_type=BigInteger)
    method: str = Field(max_length=16)
    receipt_number: str = Field(max_length=32, unique=True)
    received_by: str = Field(max_length=64)
    received_at: datetime = Timestamp()


class DepositApplication(BillingTable, table=True):
    """The part of a payment taken from the visit's deposit (at settlement, or a payment by `deposit`)."""

    __tablename__ = "deposit_application"

    payment_id: str = Field(primary_key=True, foreign_key="payment.id", max_length=36)
    visit_id: str = Field(foreign_key="visit_account.visit_id", index=True, max_length=36)
    amount_fen: int = Field(sa_type=BigInteger)
    applied_at: datetime = Timestamp()


class DepositRefund(BillingTable, table=True):
    """What was left of the deposit, given back after the discharge settlement (退押金 / 多退)."""

    __tablename__ = "deposit_refund"

    id: str = Field(primary_key=True, max_length=36)
    visit_id: str = Field(foreign_key="visit_account.visit_id", index=True, max_length=36)
    amount_fen: int = Field(sa_type=BigInteger)
    method: str = Field(max_length=16)
    receipt_number: str = Field(max_length=32, unique=True)
    refunded_by: str = Field(max_length=64)
    refunded_at: datetime = Timestamp()


class Receipt(BillingTable, table=True):
    """A numbered receipt (收据) for money in or out; immutable: `deposits.py` refuses any update or
    delete of a row once written. `kind`: deposit, payment, deposit_refund or refund (a correction's)."""

    number: str = Field(primary_key=True, max_length=32)
    visit_id: str = Field(foreign_key="visit_account.visit_id", index=True, max_length=36)
    patient_id: str = Field(max_length=36)
    kind: str = Field(max_length=16)
    amount_fen: int = Field(sa_type=BigInteger)
    method: str = Field(max_length=16)
    reference_id: str = Field(max_length=36)
    issued_at: datetime = Timestamp()
    # A payment's receipt for an insured visit shows both shares: `amount_fen` the patient's, this the
    # insurer's (paid to the hospital by the insurer, under the visit's scheme).
    insurer_fen: int = Field(default=0, sa_type=BigInteger, sa_column_kwargs={"server_default": "0"})


class Invoice(BillingTable, table=True):
    """The invoice (发票) a settlement issues: immutable once written (`immutable.py`). A later change of
    the bill (the supplementary bill paid after settlement) issues a new invoice whose `supersedes`
    names the one it replaces (unique: an invoice is superseded once). Shares always sum to the total:
    `insurer_fen + patient_fen == total_fen`; `paid_by` is the money by method (`insurance` is the
    insurer's share)."""

    id: str = Field(primary_key=True, max_length=36)
    number: str = Field(max_length=32, unique=True)
    visit_id: str = Field(foreign_key="visit_account.visit_id", index=True, max_length=36)
    patient_id: str = Field(max_length=36)
    insurance_scheme: str = Field(max_length=32)
    total_fen: int = Field(sa_type=BigInteger)
    insurer_fen: int = Field(sa_type=BigInteger)
    patient_fen: int = Field(sa_type=BigInteger)
    paid_by: dict[str, int] = Field(sa_type=JSON)
    supersedes: str | None = Field(default=None, foreign_key="invoice.id", unique=True, max_length=36)
    issued_at: datetime = Timestamp()


class InvoiceLine(BillingTable, table=True):
    """One bill line on an invoice, copied from the charge (immutable like its invoice)."""

    __tablename__ = "invoice_line"

    invoice_id: str = Field(primary_key=True, foreign_key="invoice.id", max_length=36)
    line: int = Field(primary_key=True)
    charge_id: str = Field(foreign_key="charge.id", max_length=36)
    item_code: str = Field(max_length=32)
    item_name: str = Field(max_length=100)
    insurance_class: str = Field(max_length=1)
    quantity: int
    amount_fen: int = Field(sa_type=BigInteger)


class ReceiptCounter(BillingTable, table=True):
    """The last receipt number of a series (one per hospital year), incremented in place."""

    __tablename__ = "receipt_counter"

    series: str = Field(primary_key=True, max_length=8)
    last_number: int = Field(default=0, sa_type=BigInteger)


class BillingStay(BillingTable, table=True):
    """An inpatient stay as billing read it from registration's feed (`visit.admitted`, `.discharged`)."""

    __tablename__ = "billing_stay"

    visit_id: str = Field(primary_key=True, foreign_key="visit_account.visit_id", max_length=36)
    patient_id: str = Field(max_length=36)
    admitted_at: datetime = Field(sa_type=UTCDateTime)
    discharged_at: datetime | None = Field(default=None, sa_type=UTCDateTime, index=True)


class StayBed(BillingTable, table=True):
    """Where the stay lay from `from_at` on (admission or transfer): the bed-day's class and department."""

    __tablename__ = "stay_bed"
    __table_args__ = (UniqueConstraint("source_event_id", name="uq_stay_bed_source_event_id"),)

    id: int | None = Field(default=None, primary_key=True, sa_type=BigIntId)
    visit_id: str = Field(foreign_key="billing_stay.visit_id", index=True, max_length=36)
    from_at: datetime = Field(sa_type=UTCDateTime)
    ward_code: str = Field(max_length=32)
    bed_code: str = Field(max_length=32)
    bed_class: str = Field(max_length=16)
    department: str = Field(max_length=32)
    source_event_id: str = Field(max_length=36)


class InpatientDay(BillingTable, table=True):
    """One posted bed or nursing day of a stay. The primary key (stay, kind, date) is the job's
    idempotency: a re-run, a twin job or a catch-up can never post the same day twice, and a transfer
    day (two beds) is one bed-day."""

    __tablename__ = "inpatient_day"

    visit_id: str = Field(primary_key=True, foreign_key="billing_stay.visit_id", max_length=36)
    kind: str = Field(primary_key=True, max_length=16)
    service_date: date = Field(primary_key=True)
    charge_id: str = Field(foreign_key="charge.id", max_length=36)
    item_code: str = Field(max_length=32)
    department: str = Field(max_length=32)
    posted_at: datetime = Timestamp()


class DailyBillIssue(BillingTable, table=True):
    """A daily itemised bill (一日清单) produced for an inpatient and date, and the patient's
    acknowledgement of it (知情确认)."""

    __tablename__ = "daily_bill_issue"

    visit_id: str = Field(primary_key=True, foreign_key="visit_account.visit_id", max_length=36)
    bill_date: date = Field(primary_key=True, index=True)
    patient_id: str = Field(max_length=36)
    total_fen: int = Field(sa_type=BigInteger)
    running_total_fen: int = Field(sa_type=BigInteger)
    balance_fen: int = Field(sa_type=BigInteger)
    line_count: int
    issued_at: datetime = Timestamp()
    acknowledged_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    acknowledged_by: str | None = Field(default=None, max_length=64)


class OutboxEvent(OutboxEventBase, BillingTable, table=True):
    __tablename__ = "outbox_event"


class FeedCursor(FeedCursorBase, BillingTable, table=True):
    __tablename__ = "feed_cursor"


class ConsumedEvent(ConsumedEventBase, BillingTable, table=True):
    __tablename__ = "consumed_event"


class IdempotencyRecord(IdempotencyRecordBase, BillingTable, table=True):
    __tablename__ = "idempotency_record"
