"""Runs the six patientflow processes on localhost: start in order, wait for readiness, restart on crash.

Used by `patientflow up`, by the end-to-end tests and by the benchmarks, so all three run the system
the same way: separate uvicorn processes, each with its own database, talking HTTP.

The supervisor keeps two promises:
- it never gives up: a process that exits is started again, forever, after a capped exponential
  backoff with jitter (`RestartPolicy`); one that then stays up starts from the first delay next time.
- it leaves no orphans: each child runs `patientflow serve --parent-pid <supervisor>`, which asks Linux
  to signal it when the supervisor dies (`PR_SET_PDEATHSIG`, even after `kill -9`) and, everywhere,
  watches its parent pid (`die_with_parent`). And `start()` refuses ports already taken, before
  spawning anything, so a leftover process can never pass for a fresh one.
"""

import ctypes
import logging
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import httpx

from patientflow.devkeys import ensure_dev_internal_secret, ensure_dev_keys, write_dev_urls
from patientflow.topology import COMPONENTS

READY_TIMEOUT_SECONDS = 60.0
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
PARENT_WATCH_SECONDS = 0.5
logger = logging.getLogger("patientflow.supervisor")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_taken(port: int) -> bool:
    """Whether something already listens on `port` (bound as uvicorn binds: a port in TIME_WAIT is free)."""
    with socket.socket() as sock:
        if os.name == "posix":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


class ServiceFailed(RuntimeError):
    """A process exited or never became ready; the message carries the end of its log."""


class PortTaken(ServiceFailed):
    """A port the system needs is in use (often a patientflow left running); nothing was started."""


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """When to start a crashed process again: capped exponential backoff with jitter, never giving up."""

    first_delay_seconds: float = 1.0
    max_delay_seconds: float = 30.0
    stable_seconds: float = 10.0  # a process up this long has recovered: its next crash is attempt 1 again

    def delay(self, attempt: int, rand: float) -> float:
        """The pause before restart `attempt` (1 for the first): half fixed, half random (`rand` in [0, 1)),
        so a crash loop slows down to one try per `max_delay_seconds` without processes restarting in step."""
        ceiling = min(self.max_delay_seconds, self.first_delay_seconds * 2 ** (attempt - 1))
        return ceiling / 2 + rand * ceiling / 2


@dataclass(slots=True)
class _Life:
    """One supervised process's restart bookkeeping."""

    started_at: float
    attempts: int = 0  # consecutive crashes, each within `stable_seconds` of its start
    restart_at: float | None = None  # set while a crashed process waits out its backoff


def die_with_parent(parent_pid: int) -> None:
    """Make this process exit when `parent_pid` (its supervisor) does, however the supervisor dies.

    On Linux the kernel sends SIGTERM when the parent goes (`PR_SET_PDEATHSIG`; it fires when the thread
    that spawned us ends, so spawn from a long-lived thread). Everywhere, a watchdog thread notices the
    parent pid changing (we were re-parented), asks for a graceful stop, and exits hard if that hangs.
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            logger.warning("prctl(PR_SET_PDEATHSIG) failed: errno %s", ctypes.get_errno())
    if os.getppid() != parent_pid:  # the parent died before the kernel could be told
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent_pid,), name="parent-watch", daemon=True).start()


def _watch_parent(parent_pid: int, grace_seconds: float = 15.0) -> None:
    while os.getppid() == parent_pid:
        time.sleep(PARENT_WATCH_SECONDS)
    os.kill(os.getpid(), signal.SIGTERM)  # uvicorn shuts down gracefully, releasing the port
    time.sleep(grace_seconds)
    os._exit(1)


class System:
    """The whole system as child processes. Use as a context manager, or start()/stop()."""

    def __init__(
        self,
        data_dir: Path,
        *,
        env: dict[str, str] | None = None,
        ports: dict[str, int] | None = None,
        policy: RestartPolicy = RestartPolicy(),
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
        launch: Callable[..., subprocess.Popen[bytes]] = subprocess.Popen,
    ) -> None:
        self.data_dir = data_dir.resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "logs").mkdir(exist_ok=True)
        self.ports = {c.name: (ports or {}).get(c.name, c.port) for c in COMPONENTS}
        self.api_keys, keys_file = ensure_dev_keys(self.data_dir)
        self.env = self._base_env(keys_file) | (env or {})
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.policy, self.clock, self.rand, self.launch = policy, clock, rand, launch
        self._lives: dict[str, _Life] = {}

    def _base_env(self, keys_file: Path) -> dict[str, str]:
        env = {
            "PATIENTFLOW_DATA_DIR": str(self.data_dir),
            # Unless set, a development secret kept in the data directory, where the CLI finds it.
            "PATIENTFLOW_INTERNAL_SECRET": os.environ.get("PATIENTFLOW_INTERNAL_SECRET")
            or ensure_dev_internal_secret(self.data_dir),
            "GATEWAY_API_KEYS_FILE": str(keys_file),
            "PATIENTFLOW_LOG_DIR": str(self.data_dir / "logs"),  # <name>.log, rotated by the process
        }
        for caller in COMPONENTS:  # every process learns where each sibling listens
            for callee in COMPONENTS:
                env[f"{caller.name.upper()}_{callee.name.upper()}_URL"] = self.url(callee.name)
        return env

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def spawn(self, name: str) -> subprocess.Popen[bytes]:
        """Start one process without waiting for it; it dies with this one (`die_with_parent`)."""
        # What the process prints before its logging is set up (a crash at import, a refused setting).
        log = self._console_log(name).open("ab")
        command = [
            sys.executable, "-m", "patientflow.cli", "serve", name,
            "--host", "127.0.0.1", "--port", str(self.ports[name]),
            "--log-level", "warning", "--parent-pid", str(os.getpid()),
        ]  # fmt: skip
        try:
            process = self.launch(
                command,
                env=os.environ | self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                start_new_session=True,  # Ctrl-C reaches the supervisor alone; it stops the rest in order
            )
        finally:
            log.close()
        self.processes[name] = process
        life = self._lives.setdefault(name, _Life(started_at=self.clock()))
        life.started_at, life.restart_at = self.clock(), None
        return process

    def start_service(self, name: str) -> None:
        """Start one process and wait until its /readyz answers 200."""
        self.spawn(name)
        self._wait_ready(name)

    def _wait_ready(self, name: str) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        process = self.processes[name]
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise ServiceFailed(f"{name} exited with {process.returncode}:\n{self.log_tail(name)}")
            try:
                if httpx.get(f"{self.url(name)}/readyz", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise ServiceFailed(f"{name} not ready after {READY_TIMEOUT_SECONDS:.0f} s:\n{self.log_tail(name)}")

    def stop_service(self, name: str) -> None:
        """Stop one process gracefully (SIGTERM), killing it if it does not exit in time."""
        self._lives.pop(name, None)
        process = self.processes.pop(name, None)
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def check_ports(self) -> None:
        """Raise `PortTaken`, naming each taken port and its component, before anything is spawned."""
        taken = [f"{port} ({name})" for name, port in self.ports.items() if port_taken(port)]
        if taken:
            raise PortTaken(
                f"port{'s' if len(taken) > 1 else ''} already in use: {', '.join(taken)}. Is another "
                "patientflow still running? Stop it, or move every port: ./run up --base-port N (the "
                f"gateway on N, the others on the next {len(COMPONENTS) - 1})."
            )

    def start(self) -> "System":
        self.check_ports()
        write_dev_urls(self.data_dir, {c.name: self.url(c.name) for c in COMPONENTS})
        try:
            for component in COMPONENTS:
                self.start_service(component.name)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for component in reversed(COMPONENTS):
            self.stop_service(component.name)

    def supervise(self) -> list[str]:
        """One look at every process: schedule a restart for each that exited, start those whose backoff
        is over. Never blocks and never raises for a child's sake; returns what to tell the console."""
        said: list[str] = []
        for name, process in list(self.processes.items()):
            life = self._lives[name]
            now = self.clock()
            if life.restart_at is not None:
                if now >= life.restart_at:
                    said.append(self._restart(name, life))
                continue
            code = process.poll()
            if code is None:
                continue
            if now - life.started_at >= self.policy.stable_seconds:
                life.attempts = 0  # it had recovered: this crash is a new story
            life.attempts += 1
            delay = self.policy.delay(life.attempts, self.rand())
            life.restart_at = now + delay
            said.append(f"{name} exited (code {code}); restarting in {delay:.1f} s (attempt {life.attempts})")
        return said

    def _restart(self, name: str, life: _Life) -> str:
        try:
            process = self.spawn(name)
        except OSError as exc:  # e.g. too many processes: try again after the next, longer pause
            life.attempts += 1
            delay = self.policy.delay(life.attempts, self.rand())
            life.restart_at = self.clock() + delay
            return f"{name} could not be started ({exc}); retrying in {delay:.1f} s (attempt {life.attempts})"
        return f"{name} restarted (pid {process.pid})"

    def _console_log(self, name: str) -> Path:
        return self.data_dir / "logs" / f"{name}.console.log"

    def log_tail(self, name: str, lines: int = 30) -> str:
        """The end of the process's log, then of what it printed itself (a traceback, if it crashed)."""
        tails = []
        for path in (self.data_dir / "logs" / f"{name}.log", self._console_log(name)):
            if path.exists():
                tails += path.read_text(errors="replace").splitlines()[-lines:]
        return "\n".join(tails)

    def __enter__(self) -> "System":
        return self.start()

    def __exit__(
        self, _type: type[BaseException] | None, _exc: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.stop()
