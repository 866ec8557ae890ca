"""`ThreadWorker`: a loop in a daemon thread that runs for an app's lifetime (see `build_service_app`).

Feed consumers, the hub's ingestion, webhook delivery and JetStream publishing all block on I/O for long
stretches; a thread each keeps that off the request event loop. Subclasses write `run()`, loop until
`stopping` is set and wait with `stopping.wait(...)` so that `stop()` ends them promptly.
"""

import threading
from dataclasses import dataclass


class ThreadWorker:
    """Start and stop one background loop; `run()` is the loop."""

    join_seconds = 10.0  # how long stop() waits for the loop to notice

    def __init__(self, name: str) -> None:
        self.name = name
        self.stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.wake()
        if self._thread:
            self._thread.join(timeout=self.join_seconds)

    def wake(self) -> None:
        """Interrupt a wait on something other than `stopping` (nothing to do by default)."""

    def run(self) -> None:
        raise NotImplementedError


@dataclass(slots=True)
class Backoff:
    """The wait between tries of a loop that reads something which may be down: doubles up to `limit`
    on each failure, back to `initial` after a success. The one backoff every worker uses."""

    initial: float
    limit: float = 5.0
    current: float = 0.0

    def __post_init__(self) -> None:
        self.current = self.initial

    def succeeded(self) -> float:
        """The wait after a success (the initial one)."""
        self.current = self.initial
        return self.current

    def failed(self) -> float:
        """The wait after a failure: twice the last one, at most `limit`."""
        self.current = min(max(self.current, self.initial, 0.001) * 2, self.limit)
        return self.current
