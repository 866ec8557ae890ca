"""The supervisor's policy without real processes or sleeps: backoff, never giving up, the port check,
the development secret; and the parent watchdog (the non-Linux fallback) with a real process tree."""

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from patientflow.devkeys import ensure_dev_internal_secret, read_dev_internal_secret, read_dev_url
from patientflow.supervisor import PortTaken, RestartPolicy, System, free_port
from patientflow.topology import COMPONENTS
from tests.e2e.clients import eventually
from tests.e2e.test_supervisor import alive


class FakeProcess:
    """Stands in for a `Popen`: exits when the test says so."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        return self.returncode

    def send_signal(self, signum: int) -> None:
        self.returncode = -signum

    def wait(self, timeout: float | None = None) -> int | None:
        return self.returncode

    def kill(self) -> None:
        self.returncode = -9


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def launched() -> list[FakeProcess]:
    return []


@pytest.fixture
def system(tmp_path: Path, clock: Clock, launched: list[FakeProcess]) -> System:
    def launch(command: list[str], **_: object) -> FakeProcess:
        launched.append(FakeProcess(pid=1000 + len(launched)))
        return launched[-1]

    ports = {c.name: free_port() for c in COMPONENTS}
    return System(tmp_path, ports=ports, clock=clock, rand=lambda: 0.0, launch=launch)  # type: ignore[arg-type]


def test_backoff_doubles_with_jitter_up_to_the_cap() -> None:
    policy = RestartPolicy(first_delay_seconds=1.0, max_delay_seconds=30.0)
    assert [policy.delay(attempt, rand=0.0) for attempt in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 4.0]
    assert policy.delay(1, rand=0.999) == pytest.approx(1.0, abs=0.001)
    for attempt in (6, 10, 100):  # capped: half fixed, half random, never above the cap
        assert 15.0 <= policy.delay(attempt, rand=0.0) <= policy.delay(attempt, rand=0.999) <= 30.0


def test_a_crash_loop_is_restarted_forever_with_growing_pauses(
    system: System, clock: Clock, launched: list[FakeProcess]
) -> None:
    system.spawn("billing")
    launched[-1].kill()
    assert system.supervise() == ["billing exited (code -9); restarting in 0.5 s (attempt 1)"]
    clock.now = 0.4
    assert system.supervise() == [] and len(launched) == 1  # still waiting out the pause
    clock.now = 0.5
    assert system.supervise() == ["billing restarted (pid 1001)"]

    launched[-1].kill()  # killed again while starting
    clock.now = 0.6
    assert system.supervise() == ["billing exited (code -9); restarting in 1.0 s (attempt 2)"]
    clock.now = 1.6
    assert system.supervise() == ["billing restarted (pid 1002)"]
    launched[-1].returncode = 3
    assert system.supervise() == ["billing exited (code 3); restarting in 2.0 s (attempt 3)"]

    for _ in range(50):  # it never gives up; the pause stops growing at the cap
        clock.now += 60.0
        system.supervise()
        launched[-1].kill()
        said = system.supervise()
    assert len(launched) == 53
    assert said[0].startswith("billing exited (code -9); restarting in 15.0 s (attempt 53)")


def test_a_process_that_stayed_up_starts_again_from_the_first_pause(
    system: System, clock: Clock, launched: list[FakeProcess]
) -> None:
    system.spawn("triage")
    for _ in range(3):
        launched[-1].kill()
        system.supervise()
        clock.now += 10.0
        system.supervise()
    assert system.processes["triage"] is launched[-1] and len(launched) == 4
    clock.now += system.policy.stable_seconds  # up long enough to count as recovered
    launched[-1].kill()
    assert system.supervise() == ["triage exited (code -9); restarting in 0.5 s (attempt 1)"]


def test_a_stopped_process_is_not_restarted(
    system: System, clock: Clock, launched: list[FakeProcess]
) -> None:
    system.spawn("results")
    launched[-1].kill()
    system.supervise()
    system.stop_service("results")  # e.g. Ctrl-C during the pause
    clock.now = 100.0
    assert system.supervise() == [] and len(launched) == 1


def test_start_refuses_a_taken_port_before_spawning_anything(
    system: System, launched: list[FakeProcess]
) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", system.ports["billing"]))
        squatter.listen()
        with pytest.raises(PortTaken) as refused:
            system.start()
    assert f"{system.ports['billing']} (billing)" in str(refused.value)
    assert launched == []


def test_start_records_where_each_process_listens_for_the_cli(
    system: System, launched: list[FakeProcess], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(System, "_wait_ready", lambda self, name: None)
    assert read_dev_url(system.data_dir, "events") is None
    system.start()
    assert read_dev_url(system.data_dir, "events") == system.url("events")
    assert read_dev_url(system.data_dir, "gateway") == system.url("gateway")


def test_the_development_secret_is_kept_private_in_the_data_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PATIENTFLOW_INTERNAL_SECRET", raising=False)
    secret = System(tmp_path).env["PATIENTFLOW_INTERNAL_SECRET"]
    assert (tmp_path / "dev-internal-secret").stat().st_mode & 0o777 == 0o600
    assert read_dev_internal_secret(tmp_path) == secret == ensure_dev_internal_secret(tmp_path)  # reused
    assert System(tmp_path).env["PATIENTFLOW_INTERNAL_SECRET"] == secret

    monkeypatch.setenv("PATIENTFLOW_INTERNAL_SECRET", "configured-elsewhere")
    assert System(tmp_path / "other").env["PATIENTFLOW_INTERNAL_SECRET"] == "configured-elsewhere"
    assert read_dev_internal_secret(tmp_path / "other") is None  # a configured secret is never written


WATCHED = (
    "import os, threading, time\n"
    "from patientflow.supervisor import _watch_parent\n"
    "threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()\n"
    "print(os.getpid(), flush=True)\n"
    "time.sleep(300)\n"
)


def test_the_parent_watchdog_alone_ends_a_child_whose_parent_was_killed() -> None:
    """The fallback where `PR_SET_PDEATHSIG` does not exist: only the watchdog runs in the child."""
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import subprocess, sys; subprocess.run([sys.executable, '-c', {WATCHED!r}])",
        ],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    try:
        assert alive(child)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        eventually(lambda: not alive(child), what="the orphaned child to exit", deadline_seconds=20)
    finally:
        parent.stdout.close()
        if alive(child):
            os.kill(child, signal.SIGKILL)
