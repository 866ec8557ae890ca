"""All of billing's SQL."""

from collections.abc import Collection
from datetime import date, datetime
from typing import Any

from sqlalchemy import bindparam, func
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, or_, select, update

from services.billing.models import (
    BillingStay,
    BookingFee,
    BookingPayment,
    CatalogueEntry,
    CatalogueItem,
    CatalogueVersion,
    Charge,
    ChargeRule,
    ChargeRuleVersion,
    DailyBillIssue,
    Deposit,
    DepositRefund,
    InpatientDay,
    Payment,
    Receipt,
    ReceiptCounter,
    Refund,
    RejectedCharge,
    StayBed,
    VisitAccount,
)


def get_item(session: Session, code: str) -> CatalogueItem | None:
    return session.get(CatalogueItem, code)


def list_items(session: Session, *, category: str | None, include_inactive: bool) -> list[CatalogueItem]:
    query = select(CatalogueItem)
    if category:
        query = query.where(CatalogueItem.category == category)
    if not include_inactive:
        query = query.where(col(CatalogueItem.active).is_(True))
    return list(session.exec(query.order_by(col(CatalogueItem.category), col(CatalogueItem.code))).all())


def deactivate_items_except(session: Session, codes: Collection[str]) -> None:
    session.execute(
        update(CatalogueItem)
        .where(col(CatalogueItem.code).not_in(codes), col(CatalogueItem.active).is_(True))
        .values(active=False)
    )


# --- catalogue versions and charging rules ---------------------------------------------------------------


def current_catalogue_version_id(session: Session) -> int | None:
    """The catalogue in force: the newest load."""
    return session.exec(select(func.max(CatalogueVersion.id))).one()


def last_catalogue_version_from(session: Session, source_prefix: str) -> CatalogueVersion | None:
    query = select(CatalogueVersion).where(col(CatalogueVersion.source).startswith(source_prefix))
    return session.exec(query.order_by(col(CatalogueVersion.id).desc()).limit(1)).first()


def list_catalogue_versions(session: Session, *, limit: int) -> list[CatalogueVersion]:
    query = select(CatalogueVersion).order_by(col(CatalogueVersion.id).desc()).limit(limit)
    return list(session.exec(query).all())


def catalogue_entries_of(session: Session, version_id: int) -> list[CatalogueEntry]:
    query = select(CatalogueEntry).where(CatalogueEntry.version_id == version_id)
    return list(session.exec(query.order_by(col(CatalogueEntry.line))).all())


def _in_force_on(day: date) -> list[object]:
    current = select(func.max(CatalogueVersion.id)).scalar_subquery()
    return [
        CatalogueEntry.version_id == current,
        col(CatalogueEntry.effective_from) <= day,
        or_(col(CatalogueEntry.effective_to).is_(None), col(CatalogueEntry.effective_to) >= day),
    ]


def catalogue_entry_on(session: Session, *, code: str, day: date) -> CatalogueEntry | None:
    """The entry of the catalogue in force pricing `code` on `day` (periods never overlap)."""
    query = select(CatalogueEntry).where(CatalogueEntry.code == code, *_in_force_on(day))  # type: ignore[arg-type]
    return session.exec(query).first()


def catalogue_entries_on(session: Session, *, day: date, category: str | None) -> list[CatalogueEntry]:
    query = select(CatalogueEntry).where(*_in_force_on(day))  # type: ignore[arg-type]
    if category:
        query = query.where(CatalogueEntry.category == category)
    return list(session.exec(query.order_by(col(CatalogueEntry.category), col(CatalogueEntry.code))).all())


def current_rule_version_id(session: Session) -> int | None:
    return session.exec(select(func.max(ChargeRuleVersion.id))).one()


def last_rule_version_from(session: Session, source_prefix: str) -> ChargeRuleVersion | None:
    query = select(ChargeRuleVersion).where(col(ChargeRuleVersion.source).startswith(source_prefix))
    return session.exec(query.order_by(col(ChargeRuleVersion.id).desc()).limit(1)).first()


def list_rule_versions(session: Session, *, limit: int) -> list[ChargeRuleVersion]:
    query = select(ChargeRuleVersion).order_by(col(ChargeRuleVersion.id).desc()).limit(limit)
    return list(session.exec(query).all())


def rules_of(session: Session, version_id: int) -> list[ChargeRule]:
    query = select(ChargeRule).where(ChargeRule.version_id == version_id)
    return list(session.exec(query.order_by(col(ChargeRule.line))).all())


RULES_MEMO = "billing.rules_naming"  # Session.info key: the rules in force by item, read once a transaction


def rules_naming(session: Session, item_code: str) -> list[ChargeRule]:
    """The rules in force that name the item, as their item or as the other item. Read once per item
    and transaction (a nightly run charges thousands of days of a few items); loading a version clears
    the memo."""
    memo: dict[str, list[ChargeRule]] = session.info.setdefault(RULES_MEMO, {})
    if item_code not in memo:
        current = select(func.max(ChargeRuleVersion.id)).scalar_subquery()
        query = select(ChargeRule).where(
            ChargeRule.version_id == current,
            or_(ChargeRule.item_code == item_code, ChargeRule.other_item_code == item_code),
        )
        memo[item_code] = list(session.exec(query.order_by(col(ChargeRule.line))).all())
    return memo[item_code]


def net_quantities(
    session: Session, *, visit_id: str, item_codes: Collection[str], service_date: date | None
) -> dict[str, int]:
    """How much of each item stands charged to the visit (on `service_date`, if given), in one query: a
    reversal line carries its charge's item and date with the quantity negated (at most one per
    charge), so the plain sum nets reversed charges out. (Filtering `reversal_of IS NULL` instead led
    SQLite's planner to the unique index on `reversal_of`, a scan of every charge per check: the
    bed-day job went quadratic.) The statements are built once: every charge path asks this."""
    session.flush()  # what this transaction charged so far counts (a Core query does not autoflush)
    params: dict[str, Any] = {"n_visit_id": visit_id, "n_codes": list(item_codes)}
    if service_date is None:
        rows = session.connection().execute(_NET_IN_STAY, params)
    else:
        rows = session.connection().execute(_NET_ON_DAY, params | {"n_day": service_date})
    found = {code: int(total) for code, total in rows}
    return {code: found.get(code, 0) for code in item_codes}


_NET_IN_STAY = (
    select(col(Charge.item_code), func.sum(Charge.quantity))
    .where(
        col(Charge.visit_id) == bindparam("n_visit_id"),
        col(Charge.item_code).in_(bindparam("n_codes", expanding=True)),
    )
    .group_by(col(Charge.item_code))
)
_NET_ON_DAY = _NET_IN_STAY.where(col(Charge.service_date) == bindparam("n_day"))


def get_charge(session: Session, charge_id: str) -> Charge | None:
    return session.get(Charge, charge_id)


def reversal_of_charge(session: Session, charge_id: str) -> Charge | None:
    return session.exec(select(Charge).where(Charge.reversal_of == charge_id)).first()


def insert_reversal(session: Session, line: Charge) -> bool:
    """Add a reversal line; False when the charge already has one (unique `reversal_of`)."""
    try:
        with session.begin_nested():
            session.add(line)
    except IntegrityError:
        return False
    return True


def get_account(session: Session, visit_id: str, *, for_update: bool = False) -> VisitAccount | None:
    """With `for_update`, the account row is locked: on PostgreSQL every money change to one visit
    queues behind the previous one (SQLite already serialises writers with BEGIN IMMEDIATE)."""
    query = select(VisitAccount).where(VisitAccount.visit_id == visit_id)
    if for_update:
        query = query.with_for_update()
    return session.exec(query).first()


def accounts_of_visits(session: Session, visit_ids: Collection[str]) -> set[str]:
    """Which of the visits billing holds an account for."""
    query = select(VisitAccount.visit_id).where(col(VisitAccount.visit_id).in_(visit_ids))
    return set(session.exec(query).all())


def insert_account(session: Session, account: VisitAccount) -> bool:
    """Add an account; False when a concurrent transaction created the same visit's account first."""
    try:
        with session.begin_nested():
            session.add(account)
    except IntegrityError:
        return False
    return True


def repoint_accounts(
    session: Session, *, visit_ids: Collection[str], source_patient_id: str, target_patient_id: str
) -> None:
    session.execute(
        update(VisitAccount)
        .where(
            or_(
                col(VisitAccount.visit_id).in_(visit_ids),
                col(VisitAccount.patient_id) == source_patient_id,
            )
        )
        .values(patient_id=target_patient_id)
    )


def list_charges(session: Session, visit_id: str, *, service_date: date | None = None) -> list[Charge]:
    query = select(Charge).where(Charge.visit_id == visit_id)
    if service_date is not None:
        query = query.where(Charge.service_date == service_date)
    return list(session.exec(query.order_by(col(Charge.charged_at), col(Charge.id))).all())


def unpaid_charges(session: Session, visit_id: str) -> list[Charge]:
    """Unpaid lines, less an unpaid charge and its reversal line: they cancel out, nothing is due."""
    reversed_ids = select(Charge.reversal_of).where(
        Charge.visit_id == visit_id, col(Charge.reversal_of).is_not(None)
    )
    query = select(Charge).where(
        Charge.visit_id == visit_id,
        col(Charge.payment_id).is_(None),
        col(Charge.reversal_of).is_(None),
        col(Charge.id).not_in(reversed_ids),
    )
    return list(session.exec(query.order_by(col(Charge.charged_at), col(Charge.id))).all())


def supplementary_due_fen(session: Session, visit_id: str) -> int:
    query = select(func.coalesce(func.sum(Charge.amount_fen), 0)).where(
        Charge.visit_id == visit_id, col(Charge.supplementary).is_(True), col(Charge.payment_id).is_(None)
    )
    return int(session.exec(query).one())


def charges_by_id(session: Session, charge_ids: Collection[str]) -> dict[str, Charge]:
    rows = session.exec(select(Charge).where(col(Charge.id).in_(charge_ids))).all()
    return {row.id: row for row in rows}


def charge_for_event(session: Session, event_id: str) -> Charge | None:
    return session.exec(select(Charge).where(Charge.source_event_id == event_id)).first()


def charge_for_order(session: Session, order_id: str) -> Charge | None:
    return session.exec(select(Charge).where(Charge.order_id == order_id)).first()


def mark_paid(session: Session, charges: Collection[Charge], payment_id: str) -> None:
    for charge in charges:
        charge.payment_id = payment_id
        session.add(charge)


def list_payments(session: Session, visit_id: str) -> list[Payment]:
    query = select(Payment).where(Payment.visit_id == visit_id).order_by(col(Payment.paid_at))
    return list(session.exec(query).all())


def rejection_for_event(session: Session, event_id: str) -> RejectedCharge | None:
    return session.exec(select(RejectedCharge).where(RejectedCharge.event_id == event_id)).first()


def list_rejections(session: Session, *, visit_id: str | None, limit: int) -> list[RejectedCharge]:
    query = select(RejectedCharge)
    if visit_id:
        query = query.where(RejectedCharge.visit_id == visit_id)
    return list(session.exec(query.order_by(col(RejectedCharge.id).desc()).limit(limit)).all())


def get_booking_fee(session: Session, appointment_id: str, *, for_update: bool = False) -> BookingFee | None:
    """With `for_update`, the fee row is locked: a payment and a cancellation of one appointment queue."""
    query = select(BookingFee).where(BookingFee.appointment_id == appointment_id)
    if for_update:
        query = query.with_for_update()
    return session.exec(query).first()


def insert_booking_fee(session: Session, fee: BookingFee) -> bool:
    """Add a booking fee; False when the appointment already has one (a concurrent first read of it)."""
    try:
        with session.begin_nested():
            session.add(fee)
    except IntegrityError:
        return False
    return True


def booking_payment_of(session: Session, appointment_id: str) -> BookingPayment | None:
    return session.exec(select(BookingPayment).where(BookingPayment.appointment_id == appointment_id)).first()


def refund_of(session: Session, appointment_id: str) -> Refund | None:
    return session.exec(select(Refund).where(Refund.appointment_id == appointment_id)).first()


# --- deposits and receipts ---------------------------------------------------------------------------


def insert_receipt_series(session: Session, series: str) -> None:
    """The counter row of a new receipt series; a concurrent first writer having made it is fine."""
    try:
        with session.begin_nested():
            session.add(ReceiptCounter(series=series, last_number=0))
    except IntegrityError:
        pass


def receipts_of(session: Session, visit_id: str) -> list[Receipt]:
    query = select(Receipt).where(Receipt.visit_id == visit_id).order_by(col(Receipt.number))
    return list(session.exec(query).all())


def deposits_of(session: Session, visit_id: str) -> list[Deposit]:
    query = select(Deposit).where(Deposit.visit_id == visit_id)
    return list(session.exec(query.order_by(col(Deposit.received_at), col(Deposit.receipt_number))).all())


def deposit_refunds_of(session: Session, visit_id: str) -> list[DepositRefund]:
    query = select(DepositRefund).where(DepositRefund.visit_id == visit_id)
    return list(session.exec(query.order_by(col(DepositRefund.refunded_at))).all())


def green_channel_accounts(session: Session, *, pending: bool, limit: int) -> list[VisitAccount]:
    query = select(VisitAccount).where(VisitAccount.payment_mode == "green_channel")
    if pending:
        query = query.where(col(VisitAccount.followed_up_at).is_(None))
    query = query.order_by(col(VisitAccount.followed_up_at).is_not(None), col(VisitAccount.opened_at))
    return list(session.exec(query.limit(limit)).all())


# --- stays and inpatient days ------------------------------------------------------------------------


def get_stay(session: Session, visit_id: str) -> BillingStay | None:
    return session.get(BillingStay, visit_id)


def stays_of(session: Session, visit_ids: Collection[str]) -> dict[str, BillingStay]:
    rows = session.exec(select(BillingStay).where(col(BillingStay.visit_id).in_(visit_ids))).all()
    return {row.visit_id: row for row in rows}


def lock_accounts(session: Session, visit_ids: Collection[str]) -> dict[str, VisitAccount]:
    """The accounts, locked in visit-id order (two batches locking overlapping sets never deadlock)."""
    query = (
        select(VisitAccount)
        .where(col(VisitAccount.visit_id).in_(visit_ids))
        .order_by(col(VisitAccount.visit_id))
        .with_for_update()
    )
    return {row.visit_id: row for row in session.exec(query).all()}


def stay_bed_for_event(session: Session, event_id: str) -> StayBed | None:
    return session.exec(select(StayBed).where(StayBed.source_event_id == event_id)).first()


def stays_in_hospital_on(session: Session, day_start: datetime, day_end: datetime) -> list[BillingStay]:
    """Stays admitted before `day_end` and not discharged before `day_start` (all that may owe a day)."""
    query = select(BillingStay).where(
        col(BillingStay.admitted_at) < day_end,
        or_(col(BillingStay.discharged_at).is_(None), col(BillingStay.discharged_at) >= day_start),
    )
    return list(session.exec(query.order_by(col(BillingStay.admitted_at))).all())


def stays_owing_days(session: Session, day_end: datetime) -> list[BillingStay]:
    """Every stay admitted before `day_end`: in hospital, or discharged with days maybe still unposted."""
    query = select(BillingStay).where(col(BillingStay.admitted_at) < day_end)
    return list(session.exec(query.order_by(col(BillingStay.admitted_at))).all())


def beds_of_stays(session: Session, visit_ids: Collection[str]) -> list[StayBed]:
    query = select(StayBed).where(col(StayBed.visit_id).in_(visit_ids))
    return list(
        session.exec(query.order_by(col(StayBed.visit_id), col(StayBed.from_at), col(StayBed.id))).all()
    )


def posted_days(session: Session, visit_ids: Collection[str]) -> set[tuple[str, str, date]]:
    query = select(col(InpatientDay.visit_id), col(InpatientDay.kind), col(InpatientDay.service_date)).where(
        col(InpatientDay.visit_id).in_(visit_ids)
    )
    return {(v, k, d) for v, k, d in session.exec(query).all()}


# --- daily bills ---------------------------------------------------------------------------------------


def get_bill_issue(
    session: Session, visit_id: str, day: date, *, for_update: bool = False
) -> DailyBillIssue | None:
    query = select(DailyBillIssue).where(DailyBillIssue.visit_id == visit_id, DailyBillIssue.bill_date == day)
    if for_update:
        query = query.with_for_update()
    return session.exec(query).first()


def bill_issues_on(session: Session, day: date) -> list[DailyBillIssue]:
    query = select(DailyBillIssue).where(DailyBillIssue.bill_date == day)
    return list(session.exec(query.order_by(col(DailyBillIssue.visit_id))).all())


def insert_bill_issues(session: Session, rows: list[dict[str, Any]]) -> set[str]:
    """Insert the bills not issued before (one statement, `ON CONFLICT DO NOTHING`): the visit ids of
    those inserted now, so a racing twin batch never issues (and announces) a bill twice."""
    if not rows:
        return set()
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    table = DailyBillIssue.__table__  # type: ignore[attr-defined]
    statement = (
        insert(table)
        .on_conflict_do_nothing(index_elements=["visit_id", "bill_date"])
        .returning(table.c.visit_id)
    )
    # executemany with RETURNING (SQLAlchemy's insertmanyvalues): batched, no 500-row statement to compile.
    return set(session.execute(statement, rows).scalars().all())


def refresh_bill_issues(session: Session, rows: list[dict[str, Any]]) -> None:
    """A re-issued bill keeps its first issue time and acknowledgement; its totals are brought up to date."""
    if not rows:
        return
    table = DailyBillIssue.__table__  # type: ignore[attr-defined]
    statement = (
        table.update()
        .where(table.c.visit_id == bindparam("b_visit_id"), table.c.bill_date == bindparam("b_bill_date"))
        .values(
            total_fen=bindparam("b_total_fen"),
            running_total_fen=bindparam("b_running_total_fen"),
            balance_fen=bindparam("b_balance_fen"),
            line_count=bindparam("b_line_count"),
        )
    )
    session.connection().execute(
        statement,
        [
            {
                f"b_{name}": row[name]
                for name in (
                    "visit_id",
                    "bill_date",
                    "total_fen",
                    "running_total_fen",
                    "balance_fen",
                    "line_count",
                )
            }
            for row in rows
        ],
    )
