"""The daily itemised bill (一日清单): for one visit and hospital day every line with its codes, price,
category and ordering department, subtotals by category, the day's total, the running total up to that
day, the deposit and the balance; as JSON and as a printable PDF; issued for every inpatient of a day
in one batch (`daily_bill.ready` per bill, for the app) and acknowledged by the patient (知情确认).

Bills are computed from the ledger when asked for, a batch of visits at a time with one query per sum,
so the batch for thousands of inpatients costs a handful of queries per chunk, not per bill. The queries
are Core statements built once, with bound parameters: every outpatient journey reads its bill, and
building them per read (five sums, the lines) cost most of the read. Each line names its charge's
ordering department (开单科室, `Charge.department`): an order's own, the ward's for a bed day. A bill's
lines never change once posted (corrections are new lines), so a reprint shows the same lines; what was
issued (totals, line count) is kept in `DailyBillIssue` with the acknowledgement.
"""

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import BindParameter, Connection, Select, Table, bindparam, func, select
from sqlmodel import Session

from kit.clock import HOSPITAL_TZ, as_utc, utcnow
from kit.database import Database, ReadConnection
from kit.outbox import record_event
from kit.pdf import PdfDocument, TableColumn
from services.billing import repository
from services.billing.errors import DailyBillNotIssued
from services.billing.models import (
    CatalogueEntry,
    CatalogueItem,
    Charge,
    DailyBillIssue,
    Deposit,
    DepositApplication,
    DepositRefund,
    OutboxEvent,
    Payment,
    VisitAccount,
)
from services.billing.schemas import (
    AcknowledgementPublic,
    AcknowledgementReport,
    CategorySubtotal,
    DailyBillLine,
    DailyBillPublic,
    DailyBillsRunPublic,
)
from services.billing.service.accounts import hospital_today, known_account, refuse_unless_visible
from services.billing.service.inpatient_days import day_start

CHUNK = 500  # visits per query batch (and per transaction when issuing)
# From the catalogue entry that priced the charge (national code 国家编码, insurance class 甲/乙/丙):
# the codes and class in force on the service date, as the price was.
ENTRY_COLUMNS = ("national_code", "insurance_class")


Reader = Session | ReadConnection
"""Where a bill is read: a request's `ReadConnection` (the JSON bill) or a session (the PDF, the batch)."""
VISIT_IDS: BindParameter[Any] = bindparam("visit_ids", expanding=True)


def _table(model: Any) -> Table:
    table: Table = model.__table__
    return table


def _sum_by_visit(model: Any, moment: str) -> Select[Any]:
    """Each visit's sum of `amount_fen` of `model` before `until` (by its `moment` column)."""
    columns = _table(model).c
    return (
        select(columns.visit_id, func.sum(columns.amount_fen))
        .where(columns.visit_id.in_(VISIT_IDS), columns[moment] < bindparam("until"))
        .group_by(columns.visit_id)
    )


# What the running total and the balance add up, each before the end of the bill's day.
RUNNING_TOTAL = _sum_by_visit(Charge, "service_date")  # until: the next day (a date)
DEPOSITED = _sum_by_visit(Deposit, "received_at")  # until: the next day's first instant (the others too)
PAID = _sum_by_visit(Payment, "paid_at")
APPLIED = _sum_by_visit(DepositApplication, "applied_at")
REFUNDED = _sum_by_visit(DepositRefund, "refunded_at")
ACCOUNT_OWNER = select(_table(VisitAccount).c.patient_id).where(
    _table(VisitAccount).c.visit_id == bindparam("visit_id")
)
ACKNOWLEDGED = select(_table(DailyBillIssue).c.acknowledged_at).where(
    _table(DailyBillIssue).c.visit_id == bindparam("visit_id"),
    _table(DailyBillIssue).c.bill_date == bindparam("day"),
)


def _connection(reader: Reader) -> Connection | ReadConnection:
    return reader.connection() if isinstance(reader, Session) else reader


def _sums(
    connection: Connection | ReadConnection, statement: Select[Any], visit_ids: Sequence[str], until: Any
) -> dict[str, int]:
    rows = connection.execute(statement, {"visit_ids": list(visit_ids), "until": until})
    return {visit_id: int(total) for visit_id, total in rows}


LINE_FIELDS = (
    "visit_id",
    "charge_id",
    "item_code",
    "item_name",
    "unit",
    "unit_price_fen",
    "quantity",
    "amount_fen",
    "payment_id",
    "charged_at",
    "category",
    "department",
    *ENTRY_COLUMNS,
)


@dataclass(slots=True)
class Bill:
    """One computed bill; lines are plain dicts (a batch of 200,000 lines never builds models)."""

    visit_id: str
    patient_id: str
    date: date
    lines: list[dict[str, Any]]
    subtotals: dict[str, int]
    total_fen: int
    paid_fen: int
    running_total_fen: int
    deposit_fen: int
    balance_fen: int

    def public(self, *, acknowledged_at: datetime | None = None) -> DailyBillPublic:
        return DailyBillPublic(
            visit_id=self.visit_id,
            patient_id=self.patient_id,
            date=self.date,
            lines=[
                DailyBillLine(
                    **{k: v for k, v in line.items() if k not in ("visit_id", "payment_id")},
                    status="unpaid" if line["payment_id"] is None else "paid",
                )
                for line in self.lines
            ],
            subtotals=[CategorySubtotal(category=c, amount_fen=a) for c, a in sorted(self.subtotals.items())],
            total_fen=self.total_fen,
            paid_fen=self.paid_fen,
            unpaid_fen=self.total_fen - self.paid_fen,
            running_total_fen=self.running_total_fen,
            deposit_fen=self.deposit_fen,
            balance_fen=self.balance_fen,
            acknowledged_at=acknowledged_at,
        )


def _lines_query() -> Select[Any]:
    item, entry, charge = (_table(model).c for model in (CatalogueItem, CatalogueEntry, Charge))
    return (
        select(
            charge.visit_id,
            charge.id,
            charge.item_code,
            charge.item_name,
            charge.unit,
            charge.unit_price_fen,
            charge.quantity,
            charge.amount_fen,
            charge.payment_id,
            charge.charged_at,
            item.category,
            charge.department,
            *(entry[name] for name in ENTRY_COLUMNS),
        )
        .select_from(
            _table(Charge)
            .outerjoin(_table(CatalogueItem), charge.item_code == item.code)
            .outerjoin(_table(CatalogueEntry), charge.price_entry_id == entry.id)
        )
        .where(charge.visit_id.in_(VISIT_IDS), charge.service_date == bindparam("day"))
        .order_by(charge.visit_id, charge.charged_at, charge.id)
    )


LINES = _lines_query()


def _lines_by_visit(
    connection: Connection | ReadConnection, visit_ids: Sequence[str], day: date
) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in connection.execute(LINES, {"visit_ids": list(visit_ids), "day": day}):
        found[row[0]].append(dict(zip(LINE_FIELDS, row, strict=True)))
    return found


def bills_for(reader: Reader, accounts: Sequence[tuple[str, str]], day: date) -> list[Bill]:
    """The bills of `day` for (visit_id, patient_id) pairs, a few queries per chunk of visits."""
    connection = _connection(reader)
    bills: list[Bill] = []
    for offset in range(0, len(accounts), CHUNK):
        chunk = accounts[offset : offset + CHUNK]
        ids = [visit_id for visit_id, _ in chunk]
        end = day_start(day + timedelta(days=1))
        lines = _lines_by_visit(connection, ids, day)
        running = _sums(connection, RUNNING_TOTAL, ids, day + timedelta(days=1))
        deposits = _sums(connection, DEPOSITED, ids, end)
        payments = _sums(connection, PAID, ids, end)
        applied = _sums(connection, APPLIED, ids, end)
        refunded = _sums(connection, REFUNDED, ids, end)
        for visit_id, patient_id in chunk:
            own = lines.get(visit_id, [])
            subtotals: dict[str, int] = defaultdict(int)
            total = paid = 0
            for line in own:
                amount = line["amount_fen"]
                subtotals[line["category"] or "other"] += amount
                total += amount
                if line["payment_id"] is not None:
                    paid += amount
            deposit = deposits.get(visit_id, 0)
            balance = (
                deposit
                + payments.get(visit_id, 0)
                - applied.get(visit_id, 0)
                - refunded.get(visit_id, 0)
                - running.get(visit_id, 0)
            )
            bills.append(
                Bill(
                    visit_id=visit_id,
                    patient_id=patient_id,
                    date=day,
                    lines=own,
                    subtotals=dict(subtotals),
                    total_fen=total,
                    paid_fen=paid,
                    running_total_fen=running.get(visit_id, 0),
                    deposit_fen=deposit,
                    balance_fen=balance,
                )
            )
    return bills


def daily_bill(
    reader: Reader, *, visit_id: str, day: date | None, acting_for: str | None = None
) -> DailyBillPublic:
    """One visit's bill of one hospital day (default today); 404 for another patient's visit, exactly as
    for one billing has no account for (`accounts.known_account`)."""
    connection = _connection(reader)
    patient_id = connection.execute(ACCOUNT_OWNER, {"visit_id": visit_id}).scalar()
    refuse_unless_visible(patient_id, acting_for)
    day = day or hospital_today()
    [bill] = bills_for(reader, [(visit_id, str(patient_id))], day)
    acknowledged = connection.execute(ACKNOWLEDGED, {"visit_id": visit_id, "day": day}).scalar()
    return bill.public(acknowledged_at=as_utc(acknowledged) if acknowledged else None)


# --- the batch ----------------------------------------------------------------------------------------


def issue_daily_bills(database: Database, *, day: date) -> DailyBillsRunPublic:
    """Issue the bill of `day` to every patient in a bed that day: a `DailyBillIssue` each (totals
    refreshed on a re-run) and `daily_bill.ready` the first time only. A chunk per transaction."""
    with database.session(write=False) as session:
        stays = repository.stays_in_hospital_on(session, day_start(day), day_start(day + timedelta(days=1)))
        accounts = [(stay.visit_id, stay.patient_id) for stay in stays]
    issued = lines = 0
    for offset in range(0, len(accounts), CHUNK):
        with database.session() as session:
            chunk_bills = bills_for(session, accounts[offset : offset + CHUNK], day)
            issued += _issue(session, chunk_bills)
            lines += sum(len(bill.lines) for bill in chunk_bills)
    return DailyBillsRunPublic(date=day, bills=len(accounts), lines=lines, issued=issued)


def _issue(session: Session, bills: Sequence[Bill]) -> int:
    now = utcnow()
    rows = [
        {
            "visit_id": bill.visit_id,
            "bill_date": bill.date,
            "patient_id": bill.patient_id,
            "total_fen": bill.total_fen,
            "running_total_fen": bill.running_total_fen,
            "balance_fen": bill.balance_fen,
            "line_count": len(bill.lines),
            "issued_at": now,
        }
        for bill in bills
    ]
    first_time = repository.insert_bill_issues(session, rows)
    by_visit = {bill.visit_id: bill for bill in bills}
    repository.refresh_bill_issues(session, [row for row in rows if row["visit_id"] not in first_time])
    for visit_id in sorted(first_time):
        bill = by_visit[visit_id]
        record_event(  # as accounts.record, without loading each account: the bill names its patient
            session,
            OutboxEvent,
            event_type="daily_bill.ready",
            aggregate_type="visit",
            aggregate_id=visit_id,
            visit_id=visit_id,
            patient_id=bill.patient_id,
            payload={
                "date": bill.date.isoformat(),
                "total_fen": bill.total_fen,
                "running_total_fen": bill.running_total_fen,
                "deposit_fen": bill.deposit_fen,
                "balance_fen": bill.balance_fen,
                "line_count": len(bill.lines),
            },
        )
    return len(first_time)


# --- acknowledgement (知情确认) ------------------------------------------------------------------------


def acknowledge(
    session: Session, *, visit_id: str, day: date, acting_for: str | None, by: str
) -> AcknowledgementPublic:
    """The patient confirms the issued bill of `day`; again later keeps the first confirmation."""
    known_account(session, visit_id, acting_for)
    issue = repository.get_bill_issue(session, visit_id, day, for_update=True)
    if issue is None:
        raise DailyBillNotIssued(f"No daily bill was issued for this visit on {day.isoformat()}.")
    if issue.acknowledged_at is None:
        issue.acknowledged_at, issue.acknowledged_by = utcnow(), by[:64]
        session.add(issue)
        session.flush()
    return AcknowledgementPublic(visit_id=visit_id, date=day, acknowledged_at=as_utc(issue.acknowledged_at))


def acknowledgement_report(session: Session, *, day: date) -> AcknowledgementReport:
    """知情率 of one day: acknowledged bills over issued ones, and who has not acknowledged yet."""
    issues: list[DailyBillIssue] = repository.bill_issues_on(session, day)
    pending = [issue.visit_id for issue in issues if issue.acknowledged_at is None]
    acknowledged = len(issues) - len(pending)
    return AcknowledgementReport(
        date=day,
        issued=len(issues),
        acknowledged=acknowledged,
        rate=round(acknowledged / len(issues), 4) if issues else None,
        unacknowledged_visit_ids=pending,
    )


# --- the printable bill -----------------------------------------------------------------------------


def yuan(fen: int) -> str:
    """Fen as yuan text, exactly (no float): 123456 → 1234.56, −5 → -0.05."""
    sign = "-" if fen < 0 else ""
    return f"{sign}{abs(fen) // 100}.{abs(fen) % 100:02d}"


CATEGORY_NAMES = {
    "registration": "挂号诊察费",
    "examination": "检查费",
    "lab": "化验费",
    "laboratory": "化验费",
    "imaging": "检查费",
    "treatment": "治疗费",
    "nursing": "护理费",
    "bed": "床位费",
    "drug": "药品费",
    "material": "材料费",
    "other": "其他",
}


def bill_pdf(bill: DailyBillPublic, *, printed_at: datetime | None = None) -> bytes:
    """The bill as a printable A4 PDF, Chinese text embedded (kit.pdf)."""
    document = PdfDocument(title="住院患者费用一日清单", created_at=printed_at or utcnow())
    # The ward's department heads the bill (its bed line's); each line names its own ordering department.
    departments = [line.department for line in bill.lines if line.department]
    wards = [line.department for line in bill.lines if line.department and line.category == "bed"]
    department = next(iter(wards or departments), None)
    document.fields(
        [
            ("就诊号", bill.visit_id),
            ("患者编号", bill.patient_id),
            ("清单日期", bill.date.isoformat()),
            ("科室", department or "—"),
        ]
    )
    document.gap()
    columns = [
        TableColumn("时间", 1.1),
        TableColumn("国家编码", 1.4),
        TableColumn("院内编码", 1.3),
        TableColumn("项目名称", 2.4),
        TableColumn("单位", 0.6),
        TableColumn("单价", 1.0, "RIGHT"),
        TableColumn("数量", 0.6, "RIGHT"),
        TableColumn("金额", 1.1, "RIGHT"),
        TableColumn("医保类别", 0.8),
        TableColumn("开单科室", 1.2),
    ]
    rows = [
        [
            as_utc(line.charged_at).astimezone(HOSPITAL_TZ).strftime("%H:%M"),
            line.national_code or "",
            line.item_code,
            line.item_name,
            line.unit,
            yuan(line.unit_price_fen),
            str(line.quantity),
            yuan(line.amount_fen),
            line.insurance_class or "",
            line.department or "",
        ]
        for line in bill.lines
    ]
    document.table(columns, rows)
    document.gap()
    document.table(
        [TableColumn("费用类别", 2.0), TableColumn("小计（元）", 1.0, "RIGHT")],
        [[CATEGORY_NAMES.get(s.category, s.category), yuan(s.amount_fen)] for s in bill.subtotals],
    )
    document.gap()
    document.fields(
        [
            ("当日合计（元）", yuan(bill.total_fen)),
            ("累计费用（元）", yuan(bill.running_total_fen)),
            ("预交金（元）", yuan(bill.deposit_fen)),
            ("余额（元）", yuan(bill.balance_fen)),
        ]
    )
    document.line("本清单仅供核对费用，请患者或家属确认。如有疑问请咨询病区护士站或住院收费处。", size=9)
    return document.to_bytes()
