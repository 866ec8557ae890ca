"""`Wakeup`: wakes waiting readers (threads and asyncio tasks) as soon as something they read changed.

Readers remember the version they last saw, read, then wait for a newer version; so a change between
their read and their wait is never missed, and an idle reader never polls. The event hub's log streams,
and every service's long-polled `/events` feed (`kit.outbox`), wait on one.
"""

import asyncio
import contextlib
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

SignalHandler = Callable[[int, FrameType | None], Any]


class Wakeup:
    """A version counter bumped from any thread, awaited by threads and by asyncio tasks.

    The condition's lock is re-entrant: `close` may run in a signal handler on a thread that holds it.
    """

    def __init__(self) -> None:
        self._version = 0
        self._closed = False
        self._condition = threading.Condition(threading.RLock())
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()

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

    def bump(self) -> None:
        """Something changed (callable from any thread)."""
        with self._condition:
            self._version += 1
            self._condition.notify_all()
            waiters = list(self._waiters)
        _set_all(waiters)

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

    async def wait_async(self, seen: int, timeout: float) -> bool:
        """Await a version past `seen`, or `close` (True), or the timeout (False), without a thread."""
        event = asyncio.Event()
        entry = (asyncio.get_running_loop(), event)
        with self._condition:
            self._waiters.add(entry)
        try:
            if self._version != seen or self._closed:
                return True
            async with asyncio.timeout(timeout):
                await event.wait()
            return True
        except TimeoutError:
            return False
        finally:
            with self._condition:
                self._waiters.discard(entry)


def _set_all(waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]]) -> None:
    for loop, event in waiters:
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
