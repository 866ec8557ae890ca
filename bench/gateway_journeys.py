"""The gateway under load: whole outpatient journeys.

N concurrent clients run full prepay outpatient journeys via the gateway (register, open a visit,
triage, queue, call, order a CBC, wait for billing to see the charge, pay with an Idempotency-Key, wait
for results to release the order, report, look the report up, read the daily bill). The price of the
gateway hop on one read is `bench.gateway_hop`.

    python -m bench.gateway_journeys --clients 16 --seconds 20
"""

import argparse
import asyncio
import json
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import uvloop

from bench.common import (
    Recorder,
    RunningSystem,
    machine,
    markdown_table,
    random_id_number,
    running_system,
    summary,
    write_results,
)
from patientflow.supervisor import System

CBC = "250101015"  # 血细胞分析 (complete blood count)
POLL_SECONDS = 0.05
WAIT_LIMIT_SECONDS = 30.0
JOURNEY_STEPS = [
    "register", "open_visit", "assess", "enqueue", "call_next", "order", "finish",
    "poll_account", "pay", "poll_order", "report", "read_reports", "daily_bill",
]  # fmt: skip


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class StepFailed(Exception):
    def __init__(self, step: str, status: int, body: bytes) -> None:
        super().__init__(f"{step}: {status} {body[:200].decode(errors='replace')}")
        self.step, self.status = step, status


# --- part 1: journeys ----------------------------------------------------------------------------


@dataclass
class JourneyStats:
    requests: Recorder = field(default_factory=Recorder)
    waits: dict[str, list[float]] = field(default_factory=lambda: {"charge_seen": [], "order_released": []})
    journeys: list[float] = field(default_factory=list)
    failed: int = 0
    errors: list[str] = field(default_factory=list)


class GatewayCaller:
    """One simulated HIS workstation: calls the gateway with the role keys of the staff doing each step."""

    def __init__(
        self, session: aiohttp.ClientSession, base_url: str, keys: dict[str, str], stats: JourneyStats
    ):
        self.session, self.base_url, self.stats = session, base_url, stats
        self.auth = {client: {"authorization": f"Bearer {key}"} for client, key in keys.items()}

    async def call(
        self,
        step: str,
        client: str,
        method: str,
        path: str,
        body: Any = None,
        *,
        expect: tuple[int, ...] = (200, 201),
        headers: dict[str, str] | None = None,
    ) -> Any:
        started = time.perf_counter()
        async with self.session.request(
            method, self.base_url + path, json=body, headers=self.auth[client] | (headers or {})
        ) as response:
            payload = await response.read()
        self.stats.requests.add(step, time.perf_counter() - started)
        if response.status not in expect:
            self.stats.requests.failures[(step, response.status)] += 1
            raise StepFailed(step, response.status, payload)
        return json.loads(payload) if payload else None

    async def wait_for(
        self, wait: str, step: str, client: str, path: str, ready: Callable[[Any], bool]
    ) -> Any:
        """Poll until `ready` holds (404 counts as "not yet": the feed has not reached the service)."""
        started = time.perf_counter()
        while time.perf_counter() - started < WAIT_LIMIT_SECONDS:
            found = await self.call(step, client, "GET", path, expect=(200, 404))
            if found.get("status") != 404 and ready(found):
                self.stats.waits[wait].append(time.perf_counter() - started)
                return found
            await asyncio.sleep(POLL_SECONDS)
        raise StepFailed(step, 0, b"gave up waiting")

    async def journey(self, department: str) -> None:
        """One prepay outpatient visit from registration to the daily bill."""
        patient = await self.register()
        visit = await self.call(
            "open_visit", "nurse-dev", "POST", "/v1/visits",
            {"patient_id": patient["id"], "kind": "outpatient", "department": department},
        )  # fmt: skip
        visit_id = visit["id"]
        await self.call(
            "assess", "nurse-dev", "POST", "/v1/assessments",
            {"visit_id": visit_id, "level": "IV", "chief_complaint": "乏力三天"},
        )  # fmt: skip
        ticket = await self.call(
            "enqueue", "nurse-dev", "POST", f"/v1/queues/{department}/tickets", {"visit_id": visit_id}
        )
        # Each workstation has its own department, so the ticket it calls is the one it queued.
        called = await self.call(
            "call_next", "doctor-dev", "POST", f"/v1/queues/{department}/call-next", {"counter": "1"}
        )
        assert called["id"] == ticket["id"], "called someone else's ticket"
        order = await self.call(
            "order", "doctor-dev", "POST", "/v1/orders", {"visit_id": visit_id, "test_code": CBC},
            headers={"idempotency-key": str(uuid.uuid4())},
        )  # fmt: skip
        await self.call("finish", "doctor-dev", "POST", f"/v1/tickets/{ticket['id']}/finish")
        await self.wait_for(
            "charge_seen", "poll_account", "cashier-dev", f"/v1/visits/{visit_id}/account",
            lambda account: any(c["order_id"] == order["id"] for c in account["charges"]),
        )  # fmt: skip
        await self.call(
            "pay", "cashier-dev", "POST", "/v1/payments", {"visit_id": visit_id, "method": "wechat"},
            headers={"idempotency-key": str(uuid.uuid4())},
        )  # fmt: skip
        # The lab screen's held read: answered when results applies the payment, not at a next poll.
        await self.wait_for(
            "order_released", "poll_order", "lab-dev",
            f"/v1/orders/{order['id']}?wait=10&while_status=awaiting_payment",
            lambda found: found["status"] == "released",
        )  # fmt: skip
        report = {
            "status": "final",
            "conclusion": "血常规未见异常",
            "observations": [
                {"code": "WBC", "name": "白细胞计数", "value": "6.2", "unit": "10^9/L", "flag": "N"},
                {"code": "HGB", "name": "血红蛋白", "value": "142", "unit": "g/L", "flag": "N"},
            ],
        }
        await self.call("report", "lab-dev", "POST", f"/v1/orders/{order['id']}/reports", report)
        await self.call("read_reports", "doctor-dev", "GET", f"/v1/visits/{visit_id}/reports")
        await self.call("daily_bill", "cashier-dev", "GET", f"/v1/visits/{visit_id}/daily-bill")

    async def register(self) -> Any:
        for _ in range(5):  # a random identity number may already be on file (409): draw another
            try:
                body = {"id_number": random_id_number(), "name": "压测患者"}
                return await self.call("register", "nurse-dev", "POST", "/v1/patients", body)
            except StepFailed as exc:
                if exc.status != 409:
                    raise
        raise StepFailed("register", 409, b"five identity numbers already on file")


async def drive_journeys(system: RunningSystem, clients: int, seconds: float, stats: JourneyStats) -> float:
    """Run `clients` workstations' journeys for `seconds` (journeys under way finish), into `stats`;
    returns the elapsed seconds. Each call queues in departments of its own."""
    run_tag = uuid.uuid4().hex[:6]
    connector = aiohttp.TCPConnector(limit=clients * 2)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:
        caller = GatewayCaller(session, system.url("gateway"), system.api_keys, stats)
        stop_at = time.perf_counter() + seconds

        async def workstation(index: int) -> None:
            department = f"bench-{run_tag}-{index:02d}"
            while time.perf_counter() < stop_at:
                started = time.perf_counter()
                try:
                    await caller.journey(department)
                    stats.journeys.append(time.perf_counter() - started)
                except (StepFailed, AssertionError, aiohttp.ClientError, TimeoutError) as exc:
                    stats.failed += 1
                    if len(stats.errors) < 10:
                        stats.errors.append(repr(exc))

        started = time.perf_counter()
        await asyncio.gather(*(workstation(i) for i in range(clients)))
        return time.perf_counter() - started


def journeys_summary(stats: JourneyStats, clients: int, elapsed: float) -> dict[str, Any]:
    """Throughput, latency per step and the two feed waits of the journeys in `stats`."""
    return {
        "clients": clients,
        "seconds": round(elapsed, 2),
        "journeys": len(stats.journeys),
        "failed_journeys": stats.failed,
        "journeys_per_s": round(len(stats.journeys) / elapsed, 2),
        "requests": stats.requests.request_count(),
        "requests_per_s": round(stats.requests.request_count() / elapsed, 1),
        "all_requests": summary(stats.requests.all_latencies()),
        "journey": summary(stats.journeys),
        "steps": {step: summary(stats.requests.latencies[step]) for step in JOURNEY_STEPS},
        "waits": {name: summary(values) for name, values in stats.waits.items()},
        "unexpected": {f"{step} {status}": n for (step, status), n in stats.requests.failures.items()},
        "errors": stats.errors,
    }


async def run_journeys(system: RunningSystem, clients: int, seconds: float) -> dict[str, Any]:
    stats = JourneyStats()
    elapsed = await drive_journeys(system, clients, seconds, stats)
    return journeys_summary(stats, clients, elapsed)


# --- reporting and the command line ----------------------------------------------------------------


def report(journeys: dict[str, Any]) -> str:
    out = [
        f"## Outpatient journeys through the gateway "
        f"({journeys['clients']} clients, {journeys['seconds']} s)",
        "",
        markdown_table(
            [
                "journeys",
                "failed",
                "journeys/s",
                "requests/s",
                "request p50 ms",
                "request p99 ms",
                "journey p50 ms",
            ],
            [
                [
                    journeys["journeys"],
                    journeys["failed_journeys"],
                    journeys["journeys_per_s"],
                    journeys["requests_per_s"],
                    journeys["all_requests"]["p50_ms"],
                    journeys["all_requests"]["p99_ms"],
                    journeys["journey"]["p50_ms"],
                ]
            ],
        ),
        "",
        markdown_table(
            ["step", "requests", "p50 ms", "p99 ms"],
            [[step, s["count"], s["p50_ms"], s["p99_ms"]] for step, s in journeys["steps"].items()]
            + [
                [f"(wait) {name}", s["count"], s["p50_ms"], s["p99_ms"]]
                for name, s in journeys["waits"].items()
            ],
        ),
    ]
    return "\n".join(out)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.gateway_journeys", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--clients", type=int, default=16, help="concurrent journey clients (part 1)")
    parser.add_argument("--seconds", type=float, default=20, help="how long to start new journeys")
    parser.add_argument("--database-url", help="PostgreSQL URL (default: SQLite files in a temp dir)")
    return parser.parse_args(argv)


async def run(system: System, args: argparse.Namespace) -> dict[str, Any]:
    log(f"{args.clients} clients, {args.seconds:g} s of journeys")
    return await run_journeys(system, args.clients, args.seconds)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    run_tag = uuid.uuid4().hex[:8]
    log("starting the system …")
    with running_system(args.database_url, run_tag) as system:
        journeys = uvloop.run(run(system, args))
    text = report(journeys)
    print(text)
    database = "postgresql" if args.database_url else "sqlite"
    path = write_results(
        "gateway_journeys",
        {
            "args": vars(args),
            "database": database,
            "machine": machine(),
            "journeys": journeys,
        },
    )
    log(f"\nwrote {path}")
    return 0 if journeys["failed_journeys"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
