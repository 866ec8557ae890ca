"""Kiosk lookup and printing with a million reports stored and 200 kiosks at once (自助打印).

Seeds `--reports` reports (and their orders) straight into results' database with bulk Core inserts in
chunks, timing the seeding; then starts the results service alone and loads it **straight** (internal
tokens minted as the gateway would mint them for a kiosk acting for its patient, kind `kiosk`), in two
phases:

1. lookup: `--kiosks` closed-loop clients list their patient's released reports
   (`GET /patients/{id}/released-reports`) for `--seconds`;
2. printing: every kiosk, all at once, runs `--rounds` kiosk sessions back to back: list, print one
   report (`POST /reports/{id}/prints`), fetch its PDF (`GET /prints/{id}/pdf`).

Each patient has one visit with four reports (three final, one preliminary, which the kiosk never
sees). Figures print as markdown and go to `bench/results/`.

    python -m bench.kiosk_printing --reports 20000 --kiosks 50 --rounds 1 --seconds 5   # small, ~1 min
    python -m bench.kiosk_printing                                # 1,000,000 reports, 200 kiosks
    python -m bench.kiosk_printing --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test
    python -m bench.kiosk_printing --reports 20000 --kiosks 50 --prerendered --pdf-processes 1

`--prerendered` lets the service's background loop render the kiosks' reports before the load (its
look-back cut to the kiosks' reports, the newest), as it would have when they were released;
`--pdf-processes N` sets `RESULTS_PDF_PROCESSES`. A tree from before stored renderings ignores both.
"""

import argparse
import asyncio
import contextlib
import os
import random
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import uvloop
from sqlalchemy import func, insert, select

from bench.common import (
    drop_schemas,
    machine,
    markdown_table,
    process_cpu_seconds,
    summary,
    system_env,
    write_results,
)
from kit.auth import mint_internal_token
from kit.database import Database
from kit.migrations import upgrade
from patientflow.supervisor import System, free_port
from patientflow.topology import COMPONENTS
from services.results import service
from services.results.config import ResultsSettings
from services.results.models import ResultsTable

REPORTS_PER_PATIENT = 4  # one visit: three final reports and a preliminary one
CHUNK = 5_000
TABLES = ResultsTable.metadata.tables
TESTS = ("250101015", "250301001", "250307001", "250305002")
OBSERVATIONS = [
    {"code": "WBC", "name": "白细胞计数", "value": "6.2", "unit": "10^9/L", "reference_range": "3.5-9.5"},
    {
        "code": "HGB",
        "name": "血红蛋白",
        "value": "98",
        "unit": "g/L",
        "reference_range": "130-175",
        "flag": "L",
    },
]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class Seeded:
    kiosk_patients: list[str]
    released: dict[str, list[str]]  # patient -> released report ids (the kiosks' own)
    reports: int
    seconds: float


def _patient_rows(patient_index: int, now: datetime) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    patient_id, visit_id = str(uuid.uuid4()), str(uuid.uuid4())
    orders, reports = [], []
    for number, test_code in enumerate(TESTS[:REPORTS_PER_PATIENT]):
        order_id, at = str(uuid.uuid4()), now - timedelta(minutes=patient_index % 500_000 + number)
        final = number < REPORTS_PER_PATIENT - 1
        orders.append(
            {
                "id": order_id,
                "visit_id": visit_id,
                "patient_id": patient_id,
                "test_code": test_code,
                "test_name": "血细胞分析",
                "payment_mode": "settle_later",
                "status": "reported" if final else "released",
                "ordered_by": None,
                "ordered_at": at,
                "released_at": at,
            }
        )
        reports.append(
            {
                "id": str(uuid.uuid4()),
                "order_id": order_id,
                "visit_id": visit_id,
                "patient_id": patient_id,
                "test_code": test_code,
                "test_name": "血细胞分析",
                "status": "final" if final else "preliminary",
                "conclusion": "轻度贫血" if final else "待复核",
                "observations": OBSERVATIONS,
                "critical": False,
                "critical_note": None,
                "reported_by": "lab-bench",
                "reported_at": at,
                # The release rule wants a verified report (审核); the preliminary one is not.
                "verified_by": "李技师" if final else None,
                "verified_at": at if final else None,
            }
        )
    return orders, reports


def seed(settings: ResultsSettings, *, reports: int, kiosks: int) -> Seeded:
    """Migrate results' database and bulk-insert `reports` reports with their orders, in chunks."""
    database = Database(settings.resolved_database_url, settings.resolved_schema)
    try:
        upgrade(database, Path(service.__file__).parent / "migrations")
        with database.session() as session:
            service.load_orderable_tests(session)
        patients = max(kiosks, reports // REPORTS_PER_PATIENT)
        now = datetime.now(UTC)
        kiosk_patients: list[str] = []
        released: dict[str, list[str]] = {}
        started, next_progress = time.perf_counter(), 100_000
        orders_chunk: list[dict[str, Any]] = []
        reports_chunk: list[dict[str, Any]] = []
        for index in range(patients):
            orders, rows = _patient_rows(index, now)
            if index < kiosks:
                patient_id = rows[0]["patient_id"]
                kiosk_patients.append(patient_id)
                released[patient_id] = [r["id"] for r in rows if r["status"] == "final"]
            orders_chunk += orders
            reports_chunk += rows
            if len(reports_chunk) >= CHUNK or index == patients - 1:
                with database.writer.begin() as connection:
                    connection.execute(insert(TABLES["lab_order"]), orders_chunk)
                    connection.execute(insert(TABLES["report"]), reports_chunk)
                orders_chunk, reports_chunk = [], []
                done = (index + 1) * REPORTS_PER_PATIENT
                if done >= next_progress:
                    log(f"  seeded {done:,} reports in {time.perf_counter() - started:.0f} s")
                    next_progress += 100_000
        seconds = time.perf_counter() - started
    finally:
        database.dispose()
    return Seeded(kiosk_patients, released, patients * REPORTS_PER_PATIENT, seconds)


# --- the kiosks ------------------------------------------------------------------------------------


class Kiosks:
    """One aiohttp session for every kiosk, each with the internal token of its own patient."""

    def __init__(self, base_url: str, secret: str, seeded: Seeded) -> None:
        self.base_url = base_url
        self.headers = {
            patient: {
                "authorization": "Bearer "
                + mint_internal_token(
                    secret, "kiosk-bench", {"results:read"}, audience="results", patient=patient, kind="kiosk"
                ),
                "x-forwarded-for": f"10.20.{index // 250}.{index % 250 + 1}",
            }
            for index, patient in enumerate(seeded.kiosk_patients)
        }
        self.seeded = seeded
        self.latencies: dict[str, list[float]] = {}
        self.failures: dict[str, int] = {}

    def _note(self, step: str, started: float, status: int, expected: int) -> None:
        self.latencies.setdefault(step, []).append(time.perf_counter() - started)
        if status != expected:
            self.failures[step] = self.failures.get(step, 0) + 1

    async def lookup(self, http: aiohttp.ClientSession, patient: str) -> list[dict[str, Any]]:
        started = time.perf_counter()
        async with http.get(f"/patients/{patient}/released-reports", headers=self.headers[patient]) as answer:
            body = await answer.json() if answer.status == 200 else []
            self._note("lookup", started, answer.status, 200)
        return list(body)

    async def print_one(self, http: aiohttp.ClientSession, patient: str, turn: int) -> None:
        session_started = time.perf_counter()
        listed = await self.lookup(http, patient)
        if len(listed) != len(self.seeded.released[patient]):  # the preliminary one must never show
            self.failures["wrong list"] = self.failures.get("wrong list", 0) + 1
        report_id = listed[turn % len(listed)]["id"] if listed else self.seeded.released[patient][0]
        started = time.perf_counter()
        async with http.post(
            f"/reports/{report_id}/prints", json={}, headers=self.headers[patient]
        ) as answer:
            printed = await answer.json()
            self._note("print", started, answer.status, 201)
        if answer.status != 201:
            return
        started = time.perf_counter()
        async with http.get(f"/prints/{printed['id']}/pdf", headers=self.headers[patient]) as answer:
            document = await answer.read()
            self._note("pdf", started, answer.status, 200)
        if not document.startswith(b"%PDF"):
            self.failures["not a pdf"] = self.failures.get("not a pdf", 0) + 1
        self._note("kiosk session (lookup + print + pdf)", session_started, 200, 200)


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds (user + system) used so far by `root` and every process below it (a PDF pool's)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    tree, pending = [root], [root]
    while pending:
        parent = pending.pop()
        below = [pid for pid, ppid in parents.items() if ppid == parent]
        tree += below
        pending += below
    total = 0.0
    for pid in tree:
        with contextlib.suppress(OSError):
            total += process_cpu_seconds(pid)
    return total


async def run_load(
    base_url: str, secret: str, seeded: Seeded, args: argparse.Namespace, service_pid: int
) -> dict[str, Any]:
    kiosks = Kiosks(base_url, secret, seeded)
    timeout = aiohttp.ClientTimeout(total=900)
    connector = aiohttp.TCPConnector(limit=args.kiosks)
    async with aiohttp.ClientSession(base_url, connector=connector, timeout=timeout) as http:
        for patient in seeded.kiosk_patients[:5]:  # warm up: the first PDF also cuts the font
            await kiosks.print_one(http, patient, 0)
        kiosks.latencies.clear()
        kiosks.failures.clear()

        async def looking(patient: str, stop_at: float) -> None:
            while time.perf_counter() < stop_at:
                await kiosks.lookup(http, patient)

        started = time.perf_counter()
        await asyncio.gather(*(looking(p, started + args.seconds) for p in seeded.kiosk_patients))
        lookup_seconds = time.perf_counter() - started
        lookups = kiosks.latencies.pop("lookup")

        async def printing(patient: str) -> None:
            for turn in range(args.rounds):
                await kiosks.print_one(http, patient, turn)

        started, cpu_before = time.perf_counter(), tree_cpu_seconds(service_pid)
        await asyncio.gather(*(printing(p) for p in seeded.kiosk_patients))
        printing_seconds = time.perf_counter() - started
        printing_cpu = tree_cpu_seconds(service_pid) - cpu_before
    return {
        "lookup_phase": {
            "seconds": round(lookup_seconds, 1),
            "per_s": round(len(lookups) / lookup_seconds, 1),
        }
        | summary(lookups),
        "printing_phase": {
            "seconds": round(printing_seconds, 1),
            "pdfs_per_s": round(len(kiosks.latencies.get("pdf", [])) / printing_seconds, 2),
            # The service's CPU (its PDF pool's too) per kiosk session: steadier than wall time on a
            # shared machine.
            "cpu_ms_per_session": round(printing_cpu * 1000 / max(1, args.kiosks * args.rounds), 1),
        },
        "steps": {step: summary(values) for step, values in kiosks.latencies.items()},
        "failures": kiosks.failures,
    }


def report(results: dict[str, Any], args: argparse.Namespace, database: str) -> str:
    seeding = results["seeding"]
    lookup = results["load"]["lookup_phase"]
    printing_phase = results["load"]["printing_phase"]
    lines = [
        f"## Kiosk lookup and printing, {seeding['reports']:,} reports stored, {args.kiosks} kiosks at once"
        f" ({database}, straight at results)",
        "",
        f"Seeding: {seeding['reports']:,} reports + as many orders in {seeding['seconds']:.0f} s"
        f" ({seeding['reports_per_s']:,.0f} reports/s, bulk Core inserts of {CHUNK:,}).",
        f"Tree {Path(__file__).resolve().parents[1]}; PDF processes {args.pdf_processes},"
        f" {'pre-rendered' if args.prerendered else 'rendered on demand'}.",
        "",
    ]
    header = ["phase / step", "requests", "p50 ms", "p99 ms", "max ms"]
    rows = [[f"lookup only, {lookup['seconds']} s closed loop ({lookup['per_s']}/s)", lookup["count"],
             lookup["p50_ms"], lookup["p99_ms"], lookup["max_ms"]]]  # fmt: skip
    for step, figures in results["load"]["steps"].items():
        rows.append(
            [f"printing: {step}", figures["count"], figures["p50_ms"], figures["p99_ms"], figures["max_ms"]]
        )
    lines.append(markdown_table(header, rows))
    lines += [
        "",
        f"Printing phase: {printing_phase['seconds']} s for {args.kiosks} × {args.rounds} kiosk sessions,"
        f" {printing_phase['pdfs_per_s']} PDFs/s; results' CPU {printing_phase['cpu_ms_per_session']} ms per"
        f" session. Failures: {results['load']['failures'] or 'none'}.",
    ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.kiosk_printing", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--reports", type=int, default=1_000_000, help="reports stored before the load")
    parser.add_argument("--kiosks", type=int, default=200, help="concurrent kiosks, each its own patient")
    parser.add_argument("--seconds", type=float, default=20, help="length of the lookup-only phase")
    parser.add_argument(
        "--rounds", type=int, default=2, help="kiosk sessions per kiosk in the printing phase"
    )
    parser.add_argument("--database-url", help="PostgreSQL URL (default: SQLite files in a temp dir)")
    parser.add_argument(
        "--prerendered", action="store_true", help="wait until the kiosks' reports are rendered ahead"
    )
    parser.add_argument("--pdf-processes", type=int, default=0, help="RESULTS_PDF_PROCESSES")
    return parser.parse_args(argv)


SEEDING_MARGIN_MINUTES = 30


def service_env(args: argparse.Namespace) -> dict[str, str]:
    """The results settings of the run: pre-rendering only of the kiosks' reports, or none."""
    env = {"RESULTS_PDF_PROCESSES": str(args.pdf_processes)}
    if not args.prerendered:
        return env | {"RESULTS_PRERENDER_SECONDS": "0"}
    # The kiosks' patients have the newest reports: patient i reported i .. i + 3 minutes before the
    # seeding; seeding a million takes minutes, so the look-back has a margin for it (a few other
    # reports in it render too).
    lookback = args.kiosks + REPORTS_PER_PATIENT + SEEDING_MARGIN_MINUTES
    return env | {"RESULTS_PRERENDER_LOOKBACK_MINUTES": str(lookback)}


def wait_prerendered(settings: ResultsSettings, seeded: Seeded) -> float:
    """Seconds until every kiosk report has its stored paper (the service renders them in the
    background)."""
    wanted = [report for reports in seeded.released.values() for report in reports]
    table = TABLES["report_rendering"]
    database = Database(settings.resolved_database_url, settings.resolved_schema)
    started = time.perf_counter()
    try:
        while True:
            with database.reader.connect() as connection:
                query = select(func.count()).select_from(table).where(table.c.report_id.in_(wanted))
                done = connection.execute(query).scalar_one()
            if done >= len(wanted):
                return time.perf_counter() - started
            log(f"  pre-rendered {done} of {len(wanted)} …")
            time.sleep(2)
    finally:
        database.dispose()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    run_tag = uuid.uuid4().hex[:8]
    ports = {component.name: free_port() for component in COMPONENTS}
    database = "postgresql" if args.database_url else "sqlite"
    random.seed(11)
    with tempfile.TemporaryDirectory(prefix="pf-bench-") as scratch:
        try:
            env = system_env(args.database_url, run_tag) | service_env(args)
            system = System(Path(scratch), env=env, ports=ports)
            settings = ResultsSettings.model_validate(
                {
                    "data_dir": system.data_dir,
                    "database_url": args.database_url,
                    "schema_prefix": env.get("PATIENTFLOW_SCHEMA_PREFIX", ""),
                }
            )
            log(f"seeding {args.reports:,} reports ({database}) …")
            seeded = seed(settings, reports=args.reports, kiosks=args.kiosks)
            log(f"seeded {seeded.reports:,} reports in {seeded.seconds:.0f} s; starting results …")
            try:
                system.start_service("results")
                secret = system.env["PATIENTFLOW_INTERNAL_SECRET"]
                if args.prerendered:
                    prerender_seconds = wait_prerendered(settings, seeded)
                    log(f"the kiosks' reports were rendered ahead in {prerender_seconds:.0f} s")
                pid = system.processes["results"].pid
                load = uvloop.run(run_load(system.url("results"), secret, seeded, args, pid))
            finally:
                system.stop()
        finally:
            if args.database_url:
                drop_schemas(args.database_url, run_tag)
    seeding = {
        "reports": seeded.reports,
        "seconds": round(seeded.seconds, 1),
        "reports_per_s": round(seeded.reports / seeded.seconds),
    }
    results = {"seeding": seeding, "load": load}
    print(report(results, args, database))
    payload = {"args": vars(args), "database": database, "machine": machine(), "results": results}
    log(f"written to {write_results('kiosk_printing', payload)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
