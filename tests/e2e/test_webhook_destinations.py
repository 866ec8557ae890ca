"""A webhook host whose name never resolves costs a subscriber a prompt 422, not a 504 after seconds.

The hub process is restarted with a resolver that stalls for `*.stalled.test` (a `sitecustomize` on
its `PYTHONPATH` wraps `socket.getaddrinfo`) and a short bound; every other name resolves as usual.
The test restores the hub as it was.
"""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from patientflow.supervisor import System
from tests.e2e.clients import Gateway, assert_problem, eventually, ok

STALLING_RESOLVER = """
import socket
import threading

_getaddrinfo = socket.getaddrinfo


def getaddrinfo(host, *args, **kwargs):
    if isinstance(host, str) and host.endswith(".stalled.test"):
        threading.Event().wait(30)  # a DNS server that does not answer
    return _getaddrinfo(host, *args, **kwargs)


socket.getaddrinfo = getaddrinfo
"""


@contextmanager
def hub_with(system: System, env: dict[str, str]) -> Iterator[None]:
    """The system's hub restarted with extra environment, then restarted as it was."""
    before = dict(system.env)
    system.stop_service("events")
    system.env.update(env)
    try:
        system.start_service("events")
        yield
    finally:
        system.stop_service("events")
        system.env.clear()
        system.env.update(before)
        system.start_service("events")


@pytest.fixture
def stalled_dns_hub(system: System, gateway: Gateway, tmp_path: Path) -> Iterator[None]:
    (tmp_path / "sitecustomize.py").write_text(STALLING_RESOLVER)
    python_path = os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
    env = {"PYTHONPATH": python_path, "EVENTS_WEBHOOK_RESOLVE_TIMEOUT_SECONDS": "0.2"}
    with hub_with(system, env):
        eventually(lambda: gateway.his.get("/v1/subscriptions").status_code == 200, what="the new hub")
        yield
    eventually(lambda: gateway.his.get("/v1/subscriptions").status_code == 200, what="the hub restored")


@pytest.mark.usefixtures("stalled_dns_hub")
def test_a_webhook_host_that_does_not_resolve_in_time_is_a_422_and_subscribes_nothing(
    gateway: Gateway,
) -> None:
    url = "http://hooks.stalled.test/patientflow"
    response = gateway.his.post("/v1/subscriptions", json={"url": url, "event_types": ["visit.opened"]})
    problem = assert_problem(response, 422)
    assert problem["type"].endswith("/webhook-host-unresolved")
    assert "could not be resolved in time" in problem["detail"]
    assert url not in [s["url"] for s in ok(gateway.his.get("/v1/subscriptions"))]
    # the hub's other answers are unaffected: an address needs no lookup
    created = gateway.his.post(
        "/v1/subscriptions", json={"url": "http://10.9.9.9/hook", "event_types": ["*"]}
    )
    subscription = ok(created, 201)
    assert gateway.his.delete(f"/v1/subscriptions/{subscription['id']}").status_code == 204
