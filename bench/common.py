"""What every benchmark needs: valid test data, latency statistics, markdown and JSON output."""

import json
import math
import os
import platform
import random
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from kit.stats import nearest_rank

if TYPE_CHECKING:
    from patientflow.supervisor import System

RESULTS_DIR = Path(__file__).resolve().parent / "results"
_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK_CHARS = "10X98765432"
_REGIONS = ("110105", "310104", "440305", "320106", "510107")


def random_id_number() -> str:
    """A random valid 18-digit resident identity number (GB 11643 / ISO 7064 MOD 11-2 check character)."""
    birth = date(1940, 1, 1) + timedelta(days=random.randrange(30_000))
    body = f"{random.choice(_REGIONS)}{birth:%Y%m%d}{random.randrange(1000):03d}"
    total = sum(int(digit) * weight for digit, weight in zip(body, _WEIGHTS, strict=True))
    return body + _CHECK_CHARS[total % 11]


def percentile(sorted_values: list[float], share: float) -> float:
    """Nearest-rank percentile of already sorted values (`kit.stats`), NaN for none."""
    return nearest_rank(sorted_values, round(share * 100)) if sorted_values else math.nan


def summary(seconds: list[float]) -> dict[str, Any]:
    """Count, p50, p99 and max of latencies, in milliseconds."""
    ordered = sorted(seconds)
    return {
        "count": len(ordered),
        "p50_ms": round(percentile(ordered, 0.50) * 1000, 2),
        "p99_ms": round(percentile(ordered, 0.99) * 1000, 2),
        "max_ms": round(ordered[-1] * 1000, 2) if ordered else math.nan,
    }


@dataclass
class Recorder:
    """Latencies by step name, and unexpected answers by (step, status)."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    failures: Counter[tuple[str, int]] = field(default_factory=Counter)

    def add(self, step: str, seconds: float) -> None:
        self.latencies[step].append(seconds)

    def all_latencies(self) -> list[float]:
        return [value for values in self.latencies.values() for value in values]

    def request_count(self) -> int:
        return sum(len(values) for values in self.latencies.values())


class RunningSystem(Protocol):
    """What a benchmark needs of a started system: `patientflow.supervisor.System` in this process, or
    `bench.compare.TreeSystem` (another tree's `patientflow up`)."""

    api_keys: dict[str, str]  # the development keys by client ("his-dev", "nurse-dev", …)
    env: dict[str, str]  # holds PATIENTFLOW_INTERNAL_SECRET, for minting internal tokens

    def url(self, name: str) -> str: ...


# The gateway's rate limits stay on (their cost is part of what we measure) but far above any load here.
UNLIMITED = {"GATEWAY_RATE_LIMIT_PER_SECOND": "1000000", "GATEWAY_RATE_BURST": "1000000"}


def system_env(database_url: str | None, run_tag: str) -> dict[str, str]:
    """Environment for a benchmark's System: SQLite by default, else schemas of its own on the server."""
    env = {"PATIENTFLOW_ENVIRONMENT": "development", **UNLIMITED}
    if database_url:
        env |= {"PATIENTFLOW_DATABASE_URL": database_url, "PATIENTFLOW_SCHEMA_PREFIX": f"bench_{run_tag}_"}
    return env


def drop_schemas(database_url: str, run_tag: str) -> None:
    """Remove the schemas `system_env` gave one run."""
    from sqlalchemy import create_engine, text

    from patientflow.topology import COMPONENTS

    engine = create_engine(database_url)
    with engine.begin() as connection:
        for component in COMPONENTS:
            connection.execute(text(f'DROP SCHEMA IF EXISTS "bench_{run_tag}_{component.name}" CASCADE'))
    engine.dispose()


@contextmanager
def running_system(
    database_url: str | None, run_tag: str, *, env: dict[str, str] | None = None
) -> Iterator["System"]:
    """The whole system in a scratch folder with `env` (default `system_env`'s), on free ports; on
    PostgreSQL its run's schemas are dropped afterwards, whatever happened."""
    from patientflow.supervisor import System, free_port
    from patientflow.topology import COMPONENTS

    with tempfile.TemporaryDirectory(prefix="pf-bench-") as scratch:
        ports = {component.name: free_port() for component in COMPONENTS}
        try:
            with System(Path(scratch), env=env or system_env(database_url, run_tag), ports=ports) as system:
                yield system
        finally:
            if database_url:
                drop_schemas(database_url, run_tag)


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    return {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()}


def write_results(name: str, payload: dict[str, Any]) -> Path:
    """Write `bench/results/<name>-<timestamp>.json` (the directory is gitignored)."""
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False), encoding="utf-8")
    return path


def process_cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far, from `/proc/<pid>/stat` (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
