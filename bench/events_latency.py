"""Event latency: from a committed write to the Server-Sent Event that announces it.

Starts the whole system, opens two SSE streams of `patient.registered` — one through the gateway
(`/v1/events/stream`, API key, scopes, rate limits and metrics on) and one straight at the event hub
(`/log/stream`, minted internal token) — then registers patients through the gateway at a steady rate.
For each patient it records when the `POST /v1/patients` answer arrived (the write had committed by then)
and when each stream delivered the event, and prints p50/p99 of the difference for both streams side by
side. How the hub reads the feeds (a long poll per source, merged by the events' causes, no clock
margin: services/events/ingest.py) is part of what is measured.

    python -m bench.events_latency --rate 20 --seconds 15
"""

import argparse
import asyncio
import json
import sys
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import aiohttp
import uvloop

from bench.common import (
    RunningSystem,
    machine,
    markdown_table,
    random_id_number,
    running_system,
    summary,
    system_env,
    write_results,
)
from bench.compare import THIS_TREE, TreeSystem, build_systems, side_by_side, start_all
from kit.auth import mint_internal_token

EVENT_TYPE = "patient.registered"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def read_stream(
    session: aiohttp.ClientSession,
    url: str,
    headers: dict[str, str],
    received: dict[str, float],
    ready: asyncio.Event,
) -> None:
    """Record the arrival time of each event by aggregate id until cancelled."""
    async with session.get(url, headers=headers | {"accept": "text/event-stream"}) as response:
        if response.status != 200:
            raise RuntimeError(f"{url}: {response.status} {await response.text()}")
        ready.set()
        data: list[str] = []
        async for raw in response.content:
            line = raw.decode().rstrip("\r\n")
            if line.startswith("data:"):
                data.append(line[5:].lstrip())
            elif not line and data:
                event = json.loads("\n".join(data))
                data = []
                received.setdefault(event["aggregate"]["id"], time.perf_counter())


async def produce(
    session: aiohttp.ClientSession, gateway: str, key: str, rate: float, seconds: float
) -> dict[str, float]:
    """Register patients at `rate` per second; patient id -> when the 201 arrived."""
    committed: dict[str, float] = {}
    headers = {"authorization": f"Bearer {key}"}
    interval, stop_at = 1 / rate, time.perf_counter() + seconds
    next_at = time.perf_counter()
    while next_at < stop_at:
        body = {"id_number": random_id_number(), "name": "压测患者"}
        async with session.post(f"{gateway}/v1/patients", json=body, headers=headers) as response:
            payload = await response.json()
        if response.status == 201:
            committed[payload["id"]] = time.perf_counter()
        next_at += interval
        await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
    return committed


async def measure(system: RunningSystem, rate: float, seconds: float) -> dict[str, Any]:
    secret = system.env["PATIENTFLOW_INTERNAL_SECRET"]
    # A reader sees the sources whose read scope it holds (services/events/service.py `audience`).
    token = mint_internal_token(secret, "bench", {"events:read", "registration:read"}, audience="events")
    streams = {
        "via gateway": (
            f"{system.url('gateway')}/v1/events/stream?type={EVENT_TYPE}",
            {"authorization": f"Bearer {system.api_keys['his-dev']}"},
        ),
        "hub, straight": (
            f"{system.url('events')}/log/stream?type={EVENT_TYPE}",
            {"authorization": f"Bearer {token}"},
        ),
    }
    received: dict[str, dict[str, float]] = {name: {} for name in streams}
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        readiness = {name: asyncio.Event() for name in streams}
        readers = [
            asyncio.create_task(read_stream(session, url, headers, received[name], readiness[name]))
            for name, (url, headers) in streams.items()
        ]
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in readiness.values())), 30)
        committed = await produce(session, system.url("gateway"), system.api_keys["his-dev"], rate, seconds)
        deadline = time.perf_counter() + 30
        while time.perf_counter() < deadline and any(len(r) < len(committed) for r in received.values()):
            await asyncio.sleep(0.1)
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
    result: dict[str, Any] = {"rate": rate, "seconds": seconds, "written": len(committed)}
    for name, arrivals in received.items():
        lags = [arrivals[pid] - at for pid, at in committed.items() if pid in arrivals]
        result[name] = {"received": len(lags), "missing": len(committed) - len(lags), **summary(lags)}
    return result


def report(result: dict[str, Any]) -> str:
    rows = [
        [name, r["received"], r["missing"], r["p50_ms"], r["p99_ms"], r["max_ms"]]
        for name, r in result.items()
        if isinstance(r, dict)
    ]
    return "\n".join(
        [
            f"## Committed → SSE received ({result['written']} events at {result['rate']:g}/s)",
            "",
            markdown_table(["stream", "received", "missing", "p50 ms", "p99 ms", "max ms"], rows),
        ]
    )


async def measure_each(systems: list[TreeSystem], rate: float, seconds: float) -> list[dict[str, Any]]:
    """`measure` on each system in turn, the others frozen (see `bench.compare`)."""
    results = []
    for system in systems:
        log(f"{system.label}: registering {rate:g} patients/s for {seconds:g} s ...")
        system.thaw()
        await asyncio.sleep(1.0)  # let what fired while it was frozen run out
        results.append(await measure(system, rate, seconds))
        system.freeze()
    return results


def compare_trees(args: argparse.Namespace, env: dict[str, str]) -> int:
    """The same measurement on this tree's system and on each `--compare` tree's, in one run."""
    systems = build_systems([*args.compare, THIS_TREE], [args.database_url or "sqlite"], env)
    with ExitStack() as stack:
        start_all(stack, systems, frozen=True)
        results = uvloop.run(measure_each(systems, args.rate, args.seconds))
    figures = [
        {
            f"{stream}: {figure}": float(found[key])
            for stream, found in result.items()
            if isinstance(found, dict)
            for figure, key in (("p50 ms", "p50_ms"), ("p99 ms", "p99_ms"), ("missing", "missing"))
        }
        for result in results
    ]
    print(f"## Committed → SSE received ({args.rate:g} events/s for {args.seconds:g} s, side by side)\n")
    print(side_by_side([system.label for system in systems], figures))
    path = write_results(
        "events_latency",
        {
            "machine": machine(),
            "args": vars(args) | {"compare": [str(tree) for tree in args.compare]},
            "systems": [{"label": s.label, "result": r} for s, r in zip(systems, results, strict=True)],
        },
    )
    log(f"written {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.events_latency", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--rate", type=float, default=20, help="patients registered per second")
    parser.add_argument("--seconds", type=float, default=15, help="how long to keep registering")
    parser.add_argument("--poll-seconds", type=float, default=None, help="PATIENTFLOW_FEED_POLL_SECONDS")
    parser.add_argument("--database-url", default=None, help="run on this server instead of SQLite")
    parser.add_argument(
        "--compare", action="append", default=[], metavar="TREE", type=Path,
        help="also measure the system of this git worktree (its own .venv), side by side; repeatable",
    )  # fmt: skip
    args = parser.parse_args(argv)
    run_tag = uuid.uuid4().hex[:8]
    env = system_env(args.database_url, run_tag)
    if args.poll_seconds is not None:
        env["PATIENTFLOW_FEED_POLL_SECONDS"] = str(args.poll_seconds)
    if args.compare:
        return compare_trees(args, env)
    with running_system(args.database_url, run_tag, env=env) as system:
        log(f"registering {args.rate:g} patients/s for {args.seconds:g} s ...")
        result = uvloop.run(measure(system, args.rate, args.seconds))
    print(report(result))
    path = write_results("events_latency", {"machine": machine(), "args": vars(args), "result": result})
    log(f"written {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
