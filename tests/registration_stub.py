"""A stand-in registration for tests of its callers: visits a test puts in, one look-up it can hold back
until released (a slow registration), and a feed (kit.testing.FakeFeed) it publishes to by hand."""

import json
import threading
from collections.abc import Iterator
from typing import Any

from fastapi.responses import JSONResponse, StreamingResponse

from kit.testing import FakeFeed

# The held answer trickles a space (JSON allows leading whitespace) this often, so the caller's read
# timeout never ends the wait: only `release()` does.
KEEPALIVE_SECONDS = 0.5


class SlowRegistration(FakeFeed):
    """`GET /visits/{visit_id}` from `visits`; the answer about the `held` visit waits until `release()`."""

    def __init__(self) -> None:
        super().__init__()
        self.visits: dict[str, dict[str, Any]] = {}
        self.held: str | None = None
        self.arrived = threading.Event()
        self._released = threading.Event()
        self.app.get("/visits/{visit_id}")(self._visit)

    def _visit(self, visit_id: str) -> Any:
        found = self.visits.get(visit_id)
        if found is None:
            return JSONResponse({"status": 404}, status_code=404)
        if visit_id != self.held:
            return found
        self.arrived.set()
        return StreamingResponse(self._held_answer(found), media_type="application/json")

    def _held_answer(self, visit: dict[str, Any]) -> Iterator[bytes]:
        while not self._released.wait(KEEPALIVE_SECONDS):
            yield b" "
        yield json.dumps(visit).encode()

    def release(self) -> None:
        self._released.set()
