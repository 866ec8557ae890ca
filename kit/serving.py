"""uvicorn's httptools protocol with a buffered answer sent in one `send()`: what `patientflow serve` and
`kit.testing.ServedApp` run.

uvicorn writes an ASGI answer as its messages come: the status line and headers on
`http.response.start`, the body on `http.response.body`, two socket writes for every buffered answer
(on loopback the kernel's TCP work for each runs inside the sender's `send()`, and the reader wakes for
each). `HeadHoldingTransport` holds the head of an answer that declares its length (a buffered one:
its body follows at once) and sends it with the first body bytes, in one write. Nothing else waits: a
streamed answer (no Content-Length: server-sent events, long polls that stream) has its head sent at
once, a `100 Continue` too, and a held head goes out when the answer ends without a body (HEAD, 204)
or the connection closes.
"""

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_STATUS_LINE = b"HTTP/1.1 "
_INTERIM = b"HTTP/1.1 1"  # 100 Continue: the client waits for it before sending the body
_CONTENT_LENGTH = b"\r\ncontent-length: "  # uvicorn writes header names lower-cased


class HeadHoldingTransport:
    """The transport a connection's answers are written to, holding a buffered answer's head until its
    body comes (`write`) or the answer ends (`flush`). Everything else is the wrapped transport's;
    `close` and `write_eof` send a held head first, so no byte is lost or reordered."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._held = b""

    def write(self, data: bytes) -> None:
        if self._held:
            data, self._held = self._held + data, b""
        elif data.startswith(_STATUS_LINE) and not data.startswith(_INTERIM) and _CONTENT_LENGTH in data:
            self._held = data
            return
        self._transport.write(data)

    def flush(self) -> None:
        """Send a held head (an answer that ended without body bytes)."""
        if self._held:
            data, self._held = self._held, b""
            if not self._transport.is_closing():
                self._transport.write(data)

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + len(self._held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def abort(self) -> None:
        self._held = b""
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class OneSendHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol on a `HeadHoldingTransport`: a buffered answer in one send."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        super().connection_made(HeadHoldingTransport(transport))  # type: ignore[arg-type]

    def on_response_complete(self) -> None:
        self.transport.flush()  # type: ignore[attr-defined]
        super().on_response_complete()
