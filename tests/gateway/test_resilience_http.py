"""Retries, circuit breakers, health checks and streamed relays, through a real gateway over HTTP."""

import asyncio
import json
import socket
import socketserver
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from gateway.app import create_app as create_gateway
from kit.errors import PROBLEM_MEDIA_TYPE
from kit.testing import HTTP_TIMEOUT_SECONDS, eventually, serve
from tests.gateway.factories import bearer, gateway_settings
from tests.gateway.servers import SlowUpstream


def assert_problem(response: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE
    body: dict[str, Any] = response.json()
    assert body["type"].endswith("/" + slug)
    return body


def circuits(client: httpx.Client) -> dict[str, str]:
    """The gateway's circuit per service, from its `/readyz` (no `/v1` call involved)."""
    return client.get("/readyz").json()["circuits"]  # type: ignore[no-any-return]


async def _send_json(send: Send, status: int, payload: Any, media_type: bytes = b"application/json") -> None:
    body = json.dumps(payload).encode()
    headers = [(b"content-type", media_type), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Receive, send: Send) -> None:
    while (await receive())["type"] != "lifespan.shutdown":
        await send({"type": "lifespan.startup.complete"})
    await send({"type": "lifespan.shutdown.complete"})


class SwitchableUpstream:
    """A stand-in service a test switches between `ok` (echo), `crash` (plain-text 500s, `/readyz` 503)
    and `problem` (its own 503 problem+json, while `/readyz` says ready). Counts non-health calls."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.calls = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["path"] == "/readyz":
            await _send_json(send, 503 if self.mode == "crash" else 200, {"status": self.mode})
            return
        self.calls += 1
        if self.mode == "crash":
            raw = b"Internal Server Error"
            start = [(b"content-type", b"text/plain"), (b"content-length", str(len(raw)).encode())]
            await send({"type": "http.response.start", "status": 500, "headers": start})
            await send({"type": "http.response.body", "body": raw})
        elif self.mode == "problem":
            problem = {"type": "https://patientflow.dev/problems/sibling-down", "title": "x", "status": 503}
            await _send_json(send, 503, problem, PROBLEM_MEDIA_TYPE.encode())
        else:
            await _send_json(send, 200, {"path": scope["path"]})


class ResettingServer:
    """Reads each request, then resets the connection; counts the connections it saw."""

    def __init__(self) -> None:
        self.connections = 0
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                outer.connections += 1
                self.request.recv(65536)
                self.request.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> "ResettingServer":
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def his(api_keys: dict[str, str]) -> dict[str, str]:
    return bearer(api_keys["his-dev"])


@pytest.fixture
def gateway_for(keys_file: Path) -> Iterator[Any]:
    """`gateway_for(**settings)`: a gateway of one's own; yields an httpx client for it."""
    with_stack: list[Any] = []

    def start(**overrides: Any) -> httpx.Client:
        served = serve(create_gateway(gateway_settings(keys_file, **overrides)))
        url = served.__enter__()
        client = httpx.Client(base_url=url, timeout=HTTP_TIMEOUT_SECONDS)
        with_stack.append((served, client))
        return client

    yield start
    for served, client in reversed(with_stack):
        client.close()
        served.__exit__(None, None, None)


# --- retries -----------------------------------------------------------------------------------------


def test_get_and_keyed_post_are_retried_plain_post_is_not(gateway_for: Any, his: dict[str, str]) -> None:
    with ResettingServer() as upstream:
        client = gateway_for(
            triage_url=upstream.url, results_url=upstream.url, retry_attempts=2, breaker_failures=5
        )

        assert_problem(client.get("/v1/queues/internal", headers=his), 502, "upstream-unreachable")
        assert upstream.connections == 3
        assert circuits(client)["triage"] == "closed"  # one failed call, however many attempts

        upstream.connections = 0
        assert_problem(client.post("/v1/assessments", json={}, headers=his), 502, "upstream-unreachable")
        assert upstream.connections == 1  # it may have reached the service: never sent twice

        upstream.connections = 0
        keyed = his | {"idempotency-key": "k-1"}
        assert_problem(client.post("/v1/orders", json={}, headers=keyed), 502, "upstream-unreachable")
        assert upstream.connections == 3  # results answers a repeated key with the first result

        upstream.connections = 0  # triage ignores the header: a re-sent assessment would be a second one
        assert_problem(client.post("/v1/assessments", json={}, headers=keyed), 502, "upstream-unreachable")
        assert upstream.connections == 1


# --- the circuit breaker -----------------------------------------------------------------------------


def test_circuit_opens_fails_fast_and_is_readmitted_by_the_health_check(
    gateway_for: Any, his: dict[str, str]
) -> None:
    upstream = SwitchableUpstream()
    with serve(upstream) as upstream_url:
        client = gateway_for(triage_url=upstream_url, breaker_failures=2, health_interval_seconds=0.05)
        upstream.mode = "crash"
        for _ in range(2):
            assert_problem(client.get("/v1/queues/internal", headers=his), 502, "bad-gateway")
        assert upstream.calls == 2

        response = client.get("/v1/queues/internal", headers=his)
        body = assert_problem(response, 503, "circuit-open")
        assert body["service"] == "triage"
        assert response.headers["retry-after"] == "1"
        assert upstream.calls == 2  # failed fast: the service was not called
        assert circuits(client)["triage"] == "open"  # its /readyz says 503: stays open
        # other services' routes are not affected
        assert client.get("/v1/patients/nobody", headers=his).status_code != 503

        upstream.mode = "ok"
        eventually(
            lambda: circuits(client)["triage"] == "half-open", what="the health check to re-admit triage"
        )
        assert upstream.calls == 2  # re-admitted without any client request
        assert client.get("/v1/queues/internal", headers=his).status_code == 200
        assert circuits(client)["triage"] == "closed"


def test_services_own_problems_do_not_open_the_circuit(gateway_for: Any, his: dict[str, str]) -> None:
    upstream = SwitchableUpstream()
    upstream.mode = "problem"
    with serve(upstream) as upstream_url:
        client = gateway_for(triage_url=upstream_url, breaker_failures=2)
        for _ in range(4):
            response = client.get("/v1/queues/internal", headers=his)
            assert_problem(response, 503, "sibling-down")  # passed through unchanged
        assert upstream.calls == 4
        assert circuits(client)["triage"] == "closed"


def test_timeouts_are_504_and_open_the_circuit(gateway_for: Any, his: dict[str, str]) -> None:
    with serve(SlowUpstream(2.0)) as slow_url:
        client = gateway_for(
            results_url=slow_url,
            read_timeout=0.1,
            read_deadline_seconds=0.5,
            breaker_failures=2,
            health_interval_seconds=60,  # no re-admission while the test looks
        )
        for _ in range(2):
            body = assert_problem(client.get("/v1/tests", headers=his), 504, "upstream-timeout")
            assert body["service"] == "results"
        response = client.get("/v1/tests", headers=his)
        assert_problem(response, 503, "circuit-open")
        assert "retry-after" in response.headers


def test_a_stream_whose_head_never_comes_is_504_at_the_read_deadline(
    gateway_for: Any, his: dict[str, str]
) -> None:
    # Only the body of a stream outlives the deadline: its head does not (the silence allowed between
    # chunks, 60 s, never applies before it).
    with serve(SlowUpstream(5.0)) as slow_hub:
        client = gateway_for(events_url=slow_hub, read_deadline_seconds=0.3, stream_read_timeout=60)
        body = assert_problem(client.get("/v1/events/stream", headers=his), 504, "upstream-timeout")
        assert body["service"] == "events"


# --- streamed relays ---------------------------------------------------------------------------------


class EventStreamUpstream:
    """The hub's `/log/stream` stand-in: one event at once, a second only when `release` is set.

    Records the request headers, and whether its client (the gateway) went away mid-stream.
    """

    def __init__(self) -> None:
        self.release = threading.Event()
        self.client_gone = threading.Event()
        self.headers: list[dict[str, str]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["path"] == "/readyz":
            await _send_json(send, 200, {"status": "ready"})
            return
        if scope["query_string"] == b"deny=1":
            problem = {"type": "https://patientflow.dev/problems/forbidden", "title": "F", "status": 403}
            await _send_json(send, 403, problem, PROBLEM_MEDIA_TYPE.encode())
            return
        self.headers.append({k.decode(): v.decode() for k, v in scope["headers"]})
        await receive()  # the (empty) request body
        start = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache")]
        await send({"type": "http.response.start", "status": 200, "headers": start})
        await send({"type": "http.response.body", "body": b"id: 42\ndata: first\n\n", "more_body": True})
        disconnect = asyncio.ensure_future(receive())
        while not self.release.is_set() and not disconnect.done():
            await asyncio.sleep(0.01)
        if disconnect.done():
            self.client_gone.set()
            return
        disconnect.cancel()
        await send({"type": "http.response.body", "body": b"id: 43\ndata: second\n\n"})


@pytest.fixture
def event_stream() -> Iterator[tuple[EventStreamUpstream, str]]:
    upstream = EventStreamUpstream()
    with serve(upstream) as url:
        yield upstream, url
        upstream.release.set()


def test_events_reach_the_client_before_the_upstream_finishes(
    gateway_for: Any, his: dict[str, str], event_stream: tuple[EventStreamUpstream, str]
) -> None:
    upstream, url = event_stream
    # A deadline far shorter than the stream's life: streams are not cut by it.
    client = gateway_for(events_url=url, read_deadline_seconds=0.3)
    headers = his | {"last-event-id": "41", "cache-control": "no-cache", "cookie": "x=1"}
    with client.stream("GET", "/v1/events/stream?type=visit.opened", headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        lines = response.iter_lines()
        assert [next(lines), next(lines)] == ["id: 42", "data: first"]  # while the upstream holds on
        threading.Event().wait(0.6)  # outlive the deadline
        upstream.release.set()
        rest = [line for line in lines if line]
    assert rest == ["id: 43", "data: second"]
    (seen,) = upstream.headers
    assert seen["last-event-id"] == "41" and seen["cache-control"] == "no-cache"
    assert "cookie" not in seen and seen["authorization"].startswith("Bearer pf1.")


def test_client_disconnect_closes_the_upstream_stream(
    gateway_for: Any, his: dict[str, str], event_stream: tuple[EventStreamUpstream, str]
) -> None:
    upstream, url = event_stream
    client = gateway_for(events_url=url)
    with client.stream("GET", "/v1/events/stream", headers=his) as response:
        assert next(response.iter_lines()) == "id: 42"
    assert upstream.client_gone.wait(10), "the gateway kept the upstream stream open"


def test_a_refused_stream_is_relayed_as_a_problem(
    gateway_for: Any, his: dict[str, str], event_stream: tuple[EventStreamUpstream, str]
) -> None:
    _upstream, url = event_stream
    client = gateway_for(events_url=url)
    response = client.get("/v1/events/stream?deny=1", headers=his)
    assert_problem(response, 403, "forbidden")
