"""The nightly bed-day job for `--stays` inpatients, then the daily bills of all of them in one batch
(`--lines` lines each), on billing's own database and code, without HTTP: both are jobs a hospital
runs at night, not requests.

1. Seeds `--stays` inpatient accounts (one ward bed each, half general, a tenth ICU; admitted the day
   before the bill's date, with a deposit each) through billing's migrations and catalogue.
2. **Bed-day job**: `inpatient_days.run_inpatient_days` for the date — two nights per stay, bed and
   nursing each (4 charges a stay) — then again (every day already posted: the idempotent re-run).
3. Adds `--lines` − 2 charges per stay on the date (drugs, tests, treatments; bulk inserted).
4. **Daily bills**: `daily_bill.issue_daily_bills` for the date — every bill's lines, subtotals,
   running total, deposit and balance, a `DailyBillIssue` and a `daily_bill.ready` each — then again
   (totals refreshed, nothing announced twice).

    python -m bench.inpatient_billing                       # SQLite, 5,000 × 40
    python -m bench.inpatient_billing --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test
"""

import argparse
import random
import sys
import tempfile
import time
import uuid
from datetime import date, datetime, timedelta
from datetime import time as day_time
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select, text
from sqlmodel import col

from bench.common import machine, markdown_table, write_results
from kit.clock import HOSPITAL_TZ, as_utc, hospital_date, utcnow
from kit.database import Database
from kit.migrations import upgrade
from services.billing import catalogue
from services.billing.config import CATALOGUE_PATH, CHARGE_RULES_PATH, BillingSettings
from services.billing.models import (
    BillingStay,
    Charge,
    DailyBillIssue,
    Deposit,
    OutboxEvent,
    StayBed,
    VisitAccount,
)
from services.billing.service import daily_bill, inpatient_days, rules

MIGRATIONS = Path(__file__).resolve().parents[1] / "services" / "billing" / "migrations"
EXTRA_ITEMS = [  # (code, name, unit, price): what an inpatient's day is made of besides bed and nursing
    ("YP0001", "0.9%氯化钠注射液(250ml)", "袋", 350),
    ("YP0003", "注射用头孢曲松钠(1g)", "支", 1200),
    ("120400006", "静脉输液(第一组)", "组", 500),
    ("250307001", "血糖", "次", 500),
    ("311000007", "心电监测", "小时", 500),
    ("120800001", "氧气吸入", "小时", 300),
]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def seed_stays(database: Database, *, stays: int, admitted: datetime) -> list[str]:
    visit_ids = [str(uuid.uuid4()) for _ in range(stays)]
    accounts, stay_rows, beds, deposits = [], [], [], []
    for n, visit_id in enumerate(visit_ids):
        patient_id = str(uuid.uuid4())
        bed_class = "icu" if n % 10 == 0 else ("double" if n % 2 else "general")
        accounts.append(
            {
                "visit_id": visit_id,
                "patient_id": patient_id,
                "kind": "inpatient",
                "payment_mode": "prepay",
                "status": "open",
                "opened_at": admitted,
                "low_balance_alerted": False,
                "low_balance_threshold_fen": 50_000,
            }
        )
        stay_rows.append({"visit_id": visit_id, "patient_id": patient_id, "admitted_at": admitted})
        beds.append(
            {
                "visit_id": visit_id,
                "from_at": admitted,
                "ward_code": f"w{n // 40}",
                "bed_code": str(n % 40 + 1),
                "bed_class": bed_class,
                "department": "internal",
                "source_event_id": str(uuid.uuid4()),
            }
        )
        deposits.append(
            {
                "id": str(uuid.uuid4()),
                "visit_id": visit_id,
                "amount_fen": 1_000_000,
                "method": "card",
                "receipt_number": f"BENCH{n:010d}",
                "received_by": "bench",
                "received_at": admitted,
            }
        )
    with database.session() as session:
        for model, rows in (
            (VisitAccount, accounts),
            (BillingStay, stay_rows),
            (StayBed, beds),
            (Deposit, deposits),
        ):
            session.execute(insert(model.__table__), rows)  # type: ignore[union-attr]
    return visit_ids


def seed_lines(database: Database, visit_ids: list[str], *, day: date, per_stay: int) -> int:
    start = as_utc(datetime.combine(day, day_time(8), tzinfo=HOSPITAL_TZ))
    rows: list[dict[str, Any]] = []
    for visit_id in visit_ids:
        for n in range(per_stay):
            code, name, unit, price = random.choice(EXTRA_ITEMS)
            quantity = random.randint(1, 3)
            rows.append(
                {
                    "id": str(uuid.uuid4()),
                    "visit_id": visit_id,
                    "item_code": code,
                    "item_name": name,
                    "unit": unit,
                    "unit_price_fen": price,
                    "quantity": quantity,
                    "amount_fen": price * quantity,
                    "origin": "order",
                    "charged_at": start + timedelta(minutes=10 * n),
                    "service_date": day,
                    "supplementary": False,
                }
            )
    with database.session() as session:
        for offset in range(0, len(rows), 20_000):
            session.execute(insert(Charge.__table__), rows[offset : offset + 20_000])  # type: ignore[attr-defined]
    return len(rows)


def timed(what: str, run: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    result = run()
    seconds = time.perf_counter() - started
    log(f"{what}: {seconds:.2f} s")
    return seconds, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stays", type=int, default=5000)
    parser.add_argument("--lines", type=int, default=40, help="lines per daily bill (2 are bed and nursing)")
    parser.add_argument(
        "--database-url", default=None, help="PostgreSQL URL (a schema of its own); default SQLite"
    )
    args = parser.parse_args(argv)
    random.seed(12)
    with tempfile.TemporaryDirectory() as scratch:
        schema = f"bench_days_{uuid.uuid4().hex[:8]}"
        url = args.database_url or f"sqlite:///{scratch}/billing.db"
        database = Database(url, schema=schema if args.database_url else None)
        try:
            return run(database, args)
        finally:
            if args.database_url:
                with database.writer.begin() as connection:
                    connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            database.dispose()


def run(database: Database, args: argparse.Namespace) -> int:
    upgrade(database, MIGRATIONS)
    with database.session() as session:  # the catalogue and the charging rules, as the service loads them
        catalogue.load_file(session, CATALOGUE_PATH)
    with database.session() as session:
        rules.load_file(session, CHARGE_RULES_PATH)
    today = hospital_date(utcnow())
    day = today  # the bill's date; stays were admitted the day before
    admitted = as_utc(datetime.combine(day - timedelta(days=1), day_time(10), tzinfo=HOSPITAL_TZ))
    _, visit_ids = timed(
        f"seed {args.stays} stays", lambda: seed_stays(database, stays=args.stays, admitted=admitted)
    )
    settings = BillingSettings()
    items = inpatient_days.DayItems(bed=settings.bed_class_items, nursing=settings.nursing_class_items)

    job = lambda: inpatient_days.run_inpatient_days(database, up_to=day, items=items)  # noqa: E731
    job_seconds, posted = timed("bed-day job", job)
    rerun_seconds, reposted = timed("bed-day job, re-run", job)
    assert (posted.posted, reposted.posted) == (args.stays * 4, 0), (posted, reposted)

    extra = args.lines - 2
    timed(f"seed {extra} more lines a stay", lambda: seed_lines(database, visit_ids, day=day, per_stay=extra))
    batch = lambda: daily_bill.issue_daily_bills(database, day=day)  # noqa: E731
    bills_seconds, issued = timed("daily bills", batch)
    rebills_seconds, reissued = timed("daily bills, re-run", batch)
    assert (issued.bills, issued.lines, issued.issued, reissued.issued) == (
        args.stays,
        args.stays * args.lines,
        args.stays,
        0,
    ), (issued, reissued)
    with database.session(write=False) as session:
        ready = session.execute(
            select(func.count())
            .select_from(OutboxEvent)
            .where(col(OutboxEvent.event_type) == "daily_bill.ready")
        ).scalar_one()
        kept = session.execute(select(func.count()).select_from(DailyBillIssue)).scalar_one()
    assert ready == kept == args.stays

    rows = [
        [
            "bed-day job (2 nights × bed + nursing)",
            args.stays,
            posted.posted,
            f"{job_seconds:.2f}",
            f"{posted.posted / job_seconds:,.0f} charges/s",
        ],
        ["bed-day job, re-run (nothing to post)", args.stays, 0, f"{rerun_seconds:.2f}", "—"],
        [
            "daily bills, one batch",
            issued.bills,
            issued.lines,
            f"{bills_seconds:.2f}",
            f"{issued.lines / bills_seconds:,.0f} lines/s",
        ],
        [
            "daily bills, re-run",
            reissued.bills,
            reissued.lines,
            f"{rebills_seconds:.2f}",
            f"{reissued.lines / rebills_seconds:,.0f} lines/s",
        ],
    ]
    print(
        f"\n{'PostgreSQL' if not database.is_sqlite else 'SQLite'}, {args.stays} stays × {args.lines} lines\n"
    )
    print(markdown_table(["job", "stays / bills", "charges / lines", "seconds", "rate"], rows))
    write_results(
        "inpatient_billing",
        {
            "machine": machine(),
            "database": "sqlite" if database.is_sqlite else "postgresql",
            "stays": args.stays,
            "lines": args.lines,
            "bed_day_job_seconds": job_seconds,
            "bed_day_charges": posted.posted,
            "bed_day_rerun_seconds": rerun_seconds,
            "daily_bills_seconds": bills_seconds,
            "daily_bill_lines": issued.lines,
            "daily_bills_rerun_seconds": rebills_seconds,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
