"""`kit.serving`: a buffered answer's head and body leave in one write, and nothing else waits."""

import socket
from typing import Any

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from kit.serving import HeadHoldingTransport, OneSendHttpToolsProtocol
from kit.testing import ServedApp
from patientflow.cli import UVICORN_OPTIONS


class RecordingTransport:
    """What a socket's transport was asked to do, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.calls.append(("write", data))

    def close(self) -> None:
        self.calls.append(("close", None))
        self.closing = True

    def abort(self) -> None:
        self.calls.append(("abort", None))

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


HEAD = b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\ncontent-type: text/plain\r\n\r\n"


def test_a_buffered_answers_head_leaves_with_its_body_in_one_write() -> None:
    socket_side = RecordingTransport()
    transport = HeadHoldingTransport(socket_side)  # type: ignore[arg-type]
    transport.write(HEAD)
    assert socket_side.calls == []
    assert transport.get_write_buffer_size() == len(HEAD)
    transport.write(b"body")
    transport.flush()  # the answer's end: nothing left to send
    assert socket_side.calls == [("write", HEAD + b"body")]


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",  # streamed: its head at once
        b"HTTP/1.1 100 Continue\r\n\r\n",  # the client waits for it
    ],
)
def test_a_streamed_answers_head_and_an_interim_one_are_not_held(head: bytes) -> None:
    socket_side = RecordingTransport()
    HeadHoldingTransport(socket_side).write(head)  # type: ignore[arg-type]
    assert socket_side.calls == [("write", head)]


def test_a_held_head_goes_out_when_the_answer_ends_without_a_body_or_the_connection_closes() -> None:
    socket_side = RecordingTransport()
    transport = HeadHoldingTransport(socket_side)  # type: ignore[arg-type]
    transport.write(HEAD)
    transport.flush()  # a HEAD request's answer
    transport.write(HEAD)
    transport.close()
    assert socket_side.calls == [("write", HEAD), ("write", HEAD), ("close", None)]
    assert transport.get_extra_info("peername") == "info:peername"


def test_an_aborted_connection_sends_nothing_it_held() -> None:
    socket_side = RecordingTransport()
    transport = HeadHoldingTransport(socket_side)  # type: ignore[arg-type]
    transport.write(HEAD)
    transport.abort()
    transport.flush()
    assert socket_side.calls == [("abort", None)]


async def hello(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":  # the lifespan: nothing to start
        message = await receive()
        await send({"type": message["type"] + ".complete"})
        await receive()
        await send({"type": "lifespan.shutdown.complete"})
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"5")]})
    await send({"type": "http.response.body", "body": b"hello"})


def test_patientflow_serve_and_the_test_server_answer_through_it() -> None:
    assert UVICORN_OPTIONS["http"] is OneSendHttpToolsProtocol
    with ServedApp(hello) as served:  # served as `patientflow serve` serves
        assert httpx.get(f"{served.url}/").text == "hello"
        assert httpx.head(f"{served.url}/").status_code == 200  # its head sent at the answer's end
        host, port = served.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port))) as client:
            client.sendall(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            first = client.recv(65536)  # one send on loopback: one segment
        assert first.startswith(b"HTTP/1.1 200 OK\r\n") and first.endswith(b"\r\n\r\nhello")
