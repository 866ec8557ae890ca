"""`patientflow up` as a user runs it: it never gives up on a crashed process, never leaves orphans
holding the ports, refuses ports already taken, and lets `patientflow keys revoke` reach its event hub.

Each test runs its own `up` on free ports; the fixture kills every process the test saw, whatever happens.
"""

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from patientflow.topology import SERVICES
from tests.e2e.clients import eventually, ok
from tests.test_cli import free_port_range

STARTUP_SECONDS = 120.0  # six processes, each migrating its database, on a shared machine


def alive(pid: int) -> bool:
    """Whether `pid` still runs (a zombie, dead but not yet reaped, counts as gone)."""
    if Path("/proc/self/stat").exists():
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except FileNotFoundError:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
    except OSError:
        return False
    return True


def ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


class Up:
    """`patientflow up --base-port` as a subprocess, its console collected line by line as it comes."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        base = free_port_range()
        self.ports = {"gateway": base} | {s.name: base + 1 + i for i, s in enumerate(SERVICES)}
        # SQLite under data_dir, and no configured secret: the development defaults `up` is for.
        self.env = {k: v for k, v in os.environ.items() if k != "PATIENTFLOW_INTERNAL_SECRET"}
        self.env |= {"PATIENTFLOW_DATABASE_URL": "", "PATIENTFLOW_ENVIRONMENT": "development"}
        self.lines: list[str] = []
        self.seen: set[int] = set()  # every child pid observed, killed at the end if still alive
        self.process: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    def start(self) -> "Up":
        command = [sys.executable, "-m", "patientflow.cli", "up", "--data-dir", str(self.data_dir)]
        self.process = subprocess.Popen(
            [*command, "--base-port", str(self.ports["gateway"])],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=self.env,
            start_new_session=True,  # the test's signals go to it alone, as a user's kill would
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def wait_up(self) -> None:
        assert self.process is not None
        eventually(
            lambda: "Press Ctrl-C" in self.output or self.process.poll() is not None,  # type: ignore[union-attr]
            what="patientflow up to start",
            deadline_seconds=STARTUP_SECONDS,
        )
        assert "Press Ctrl-C" in self.output, self.output
        self.children()

    def said(self, pattern: str, count: int = 1) -> list[re.Match[str]]:
        """Wait until the console has `count` lines matching `pattern`; returns the matches."""
        compiled = re.compile(pattern)

        def matches() -> list[re.Match[str]] | None:
            found = [m for m in (compiled.search(line) for line in list(self.lines)) if m]
            return found if len(found) >= count else None

        return eventually(matches, what=f"{count} console line(s) like {pattern!r}\n{self.output}")

    def pids(self) -> dict[str, int]:
        """Each process's pid, from the table `up` prints once everything is ready."""
        table = re.compile(r"^\s+(\w+)\s+http://127\.0\.0\.1:\d+\s+pid (\d+)$")
        return {m[1]: int(m[2]) for m in (table.match(line) for line in list(self.lines)) if m}

    def children(self) -> dict[str, int]:
        """The supervisor's child processes by component, as the OS sees them (named by their `--port`)."""
        assert self.process is not None
        by_port = {str(port): name for name, port in self.ports.items()}
        found: dict[str, int] = {}
        try:
            pids = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        except FileNotFoundError:
            return found
        for pid in map(int, pids):
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
            except FileNotFoundError:
                continue
            if "--port" in argv and argv[argv.index("--port") + 1] in by_port:
                found[by_port[argv[argv.index("--port") + 1]]] = pid
        self.seen |= set(found.values())
        return found

    def key(self, client: str) -> str:
        return next(line.split()[1] for line in self.lines if line.strip().startswith(client))

    def every_pid_seen(self) -> set[int]:
        restarted = {
            int(m[1]) for m in (re.search(r"restarted \(pid (\d+)\)", line) for line in self.lines) if m
        }
        return self.seen | set(self.pids().values()) | restarted

    def stop(self) -> None:
        """Ctrl-C, then SIGKILL for whatever the test saw that is still alive: nothing outlives a test."""
        if self.process is not None:
            if self.process.poll() is None:
                self.children()
                self.process.send_signal(signal.SIGINT)
                try:
                    self.process.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
            if self._reader is not None:
                self._reader.join(timeout=10)
            if self.process.stdout is not None:
                self.process.stdout.close()
        for pid in self.every_pid_seen():
            if alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


@pytest.fixture
def up(tmp_path: Path) -> Iterator[Up]:
    running = Up(tmp_path)
    try:
        running.start().wait_up()
        yield running
    finally:
        running.stop()


def test_a_process_killed_again_while_restarting_comes_back(up: Up) -> None:
    billing = up.children()["billing"]
    os.kill(billing, signal.SIGKILL)
    replacement = eventually(
        lambda: up.children().get("billing") not in (None, billing) and up.children()["billing"],
        what="a new billing process",
    )
    os.kill(replacement, signal.SIGKILL)  # at once: it is still importing, far from ready

    eventually(
        lambda: ready(up.url("billing")), what=f"billing ready again\n{up.output}", deadline_seconds=90
    )
    eventually(
        lambda: ready(up.url("gateway")), what="the gateway to see every service ready", deadline_seconds=90
    )
    cashier = {"authorization": f"Bearer {up.key('cashier-dev')}"}
    price = ok(httpx.get(f"{up.url('gateway')}/v1/catalogue/110200001", headers=cashier, timeout=10.0))
    assert price["price_fen"] == 2000
    assert up.process is not None and up.process.poll() is None, up.output  # it never gave up
    up.said(r"billing exited \(code -9\); restarting in \d+\.\d s \(attempt 1\)")
    up.said(r"billing exited \(code -9\); restarting in \d+\.\d s \(attempt 2\)")
    restarted = [int(m[1]) for m in up.said(r"billing restarted \(pid (\d+)\)", count=2)]
    assert restarted[0] == replacement and restarted[1] == up.children()["billing"]


def test_every_process_dies_with_a_killed_supervisor(up: Up) -> None:
    children = up.children()
    assert set(children) == set(up.ports), up.output
    assert up.process is not None
    os.kill(up.process.pid, signal.SIGKILL)
    up.process.wait()

    eventually(
        lambda: not [name for name, pid in children.items() if alive(pid)],
        what=f"every child of the killed supervisor to exit: {children}",
        deadline_seconds=60,
    )
    eventually(
        lambda: not [port for port in up.ports.values() if listening(port)], what="every port to be freed"
    )
    assert up.pids() == children  # the console's table named them all


def test_up_refuses_a_taken_port_and_starts_nothing(tmp_path: Path) -> None:
    up = Up(tmp_path)
    taken = up.ports["billing"]
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", taken))
        squatter.listen()
        try:
            up.start()
            assert up.process is not None
            up.process.wait(timeout=STARTUP_SECONDS)
            assert up._reader is not None
            up._reader.join(timeout=10)
        finally:
            up.stop()
    assert up.process.returncode != 0
    assert f"{taken} (billing)" in up.output and "already in use" in up.output, up.output
    assert "patientflow is up" not in up.output
    # Nothing was started: no process logged, no database was created, no other port answers.
    assert not list((tmp_path / "logs").glob("*.log")), up.output
    assert not list(tmp_path.glob("*.db"))
    assert not [port for name, port in up.ports.items() if name != "billing" and listening(port)]


def test_keys_revoke_reaches_the_hub_of_a_running_up(up: Up) -> None:
    gateway = up.url("gateway")
    admin = {"authorization": f"Bearer {up.key('admin-dev')}"}
    body = {"name": "revoke-me", "kind": "his", "scopes": ["events:read"]}
    key = ok(httpx.post(f"{gateway}/v1/admin/clients", json=body, headers=admin, timeout=10.0), 201)["key"]
    client = {"authorization": f"Bearer {key}"}
    ok(httpx.get(f"{gateway}/v1/events", headers=client, timeout=10.0))

    # The CLI beside it: no secret configured and no hub URL (`up` moved the ports), only the data directory.
    command = [sys.executable, "-m", "patientflow.cli", "keys", "--data-dir", str(up.data_dir), "revoke"]
    env = {name: value for name, value in up.env.items() if name != "GATEWAY_EVENTS_URL"}
    revoke = subprocess.run([*command, "revoke-me"], capture_output=True, text=True, env=env, timeout=60)
    assert revoke.returncode == 0, revoke.stdout + revoke.stderr
    assert "revoked revoke-me" in revoke.stdout
    eventually(
        lambda: httpx.get(f"{gateway}/v1/events", headers=client, timeout=10.0).status_code == 401,
        what="the revoked key to be refused by the running gateway",
    )
