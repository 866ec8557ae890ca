"""`Wakeup`: wakes waiting readers (threads and asyncio tasks) as soon as something they read changed.

Readers remember the version they last saw, read, then wait for a newer version; so a change between
their read and their wait is never missed, and an idle reader never polls. The event hub's log streams,
and every service's long-polled `/events` feed (`kit.outbox`), wait on one.

A bump may say what changed (`tags`: the event types a commit wrote), and an asyncio reader what it
reads (`wanted`): the reader is then woken only by a change it reads, or one that did not say what it
was. A feed reader asking for one type is thus not woken, to read nothing, by every commit of its
source (a reader woken for nothing costs its service a page read: a tenth of billing's CPU). The last
bumps' tags are kept, so a reader that asks after some bumps can tell whether one was for it; a reader
that fell further behind than they reach is told "changed" (it reads again: safe, just not free).
"""

import asyncio
import contextlib
import signal
import threading
from collections import deque
from collections.abc import Callable, Set
from dataclasses import dataclass
from types import FrameType
from typing import Any

SignalHandler = Callable[[int, FrameType | None], Any]
Tags = Set[str] | None
"""What a bump changed (None: it does not say, so it concerns every reader)."""
KEPT_BUMPS = 256
"""How many recent bumps keep their tags (a reader further behind reads again)."""


class Wakeup:
    """A version counter bumped from any thread, awaited by threads and by asyncio tasks.

    The condition's lock is re-entrant: `close` may run in a signal handler on a thread that holds it.
    """

    def __init__(self) -> None:
        self._version = 0
        self._closed = False
        self._condition = threading.Condition(threading.RLock())
        self._waiters: set[_Waiter] = set()
        self._recent: deque[tuple[int, Tags]] = deque(maxlen=KEPT_BUMPS)  # (version, tags), oldest first

    @property
    def version(self) -> int:
        return self._version

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def waiting(self) -> int:
        """How many asyncio tasks wait now (tests use it to act only once a reader is waiting)."""
        return len(self._waiters)

    def bump(self, tags: Tags = None) -> None:
        """Something changed, of `tags` if given (callable from any thread)."""
        with self._condition:
            self._version += 1
            self._recent.append((self._version, tags))
            self._condition.notify_all()
            waiters = [waiter for waiter in self._waiters if _concerns(tags, waiter.wanted)]
        _set_all(waiters)

    def changed_since(self, seen: int, wanted: Tags = None) -> bool:
        """Whether a bump after version `seen` concerns a reader of `wanted` (None: of everything)."""
        with self._condition:
            if self._version == seen:
                return False
            if wanted is None:
                return True
            newer = [tags for version, tags in self._recent if version > seen]
            if len(newer) < self._version - seen:
                return True  # some of those bumps are forgotten: they may have been for this reader
            return any(_concerns(tags, wanted) for tags in newer)

    def close(self) -> None:
        """The server is stopping: wake the asyncio waiters for good (they check `closed`) instead of
        letting them wait. Threads are not woken for good: workers keep their own stop signal and must
        not spin."""
        self._closed = True
        with self._condition:
            waiters = list(self._waiters)
        _set_all(waiters)

    def wait(self, seen: int, timeout: float) -> bool:
        """Block a thread until the version moves past `seen` (True) or the timeout passes (False)."""
        with self._condition:
            return self._condition.wait_for(lambda: self._version != seen, timeout)

    async def wait_async(self, seen: int, timeout: float, wanted: Tags = None) -> bool:
        """Await a version past `seen` (one that concerns `wanted`, if given), or `close` (True), or the
        timeout (False), without a thread."""
        entry = _Waiter(
            asyncio.get_running_loop(), asyncio.Event(), None if wanted is None else frozenset(wanted)
        )
        event = entry.event
        with self._condition:
            self._waiters.add(entry)
        try:
            if self._closed or self.changed_since(seen, wanted):
                return True
            async with asyncio.timeout(timeout):
                await event.wait()
            return True
        except TimeoutError:
            return False
        finally:
            with self._condition:
                self._waiters.discard(entry)


@dataclass(frozen=True, slots=True, eq=False)
class _Waiter:
    """An asyncio task waiting: its loop, the event that wakes it, and the tags it reads (None: all)."""

    loop: asyncio.AbstractEventLoop
    event: asyncio.Event
    wanted: frozenset[str] | None


def _concerns(tags: Tags, wanted: Tags) -> bool:
    """Whether a bump of `tags` concerns a reader of `wanted` (either None: it may)."""
    return tags is None or wanted is None or not tags.isdisjoint(wanted)


def _set_all(waiters: list[_Waiter]) -> None:
    for waiter in waiters:
        loop, event = waiter.loop, waiter.event
        if not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed in between
                loop.call_soon_threadsafe(event.set)


def close_on_exit_signal(*wakeups: Wakeup) -> None:
    """Close `wakeups` as soon as the server is told to stop (SIGTERM, Ctrl-C).

    uvicorn waits for open responses before its lifespan shutdown, so a stream or a long poll that only
    ended at shutdown would hold the process for the whole graceful timeout. Chains to the server's own
    handler; only possible from the main thread (`kit.testing.serve` closes them itself).
    """
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in (signal.SIGINT, signal.SIGTERM):
        previous = signal.getsignal(signum)
        if not callable(previous):
            continue

        def handler(sig: int, frame: FrameType | None, previous: SignalHandler = previous) -> None:
            for wakeup in wakeups:
                wakeup.close()
            previous(sig, frame)

        signal.signal(signum, handler)
