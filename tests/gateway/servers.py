"""Small stand-in upstreams for gateway tests (served with `kit.testing.serve`)."""

import asyncio
import json
import socket
import socketserver
import struct
import threading
from dataclasses import dataclass, field
from typing import Any

from starlette.types import Receive, Scope, Send

from kit.testing import serve

__all__ = [
    "BrokenUpstream",
    "EchoUpstream",
    "SlowUpstream",
    "closed_port_url",
    "serve",
]  # serve: for test_journey


def closed_port_url() -> str:
    """A URL nothing listens on: connections to it are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


@dataclass
class Seen:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes


@dataclass
class EchoUpstream:
    """A raw ASGI stand-in service: records what reached it and answers with canned behaviours.

    `/queues/problem` answers a 409 problem+json, `/queues/crash` a plain-text 500, `/queues/moved` a 201
    with a service-local Location, `/queues/nothing` a 204; as the event hub, `DELETE /owners/{name}/
    subscriptions` confirms `{"deleted": 0}` (what a revocation asks first); anything else echoes.
    """

    seen: list[Seen] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        path = scope["path"]
        self.seen.append(Seen(scope["method"], path, scope["query_string"].decode(), headers, body))
        if path == "/readyz":
            await _answer(send, 200, {"status": "ready"})
        elif path == "/queues/problem":
            problem: dict[str, Any] = {"type": "https://patientflow.dev/problems/queue-closed"}
            problem |= {"title": "Conflict", "status": 409, "detail": "closed", "queue": "problem"}
            await _answer(send, 409, problem, "application/problem+json", [(b"x-internal-note", b"secret")])
        elif path == "/queues/crash":
            await _answer_raw(send, 500, b"Internal Server Error", b"text/plain")
        elif scope["method"] == "DELETE" and path.startswith("/owners/") and path.endswith("/subscriptions"):
            await _answer(send, 200, {"deleted": 0})
        elif path == "/queues/nothing":  # a 204: no body, no Content-Length
            await send({"type": "http.response.start", "status": 204, "headers": [(b"etag", b'"2"')]})
            await send({"type": "http.response.body", "body": b""})
        elif path == "/queues/moved":
            await _answer(
                send, 201, {"id": "abc"}, headers=[(b"location", b"/tickets/abc"), (b"etag", b'"1"')]
            )
        else:
            echo = {"method": scope["method"], "path": path, "query": scope["query_string"].decode()}
            await _answer(send, 200, echo | {"body": body.decode()})


class SlowUpstream:
    """Answers `/tests` after `delay` seconds and trickles `/orders` a byte every 0.05 s for `delay`."""

    def __init__(self, delay: float) -> None:
        self.delay = delay

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["path"] == "/readyz":
            await _answer(send, 200, {"status": "ready"})
            return
        if scope["path"] == "/orders":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            for _ in range(int(self.delay / 0.05)):
                await send({"type": "http.response.body", "body": b" ", "more_body": True})
                await asyncio.sleep(0.05)
            await send({"type": "http.response.body", "body": b"{}"})
            return
        await asyncio.sleep(self.delay)
        await _answer(send, 200, [])


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _answer(
    send: Send,
    status: int,
    payload: Any,
    media_type: str = "application/json",
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    await _answer_raw(send, status, json.dumps(payload).encode(), media_type.encode(), headers)


async def _answer_raw(
    send: Send, status: int, body: bytes, media_type: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    raw_headers = [(b"content-type", media_type), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers + (headers or [])})
    await send({"type": "http.response.body", "body": body})


class BrokenUpstream:
    """A TCP server that reads a request, then resets the connection or answers with non-HTTP bytes."""

    def __init__(self, behaviour: str) -> None:
        self.behaviour = behaviour
        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def _handler(self) -> type[socketserver.BaseRequestHandler]:
        behaviour = self.behaviour

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                self.request.recv(65536)
                if behaviour == "reset":  # SO_LINGER 0: close() sends RST instead of FIN
                    self.request.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                else:
                    self.request.sendall(b"NOT HTTP AT ALL\r\n\r\n")

        return Handler

    def __enter__(self) -> "BrokenUpstream":
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
