"""The gateway's own forwarder (`gateway.wire.WirePool`) against raw TCP servers that script each answer."""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from gateway.pools import Timeouts
from gateway.resilience import Failure, classify
from gateway.wire import WirePool
from tests.gateway.factories import gateway_settings

TIMEOUTS = Timeouts(connect=1.0, read=2.0, write=1.0, pool=1.0)
OK = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """One request's bytes: its head, and its body by Content-Length."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        (
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        ),
        0,
    )
    return head + (await reader.readexactly(length) if length else b"")


class Server:
    """A TCP server running `handler` per connection; counts connections."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def __aenter__(self) -> "Server":
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *_exc: object) -> None:
        assert self.server is not None
        self.server.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"


def pool_for(server: Server, **settings: Any) -> WirePool:
    return WirePool(server.url, gateway_settings(None, **settings))


def keep_answering(answer: bytes, seen: list[bytes] | None = None) -> Handler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            request = await read_request(reader)
            if seen is not None:
                seen.append(request)
            writer.write(answer)
            await writer.drain()

    return handle


def test_a_request_goes_out_whole_head_and_body_and_keeps_its_connection() -> None:
    seen: list[bytes] = []

    async def main() -> None:
        async with Server(keep_answering(OK, seen)) as server:
            pool = pool_for(server)
            headers = [(b"content-type", b"application/json"), (b"x-request-id", b"r-1")]
            answer = await pool.request(
                "POST", "/visits?x=1", headers=headers, content=b'{"a":1}', timeouts=TIMEOUTS
            )
            assert (answer.status_code, answer.content) == (200, b"{}")
            assert answer.header("content-type") == "application/json"
            for _ in range(3):
                await pool.request("GET", "/visits/v-1", headers=[], content=None, timeouts=TIMEOUTS)
            assert server.connections == 1  # kept alive and re-used
            await pool.aclose()
            host = server.url.removeprefix("http://").encode()
            assert seen[0] == (
                b"POST /visits?x=1 HTTP/1.1\r\nhost: " + host + b"\r\naccept-encoding: identity\r\n"
                b"user-agent: patientflow-gateway\r\ncontent-type: application/json\r\nx-request-id: r-1\r\n"
                b'content-length: 7\r\n\r\n{"a":1}'
            )
            assert seen[1].startswith(b"GET /visits/v-1 HTTP/1.1\r\n")
            assert b"content-length" not in seen[1]

    asyncio.run(main())


def test_an_empty_post_says_it_has_no_body() -> None:
    seen: list[bytes] = []

    async def main() -> None:
        async with Server(keep_answering(OK, seen)) as server:
            pool = pool_for(server)
            await pool.request("POST", "/x", headers=[], content=None, timeouts=TIMEOUTS)
            await pool.aclose()
        assert seen[0].endswith(b"content-length: 0\r\n\r\n")

    asyncio.run(main())


def test_unframed_and_chunked_answers_are_read_whole_and_connection_close_is_honoured() -> None:
    chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    closing = b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok"

    async def until_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nuntil the end")
        await writer.drain()

    async def main() -> None:
        async with Server(until_close) as server:
            pool = pool_for(server)
            answer = await pool.request("GET", "/", headers=[], content=None, timeouts=TIMEOUTS)
            assert answer.content == b"until the end"  # no length: the body ran to the close
            await pool.aclose()
        async with Server(keep_answering(chunked)) as server:
            pool = pool_for(server)
            answer = await pool.request("GET", "/", headers=[], content=None, timeouts=TIMEOUTS)
            assert answer.content == b"abcde"
            await pool.aclose()
        async with Server(keep_answering(closing)) as server:
            pool = pool_for(server)
            for _ in range(2):
                answer = await pool.request("GET", "/", headers=[], content=None, timeouts=TIMEOUTS)
                assert answer.content == b"ok"
            assert server.connections == 2  # the service said it closes: never sent a second request
            await pool.aclose()

    asyncio.run(main())


def test_an_answer_cut_short_is_a_reset_and_garbage_is_invalid() -> None:
    async def cut_short(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc")
        await writer.drain()

    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        await writer.drain()
        await reader.read()

    async def main() -> None:
        for handler, failure in ((cut_short, Failure.reset), (garbage, Failure.invalid)):
            async with Server(handler) as server:
                pool = pool_for(server)
                with pytest.raises(Exception) as raised:
                    await pool.request("GET", "/", headers=[], content=None, timeouts=TIMEOUTS)
                assert classify(raised.value) is failure
                assert not pool._idle  # not handed out again
                await pool.aclose()

    asyncio.run(main())


def test_refused_connections_and_silence_are_classified() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await reader.read()  # never answers

    async def main() -> None:
        async with Server(silent) as server:
            url = server.url
            pool = pool_for(server)
            short = Timeouts(connect=1.0, read=0.05, write=1.0, pool=1.0)
            with pytest.raises(Exception) as raised:
                await pool.request("GET", "/", headers=[], content=None, timeouts=short)
            assert classify(raised.value) is Failure.read_timeout
            await pool.aclose()
        refused = WirePool(url, gateway_settings(None))  # the server is gone
        with pytest.raises(Exception) as raised:
            await refused.request("GET", "/", headers=[], content=None, timeouts=TIMEOUTS)
        assert classify(raised.value) is Failure.refused

    asyncio.run(main())


def test_the_pool_bounds_its_connections_and_a_wait_past_the_pool_timeout_fails() -> None:
    release, received = asyncio.Event(), asyncio.Event()

    async def held(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            received.set()
            await release.wait()
            writer.write(OK)
            await writer.drain()

    async def main() -> None:
        async with Server(held) as server:
            pool = pool_for(server, pool_size=1)
            first = asyncio.create_task(pool.request("GET", "/", headers=[], content=None, timeouts=TIMEOUTS))
            await received.wait()  # the first holds the one connection
            waiting = Timeouts(connect=1.0, read=2.0, write=1.0, pool=0.05)
            with pytest.raises(Exception) as raised:
                await pool.request("GET", "/", headers=[], content=None, timeouts=waiting)
            assert classify(raised.value) is Failure.connect_timeout
            second = asyncio.create_task(
                pool.request("GET", "/", headers=[], content=None, timeouts=TIMEOUTS)
            )
            release.set()
            assert (await first).status_code == (await second).status_code == 200
            assert server.connections == 1  # the second waited for the first's connection
            await pool.aclose()

    asyncio.run(main())


def test_a_stream_is_relayed_as_it_arrives_and_ends_on_silence() -> None:
    more = asyncio.Event()

    async def stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n6\r\nid: 1\n\r\n")
        await writer.drain()
        await more.wait()
        writer.write(b"6\r\nid: 2\n\r\n")
        await writer.drain()
        await reader.read()  # then silence

    async def main() -> None:
        async with Server(stream) as server:
            pool = pool_for(server)
            timeouts = Timeouts(connect=1.0, read=0.2, write=1.0, pool=1.0)
            answer = await pool.request(
                "GET", "/log", headers=[], content=None, timeouts=timeouts, stream=True
            )
            assert answer.status_code == 200
            chunks = answer.aiter_raw()
            assert await anext(chunks) == b"id: 1\n"  # before the service wrote the rest
            more.set()
            assert await anext(chunks) == b"id: 2\n"
            with pytest.raises(Exception) as raised:
                await anext(chunks)
            assert classify(raised.value) is Failure.read_timeout
            await answer.aclose()
            assert not pool._idle
            await pool.aclose()

    asyncio.run(main())


def test_bytes_after_an_answer_end_the_connection_not_the_answer() -> None:
    """A service that answers more than it was asked (a second answer, or garbage while idle) cannot
    slip those bytes into the next request's answer."""
    extra = OK + b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nstale"

    async def main() -> None:
        async with Server(keep_answering(extra)) as server:
            pool = pool_for(server)
            for _ in range(2):
                answer = await pool.request("GET", "/", headers=[], content=None, timeouts=TIMEOUTS)
                assert (answer.status_code, answer.content) == (200, b"{}")
            assert server.connections == 2  # the first connection was not trusted again
            await pool.aclose()

    asyncio.run(main())
