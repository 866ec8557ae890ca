"""A service's trivial read against the stack's ceiling, in one run: what the kernel costs per request.

Starts three servers with the same uvicorn settings (`patientflow.cli.UVICORN_OPTIONS`: httptools,
uvloop, no access log): FastAPI hello (an `async def` returning a dict), Starlette hello, and
registration alone (its billing feed points nowhere and backs off). It opens `--visits` visits, then
loads `GET /visits/{id}` straight at registration (minted internal token, `registration:read`) and the
two hellos in interleaved rounds, at `--concurrency` (default 32) and at c=1. The load comes from a
separate process (an aiohttp client, closed loop): its own CPU per request is printed too, as it shares
the two cores. Server CPU per request comes from /proc/<pid>/stat (user + system) over each round.

    python -m bench.service_read --rounds 3 --seconds 5
    python -m bench.service_read --before /work/wt/before   # another tree's registration beside this one
    python -m bench.service_read --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test
"""

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import uvloop

from bench.common import (
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

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
HELLOS = ("fastapi", "starlette")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- the two ceilings ------------------------------------------------------------------------------


def fastapi_hello() -> Any:
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/hello")
    async def hello() -> dict[str, str]:
        return {"hello": "world"}

    return app


def starlette_hello() -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def hello(_request: Request) -> JSONResponse:
        return JSONResponse({"hello": "world"})

    return Starlette(routes=[Route("/hello", hello)])


def serve_hello(kind: str, port: int) -> None:
    import uvicorn

    from patientflow.cli import UVICORN_OPTIONS

    factory = fastapi_hello if kind == "fastapi" else starlette_hello
    uvicorn.run(factory, factory=True, host="127.0.0.1", port=port, log_level="warning", **UVICORN_OPTIONS)


# --- the load generator (its own process) ----------------------------------------------------------


async def closed_loop(
    urls: list[str], headers: dict[str, str], concurrency: int, seconds: float
) -> dict[str, Any]:
    """`concurrency` workers, each sending its next request as soon as the last one is answered."""
    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:

        async def worker(index: int, stop_at: float) -> None:
            nonlocal errors
            n = index
            while time.perf_counter() < stop_at:
                started = time.perf_counter()
                async with session.get(urls[n % len(urls)], headers=headers) as response:
                    await response.read()
                latencies.append(time.perf_counter() - started)
                errors += response.status != 200
                n += concurrency

        await asyncio.gather(*(worker(i, time.perf_counter() + 0.5) for i in range(concurrency)))  # warm up
        latencies.clear()
        cpu_started, started = time.process_time(), time.perf_counter()
        await asyncio.gather(*(worker(i, started + seconds) for i in range(concurrency)))
        elapsed, client_cpu = time.perf_counter() - started, time.process_time() - cpu_started
    return {
        "requests": len(latencies),
        "errors": errors,
        "seconds": elapsed,
        "client_cpu": client_cpu,
        **summary(latencies),
    }


def load_main(args: argparse.Namespace) -> None:
    spec = json.loads(sys.stdin.read())
    result = uvloop.run(closed_loop(spec["urls"], spec["headers"], args.concurrency, args.seconds))
    print(json.dumps(result))


# --- the driver -----------------------------------------------------------------------------------


@dataclass
class Target:
    name: str
    pid: int
    urls: list[str]
    headers: dict[str, str]


def process_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def load_round(target: Target, concurrency: int, seconds: float) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.service_read", "load", "--concurrency", str(concurrency)]
    command += ["--seconds", str(seconds)]
    spec = json.dumps({"urls": target.urls, "headers": target.headers})
    cpu_before = process_cpu_seconds(target.pid)
    finished = subprocess.run(command, input=spec, capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(finished.stdout)
    # The server's CPU over the warm-up too: the warm-up's requests are few and it is the same path.
    result["server_cpu"] = process_cpu_seconds(target.pid) - cpu_before
    return result


def combine(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    requests = sum(r["requests"] for r in rounds)
    seconds = sum(r["seconds"] for r in rounds)
    server_cpu = sum(r["server_cpu"] for r in rounds)
    client_cpu = sum(r["client_cpu"] for r in rounds)
    return {
        "req_per_s": round(requests / seconds, 1),
        "per_round_req_per_s": [round(r["requests"] / r["seconds"], 1) for r in rounds],
        "errors": sum(r["errors"] for r in rounds),
        # server CPU counts the 0.5 s warm-up as well; a small overestimate, the same for every target
        "server_cpu_us": round(server_cpu / requests * 1e6),
        "client_cpu_us": round(client_cpu / requests * 1e6),
        "p50_ms": sorted(r["p50_ms"] for r in rounds)[len(rounds) // 2],
        "p99_ms": max(r["p99_ms"] for r in rounds),
    }


@contextmanager
def hello_server(kind: str) -> Iterator[tuple[int, str]]:
    port = free_port()
    command = [sys.executable, "-m", "bench.service_read", "serve-hello", kind, "--port", str(port)]
    process = subprocess.Popen(command)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{url}/hello", timeout=1.0)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(f"{kind} hello did not start") from None
                time.sleep(0.1)
        yield process.pid, url
    finally:
        process.terminate()
        process.wait(10)


def make_visits(base_url: str, secret: str, count: int) -> list[str]:
    token = mint_internal_token(secret, "bench", {"registration:write"}, audience="registration")
    headers = {"authorization": f"Bearer {token}"}
    visit_ids: list[str] = []
    with httpx.Client(base_url=base_url, headers=headers, timeout=30) as client:
        while len(visit_ids) < count:
            patient = client.post("/patients", json={"id_number": random_id_number(), "name": "压测患者"})
            if patient.status_code == 409:  # a random identity number already on file
                continue
            patient.raise_for_status()
            body = {"patient_id": patient.json()["id"], "kind": "outpatient", "department": "internal"}
            visit = client.post("/visits", json=body)
            visit.raise_for_status()
            visit_ids.append(visit.json()["id"])
    return visit_ids


def measure(targets: list[Target], args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for concurrency, seconds in ((args.concurrency, args.seconds), (1, args.c1_seconds)):
        rounds: dict[str, list[dict[str, Any]]] = {t.name: [] for t in targets}
        for number in range(args.rounds):
            for target in targets:
                rounds[target.name].append(load_round(target, concurrency, seconds))
            log(f"  c={concurrency}: round {number + 1}/{args.rounds} done")
        combined = {name: combine(value) for name, value in rounds.items()}
        for value in combined.values():
            value["ratio_to_fastapi"] = round(value["req_per_s"] / combined["fastapi"]["req_per_s"], 3)
            # The same ratio by server CPU per request: steadier than req/s on a loaded machine.
            value["cpu_ratio_to_fastapi"] = round(
                combined["fastapi"]["server_cpu_us"] / value["server_cpu_us"], 3
            )
        results[f"c{concurrency}"] = combined
    return results


def registration_target(name: str, system: System, visits: int) -> Target:
    """Reads of `visits` fresh visits at `system`'s registration, with a token it accepts."""
    secret = system.env["PATIENTFLOW_INTERNAL_SECRET"]
    registration = system.url("registration")
    visit_ids = make_visits(registration, secret, visits)
    token = mint_internal_token(secret, "bench", {"registration:read"}, audience="registration")
    urls = [f"{registration}/visits/{v}" for v in visit_ids]
    return Target(name, system.processes["registration"].pid, urls, {"authorization": f"Bearer {token}"})


def run(system: System, args: argparse.Namespace, before: System | None = None) -> dict[str, Any]:
    with hello_server("fastapi") as fastapi, hello_server("starlette") as starlette:
        targets = [
            Target("fastapi", fastapi[0], [f"{fastapi[1]}/hello"], {}),
            Target("starlette", starlette[0], [f"{starlette[1]}/hello"], {}),
        ]
        if before is not None:
            targets.append(registration_target("before", before, args.visits))
        targets.append(registration_target("registration", system, args.visits))
        return measure(targets, args)


LABELS = {
    "fastapi": "FastAPI hello (async def)",
    "starlette": "Starlette hello",
    "registration": "registration GET /visits/{id}, straight",
    "before": "registration GET /visits/{id}, straight, the --before tree",
}


def report(results: dict[str, Any], args: argparse.Namespace) -> str:
    header = [
        "server",
        "c",
        "req/s",
        "× FastAPI hello",
        "server CPU µs/req",
        "CPU × FastAPI hello",
        "client CPU µs/req",
        "p50 ms",
        "p99 ms",
    ]
    rows = [
        [LABELS[name], key[1:], r["req_per_s"], f"{r['ratio_to_fastapi']:.2f}", r["server_cpu_us"],
         f"{r['cpu_ratio_to_fastapi']:.2f}", r["client_cpu_us"], r["p50_ms"], r["p99_ms"]]
        for key, by_target in results.items()
        for name, r in by_target.items()
    ]  # fmt: skip
    title = (
        f"## A trivial read vs the stack's ceiling ({args.rounds} interleaved rounds × {args.seconds:g} s"
        f" at c={args.concurrency}, {args.c1_seconds:g} s at c=1)"
    )
    return "\n".join([title, "", markdown_table(header, rows)])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.service_read", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command")
    hello = commands.add_parser("serve-hello", help="(internal) run one hello server")
    hello.add_argument("kind", choices=HELLOS)
    hello.add_argument("--port", type=int, required=True)
    load = commands.add_parser("load", help="(internal) one closed-loop round; URLs and headers on stdin")
    load.add_argument("--concurrency", type=int, required=True)
    load.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--concurrency", type=int, default=32, help="connections of the loaded rounds")
    parser.add_argument("--seconds", type=float, default=5, help="length of one loaded round")
    parser.add_argument("--c1-seconds", type=float, default=3, help="length of one c=1 round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per server")
    parser.add_argument("--visits", type=int, default=50, help="distinct visits the reads cycle through")
    parser.add_argument("--database-url", help="PostgreSQL URL (default: SQLite files in a temp dir)")
    parser.add_argument("--before", help="a tree whose registration to read beside this one, round by round")
    return parser.parse_args(argv)


@contextmanager
def registration_alone(database_url: str | None, *, launch: Callable[..., Any]) -> Iterator[System]:
    """Registration alone, started by `launch` (another tree's interpreter for `--before`), in a scratch
    folder; on PostgreSQL its run's schemas are dropped afterwards."""
    run_tag = uuid.uuid4().hex[:8]
    ports = {component.name: free_port() for component in COMPONENTS}
    with tempfile.TemporaryDirectory(prefix="pf-bench-") as scratch:
        system = System(Path(scratch), env=system_env(database_url, run_tag), ports=ports, launch=launch)
        try:
            log("starting registration …")
            system.start_service("registration")
            yield system
        finally:
            system.stop()
            if database_url:
                drop_schemas(database_url, run_tag)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "serve-hello":
        serve_hello(args.kind, args.port)
        return 0
    if args.command == "load":
        load_main(args)
        return 0
    with ExitStack() as stack:
        system = stack.enter_context(registration_alone(args.database_url, launch=subprocess.Popen))
        before = None
        if args.before:
            python = str(Path(args.before) / ".venv" / "bin" / "python")

            def launch_before(command: list[str], **options: Any) -> subprocess.Popen[bytes]:
                return subprocess.Popen([python, *command[1:]], **options)

            before = stack.enter_context(registration_alone(args.database_url, launch=launch_before))
        results = run(system, args, before)
    print(report(results, args))
    database = "postgresql" if args.database_url else "sqlite"
    payload = {"args": vars(args), "database": database, "machine": machine(), "results": results}
    log(f"\nwrote {write_results('service_read', payload)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
