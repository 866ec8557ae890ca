"""The log as Server-Sent Events: `id:` the hub position (resume with `Last-Event-ID`), `event:` the type.

A stream starts live (only events logged from now on) unless given a position to replay after.

A stream reads the log off the event loop, then sleeps on the notifier until the ingestor commits more,
so an idle stream costs no queries; a comment line every `heartbeat` seconds keeps proxies from
closing it. It ends when the client goes away (Starlette cancels it) or the server stops.
"""

import json
import time
from collections.abc import AsyncIterator, Collection

from sqlmodel import Session

from kit.database import Database
from kit.wakeups import close_on_exit_signal
from services.events import service
from services.events.notifier import LogNotifier
from services.events.service import Audience

PAGE = 500


def sse_message(event: dict[str, object]) -> str:
    data = json.dumps(event, separators=(",", ":"), ensure_ascii=False)
    return f"id: {event['position']}\nevent: {event['type']}\ndata: {data}\n\n"


async def log_stream(
    *,
    database: Database,
    notifier: LogNotifier,
    reader: Audience,
    after: int | None,
    types: Collection[str] | None,
    heartbeat_seconds: float,
) -> AsyncIterator[str]:
    """The reader's events after `after` (None: none yet), then new ones as they are logged, until closed."""

    def read(session: Session) -> tuple[list[dict[str, object]], int, bool]:
        rows, next_after = service.read_page(session, reader, after=cursor, limit=PAGE, types=types)
        return [service.event_json(r) for r in rows], next_after, len(rows) == PAGE

    if after is None:  # live: the log's head before the first byte, so nothing logged after "open" is missed
        cursor = await database.read(service.log_head)
    else:
        cursor = after
    yield ": stream open\n\n"  # headers and a first byte now, so clients and proxies see the stream live
    last_sent = time.monotonic()
    while not notifier.closed:
        seen = notifier.version
        events, cursor, full = await database.read(read)
        for event in events:
            yield sse_message(event)
        if events:
            last_sent = time.monotonic()
        if full:
            continue
        quiet = time.monotonic() - last_sent
        if not await notifier.wait_async(seen, max(heartbeat_seconds - quiet, 0.0)):
            yield ": heartbeat\n\n"
            last_sent = time.monotonic()


def close_streams_on_exit_signal(notifier: LogNotifier) -> None:
    """End the streams as soon as the server is told to stop (SIGTERM, Ctrl-C): see
    `kit.wakeups.close_on_exit_signal` (a server started in a test thread ends its streams by itself)."""
    close_on_exit_signal(notifier)
