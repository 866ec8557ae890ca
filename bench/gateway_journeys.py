"""The gateway under load: whole outpatient journeys, and the price of the gateway hop on one read.

Part 1 runs N concurrent clients through full prepay outpatient journeys via the gateway (register,
open a visit, triage, queue, call, order a CBC, wait for billing to see the charge, pay with an
Idempotency-Key, wait for results to release the order, report, look the report up, read the daily
bill). Part 2 loads the same read, `GET /visits/{id}`, straight at registration (with a minted internal
token) and through the gateway in interleaved rounds, so the ratio compares like with like on a noisy
machine; with `--transports aiohttp,httpx` it repeats part 2 with the gateway on httpx's own pool.

    python -m bench.gateway_journeys --clients 16 --seconds 20
"""

import argparse
import asyncio
import json
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import uvloop

from bench.common import (
    Recorder,
    RunningSystem,
    drop_schemas,
    machine,
    markdown_table,
    random_id_number,
    summary,
    system_env,
    write_results,
)
from kit.auth import mint_internal_token
from patientflow.supervisor import System, free_port
from patientflow.topology import COMPONENTS

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
        await self.wait_for(
            "order_released", "poll_order", "lab-dev", f"/v1/orders/{order['id']}",
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


# --- part 2: one read, straight and through the gateway -------------------------------------------


@dataclass
class Target:
    name: str
    urls: list[str]
    headers: dict[str, str]


async def load_round(target: Target, concurrency: int, seconds: float) -> dict[str, Any]:
    """Closed loop: `concurrency` workers each send the next request as soon as the last one answered."""
    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:
        stop_at = time.perf_counter() + seconds

        async def worker(index: int) -> None:
            nonlocal errors
            n = index
            while time.perf_counter() < stop_at:
                started = time.perf_counter()
                async with session.get(target.urls[n % len(target.urls)], headers=target.headers) as response:
                    await response.read()
                latencies.append(time.perf_counter() - started)
                errors += response.status != 200
                n += concurrency

        started = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {"requests": len(latencies), "errors": errors, "seconds": elapsed, "latencies": latencies}


def combine(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    requests = sum(r["requests"] for r in rounds)
    seconds = sum(r["seconds"] for r in rounds)
    latencies = [value for r in rounds for value in r["latencies"]]
    return {
        "req_per_s": round(requests / seconds, 1),
        "errors": sum(r["errors"] for r in rounds),
        "per_round_req_per_s": [round(r["requests"] / r["seconds"], 1) for r in rounds],
        **summary(latencies),
    }


async def compare_read(
    direct: Target, gateway: Target, *, concurrency: int, seconds: float, rounds: int, c1_seconds: float
) -> dict[str, Any]:
    """Interleaved rounds (direct, gateway, direct, …) at `concurrency`, then a c=1 latency pair."""
    for target in (direct, gateway):  # warm connections, caches and the token cache
        await load_round(target, concurrency, 1.0)
    loaded: dict[str, list[dict[str, Any]]] = {"direct": [], "gateway": []}
    for round_number in range(rounds):
        for key, target in (("direct", direct), ("gateway", gateway)):
            loaded[key].append(await load_round(target, concurrency, seconds))
        log(f"  round {round_number + 1}/{rounds} done")
    single = {
        key: await load_round(target, 1, c1_seconds)
        for key, target in (("direct", direct), ("gateway", gateway))
    }
    result: dict[str, Any] = {key: combine(value) for key, value in loaded.items()}
    for key in ("direct", "gateway"):
        result[key]["c1_p50_ms"] = summary(single[key]["latencies"])["p50_ms"]
    result["ratio"] = round(result["gateway"]["req_per_s"] / result["direct"]["req_per_s"], 3)
    result["per_round_ratio"] = [
        round(g / d, 3)
        for g, d in zip(
            result["gateway"]["per_round_req_per_s"], result["direct"]["per_round_req_per_s"], strict=True
        )
    ]
    result["c1_added_ms"] = round(result["gateway"]["c1_p50_ms"] - result["direct"]["c1_p50_ms"], 2)
    return result


async def make_visits(system: System, count: int) -> list[str]:
    stats = JourneyStats()
    async with aiohttp.ClientSession() as session:
        caller = GatewayCaller(session, system.url("gateway"), system.api_keys, stats)
        visit_ids = []
        for _ in range(count):
            patient = await caller.register()
            body = {"patient_id": patient["id"], "kind": "outpatient", "department": "internal"}
            visit_ids.append((await caller.call("open_visit", "nurse-dev", "POST", "/v1/visits", body))["id"])
    return visit_ids


def restart_gateway(system: System, transport: str) -> None:
    system.env["GATEWAY_UPSTREAM_TRANSPORT"] = transport
    system.stop_service("gateway")
    system.start_service("gateway")


async def run_read_comparison(system: System, args: argparse.Namespace) -> dict[str, Any]:
    visit_ids = await make_visits(system, args.visits)
    secret = system.env["PATIENTFLOW_INTERNAL_SECRET"]
    results: dict[str, Any] = {}
    for transport in args.transports:
        restart_gateway(system, transport)
        log(f"part 2: GET /visits/{{id}} straight vs through the gateway ({transport} transport)")
        # Minted per phase: an internal token lives five minutes.
        token = mint_internal_token(secret, "bench", {"registration:read"}, audience="registration")
        direct = Target(
            "direct",
            [f"{system.url('registration')}/visits/{v}" for v in visit_ids],
            {"authorization": f"Bearer {token}"},
        )
        gateway = Target(
            "gateway",
            [f"{system.url('gateway')}/v1/visits/{v}" for v in visit_ids],
            {"authorization": f"Bearer {system.api_keys['his-dev']}"},
        )
        results[transport] = await compare_read(
            direct,
            gateway,
            concurrency=args.read_concurrency,
            seconds=args.read_seconds,
            rounds=args.rounds,
            c1_seconds=args.c1_seconds,
        )
    restart_gateway(system, "aiohttp")
    return results


# --- reporting and the command line ----------------------------------------------------------------


def report(journeys: dict[str, Any], reads: dict[str, Any], args: argparse.Namespace) -> str:
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
        "",
        f"## GET /visits/{{id}}: straight vs through the gateway (c={args.read_concurrency}, "
        f"{args.rounds} interleaved rounds × {args.read_seconds:g} s)",
        "",
    ]
    rows = []
    for transport, result in reads.items():
        for key in ("direct", "gateway"):
            r = result[key]
            label = "registration, straight" if key == "direct" else f"via gateway ({transport})"
            ratio = "1.00" if key == "direct" else f"{result['ratio']:.2f}"
            rows.append([label, r["req_per_s"], ratio, r["p50_ms"], r["p99_ms"], r["c1_p50_ms"], r["errors"]])
    out.append(markdown_table(["path", "req/s", "ratio", "p50 ms", "p99 ms", "c=1 p50 ms", "errors"], rows))
    return "\n".join(out)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.gateway_journeys", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--clients", type=int, default=16, help="concurrent journey clients (part 1)")
    parser.add_argument("--seconds", type=float, default=20, help="how long to start new journeys")
    # Not 64: a service deadlocks at 48+ concurrent requests (kit's thread pool 40 + SQLite readers 8).
    parser.add_argument("--read-concurrency", type=int, default=32, help="connections for part 2")
    parser.add_argument("--read-seconds", type=float, default=5, help="length of one part-2 round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved part-2 rounds per target")
    parser.add_argument("--c1-seconds", type=float, default=2, help="single-connection latency run")
    parser.add_argument("--visits", type=int, default=50, help="distinct visits the reads cycle through")
    parser.add_argument(
        "--transports",
        type=lambda text: text.split(","),
        default=["aiohttp", "httpx"],
        help="gateway upstream transports to compare in part 2 (aiohttp,httpx)",
    )
    parser.add_argument("--database-url", help="PostgreSQL URL (default: SQLite files in a temp dir)")
    args = parser.parse_args(argv)
    if not set(args.transports) <= {"aiohttp", "httpx"}:
        parser.error("--transports takes aiohttp and/or httpx")
    return args


async def run(system: System, args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    log(f"part 1: {args.clients} clients, {args.seconds:g} s of journeys")
    journeys = await run_journeys(system, args.clients, args.seconds)
    reads = await run_read_comparison(system, args)
    return journeys, reads


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    run_tag = uuid.uuid4().hex[:8]
    ports = {component.name: free_port() for component in COMPONENTS}
    with tempfile.TemporaryDirectory(prefix="pf-bench-") as scratch:
        log("starting the system …")
        try:
            with System(Path(scratch), env=system_env(args.database_url, run_tag), ports=ports) as system:
                journeys, reads = uvloop.run(run(system, args))
        finally:
            if args.database_url:
                drop_schemas(args.database_url, run_tag)
    text = report(journeys, reads, args)
    print(text)
    database = "postgresql" if args.database_url else "sqlite"
    path = write_results(
        "gateway_journeys",
        {
            "args": vars(args),
            "database": database,
            "machine": machine(),
            "journeys": journeys,
            "reads": reads,
        },
    )
    log(f"\nwrote {path}")
    return 0 if journeys["failed_journeys"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
