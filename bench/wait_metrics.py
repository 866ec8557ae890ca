"""Wait metrics on query vs from a precomputed table: is computing them from the log fast enough?

Fills an event hub database (SQLite in a temporary directory, or `--database-url`) through the hub's own
ingest path (`service.log_batch`) with `--days` hospital days of `--visits` outpatient journeys each
(registration, triage, queue, call, finish; half with a paid order and its final report; plus the
registration fee's charge events the metrics do not read), then times, for the last day:

- **on query** (what the hub does): `service.wait_metrics` grouped by department and hour — the two
  indexed reads, pairing events into intervals in Python, the aggregates;
- the parts of it: the SQL read alone, and the aggregates alone over intervals already in memory;
- **precomputed**: the same day's intervals stored in a table (as an ingest-time projection would keep
  them), read back by start time and aggregated — what a query would cost with a projection — and
  what writing them costs (a lower bound of the ingest-time work a projection adds).

    python -m bench.wait_metrics --visits 3000 --days 3
    python -m bench.wait_metrics --database-url postgresql+psycopg://postgres@127.0.0.1:5432/pf_metrics
"""

import argparse
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from kit.clock import HOSPITAL_TZ
from kit.database import Database
from kit.migrations import upgrade
from kit.testing import wipe
from services.events import repository, service, waits
from services.events.models import EventsTable
from services.events.schemas import MetricsRange

MIGRATIONS = Path(__file__).resolve().parents[1] / "services" / "events" / "migrations"
DEPARTMENTS = ("internal", "surgery", "pediatrics", "gynecology", "ent", "dermatology", "ophthalmology")
BATCH = 500


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def journey(day: date, rng: random.Random) -> Iterator[tuple[str, dict[str, Any]]]:
    """One outpatient visit's source events between 07:30 and 17:00 at the hospital."""
    visit, patient = str(uuid.uuid4()), str(uuid.uuid4())
    start = datetime.combine(day, datetime.min.time(), HOSPITAL_TZ) + timedelta(
        minutes=rng.uniform(450, 1020)
    )
    department = rng.choice(DEPARTMENTS)
    minute = 0.0

    def event(source: str, event_type: str, **data: Any) -> tuple[str, dict[str, Any]]:
        return source, {
            "id": str(uuid.uuid4()),
            "type": event_type,
            "version": 1,
            "position": 0,  # not a cursor the bench moves
            "aggregate": {"type": "visit", "id": visit},
            "sequence": 1,
            "occurred_at": (start + timedelta(minutes=minute)).astimezone(UTC).isoformat(),
            "visit_id": visit,
            "patient_id": patient,
            "data": data,
        }

    ticket = {"ticket_id": str(uuid.uuid4()), "department": department, "number": 1}
    yield event(
        "registration", "visit.opened", department=department, payment_mode="prepay", kind="outpatient"
    )
    yield event(
        "billing", "charge.posted", charge_id=str(uuid.uuid4()), amount_fen=500, origin="registration"
    )
    minute += rng.expovariate(1 / 3)
    yield event("triage", "visit.triaged", level="IV", zone="green")
    yield event("triage", "ticket.queued", **ticket, priority="normal")
    minute += rng.expovariate(1 / 12)
    yield event("triage", "ticket.called", **ticket, wait_seconds=0)
    if rng.random() < 0.5:
        order = {"order_id": str(uuid.uuid4()), "test_code": "250101015"}
        minute += rng.uniform(2, 6)
        yield event("results", "order.placed", **order, status="awaiting_payment", quantity=1)
        paid_at = minute + rng.expovariate(1 / 9)
        minute += rng.uniform(2, 6)
        yield event("triage", "ticket.finished", **ticket)
        minute = paid_at
        yield event("billing", "charge.paid", order_id=order["order_id"], charge_id="c", payment_id="p")
        minute += rng.expovariate(1 / 40)
        yield event("results", "report.final", **order, report_id=str(uuid.uuid4()))
    else:
        minute += rng.expovariate(1 / 7)
        yield event("triage", "ticket.finished", **ticket)


def fill(database: Database, *, days: list[date], visits: int, seed: int) -> int:
    rng = random.Random(seed)
    taken = [e for day in days for _ in range(visits) for e in journey(day, rng)]
    taken.sort(key=lambda item: item[1]["occurred_at"])
    for first in range(0, len(taken), BATCH):
        with database.session() as session:
            service.log_batch(session, taken[first : first + BATCH], cursors={})
    return len(taken)


Timing = tuple[float, float]  # median wall ms, median CPU ms of this process


def timed(call: Callable[[], Any], rounds: int) -> tuple[Timing, Any]:
    """The median wall and CPU time of `rounds` calls (ms), and the last result. On a shared, loaded
    machine the CPU time is the steadier figure (SQLite runs in this process; PostgreSQL's server CPU
    is not in it)."""
    walls, cpus, result = [], [], None
    for _ in range(rounds):
        began, cpu = time.perf_counter(), time.process_time()
        result = call()
        walls.append((time.perf_counter() - began) * 1000)
        cpus.append((time.process_time() - cpu) * 1000)
    return (statistics.median(walls), statistics.median(cpus)), result


PRECOMPUTED = sa.Table(
    "bench_wait_interval",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("department", sa.String(32)),
    sa.Column("queue", sa.String(32)),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("ended_at", sa.DateTime(timezone=True)),
    sa.Index("ix_bench_wait_interval_started", "started_at"),
)


def precomputed(
    database: Database, intervals: list[waits.Interval], period: MetricsRange, rounds: int
) -> dict[str, Timing]:
    rows = [
        {"kind": i.kind.value, "department": i.department, "queue": i.queue, "started_at": i.started_at,
         "ended_at": i.ended_at}
        for i in intervals
    ]  # fmt: skip
    with database.writer.begin() as connection:
        PRECOMPUTED.drop(connection, checkfirst=True)
        PRECOMPUTED.create(connection)
        write, _ = timed(lambda: connection.execute(sa.insert(PRECOMPUTED), rows), 1)
    start, end = service._day_bounds(period)

    def query() -> list[waits.Aggregate]:
        with database.session(write=False) as session:
            found = session.execute(
                sa.select(PRECOMPUTED).where(
                    PRECOMPUTED.c.started_at >= start, PRECOMPUTED.c.started_at < end
                )
            ).all()
        stored = [
            waits.Interval(waits.IntervalKind(r.kind), "", "", r.department, r.queue,
                           r.started_at.replace(tzinfo=UTC), r.ended_at and r.ended_at.replace(tzinfo=UTC))
            for r in found
        ]  # fmt: skip
        return waits.aggregate(stored, group_by=[waits.GroupBy.department, waits.GroupBy.hour], target=10)

    reading, _ = timed(query, rounds)
    with database.writer.begin() as connection:
        PRECOMPUTED.drop(connection)
    return {"write": write, "read": reading}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--visits", type=int, default=3000, help="journeys per hospital day")
    parser.add_argument("--days", type=int, default=3, help="days of history in the log")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        url = args.database_url or f"sqlite:///{Path(scratch) / 'events.db'}"
        schema = "bench_wait_metrics" if url.startswith("postgresql") else None
        database = Database(url, schema)
        upgrade(database, MIGRATIONS)
        wipe(url, schema, EventsTable.metadata)
        last = date(2026, 3, 2)
        days = [last - timedelta(days=n) for n in reversed(range(args.days))]
        log(f"logging {args.days} days x {args.visits} journeys ...")
        began = time.perf_counter()
        events = fill(database, days=days, visits=args.visits, seed=args.seed)
        log(f"{events} events logged in {time.perf_counter() - began:.1f} s")
        period = MetricsRange(from_date=last, to_date=last)
        group_by = [waits.GroupBy.department, waits.GroupBy.hour]

        def on_query() -> Any:
            with database.session(write=False) as session:
                return service.wait_metrics(
                    session, period=period, group_by=group_by, department=None, queue=None, target_minutes=10
                )

        def sql_only() -> Any:
            start, end = service._day_bounds(period)
            with database.session(write=False) as session:
                return repository.journey_events_started(
                    session, types=waits.JOURNEY_TYPES, start=start, end=end
                )

        full, metrics = timed(on_query, args.rounds)
        sql, rows = timed(sql_only, args.rounds)
        with database.session(write=False) as session:
            intervals = service.intervals_started(session, period=period)
        aggregates, _ = timed(lambda: waits.aggregate(intervals, group_by=group_by, target=10), args.rounds)
        table = precomputed(database, intervals, period, args.rounds)
        database.dispose()
    print(f"database: {url.split(':')[0]}; log: {events} events over {args.days} days")
    print(f"last day: {args.visits} journeys, {len(rows)} journey events, {len(intervals)} intervals, "
          f"{len(metrics.figures)} figure rows")  # fmt: skip
    print("| way | wall ms | CPU ms |")
    print("|---|---|---|")
    for label, (wall, cpu) in [
        ("on query (the hub): read, pair, aggregate", full),
        ("... of which the SQL read", sql),
        ("... of which the aggregates", aggregates),
        ("precomputed table: read and aggregate", table["read"]),
        ("precomputed table: writing the day's intervals", table["write"]),
    ]:
        print(f"| {label} | {wall:.0f} | {cpu:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
