"""The gateway hop: one read, `GET /visits/{id}`, straight at registration and through the gateway.

For each forwarder named in `--forwarders` (`GATEWAY_UPSTREAM_TRANSPORT`) the gateway is restarted,
then rounds interleave straight and gateway loads at c=32 and at c=1, so the ratios compare like with
like on a noisy machine. Besides throughput and latency it reads the gateway process's own CPU time
(`/proc/<pid>/stat`) over its rounds: CPU per forwarded request is the figure that load on the machine
disturbs least. First, the gateway's own path alone: the app called in this process with an upstream
that answers at once (no sockets), CPU per request (`--own-path-requests`, with `--profile` the
cProfile listing of it).

    python -m bench.gateway_hop --forwarders wire,aiohttp --rounds 3
    python -m bench.gateway_hop --forwarders wire --before /tmp/before-tree   # before/after, one run

`--before PATH` runs a second gateway beside this one, from another tree's code (e.g. `git archive
<commit> | tar -x -C PATH`; this tree's venv, `PYTHONPATH=PATH`, that tree's default forwarder), in
front of the same services; each round loads straight, the before gateway and this one in turn, so
a change to the gateway is measured before and after side by side, under the same machine load.
"""

import argparse
import asyncio
import contextlib
import cProfile
import json
import os
import pstats
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import uvloop

from bench.common import (
    machine,
    markdown_table,
    process_cpu_seconds,
    random_id_number,
    running_system,
    summary,
    write_results,
)
from gateway.app import create_app
from gateway.config import GatewaySettings
from gateway.keys import hash_key
from gateway.pools import Headers, Timeouts, UpstreamResponse
from kit.auth import mint_internal_token
from patientflow.supervisor import System, free_port

FORWARDERS = ("wire", "aiohttp", "httpx-aiohttp", "httpx")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class Target:
    name: str
    urls: list[str]
    headers: dict[str, str]
    pid: int | None = None  # the process whose CPU time a round reads (the gateway's)


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

        cpu_before = process_cpu_seconds(target.pid) if target.pid else 0.0
        started = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
        elapsed = time.perf_counter() - started
        cpu = (process_cpu_seconds(target.pid) - cpu_before) if target.pid else 0.0
    return {
        "requests": len(latencies),
        "errors": errors,
        "seconds": elapsed,
        "latencies": latencies,
        "cpu": cpu,
    }


def combine(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    requests = sum(r["requests"] for r in rounds)
    seconds = sum(r["seconds"] for r in rounds)
    latencies = [value for r in rounds for value in r["latencies"]]
    return {
        "req_per_s": round(requests / seconds, 1),
        "errors": sum(r["errors"] for r in rounds),
        "per_round_req_per_s": [round(r["requests"] / r["seconds"], 1) for r in rounds],
        "cpu_us_per_request": round(sum(r["cpu"] for r in rounds) / max(requests, 1) * 1e6),
        **summary(latencies),
    }


async def compare(direct: Target, gateways: list[Target], args: argparse.Namespace) -> dict[str, Any]:
    """Rounds of (straight, each gateway) at c=`--concurrency`, then at c=1, interleaved; per gateway,
    its figures beside the straight ones of the same rounds."""
    targets = [direct, *gateways]
    for target in targets:  # warm connections, caches and the token cache
        await load_round(target, args.concurrency, 1.0)
    loads: dict[str, list[dict[str, Any]]] = {}
    for round_number in range(args.rounds):
        for suffix, concurrency, seconds in (
            ("", args.concurrency, args.round_seconds),
            ("_c1", 1, args.c1_seconds),
        ):
            for target in targets:
                round_ = await load_round(target, concurrency, seconds)
                loads.setdefault(target.name + suffix, []).append(round_)
        log(f"  round {round_number + 1}/{args.rounds} done")
    combined = {key: combine(value) for key, value in loads.items()}
    results: dict[str, Any] = {}
    for gateway in gateways:
        result = {
            "direct": combined["direct"],
            "gateway": combined[gateway.name],
            "direct_c1": combined["direct_c1"],
            "gateway_c1": combined[gateway.name + "_c1"],
        }
        for suffix in ("", "_c1"):
            gateway_rate, direct_rate = (
                result[f"gateway{suffix}"]["req_per_s"],
                result[f"direct{suffix}"]["req_per_s"],
            )
            result[f"ratio{suffix}"] = round(gateway_rate / direct_rate, 3)
        result["c1_added_ms"] = round(result["gateway_c1"]["p50_ms"] - result["direct_c1"]["p50_ms"], 2)
        results[gateway.name] = result
    return results


VISIT = json.dumps({"id": "v-1", "patient_id": "p-1", "kind": "outpatient", "status": "open"}).encode()


class AnsweringPool:
    """An upstream pool that answers every request at once with one visit, without a socket."""

    async def request(
        self, method: str, target: str, *, headers: Headers, content: bytes | None, timeouts: Timeouts,
        stream: bool = False,
    ) -> UpstreamResponse:  # fmt: skip
        return UpstreamResponse(200, [("content-type", "application/json")], VISIT)

    async def aclose(self) -> None:
        pass


async def own_path(requests: int, *, profile: bool = False) -> float:
    """µs of CPU per `GET /v1/visits/{id}` in the gateway itself (key, scope, limits, metrics, middleware,
    relay), the app called in-process with `AnsweringPool` for every upstream."""
    with tempfile.TemporaryDirectory(prefix="pf-bench-own-") as scratch:
        keys_file = Path(scratch) / "keys.json"
        entry = {
            "client": "his-dev",
            "kind": "his",
            "sha256": hash_key("k-his"),
            "scopes": ["registration:read"],
        }
        keys_file.write_text(json.dumps({"keys": [entry]}))
        # As a served gateway runs: access log at INFO to a rotated file, rate limits on (far above this).
        settings = GatewaySettings.model_validate(
            {
                "data_dir": scratch,
                "api_keys_file": keys_file,
                "rate_limit_per_second": 1e9,
                "rate_burst": 10**9,
                "PATIENTFLOW_LOG_DIR": scratch,
            }
        )
        app = create_app(settings)
        headers = [(b"host", b"gateway"), (b"authorization", b"Bearer k-his"), (b"accept", b"*/*")]
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
            "scheme": "http", "path": "/v1/visits/v-1", "raw_path": b"/v1/visits/v-1", "query_string": b"",
            "root_path": "",
            "headers": headers, "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 2),
        }  # fmt: skip
        statuses: list[int] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Any) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        async with app.router.lifespan_context(app):
            upstreams = app.state.upstreams
            upstreams.pools = {name: AnsweringPool() for name in upstreams.pools}
            for _ in range(200):  # warm caches (the token source's token, metric children)
                await app(dict(scope, state={}), receive, send)
            profiler = cProfile.Profile() if profile else None
            started = time.process_time()
            if profiler:
                profiler.enable()
            for _ in range(requests):
                await app(dict(scope, state={}), receive, send)
            if profiler:
                profiler.disable()
            cpu = time.process_time() - started
    if set(statuses) != {200}:
        raise RuntimeError(f"the gateway answered {sorted(set(statuses))}")
    if profiler:
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(40)
    return cpu / requests * 1e6


async def make_visits(gateway_url: str, nurse_key: str, count: int) -> list[str]:
    """`count` visits of fresh patients, opened through the gateway."""
    headers = {"authorization": f"Bearer {nurse_key}"}
    visit_ids: list[str] = []
    async with aiohttp.ClientSession(headers=headers) as session:
        while len(visit_ids) < count:
            body = {"id_number": random_id_number(), "name": "压测患者"}
            async with session.post(f"{gateway_url}/v1/patients", json=body) as response:
                if response.status == 409:  # that identity number is already on file: draw another
                    continue
                response.raise_for_status()
                patient = await response.json()
            body = {"patient_id": patient["id"], "kind": "outpatient", "department": "internal"}
            async with session.post(f"{gateway_url}/v1/visits", json=body) as response:
                response.raise_for_status()
                visit_ids.append((await response.json())["id"])
    return visit_ids


def restart_gateway(system: System, forwarder: str) -> int:
    """Restart the gateway on `forwarder`; its process id."""
    system.env["GATEWAY_UPSTREAM_TRANSPORT"] = forwarder
    system.stop_service("gateway")
    system.start_service("gateway")
    return system.processes["gateway"].pid


@contextlib.contextmanager
def before_gateway(system: System, tree: str) -> Iterator[tuple[str, int]]:
    """A second gateway, run from `tree`'s code on its own port, data and log directory, in front of
    the same services with the same keys and secret; its URL and process id."""
    port = free_port()
    data_dir = system.data_dir / "before-gateway"
    (data_dir / "logs").mkdir(parents=True, exist_ok=True)
    env = (
        os.environ
        | system.env
        | {
            "PYTHONPATH": tree,
            "PATIENTFLOW_DATA_DIR": str(data_dir),
            "PATIENTFLOW_LOG_DIR": str(data_dir / "logs"),
        }
    )
    env.pop("GATEWAY_UPSTREAM_TRANSPORT", None)  # the tree's own default forwarder
    command = [
        sys.executable, "-m", "patientflow.cli", "serve", "gateway", "--host", "127.0.0.1",
        "--port", str(port), "--log-level", "warning", "--parent-pid", str(os.getpid()),
    ]  # fmt: skip
    with (data_dir / "console.log").open("ab") as console:
        process = subprocess.Popen(command, env=env, cwd=data_dir, stdout=console, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while not _ready(url):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the gateway from {tree} did not start: see {data_dir / 'console.log'}")
            time.sleep(0.2)
        yield url, process.pid
    finally:
        process.terminate()
        process.wait(timeout=15)


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


async def run(system: System, args: argparse.Namespace, before: tuple[str, int] | None) -> dict[str, Any]:
    visit_ids = await make_visits(system.url("gateway"), system.api_keys["nurse-dev"], args.visits)
    secret = system.env["PATIENTFLOW_INTERNAL_SECRET"]
    results: dict[str, Any] = {}
    his = {"authorization": f"Bearer {system.api_keys['his-dev']}"}
    for forwarder in args.forwarders:
        pid = restart_gateway(system, forwarder)
        log(f"GET /visits/{{id}} straight vs through the gateway ({forwarder})")
        # Minted per forwarder: an internal token lives five minutes.
        token = mint_internal_token(secret, "bench", {"registration:read"}, audience="registration")
        direct = Target(
            "direct",
            [f"{system.url('registration')}/visits/{v}" for v in visit_ids],
            {"authorization": f"Bearer {token}"},
        )
        gateway_url = system.url("gateway")
        gateways = [Target(forwarder, [f"{gateway_url}/v1/visits/{v}" for v in visit_ids], his, pid=pid)]
        if before is not None:
            name = f"before ({args.before}), beside {forwarder}"
            urls = [f"{before[0]}/v1/visits/{v}" for v in visit_ids]
            gateways.insert(0, Target(name, urls, his, pid=before[1]))
        results |= await compare(direct, gateways, args)
    return results


def report(results: dict[str, Any], own_us: float, args: argparse.Namespace) -> str:
    header = [
        "forwarder", f"c={args.concurrency} straight req/s", "via gateway", "ratio",
        "c=1 straight p50 ms", "via gateway", "added ms", "c=1 ratio", "gateway CPU µs/req (c=32 / c=1)",
        "errors",
    ]  # fmt: skip
    rows = [
        [
            forwarder,
            r["direct"]["req_per_s"],
            r["gateway"]["req_per_s"],
            f"**{r['ratio']:.2f}**",
            r["direct_c1"]["p50_ms"],
            r["gateway_c1"]["p50_ms"],
            r["c1_added_ms"],
            f"**{r['ratio_c1']:.2f}**",
            f"{r['gateway']['cpu_us_per_request']} / {r['gateway_c1']['cpu_us_per_request']}",
            sum(r[key]["errors"] for key in ("direct", "gateway", "direct_c1", "gateway_c1")),
        ]
        for forwarder, r in results.items()
    ]
    title = (
        f"## GET /visits/{{id}}: straight vs through the gateway ({args.rounds} interleaved rounds of "
        f"{args.round_seconds:g} s at c={args.concurrency} and {args.c1_seconds:g} s at c=1)"
    )
    own = (
        f"The gateway's own path, in-process with an upstream answering at once: {own_us:.0f} µs CPU per "
        f"request ({args.own_path_requests} requests)."
    )
    return "\n".join([title, "", markdown_table(header, rows), "", own])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.gateway_hop", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--forwarders",
        type=lambda text: text.split(","),
        default=list(FORWARDERS),
        help=f"gateway upstream transports to compare ({','.join(FORWARDERS)})",
    )
    # Not 64: see bench/README.md (a service's thread pool and database gate).
    parser.add_argument("--concurrency", type=int, default=32, help="connections for the loaded rounds")
    parser.add_argument("--round-seconds", type=float, default=4, help="length of one loaded round")
    parser.add_argument("--c1-seconds", type=float, default=3, help="length of one single-connection round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per forwarder")
    parser.add_argument("--visits", type=int, default=50, help="distinct visits the reads cycle through")
    parser.add_argument("--own-path-requests", type=int, default=5000, help="in-process requests")
    parser.add_argument("--profile", action="store_true", help="cProfile the in-process requests (stderr)")
    parser.add_argument("--database-url", help="PostgreSQL URL (default: SQLite files in a temp dir)")
    parser.add_argument("--before", help="a tree whose gateway to run beside this one, round by round")
    args = parser.parse_args(argv)
    if not set(args.forwarders) <= set(FORWARDERS):
        parser.error(f"--forwarders takes {', '.join(FORWARDERS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    run_tag = uuid.uuid4().hex[:8]
    own_us = uvloop.run(own_path(args.own_path_requests, profile=args.profile))
    log(f"the gateway's own path: {own_us:.0f} µs CPU per request")
    log("starting the system …")
    with running_system(args.database_url, run_tag) as system, contextlib.ExitStack() as stack:
        before = stack.enter_context(before_gateway(system, args.before)) if args.before else None
        results = uvloop.run(run(system, args, before))
    print(report(results, own_us, args))
    database = "postgresql" if args.database_url else "sqlite"
    payload = {
        "args": vars(args),
        "database": database,
        "machine": machine(),
        "own_path_cpu_us": round(own_us),
        "results": results,
    }
    log(f"\nwrote {write_results('gateway_hop', payload)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
