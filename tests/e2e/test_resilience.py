"""Graceful degradation with real processes: a stopped, a frozen and a slow service.

A stopped service's calls are refused (502) until its circuit opens (503 + Retry-After, without calling
it); a frozen one's time out at their deadline (504, never retried past it) and open its circuit after a
few slow calls; the other services' routes keep working; once it is back, the gateway's health check
re-admits it without any client request having to succeed first. Every test restores what it stops.
"""

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.config import GatewaySettings
from kit.testing import HTTP_TIMEOUT_SECONDS, serve
from patientflow.supervisor import System, free_port
from tests.e2e.clients import Gateway, assert_problem, eventually, ok, register_patient, unique_department
from tests.gateway.servers import SlowUpstream

BREAKER_FAILURES: int = GatewaySettings.model_fields["breaker_failures"].default
BREAKER_SLOW_CALLS: int = GatewaySettings.model_fields["breaker_slow_calls"].default


def circuit(gateway: Gateway, service: str) -> str:
    """The gateway's circuit for `service`, read from its `/readyz` (not a client route)."""
    return gateway.anonymous.get("/readyz").json()["circuits"][service]  # type: ignore[no-any-return]


def gateway_metric(gateway: Gateway, name: str, **labels: str) -> float:
    """One sample of the gateway's `/metrics` (0 when absent), scraped with the admin key."""
    response = gateway.admin.get("/metrics")
    assert response.status_code == 200, f"{response.status_code}: {response.text}"
    found = [
        sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    ]
    return found[0] if found else 0.0


def upstream_errors(gateway: Gateway, kind: str) -> float:
    return gateway_metric(gateway, "patientflow_upstream_errors_total", upstream="results", kind=kind)


def results_counters(gateway: Gateway) -> dict[str, float]:
    """The gateway's counts for results: requests sent, slow calls, timeouts, calls refused by its circuit."""
    return {
        "attempts": gateway_metric(gateway, "patientflow_upstream_attempts_total", upstream="results"),
        "slow": gateway_metric(gateway, "patientflow_upstream_slow_calls_total", upstream="results"),
        "timeouts": upstream_errors(gateway, "upstream-timeout"),
        "circuit-open": upstream_errors(gateway, "circuit-open"),
    }


def open_visit(gateway: Gateway) -> tuple[dict[str, Any], str]:
    department = unique_department()
    patient = register_patient(gateway.his)
    body = {"patient_id": patient["id"], "kind": "outpatient", "department": department}
    return ok(gateway.his.post("/v1/visits", json=body), 201), department


def test_stopped_service_is_502_then_fails_fast_and_is_readmitted(system: System, gateway: Gateway) -> None:
    visit, _ = open_visit(gateway)
    orders = f"/v1/visits/{visit['id']}/orders"
    ok(gateway.doctor.get(orders))  # a success: results' circuit is closed, its failure count zero
    unreachable = upstream_errors(gateway, "upstream-unreachable")
    circuit_open = upstream_errors(gateway, "circuit-open")

    system.stop_service("results")
    try:
        for _ in range(BREAKER_FAILURES):
            body = assert_problem(gateway.doctor.get(orders), 502)
            assert body["service"] == "results"
            assert body["type"].endswith("/upstream-unreachable")
        response = gateway.doctor.get(orders)
        body = assert_problem(response, 503)
        assert body["type"].endswith("/circuit-open")
        assert int(response.headers["retry-after"]) >= 1
        assert circuit(gateway, "results") == "open"
        assert gateway_metric(gateway, "patientflow_circuit_state", upstream="results") == 2
        assert upstream_errors(gateway, "upstream-unreachable") >= unreachable + BREAKER_FAILURES
        assert upstream_errors(gateway, "circuit-open") >= circuit_open + 1

        # results down: registration and triage go on
        other, department = open_visit(gateway)
        ok(gateway.nurse.post("/v1/assessments", json={"visit_id": other["id"], "level": "III"}), 201)
        ok(gateway.nurse.post(f"/v1/queues/{department}/tickets", json={"visit_id": other["id"]}), 201)
        ok(gateway.doctor.get(f"/v1/visits/{other['id']}/assessments"))
        ok(gateway.nurse.get(f"/v1/queues/{department}"))
        assert circuit(gateway, "results") == "open"  # its /readyz does not answer: it stays open
    finally:
        system.start_service("results")

    # No client request goes to results until the health check has re-admitted it.
    eventually(lambda: circuit(gateway, "results") != "open", what="the health check to re-admit results")
    assert ok(gateway.doctor.get(orders)) == []
    assert circuit(gateway, "results") == "closed"
    assert gateway_metric(gateway, "patientflow_circuit_state", upstream="results") == 0


def test_frozen_service_is_504_within_its_deadline_then_its_circuit_opens(
    system: System, gateway: Gateway
) -> None:
    visit, _ = open_visit(gateway)
    orders = f"/v1/visits/{visit['id']}/orders"
    ok(gateway.doctor.get(orders))  # a quick answer: results' circuit is closed, its counts zero
    before = results_counters(gateway)

    results = system.processes["results"].pid
    os.kill(results, signal.SIGSTOP)  # alive and accepting connections, answering nothing
    try:
        for _ in range(BREAKER_SLOW_CALLS):
            body = assert_problem(gateway.doctor.get(orders), 504)
            assert body["service"] == "results"
            assert body["type"].endswith("/upstream-timeout")
        assert circuit(gateway, "results") == "open"  # after 3 slow calls, not 5 failures
        response = gateway.doctor.get(orders)
        assert assert_problem(response, 503)["type"].endswith("/circuit-open")
        assert int(response.headers["retry-after"]) >= 1
        after = results_counters(gateway)
        # One request each: a retry would have outlived the deadline. The refused call sent none.
        assert after["attempts"] - before["attempts"] == BREAKER_SLOW_CALLS
        assert after["slow"] - before["slow"] == BREAKER_SLOW_CALLS
        assert after["timeouts"] - before["timeouts"] == BREAKER_SLOW_CALLS
        assert after["circuit-open"] - before["circuit-open"] == 1
        # results frozen: registration goes on
        ok(gateway.his.get(f"/v1/visits/{visit['id']}"))
    finally:
        os.kill(results, signal.SIGCONT)

    eventually(lambda: circuit(gateway, "results") != "open", what="the health check to re-admit results")
    assert ok(gateway.doctor.get(orders)) == []
    assert circuit(gateway, "results") == "closed"


@contextmanager
def gateway_process(system: System, data_dir: Path, **settings: str) -> Iterator[str]:
    """A gateway process of its own (SQLite in `data_dir`) beside the system's, with `GATEWAY_*` overrides."""
    port = free_port()
    env = os.environ | system.env | {"PATIENTFLOW_DATA_DIR": str(data_dir)}
    env = {
        k: v
        for k, v in env.items()
        if k not in ("PATIENTFLOW_DATABASE_URL", "PATIENTFLOW_SCHEMA_PREFIX", "PATIENTFLOW_LOG_DIR")
    }
    env |= {f"GATEWAY_{name.upper()}": value for name, value in settings.items()}
    command = [
        sys.executable, "-m", "uvicorn", "--factory", "gateway.app:create_app", "--host", "127.0.0.1",
        "--port", str(port), "--no-access-log", "--log-level", "warning", "--timeout-graceful-shutdown", "2",
    ]  # fmt: skip
    log = (data_dir / "gateway.log").open("wb")
    process = subprocess.Popen(command, env=env, cwd=data_dir, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:

        def started() -> bool:
            assert process.poll() is None, (data_dir / "gateway.log").read_text()
            try:
                return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        eventually(started, what="the extra gateway to start")
        yield url
    finally:
        process.terminate()
        process.wait(15)
        log.close()


def test_slow_service_is_504_and_its_circuit_opens(system: System, gateway: Gateway, tmp_path: Path) -> None:
    patient = register_patient(gateway.his)
    with (
        serve(SlowUpstream(5.0)) as slow_results,
        gateway_process(
            system,
            tmp_path,
            results_url=slow_results,
            read_timeout="0.2",
            read_deadline_seconds="1",
            breaker_failures="3",
            health_interval_seconds="60",  # no re-admission while the test looks
        ) as url,
    ):
        keys = {name.removesuffix("-dev"): key for name, key in system.api_keys.items()}
        with httpx.Client(
            base_url=url, headers={"authorization": f"Bearer {keys['his']}"}, timeout=HTTP_TIMEOUT_SECONDS
        ) as his:
            for _ in range(3):
                body = assert_problem(his.get("/v1/tests"), 504)
                assert body["service"] == "results"
                assert body["type"].endswith("/upstream-timeout")
            response = his.get("/v1/tests")
            assert assert_problem(response, 503)["type"].endswith("/circuit-open")
            assert "retry-after" in response.headers
            # the slow service holds up nothing else
            assert ok(his.get(f"/v1/patients/{patient['id']}"))["id"] == patient["id"]


@pytest.fixture(autouse=True)
def _all_circuits_closed_after(gateway: Gateway) -> Iterator[None]:
    """Leave the shared gateway as found: every service answering, no circuit open."""
    yield
    eventually(
        lambda: "open" not in gateway.anonymous.get("/readyz").json()["circuits"].values(),
        what="every circuit to be re-admitted",
    )
