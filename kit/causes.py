"""What a unit of work read before it wrote: the causes an outbox event carries to the event hub.

The hub merges many feeds into one log and must put every effect after its cause. A cause is a
position in a sibling's feed: the event a feed consumer is applying, or the sibling's feed head a
request saw when it called that sibling (the sibling answers with `FEED_HEAD_HEADER`). Both are noted
here, in a context variable, and `kit.outbox.record_event` stamps them on every event the unit of work
records; the hub logs an event only once it has logged each cause's source up to that position.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

FEED_HEAD_HEADER = "x-feed-head"
"""Response header a service sets for sibling callers: the position of its newest committed event."""


@dataclass(frozen=True, slots=True)
class Cause:
    """A position in one service's feed that an event happened after."""

    source: str
    position: int

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "position": self.position}


_causes: ContextVar[tuple[Cause, ...]] = ContextVar("patientflow_causes", default=())


def note(cause: Cause) -> None:
    """Add a cause to the current context (a request, or one applied feed event)."""
    _causes.set(merge(_causes.get(), (cause,)))


@contextmanager
def caused_by(*causes: Cause) -> Iterator[None]:
    """Events recorded inside the block carry `causes` too; the context is restored afterwards."""
    token = _causes.set(merge(_causes.get(), causes))
    try:
        yield
    finally:
        _causes.reset(token)


@contextmanager
def fresh() -> Iterator[None]:
    """No causes inside the block (a new unit of work in a long-lived context, e.g. a test)."""
    token = _causes.set(())
    try:
        yield
    finally:
        _causes.reset(token)


def current() -> tuple[Cause, ...]:
    """The causes noted so far in this context, one per source (the highest position wins)."""
    return _causes.get()


def merge(left: tuple[Cause, ...], right: tuple[Cause, ...]) -> tuple[Cause, ...]:
    """One cause per source, keeping the highest position: being after it means after all before it."""
    highest: dict[str, int] = {}
    for cause in (*left, *right):
        highest[cause.source] = max(highest.get(cause.source, 0), cause.position)
    return tuple(Cause(source, position) for source, position in sorted(highest.items()))
