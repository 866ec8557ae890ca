"""Side by side in one run: this tree's journey client on systems built from different trees.

Each system is one tree's own `patientflow up`, run by that tree's interpreter (`<tree>/.venv/bin/python`,
whose editable install is checked to point at the tree) on six free ports with a temporary data directory
and, on PostgreSQL, schemas of its own. All systems stay up for the whole run; the one being measured runs
alone while the others are frozen (SIGSTOP), so an idle system's polling steals no CPU from it, and rounds
alternate (A B, B A, …) so a change in the machine's load falls on both alike. CPU comes from /proc: the
utime + stime of every process of the system, by component.

    python -m bench.compare --compare /work/wt/baseline                    # SQLite, ~3 min
    python -m bench.compare --database-url sqlite --database-url postgresql+psycopg://postgres@127.0.0.1:5432/pf
"""

import argparse
import asyncio
import ctypes
import json
import math
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import uvloop

from bench.common import drop_schemas, machine, percentile, system_env, write_results
from bench.gateway_journeys import JourneyStats, drive_journeys
from patientflow.supervisor import port_taken
from patientflow.topology import COMPONENTS

THIS_TREE = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
START_TIMEOUT_SECONDS = 240.0  # six processes and their migrations, on a loaded machine
STOP_TIMEOUT_SECONDS = 90.0
SUPERVISOR = "supervisor"  # the `patientflow up` process itself
POSTGRESQL = "postgresql server (all its backends)"
# Printed by `patientflow up` of every tree since the supervisor exists, once all six answer /readyz.
UP_MARKER = "patientflow is up"
# Run by the tree's interpreter outside the tree: where its code comes from, and its service order.
PROBE = (
    "import json; from patientflow import topology; "
    "print(json.dumps({'root': str(topology.ROOT), 'services': [s.name for s in topology.SERVICES]}))"
)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- processes and their CPU, from /proc ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProcessStat:
    command: str  # the executable's name, as `ps -o comm` shows it
    ppid: int
    cpu_ticks: int  # utime + stime, summed over the process's threads


def parse_stat(text: str) -> ProcessStat:
    """One /proc/<pid>/stat line. The command name (field 2) is in parentheses and may itself hold
    spaces and parentheses, so the fields are counted from the last ')'."""
    end = text.rindex(")")
    fields = text[end + 2 :].split()  # fields[0] is field 3, "state"
    command = text[text.index("(") + 1 : end]
    return ProcessStat(command, ppid=int(fields[1]), cpu_ticks=int(fields[11]) + int(fields[12]))  # 4; 14+15


def component_of(argv: Sequence[str]) -> str | None:
    """The component a process of `patientflow up` runs, from its command line: `patientflow.cli serve
    <name>` (today) or `uvicorn --factory services.<name>.app:create_app` (older trees)."""
    for index, arg in enumerate(argv):
        if arg == "serve" and index + 1 < len(argv):
            return argv[index + 1]
        if arg.endswith(".app:create_app"):
            return arg.removesuffix(".app:create_app").rsplit(".", 1)[-1]
    return None


def name_processes(root: int, parents: dict[int, int], argvs: dict[int, list[str]]) -> dict[int, str]:
    """`root` (the supervisor) and every process below it → its component; a helper process a
    component started counts as that component's."""
    children: defaultdict[int, list[int]] = defaultdict(list)
    for pid, ppid in parents.items():
        children[ppid].append(pid)
    names = {root: SUPERVISOR}
    pending = [root]
    while pending:
        parent = pending.pop()
        for child in children[parent]:
            names[child] = component_of(argvs.get(child, [])) or names[parent]
            pending.append(child)
    return names


Snapshot = dict[int, tuple[str, int]]  # pid → (component, CPU ticks so far)


def cpu_seconds(before: Snapshot, after: Snapshot, ticks_per_second: int = CLOCK_TICKS) -> dict[str, float]:
    """CPU seconds each component used between two snapshots. A process started in between counts from
    zero; one that ended in between is left out (its last ticks can no longer be read)."""
    used: defaultdict[str, float] = defaultdict(float)
    for pid, (name, ticks) in after.items():
        earlier = before.get(pid)
        used[name] += (ticks - (earlier[1] if earlier and earlier[0] == name else 0)) / ticks_per_second
    return dict(used)


def all_processes() -> dict[int, ProcessStat]:
    stats: dict[int, ProcessStat] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stats[int(entry)] = parse_stat(Path(f"/proc/{entry}/stat").read_text())
            except (OSError, ValueError):
                continue  # ended while we looked
    return stats


def snapshot(root: int) -> Snapshot:
    """The CPU ticks of `root` and every process below it, by component."""
    stats = all_processes()
    if root not in stats:
        return {}
    parents = {pid: stat.ppid for pid, stat in stats.items()}
    argvs: dict[int, list[str]] = {}
    for pid in name_processes(root, parents, {}):
        try:
            argvs[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
    return {pid: (name, stats[pid].cpu_ticks) for pid, name in name_processes(root, parents, argvs).items()}


def server_snapshot(command: str, name: str) -> Snapshot:
    """The CPU ticks of every process running `command` (a database server's backends), as `name`."""
    return {pid: (name, stat.cpu_ticks) for pid, stat in all_processes().items() if stat.command == command}


# --- one tree's system ----------------------------------------------------------------------------


def git_label(tree: Path) -> str:
    """`<directory>@<short commit>`, with `+` when the tree has uncommitted changes."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(tree), *args], capture_output=True, text=True, check=False
        ).stdout.strip()

    dirty = "+" if git("status", "--porcelain", "--untracked-files=no") else ""
    return f"{tree.name}@{git('rev-parse', '--short', 'HEAD') or '?'}{dirty}"


def free_port_block(count: int) -> int:
    """The first of `count` consecutive free ports (what `patientflow up --base-port` takes)."""
    for _ in range(200):
        base = random.randrange(20_000, 60_000)
        if not any(port_taken(base + offset) for offset in range(count)):
            return base
    raise RuntimeError(f"found no {count} consecutive free ports")


def send_signal(pids: Iterable[int], signum: signal.Signals) -> None:
    for pid in pids:
        with suppress(ProcessLookupError):  # it ended meanwhile
            os.kill(pid, signum)


def _die_with_us() -> None:
    """In the child before exec: Linux sends it SIGTERM if the benchmark dies, so no system is left up."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG


class TreeSystem:
    """One tree's `patientflow up` in a child process: its URLs, keys and secret, and its processes.

    Offers what `bench.common.RunningSystem` promises, so any benchmark's load runs against it."""

    def __init__(self, tree: Path, *, database_url: str | None, env: dict[str, str] | None = None) -> None:
        self.tree = tree.resolve()
        self.python = self.tree / ".venv" / "bin" / "python"
        self.database_url = database_url
        self.run_tag = uuid.uuid4().hex[:8]
        self.label = f"{git_label(self.tree)} {'postgresql' if database_url else 'sqlite'}"
        # `env` may come from a benchmark's own `system_env`: schemas and the secret are this system's.
        self.env = (
            (env or {})
            | system_env(database_url, self.run_tag)
            | {"PATIENTFLOW_INTERNAL_SECRET": secrets.token_urlsafe(32)}
        )
        self.api_keys: dict[str, str] = {}
        self.urls: dict[str, str] = {}
        self.process: subprocess.Popen[bytes] | None = None
        self.scratch: Path | None = None

    def url(self, name: str) -> str:
        return self.urls[name]

    def _probe(self) -> list[str]:
        """Check the tree's interpreter runs the tree's own code; its services in start order."""
        if not self.python.exists():
            raise RuntimeError(f"{self.tree}: no .venv/bin/python (see bench/README.md, issue 8)")
        assert self.scratch is not None
        found = subprocess.run(
            [str(self.python), "-c", PROBE], cwd=self.scratch, env=self._process_env(),
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        probe = json.loads(found.stdout)
        if Path(probe["root"]).resolve() != self.tree:
            raise RuntimeError(f"{self.python} runs the code in {probe['root']}, not {self.tree}")
        services: list[str] = probe["services"]
        return services

    def _process_env(self) -> dict[str, str]:
        inherited = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        return inherited | self.env

    def start(self) -> "TreeSystem":
        self.scratch = Path(tempfile.mkdtemp(prefix="pf-bench-"))
        try:
            services = self._probe()
            base = free_port_block(len(services) + 1)
            # `patientflow up --base-port N`: the gateway on N, the services on the next ports in order.
            self.urls = {"gateway": f"http://127.0.0.1:{base}"} | {
                name: f"http://127.0.0.1:{base + 1 + i}" for i, name in enumerate(services)
            }
            data_dir = self.scratch / "data"
            command = [
                str(self.python), "-m", "patientflow.cli", "up",
                "--data-dir", str(data_dir), "--base-port", str(base),
            ]  # fmt: skip
            with (self.scratch / "up.log").open("wb") as output:
                self.process = subprocess.Popen(
                    command, cwd=self.tree, env=self._process_env(), stdout=output,
                    stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_die_with_us,
                )  # fmt: skip
            self._wait_up()
            self.api_keys = json.loads((data_dir / "dev-keys.json").read_text())
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_up(self) -> None:
        assert self.process is not None and self.scratch is not None
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if UP_MARKER in (self.scratch / "up.log").read_text(errors="replace"):
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        raise RuntimeError(f"{self.label} did not come up:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        assert self.scratch is not None
        path = self.scratch / "up.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def snapshot(self) -> Snapshot:
        """This system's own processes (the ones freeze and stop signal)."""
        return snapshot(self.process.pid) if self.process else {}

    def measured_snapshot(self) -> Snapshot:
        """Its processes and, on a local PostgreSQL, the whole server's: every backend, whoever's. While
        the other systems are frozen, on a quiet machine that is this system's database work."""
        local = self.database_url and any(h in self.database_url for h in ("@127.0.0.1", "@localhost"))
        return self.snapshot() | (server_snapshot("postgres", POSTGRESQL) if local else {})

    def _signal_all(self, signum: signal.Signals) -> None:
        send_signal(self.snapshot(), signum)

    def freeze(self) -> None:
        """Stop every process of the system (SIGSTOP) while another system is measured."""
        self._signal_all(signal.SIGSTOP)

    def thaw(self) -> None:
        self._signal_all(signal.SIGCONT)

    def stop(self) -> None:
        """Stop the system as Ctrl-C would; kill what is left after the timeout; drop its schemas."""
        process = self.process
        if process is not None and process.poll() is None:
            self.thaw()  # a frozen supervisor cannot hear the signal
            left = self.snapshot()
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                send_signal(left, signal.SIGKILL)
                process.wait()
        self.process = None
        if self.database_url:
            drop_schemas(self.database_url, self.run_tag)
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)
            self.scratch = None

    def __enter__(self) -> "TreeSystem":
        return self.start()

    def __exit__(
        self, _type: type[BaseException] | None, _exc: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.stop()


def build_systems(
    trees: Iterable[Path], database_urls: Iterable[str], env: dict[str, str] | None = None
) -> list[TreeSystem]:
    """A system per tree and database (`sqlite` or a URL), in that order: the first is the reference."""
    urls = list(database_urls)
    return [
        TreeSystem(tree, database_url=None if url == "sqlite" else url, env=env)
        for tree in trees
        for url in urls
    ]


def start_all(stack: ExitStack, systems: list[TreeSystem], *, frozen: bool) -> None:
    for system in systems:
        log(f"starting {system.label} …")
        stack.enter_context(system)
        if frozen:
            system.freeze()


def alternating(items: Sequence[Any], rounds: int) -> list[tuple[int, Any]]:
    """(round, item) in the order A B, B A, A B, …: each item as often first as last."""
    order = []
    for number in range(rounds):
        order += [(number, item) for item in (items if number % 2 == 0 else list(reversed(items)))]
    return order


# --- the side-by-side table -----------------------------------------------------------------------


def fmt(value: float) -> str:
    if math.isnan(value):
        return "—"
    if value.is_integer() and abs(value) < 1e6:
        return f"{value:.0f}"  # a count
    decimals = 0 if abs(value) >= 100 else 1 if abs(value) >= 10 else 2 if abs(value) >= 1 else 3
    return f"{value:.{decimals}f}"


def side_by_side(labels: Sequence[str], figures: Sequence[dict[str, float]]) -> str:
    """A markdown table: a row per figure, a column per system, then each system's ratio to the first
    (none to or from zero: those are counts, like failed journeys)."""
    names = list(dict.fromkeys(name for figure in figures for name in figure))
    header = ["figure", *labels, *(f"{label} ÷ {labels[0]}" for label in labels[1:])]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name in names:
        values = [figure.get(name, math.nan) for figure in figures]
        reference = values[0]
        ratios = [
            f"{value / reference:.2f}×" if reference and value and not math.isnan(value / reference) else "—"
            for value in values[1:]
        ]
        lines.append("| " + " | ".join([name, *(fmt(v) for v in values), *ratios]) + " |")
    return "\n".join(lines)


def component_order(names: Iterable[str]) -> list[str]:
    """Components in this tree's start order, then anything else (the supervisor, unknown helpers)."""
    known = [c.name for c in COMPONENTS]
    present = set(names)
    return [n for n in known if n in present] + sorted(present - set(known))


# --- journeys side by side ------------------------------------------------------------------------


@dataclass
class JourneyRuns:
    """Everything measured on one system, summed over its rounds."""

    system: TreeSystem
    stats: JourneyStats = field(default_factory=JourneyStats)
    seconds: float = 0.0
    cpu: Counter[str] = field(default_factory=Counter)  # CPU seconds by component
    client_cpu: float = 0.0  # the load generator's own CPU seconds (this process)
    per_round: list[float] = field(default_factory=list)  # journeys/s of each round


def journey_figures(runs: JourneyRuns) -> dict[str, float]:
    journeys = len(runs.stats.journeys)
    per_journey_ms = (lambda seconds: seconds * 1000 / journeys) if journeys else (lambda _: math.nan)
    waits = {name: sorted(values) for name, values in runs.stats.waits.items()}
    requests = sorted(runs.stats.requests.all_latencies())
    figures = {
        "journeys/s": journeys / runs.seconds,
        "requests/s": runs.stats.requests.request_count() / runs.seconds,
        "failed journeys": float(runs.stats.failed),
        "request p50 ms": percentile(requests, 0.50) * 1000,
        "request p99 ms": percentile(requests, 0.99) * 1000,
        "charge seen p50 ms": percentile(waits["charge_seen"], 0.50) * 1000,
        "order released p50 ms": percentile(waits["order_released"], 0.50) * 1000,
        "CPU ms per journey, the system's processes": per_journey_ms(
            sum(seconds for name, seconds in runs.cpu.items() if name != POSTGRESQL)
        ),
    }
    for name in component_order(runs.cpu):
        figures[f"CPU ms per journey, {name}"] = per_journey_ms(runs.cpu[name])
    figures["CPU ms per journey, load client"] = per_journey_ms(runs.client_cpu)
    return figures


async def measure_round(runs: JourneyRuns, args: argparse.Namespace) -> None:
    runs.system.thaw()
    await asyncio.sleep(args.settle_seconds)  # let long polls and timers that fired while frozen run out
    journeys_before = len(runs.stats.journeys)
    cpu_before, client_before = runs.system.measured_snapshot(), time.process_time()
    elapsed = await drive_journeys(runs.system, args.clients, args.seconds, runs.stats)
    runs.cpu.update(cpu_seconds(cpu_before, runs.system.measured_snapshot()))
    runs.client_cpu += time.process_time() - client_before
    runs.system.freeze()
    runs.seconds += elapsed
    runs.per_round.append((len(runs.stats.journeys) - journeys_before) / elapsed)


async def compare_journeys(systems: list[TreeSystem], args: argparse.Namespace) -> list[JourneyRuns]:
    for system in systems:
        log(f"warming up {system.label} ({args.warmup_seconds:g} s)")
        system.thaw()
        await drive_journeys(system, args.clients, args.warmup_seconds, JourneyStats())
        system.freeze()
    measured = [JourneyRuns(system) for system in systems]
    for number, runs in alternating(measured, args.rounds):
        log(f"round {number + 1}/{args.rounds}: {runs.system.label}")
        await measure_round(runs, args)
        log(f"  {runs.per_round[-1]:.1f} journeys/s")
    return measured


def journeys_report(measured: list[JourneyRuns], args: argparse.Namespace) -> str:
    labels = [runs.system.label for runs in measured]
    lines = [
        f"## Journeys side by side ({args.clients} clients, {args.rounds} alternating rounds × "
        f"{args.seconds:g} s each, the other systems frozen)",
        "",
        side_by_side(labels, [journey_figures(runs) for runs in measured]),
        "",
        "journeys/s by round: "
        + "; ".join(f"{runs.system.label}: {', '.join(fmt(v) for v in runs.per_round)}" for runs in measured),
    ]
    errors = [error for runs in measured for error in runs.stats.errors]
    if errors:
        lines += ["", "errors (first few):", *(f"- {error}" for error in errors[:10])]
    return "\n".join(lines)


def add_system_arguments(parser: argparse.ArgumentParser) -> None:
    """`--compare TREE` and `--database-url` as every side-by-side benchmark takes them."""
    parser.add_argument(
        "--compare", action="append", default=[], metavar="TREE", type=Path,
        help="also run the system of this git worktree (its own .venv); repeat for more; listed first",
    )  # fmt: skip
    parser.add_argument(
        "--database-url", action="append", default=None, metavar="URL",
        help="'sqlite' (default) or a PostgreSQL URL; repeat to run each tree on each",
    )  # fmt: skip


def systems_from(args: argparse.Namespace, env: dict[str, str] | None = None) -> list[TreeSystem]:
    return build_systems([*args.compare, THIS_TREE], args.database_url or ["sqlite"], env)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__.split("\n")[0])
    add_system_arguments(parser)
    parser.add_argument("--clients", type=int, default=16, help="concurrent journey workstations")
    parser.add_argument("--seconds", type=float, default=15, help="length of one round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per system, alternating")
    parser.add_argument("--warmup-seconds", type=float, default=3, help="unmeasured journeys per system")
    parser.add_argument("--settle-seconds", type=float, default=1, help="pause after unfreezing a system")
    args = parser.parse_args(argv)
    systems = systems_from(args)
    with ExitStack() as stack:
        start_all(stack, systems, frozen=True)
        measured = uvloop.run(compare_journeys(systems, args))
    print(journeys_report(measured, args))
    path = write_results(
        "compare",
        {
            "args": vars(args) | {"compare": [str(tree) for tree in args.compare]},
            "machine": machine(),
            "systems": [
                {
                    "label": runs.system.label,
                    "per_round_journeys_per_s": runs.per_round,
                    **journey_figures(runs),
                }
                for runs in measured
            ],
        },
    )
    log(f"\nwrote {path}")
    return 0 if all(runs.stats.failed == 0 for runs in measured) else 1


if __name__ == "__main__":
    sys.exit(main())
