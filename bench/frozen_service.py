"""What a frozen service costs its callers: results stopped with SIGSTOP, called through the gateway.

Starts the whole system, opens a visit, then at each `--rates` (calls per second, open loop: a call
never waits for the one before) reads `GET /v1/visits/{id}/orders` through the gateway: first with
results healthy, then with results frozen (alive, accepting connections, answering nothing), then
resumes it (SIGCONT) and waits until the gateway answers 200 again. Prints, for each phase, the answers
callers got and the latency they saw (p50/p95/max), and how long recovery took after SIGCONT.

    python -m bench.frozen_service --rates 1,10 --seconds 15
"""

import argparse
import asyncio
import os
import signal
import sys
import time
import uuid
from collections import Counter
from typing import Any

import aiohttp
import uvloop

from bench.common import (
    machine,
    markdown_table,
    percentile,
    random_id_number,
    running_system,
    system_env,
    write_results,
)
from patientflow.supervisor import System

# A safety net far above any deadline: a caller that hangs shows up as "timeout", not as a stuck run.
CLIENT_TIMEOUT_SECONDS = 30.0
TARGET_SECONDS = 5.0


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def timed_get(session: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> tuple[str, float]:
    """(status or "timeout"/"error", seconds) of one call."""
    started = time.perf_counter()
    try:
        async with session.get(url, headers=headers) as response:
            await response.read()
            status = str(response.status)
    except TimeoutError:
        status = "timeout"
    except aiohttp.ClientError:
        status = "error"
    return status, time.perf_counter() - started


async def load(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str], rate: float, seconds: float
) -> list[tuple[str, float]]:
    """Calls started at `rate` per second for `seconds`, each on its own; their answers once all are in."""
    calls: list[asyncio.Task[tuple[str, float]]] = []
    interval, next_at = 1 / rate, time.perf_counter()
    stop_at = next_at + seconds
    while next_at < stop_at:
        calls.append(asyncio.create_task(timed_get(session, url, headers)))
        next_at += interval
        await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
    return list(await asyncio.gather(*calls))


def phase(name: str, rate: float, answers: list[tuple[str, float]]) -> dict[str, Any]:
    seconds = sorted(latency for _, latency in answers)
    statuses = Counter(status for status, _ in answers)
    return {
        "phase": name,
        "rate": rate,
        "calls": len(answers),
        "statuses": dict(sorted(statuses.items())),
        "p50_ms": round(percentile(seconds, 0.50) * 1000, 1),
        "p95_ms": round(percentile(seconds, 0.95) * 1000, 1),
        "max_ms": round(seconds[-1] * 1000, 1),
        "within_target": sum(1 for latency in seconds if latency < TARGET_SECONDS),
    }


async def until_healthy(session: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> float:
    """Seconds until the gateway answers 200 again, polling every 0.1 s."""
    started = time.perf_counter()
    while (await timed_get(session, url, headers))[0] != "200":
        await asyncio.sleep(0.1)
    return time.perf_counter() - started


async def open_visit(session: aiohttp.ClientSession, gateway: str, keys: dict[str, str]) -> str:
    his = {"authorization": f"Bearer {keys['his-dev']}"}
    body = {"id_number": random_id_number(), "name": "压测患者"}
    async with session.post(f"{gateway}/v1/patients", json=body, headers=his) as response:
        patient = await response.json()
    body = {"patient_id": patient["id"], "kind": "outpatient", "department": "internal"}
    async with session.post(f"{gateway}/v1/visits", json=body, headers=his) as response:
        visit: dict[str, Any] = await response.json()
    return str(visit["id"])


async def measure(system: System, rates: list[float], seconds: float) -> dict[str, Any]:
    gateway = system.url("gateway")
    doctor = {"authorization": f"Bearer {system.api_keys['doctor-dev']}"}
    timeout = aiohttp.ClientTimeout(total=CLIENT_TIMEOUT_SECONDS)
    phases: list[dict[str, Any]] = []
    recoveries: dict[str, float] = {}
    connector = aiohttp.TCPConnector(limit=0)  # no client-side queue: every call goes out when started
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        url = f"{gateway}/v1/visits/{await open_visit(session, gateway, system.api_keys)}/orders"
        results = system.processes["results"].pid
        for rate in rates:
            log(f"{rate:g} calls/s: results healthy ...")
            phases.append(phase("healthy", rate, await load(session, url, doctor, rate, seconds / 3)))
            log(f"{rate:g} calls/s: results frozen (SIGSTOP) for {seconds:g} s ...")
            os.kill(results, signal.SIGSTOP)
            try:
                phases.append(phase("frozen", rate, await load(session, url, doctor, rate, seconds)))
            finally:
                os.kill(results, signal.SIGCONT)
            recoveries[f"{rate:g}"] = round(await until_healthy(session, url, doctor), 2)
    return {"seconds": seconds, "phases": phases, "recovery_seconds": recoveries}


def report(result: dict[str, Any]) -> str:
    rows = [
        [
            f"{p['rate']:g}/s", p["phase"], p["calls"],
            ", ".join(f"{status}: {count}" for status, count in p["statuses"].items()),
            p["p50_ms"], p["p95_ms"], p["max_ms"], f"{p['within_target']}/{p['calls']}",
        ]
        for p in result["phases"]
    ]  # fmt: skip
    header = ["rate", "results", "calls", "answers", "p50 ms", "p95 ms", "max ms", f"< {TARGET_SECONDS:g} s"]
    recovery = ", ".join(f"{rate}/s: {s} s" for rate, s in result["recovery_seconds"].items())
    return "\n".join(
        [
            "## GET /v1/visits/{id}/orders through the gateway, results healthy vs frozen (SIGSTOP)",
            "",
            markdown_table(header, rows),
            "",
            f"First 200 after SIGCONT: {recovery}.",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.frozen_service", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--rates", default="1,10", help="calls per second, comma-separated")
    parser.add_argument("--seconds", type=float, default=15, help="how long results stays frozen per rate")
    parser.add_argument("--database-url", default=None, help="run on this server instead of SQLite")
    args = parser.parse_args(argv)
    rates = [float(rate) for rate in args.rates.split(",")]
    run_tag = uuid.uuid4().hex[:8]
    env = system_env(args.database_url, run_tag)
    with running_system(args.database_url, run_tag, env=env) as system:
        result = uvloop.run(measure(system, rates, args.seconds))
    print(report(result))
    path = write_results("frozen_service", {"machine": machine(), "args": vars(args), "result": result})
    log(f"written {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
