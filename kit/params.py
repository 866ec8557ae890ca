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
