"""`patientflow up`, the README's first command: starts everything, prints keys, stops cleanly on Ctrl-C."""

import os
import random
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx

from patientflow.topology import COMPONENTS


def free_port_range() -> int:
    """A base port with the ports after it free too (the gateway takes the base, the services the rest)."""
    for _ in range(50):
        base = random.randint(20000, 30000)
        try:
            for port in range(base, base + len(COMPONENTS)):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError(f"no free range of {len(COMPONENTS)} ports")


def test_up_serves_the_gateway_and_stops_every_process_on_ctrl_c(tmp_path: Path) -> None:
    base = free_port_range()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "patientflow.cli",
            "up",
            "--data-dir",
            str(tmp_path),
            "--base-port",
            str(base),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=os.environ | {"PATIENTFLOW_DATABASE_URL": ""},
    )
    assert process.stdout is not None
    lines: list[str] = []
    try:
        for line in process.stdout:
            lines.append(line)
            if "Press Ctrl-C" in line:
                break
        output = "".join(lines)
        assert f"Gateway: http://127.0.0.1:{base}" in output, output
        key = next(line.split()[1] for line in lines if line.strip().startswith("his-dev"))
        response = httpx.get(
            f"http://127.0.0.1:{base}/v1/catalogue/110200001", headers={"authorization": f"Bearer {key}"}
        )
        assert response.status_code == 200 and response.json()["price_fen"] == 2000
    finally:
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=60)
    assert process.returncode == 0
    assert "stopped." in rest
    for port in range(base, base + len(COMPONENTS)):  # every process is gone: nothing answers on their ports
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
        except httpx.ConnectError:
            continue
        raise AssertionError(f"port {port} still answers after Ctrl-C")
    assert (tmp_path / "registration.db").exists() and (tmp_path / "billing.db").exists()
