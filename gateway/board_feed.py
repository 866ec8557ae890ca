"""Which departments' boards changed: one follower of the event hub's stream for every board screen.

The hub's events name patients and visits, so none of them ever reaches a screen: the follower keeps
only *which department* an event touched (`departments_of`) and bumps that department's version; each
board stream then re-reads the board projection from triage (`gateway.board`). One `Wakeup` for all
departments keeps the hand-off free of lost wake-ups: a stream remembers the wake-up version and its
department's version, reads, then waits for a newer wake-up; whatever changed in between is seen.

After the hub's stream broke, the follower resumes after the last position it saw and bumps every
department once, so a screen that might have missed an event re-reads at once.
"""

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from gateway.resilience import UpstreamError
from gateway.upstreams import Upstreams
from kit.auth import TokenSource, service_subject
from kit.errors import ProblemError
from kit.requestid import current_request_id
from kit.wakeups import Wakeup

logger = logging.getLogger("patientflow.gateway")
# Events that can change what a board shows: every ticket move, and a queue suspended or resumed.
BOARD_EVENT_PREFIXES = ("ticket.", "queue.")
DEPARTMENT_FIELDS = ("department", "to_department")  # a transfer changes both boards
MAX_SSE_LINE = 1 << 20  # one event's line; a longer one is dropped, not buffered without end


@dataclass
class SseMessage:
    """One server-sent event: its `id:`, `event:` and joined `data:` lines."""

    id: str | None = None
    event: str | None = None
    data: list[str] = field(default_factory=list)


class SseParser:
    """An incremental text/event-stream parser: feed it chunks, get whole messages back."""

    def __init__(self) -> None:
        self._buffer = b""
        self._message = SseMessage()

    def feed(self, chunk: bytes) -> Iterator[SseMessage]:
        self._buffer += chunk
        *lines, self._buffer = self._buffer.split(b"\n")
        if len(self._buffer) > MAX_SSE_LINE:
            self._buffer = b""
        for raw in lines:
            line = raw.rstrip(b"\r").decode("utf-8", errors="replace")
            if not line:
                if self._message.data or self._message.event:
                    yield self._message
                self._message = SseMessage()
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                self._message.data.append(value)
            elif name == "event":
                self._message.event = value
            elif name == "id":
                self._message.id = value


def departments_of(event: dict[str, Any]) -> set[str]:
    """The departments whose board an event may change (none for events that change no board)."""
    event_type = event.get("type")
    if not isinstance(event_type, str) or not event_type.startswith(BOARD_EVENT_PREFIXES):
        return set()
    data = event.get("data")
    if not isinstance(data, dict):
        return set()
    return {value for name in DEPARTMENT_FIELDS if isinstance(value := data.get(name), str)}


def departments_in(message: SseMessage) -> set[str]:
    """`departments_of` for one message of the hub's stream (heartbeats and garbage: none)."""
    if not message.data:
        return set()
    try:
        event = json.loads("\n".join(message.data))
    except ValueError:
        return set()
    return departments_of(event) if isinstance(event, dict) else set()


class BoardFeed:
    """Follows the hub's log while the gateway runs and tells board streams which departments changed."""

    def __init__(self, upstreams: Upstreams, secret: str, *, retry_seconds: float) -> None:
        self.upstreams = upstreams
        self.changes = Wakeup()  # bumped on every change; closed when the gateway stops
        self._versions: dict[str, int] = {}
        self._everything = 0  # the version at which every department last counted as changed
        self._retry_seconds = retry_seconds
        self._tokens = TokenSource(secret, service_subject("gateway"), {"events:read"})
        self._task: asyncio.Task[None] | None = None
        self.position: int | None = None  # the last hub position seen: resume after it
        self.following = False  # a stream of the hub's is open now

    def version_of(self, department: str) -> int:
        """The wake-up version at which `department`'s board last changed (or might have)."""
        return max(self._versions.get(department, 0), self._everything)

    def mark(self, departments: Iterable[str]) -> None:
        touched = set(departments)
        if not touched:
            return
        version = self.changes.version + 1
        for department in touched:
            self._versions[department] = version
        self.changes.bump()

    def mark_everything(self) -> None:
        self._everything = self.changes.version + 1
        self.changes.bump()

    def ensure_following(self) -> None:
        """Start following the hub (once; the first board stream calls it)."""
        if self._task is None and not self.changes.closed:
            self._task = asyncio.create_task(self._follow(), name="board-feed")

    async def aclose(self) -> None:
        self.changes.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _follow(self) -> None:
        while not self.changes.closed:
            try:
                await self._follow_once()
            except (ProblemError, *UpstreamError) as exc:
                logger.info("board feed: the event hub's stream broke (%s); following again", exc)
            except Exception:
                logger.warning("board feed: unexpected failure; following again", exc_info=True)
            await asyncio.sleep(self._retry_seconds)

    async def _follow_once(self) -> None:
        target = "/log/stream" if self.position is None else f"/log/stream?after={self.position}"
        headers = [
            (b"authorization", self._tokens.header("events").encode("latin-1")),
            (b"x-request-id", (current_request_id() or "").encode("latin-1")),
            (b"accept", b"text/event-stream"),
        ]
        response = await self.upstreams.send("events", "GET", target, headers=headers, stream=True)
        try:
            if response.status_code != 200:
                logger.warning("board feed: the event hub answered %s", response.status_code)
                return
            self.following = True
            self.mark_everything()  # events between the last stream and this one may have been missed
            parser = SseParser()
            async for chunk in response.aiter_raw():
                for message in parser.feed(chunk):
                    self.mark(departments_in(message))
                    if message.id is not None and message.id.isdigit():
                        self.position = int(message.id)
        finally:
            self.following = False
            await response.aclose()
