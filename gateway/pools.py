"""The forwarders' common answer, and the aiohttp and httpx pools kept to compare against.

The gateway forwards with its own HTTP/1.1 client, `gateway.wire.WirePool`, chosen by measurement
(`python -m bench.gateway_hop --before`, the two gateways side by side in one run, bench/README.md):
per forwarded read the gateway costs 0.67-0.81x the CPU it did on a plain `aiohttp.ClientSession`,
which in turn cost 780 / 1174 µs (c=32 / c=1) against 1235 / 2020 µs for httpx over the
`httpx-aiohttp` transport and 4000 / 3167 µs for httpx's own pool (httpcore). `upstream_transport`
keeps `AiohttpPool` and the two httpx forwarders (`HttpxPool`) only so the benchmark can show the
difference in one run. httpx stays where it is the better API and not on the hot path: the CLI's
admin calls (`patientflow keys`) and the tests, whose synchronous client and mock transport aiohttp
lacks.

`UpstreamResponse` is what the rest of the gateway sees, whichever pool made it: a buffered answer
(the body read, the connection back in the pool) or, for a stream, an open body to relay and close.
"""

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport
from yarl import URL

from gateway.config import GatewaySettings

Headers = list[tuple[bytes, bytes]]
UPSTREAM_HEADERS = {"accept-encoding": "identity", "user-agent": "patientflow-gateway"}


@dataclass(frozen=True, slots=True)
class Timeouts:
    """One attempt's limits in seconds: to get a pooled connection, to connect, between two reads, and
    to send the request (None: no limit of its own; the call's deadline bounds it)."""

    connect: float
    read: float | None
    write: float
    pool: float


@dataclass(slots=True)
class UpstreamResponse:
    """A service's answer: status, headers (lower-case names) and the whole body, or an open `stream`."""

    status_code: int
    headers: list[tuple[str, str]]
    content: bytes = b""
    stream: "BodyStream | None" = None

    def header(self, name: str) -> str | None:
        return next((value for key, value in self.headers if key == name), None)

    def json(self) -> Any:
        return json.loads(self.content)

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        """The stream's bytes as they arrive."""
        if self.stream is not None:
            async for chunk in self.stream.chunks():
                yield chunk

    async def aread(self) -> bytes:
        """The rest of a stream's body (a stream route's refusal is small), closing it."""
        if self.stream is not None:
            try:
                self.content = b"".join([chunk async for chunk in self.stream.chunks()])
            finally:
                await self.aclose()
        return self.content

    async def aclose(self) -> None:
        """Release a stream's connection (a no-op for a buffered answer; safe to call twice)."""
        stream, self.stream = self.stream, None
        if stream is not None:
            await stream.close()


class BodyStream(Protocol):
    def chunks(self) -> AsyncIterator[bytes]: ...

    async def close(self) -> None: ...


class Pool(Protocol):
    """One service's connection pool."""

    async def request(
        self, method: str, target: str, *, headers: Headers, content: bytes | None, timeouts: Timeouts,
        stream: bool = False,
    ) -> UpstreamResponse: ...  # fmt: skip

    async def aclose(self) -> None: ...


class _AiohttpBody:
    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def chunks(self) -> AsyncIterator[bytes]:
        async for chunk in self._response.content.iter_any():
            yield chunk

    async def close(self) -> None:
        self._response.close()  # a stream cut short cannot give its connection back


class AiohttpPool:
    """The forwarder: an aiohttp session to one service, made on first use (inside the event loop)."""

    def __init__(self, base_url: str, settings: GatewaySettings) -> None:
        self.base_url = base_url.rstrip("/")
        self._settings = settings
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        settings = self._settings
        connector = aiohttp.TCPConnector(
            limit=settings.pool_size, keepalive_timeout=settings.keepalive_seconds
        )
        session = aiohttp.ClientSession(connector=connector, headers=UPSTREAM_HEADERS, auto_decompress=False)
        # aiohttp would resend a GET once more on any dropped connection (RFC 9112 §9.3.1.1), behind our
        # retry policy's back: retries belong to one layer, where the attempts, backoff and deadline are set.
        session._retry_connection = False
        return session

    async def request(
        self, method: str, target: str, *, headers: Headers, content: bytes | None, timeouts: Timeouts,
        stream: bool = False,
    ) -> UpstreamResponse:  # fmt: skip
        session = self._session = self._session or self._open()
        # The target goes out byte for byte as the route table checked it: no re-quoting.
        url = URL(self.base_url + target, encoded=True)
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=timeouts.pool + timeouts.connect,  # a pooled connection, or a new one, in this time
            sock_connect=timeouts.connect,
            sock_read=timeouts.read,
        )
        response = await session.request(
            method,
            url,
            headers=[(name.decode("latin-1"), value.decode("latin-1")) for name, value in headers],
            data=content,
            timeout=timeout,
            allow_redirects=False,
            # A body goes on with the client's Content-Type or none: aiohttp would call it octet-stream.
            skip_auto_headers=("content-type",),
        )
        answer_headers = [
            (name.decode("latin-1").lower(), value.decode("latin-1")) for name, value in response.raw_headers
        ]
        if stream:
            return UpstreamResponse(response.status, answer_headers, stream=_AiohttpBody(response))
        try:
            body = await response.read()
        finally:
            response.release()
        return UpstreamResponse(response.status, answer_headers, body)

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()


class _HttpxBody:
    def __init__(self, response: httpx.Response) -> None:
        self._response = response

    async def chunks(self) -> AsyncIterator[bytes]:
        async for chunk in self._response.aiter_raw():
            yield chunk

    async def close(self) -> None:
        await self._response.aclose()


class HttpxPool:
    """httpx's API, over the `httpx-aiohttp` transport or httpcore's own pool: kept for the benchmark."""

    def __init__(self, base_url: str, settings: GatewaySettings, *, over_aiohttp: bool) -> None:
        limits = httpx.Limits(
            max_connections=settings.pool_size,
            max_keepalive_connections=settings.pool_size,
            keepalive_expiry=settings.keepalive_seconds,
        )
        transport = None
        if over_aiohttp:
            transport = AiohttpTransport(
                limits=limits, client=lambda: AiohttpPool(base_url, settings)._open()
            )
        self.client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            limits=limits,
            transport=transport,
            headers=UPSTREAM_HEADERS,
            follow_redirects=False,
            trust_env=False,
        )

    async def request(
        self, method: str, target: str, *, headers: Headers, content: bytes | None, timeouts: Timeouts,
        stream: bool = False,
    ) -> UpstreamResponse:  # fmt: skip
        request = self.client.build_request(method, target, content=content, headers=headers)
        limits = httpx.Timeout(
            connect=timeouts.connect, read=timeouts.read, write=timeouts.write, pool=timeouts.pool
        )
        request.extensions = request.extensions | {"timeout": limits.as_dict()}
        response = await self.client.send(request, stream=stream)
        answer_headers = list(response.headers.multi_items())
        if stream:
            return UpstreamResponse(response.status_code, answer_headers, stream=_HttpxBody(response))
        return UpstreamResponse(response.status_code, answer_headers, response.content)

    async def aclose(self) -> None:
        await self.client.aclose()
