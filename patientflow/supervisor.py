"""Runs the six patientflow processes on localhost: start in order, wait for readiness, restart on crash.

Used by `patientflow up`, by the end-to-end tests and by the benchmarks, so all three run the system
the same way: separate uvicorn processes, each with its own database, talking HTTP.
"""

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import httpx

from patientflow.devkeys import ensure_dev_keys
from patientflow.topology import COMPONENTS, Component

READY_TIMEOUT_SECONDS = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ServiceFailed(RuntimeError):
    """A process exited or never became ready; the message carries the end of its log."""


class System:
    """The whole system as child processes. Use as a context manager, or start()/stop()."""

    def __init__(
        self, data_dir: Path, *, env: dict[str, str] | None = None, ports: dict[str, int] | None = None
    ) -> None:
        self.data_dir = data_dir.resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "logs").mkdir(exist_ok=True)
        self.ports = {c.name: (ports or {}).get(c.name, c.port) for c in COMPONENTS}
        self.api_keys, keys_file = ensure_dev_keys(self.data_dir)
        self.env = self._base_env(keys_file) | (env or {})
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def _base_env(self, keys_file: Path) -> dict[str, str]:
        env = {
            "PATIENTFLOW_DATA_DIR": str(self.data_dir),
            "PATIENTFLOW_INTERNAL_SECRET": os.environ.get("PATIENTFLOW_INTERNAL_SECRET")
            or secrets.token_urlsafe(32),
            "GATEWAY_API_KEYS_FILE": str(keys_file),
            "PATIENTFLOW_LOG_DIR": str(self.data_dir / "logs"),  # <name>.log, rotated by the process
        }
        for caller in COMPONENTS:  # every process learns where each sibling listens
            for callee in COMPONENTS:
                env[f"{caller.name.upper()}_{callee.name.upper()}_URL"] = self.url(callee.name)
        return env

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def _component(self, name: str) -> Component:
        return next(c for c in COMPONENTS if c.name == name)

    def start_service(self, name: str) -> None:
        """Start one process and wait until its /readyz answers 200."""
        component = self._component(name)
        # What the process prints before its logging is set up (a crash at import, a refused setting).
        log = self._console_log(name).open("ab")
        command = [
            sys.executable, "-m", "uvicorn", "--factory", component.app,
            "--host", "127.0.0.1", "--port", str(self.ports[name]),
            "--no-access-log", "--log-level", "warning", "--timeout-graceful-shutdown", "5",
        ]  # fmt: skip
        self.processes[name] = subprocess.Popen(
            command,
            env=os.environ | self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.data_dir,
            start_new_session=True,  # Ctrl-C reaches the supervisor alone; it stops the rest in order
        )
        log.close()
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
        process = self.processes.pop(name, None)
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def start(self) -> "System":
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

    def restart_crashed(self) -> list[str]:
        """Restart any process that exited on its own; returns their names."""
        crashed = [name for name, p in self.processes.items() if p.poll() is not None]
        for name in crashed:
            self.processes.pop(name)
            self.start_service(name)
        return crashed

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
