"""Wakes log readers (SSE streams, the webhook and NATS workers) as soon as the ingestor commits.

Readers remember the version they last saw, read the database, then wait for a newer version; so a
commit between their read and their wait is never missed, and an idle reader never polls the database.
"""

import asyncio
import threading


class LogNotifier:
    """A version counter bumped by the ingestor thread, awaited by threads and by asyncio tasks.

    The condition's lock is re-entrant: `close` may run in a signal handler on a thread that holds it.
    """

    def __init__(self) -> None:
        self._version = 0
        self._closed = False
        self._condition = threading.Condition()
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()

    @property
    def version(self) -> int:
        return self._version

    @property
    def closed(self) -> bool:
        return self._closed

    def bump(self) -> None:
        """New events are in the log (callable from any thread)."""
        with self._condition:
            self._version += 1
            self._condition.notify_all()
            waiters = list(self._waiters)
        for loop, event in waiters:
            if not loop.is_closed():
                loop.call_soon_threadsafe(event.set)

    def close(self) -> None:
        """The server is stopping: end the streams (they check `closed`) instead of letting them wait.

        Threads are not woken for good: the workers keep their own stop signal and must not spin.
        """
        self._closed = True
        with self._condition:
            waiters = list(self._waiters)
        for loop, event in waiters:
            if not loop.is_closed():
                loop.call_soon_threadsafe(event.set)

    def wait(self, seen: int, timeout: float) -> bool:
        """Block a thread until the version moves past `seen` (True) or the timeout passes (False)."""
        with self._condition:
            return self._condition.wait_for(lambda: self._version != seen, timeout)

    async def wait_async(self, seen: int, timeout: float) -> bool:
        """Await a version past `seen` (True) or the timeout (False), without a thread."""
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
