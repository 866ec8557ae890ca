"""The gateway's own HTTP/1.1 forwarder: keep-alive connections as asyncio protocols, httptools parsing.

Why not aiohttp's client: per forwarded read it built a `ClientRequest`, a `ClientResponse`, a
`CIMultiDict` each way, a `URL`, timers and trace hooks: without them the gateway spends 0.67-0.81x
the CPU per forwarded read (`python -m bench.gateway_hop --before`, bench/README.md). Here a request
is one bytes object written in one `transport.write` (head and body together, so no Nagle/delayed-ACK
stall whatever the socket options; TCP_NODELAY is set anyway, as uvloop does), and the answer is
parsed by the same llhttp parser uvicorn uses, straight into the header list and body relayed.

What it keeps of aiohttp's behaviour, as `gateway.upstreams` relies on it: a pool of at most
`pool_size` connections per service (waiting for one is bounded by the pool timeout), idle
connections dropped after `keepalive_seconds` (below uvicorn's 5 s, so the service never closes one
under a request), a connect timeout, a read timeout as the silence allowed between two reads, no
resend of its own (retries are `gateway.resilience`'s), and errors that say what happened
(`WireError` subclasses, classified in `gateway.resilience.classify`).
"""

import asyncio
import socket
import ssl
from collections import deque
from collections.abc import AsyncIterator
from typing import cast
from urllib.parse import urlsplit

import httptools

from gateway.config import GatewaySettings
from gateway.pools import Headers, Timeouts, UpstreamResponse

STREAM_HIGH_WATER = 256 * 1024  # buffered stream bytes past which reading pauses until the relay drains
FIXED_HEADERS = b"accept-encoding: identity\r\nuser-agent: patientflow-gateway\r\n"
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})  # sent with `content-length: 0` when empty


class WireError(Exception):
    """A forwarded call that got no usable answer (see the subclasses for which way)."""


class PoolTimeout(WireError):
    """No connection to the service came free in time: the request never left."""


class ConnectTimeout(WireError):
    """The service did not accept a connection in time: the request never left."""


class ConnectFailed(WireError):
    """The connection was refused or could not be made: the request never left."""


class ReadTimeout(WireError):
    """Sent, but the service went silent for longer than the read timeout."""


class Disconnected(WireError):
    """The connection dropped before the whole answer arrived: the service may have acted."""


class InvalidResponse(WireError):
    """What came back is not HTTP/1.1 the parser accepts."""


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one exchange at a time. The parser's callbacks fill the answer."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.idle_since = 0.0
        self.error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._wake_on_head = False
        self._timer: asyncio.TimerHandle | None = None
        self._silence = 0.0
        self._last_read = 0.0
        self._paused = False
        self.in_exchange = False  # from `send` until the pool takes it back
        self._begin()

    def _begin(self) -> None:
        self.status = 0
        self.headers: list[tuple[str, str]] = []
        self.body: list[bytes] = []
        self.buffered = 0
        self.head_done = False
        self.complete = False
        self.keep_alive = False

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass, only alike
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self._last_read = self.loop.time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:  # `on_message_begin`'s refusal, too
            self._fail(InvalidResponse(str(exc.__context__ or exc)))
            self.close()
            return
        if self.buffered > STREAM_HIGH_WATER and self.transport is not None and not self._paused:
            self._paused = True
            self.transport.pause_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.complete:
            return
        if self.head_done and exc is None and not self._delimited():  # a body that runs to the close
            self.complete = True
            self._wake()
            return
        self._fail(Disconnected("the service closed the connection before its answer was complete"))

    def _delimited(self) -> bool:
        """Whether the answer says where its body ends (else it ends with the connection, RFC 9112 §6.3)."""
        return any(name in ("content-length", "transfer-encoding") for name, _ in self.headers)

    # httptools callbacks

    def on_message_begin(self) -> None:
        if self.complete or not self.in_exchange:  # bytes nobody asked for: nothing after them is trusted
            raise InvalidResponse("an answer to no request")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.decode("latin-1").lower(), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.head_done = True
        if self._wake_on_head:
            self._wake()

    def on_body(self, body: bytes) -> None:
        self.body.append(body)
        self.buffered += len(body)
        if self._wake_on_head:  # a stream's reader waits for each chunk
            self._wake()

    def on_message_complete(self) -> None:
        self.complete = True
        self.keep_alive = self.parser.should_keep_alive()
        self._wake()

    # the exchange

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, exc: BaseException) -> None:
        """The connection is done for; the exchange waiting on it, if any, fails with `exc`."""
        if self.error is None:
            self.error = exc
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def _check_silence(self) -> None:
        self._timer = None
        due = self._last_read + self._silence
        if self.loop.time() < due:  # something arrived meanwhile: wait out the rest of the silence
            self._timer = self.loop.call_at(due, self._check_silence)
            return
        self._fail(ReadTimeout(f"no data for {self._silence:g} s"))

    async def wait(self, silence: float | None) -> None:
        """Until the parser moves on (the head, a chunk, the end) or the silence runs out."""
        if self.error is not None:
            raise self.error
        waiter = self._waiter = self.loop.create_future()
        if silence is not None:
            self._silence = silence
            self._timer = self.loop.call_at(self._last_read + silence, self._check_silence)
        try:
            await waiter
        finally:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    def send(self, request: bytes, *, wake_on_head: bool) -> None:
        assert self.transport is not None
        self._begin()
        self.in_exchange = True
        self._wake_on_head = wake_on_head
        self._last_read = self.loop.time()
        self.transport.write(request)

    def take_body(self) -> bytes:
        body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
        self.body, self.buffered = [], 0
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return body

    @property
    def reusable(self) -> bool:
        return self.complete and self.keep_alive and not self.closed and self.error is None

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class _WireBody:
    """A streamed answer's body as it arrives; the connection goes back to the pool only if it ended."""

    def __init__(self, pool: "WirePool", connection: _Connection, silence: float | None) -> None:
        self._pool = pool
        self._connection: _Connection | None = connection
        self._silence = silence

    async def chunks(self) -> AsyncIterator[bytes]:
        while (connection := self._connection) is not None:
            if connection.body:
                yield connection.take_body()
            elif connection.complete:
                return
            else:
                await connection.wait(self._silence)

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            self._pool.release(connection)


class WirePool:
    """At most `pool_size` keep-alive connections to one service, the last used handed out first."""

    def __init__(self, base_url: str, settings: GatewaySettings) -> None:
        url = urlsplit(base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"not an http(s) URL: {base_url}")
        self.host = url.hostname
        self.port = url.port or (443 if url.scheme == "https" else 80)
        self.ssl: ssl.SSLContext | None = ssl.create_default_context() if url.scheme == "https" else None
        self.prefix = url.path.rstrip("/")
        self.limit = settings.pool_size
        self.keepalive_seconds = settings.keepalive_seconds
        self._host_line = b"host: " + url.netloc.encode("idna") + b"\r\n" + FIXED_HEADERS
        self._idle: list[_Connection] = []
        self._in_use = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._open: set[_Connection] = set()

    def _head(self, method: str, target: str, headers: Headers, content: bytes | None) -> bytes:
        lines = [method.encode("ascii"), b" ", (self.prefix + target).encode("latin-1"), b" HTTP/1.1\r\n"]
        lines.append(self._host_line)
        for name, value in headers:
            lines += (name, b": ", value, b"\r\n")
        if content:
            lines += (b"content-length: ", str(len(content)).encode("ascii"), b"\r\n\r\n", content)
        elif method in BODY_METHODS:
            lines.append(b"content-length: 0\r\n\r\n")
        else:
            lines.append(b"\r\n")
        return b"".join(lines)

    async def request(
        self, method: str, target: str, *, headers: Headers, content: bytes | None, timeouts: Timeouts,
        stream: bool = False,
    ) -> UpstreamResponse:  # fmt: skip
        request = self._head(method, target, headers, content)
        connection = await self._acquire(timeouts)
        head_only = method == "HEAD"  # the answer to a HEAD has no body, whatever its Content-Length says
        try:
            connection.send(request, wake_on_head=stream or head_only)
            while not (connection.head_done if stream or head_only else connection.complete):
                await connection.wait(timeouts.read)
        except BaseException:
            connection.close()
            self.release(connection)
            raise
        if stream:
            return UpstreamResponse(
                connection.status, connection.headers, stream=_WireBody(self, connection, timeouts.read)
            )
        if head_only:
            connection.close()  # the parser would take what follows for the body
        answer = UpstreamResponse(connection.status, connection.headers, connection.take_body())
        self.release(connection)
        return answer

    async def _acquire(self, timeouts: Timeouts) -> _Connection:
        if self._in_use < self.limit:
            self._in_use += 1
        else:  # wait for `release` to hand a slot on (`_in_use` then already counts it)
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                async with asyncio.timeout(timeouts.pool):
                    await waiter
            except BaseException as exc:
                if waiter.done() and not waiter.cancelled():  # handed a slot just as the wait ended
                    self._free_slot()
                else:
                    self._waiters.remove(waiter)
                if isinstance(exc, TimeoutError):
                    raise PoolTimeout(f"no free connection in {timeouts.pool:g} s") from None
                raise
        try:
            return await self._connection(timeouts)
        except BaseException:
            self._free_slot()
            raise

    async def _connection(self, timeouts: Timeouts) -> _Connection:
        loop = asyncio.get_running_loop()
        now = loop.time()
        while self._idle:
            connection = self._idle.pop()
            if connection.reusable and now - connection.idle_since < self.keepalive_seconds:
                return connection
            connection.close()
            self._open.discard(connection)
        try:
            async with asyncio.timeout(timeouts.connect):
                _, connection = await loop.create_connection(
                    lambda: _Connection(loop), self.host, self.port, ssl=self.ssl
                )
        except TimeoutError:
            raise ConnectTimeout(f"no connection in {timeouts.connect:g} s") from None
        except OSError as exc:
            raise ConnectFailed(f"{type(exc).__name__}: {exc}") from exc
        self._open.add(connection)
        return connection

    def release(self, connection: _Connection) -> None:
        """A connection's exchange is over: back to the idle list if it can carry another."""
        connection.in_exchange = False
        if connection.reusable:
            connection.idle_since = connection.loop.time()
            self._idle.append(connection)
        else:
            connection.close()
            self._open.discard(connection)
        self._free_slot()

    def _free_slot(self) -> None:
        while self._waiters:  # hand the slot on to the longest waiting request
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._in_use -= 1

    async def aclose(self) -> None:
        for connection in list(self._open):
            connection.close()
        self._open.clear()
        self._idle.clear()
