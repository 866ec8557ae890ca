"""The serving side of `x-feed-head`: what a sibling service learns of this service's feed with each answer.

A service answering another service (an internal token of `service:<name>`) adds `x-feed-head: <the
position of its newest committed event>`; the caller notes it as a cause (`kit.client`), so what it
records next is logged by the hub after everything this service had committed. The head is read once
the handler's unit of work is over — after whatever the answer reflects, and positions grow in commit
order — with one indexed `max()` read as a hot read is (`kit.database.ReadConnection`: on SQLite on the
event loop's own connection, no worker-thread hop; on PostgreSQL behind the read gate, one worker call,
Core without an ORM session). The feed's own routes are left out: their answers carry positions, and
readers poll them all day.
"""

from sqlalchemy import Table, func, select
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kit.auth import Caller
from kit.causes import FEED_HEAD_HEADER
from kit.database import Database, ReadConnection
from kit.models import OutboxEventBase

FEED_PATHS = ("/events",)


class FeedHeadMiddleware:
    """Pure ASGI: adds `x-feed-head` to answers for sibling services, and costs others nothing."""

    def __init__(self, app: ASGIApp, *, outbox: type[OutboxEventBase]) -> None:
        self.app = app
        table: Table = outbox.__table__  # type: ignore[attr-defined]
        self._head = select(func.max(table.c.position))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(FEED_PATHS):
            await self.app(scope, receive, send)
            return

        async def send_with_head(message: Message) -> None:
            if message["type"] == "http.response.start" and _from_service(scope):
                head = await self.head(scope["app"].state.database)
                message["headers"] = [*message.get("headers", []), (FEED_HEAD_HEADER.encode(), b"%d" % head)]
            await send(message)

        await self.app(scope, receive, send_with_head)

    async def head(self, database: Database) -> int:
        """The newest committed position (0 before the first event)."""
        return await ReadConnection(database).run(self._read_head)

    def _read_head(self, reader: ReadConnection) -> int:
        head: int | None = reader.execute(self._head).scalar()
        return head or 0


def _from_service(scope: Scope) -> bool:
    """Whether `kit.auth.require_internal_caller` admitted a sibling service (it keeps the caller here)."""
    caller = scope.get("state", {}).get("caller")
    return isinstance(caller, Caller) and caller.is_service
