"""Query parameters every service reads the same way, bounded so no number reaches the database unchecked.

Positions are BIGINT columns: a cursor beyond 2**63 - 1 names no event, and PostgreSQL would refuse to
compare with it (SQLite overflows), so it is refused as a bad parameter before any query runs.
"""

from typing import Annotated

from fastapi import Query

MAX_POSITION = 2**63 - 1
MAX_VERSION = 2**31 - 1

CursorQuery = Annotated[
    int,
    Query(ge=0, le=MAX_POSITION, description="Cursor: the last position you processed (0: from the start)"),
]
"""`after`: every feed, log and stream cursor."""


def page_size(maximum: int) -> object:
    """The `Query` of a `limit` parameter: 1 to `maximum` (use as `Annotated[int, page_size(500)]`)."""
    return Query(ge=1, le=maximum, description=f"At most this many items (1 to {maximum})")


MAX_HOLD_SECONDS = 10.0
"""The longest a read other than an event feed may hold its answer (`wait=`): the gateway adds what a
call asks for, up to this, to the route's deadline, so a held read is never cut off as slow."""

HoldQuery = Annotated[
    float, Query(ge=0, le=MAX_HOLD_SECONDS, description="Seconds to hold the answer until it changes (0-10)")
]
"""`wait`: a long-polled read (e.g. an order awaiting payment)."""
