"""A webhook receiver for tests: a real HTTP endpoint that verifies signatures like an integrator would."""

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from fastapi import FastAPI, Request, Response

from kit.testing import serve
from services.events.signing import InvalidSignature, verify

Answer = Callable[[dict[str, Any]], int]


class WebhookReceiver:
    """Records every verified delivery attempt; `answer(event)` picks the HTTP status to reply with."""

    def __init__(self) -> None:
        self.url = ""
        self.secret = ""
        self.answer: Answer = lambda _event: 204
        self.attempts: list[str] = []  # event ids, one per attempt, in arrival order
        self.delivered: list[dict[str, Any]] = []  # events answered 2xx, in arrival order
        self.rejected = 0  # deliveries whose signature did not verify
        self._lock = threading.Lock()
        self.app = FastAPI()
        self.app.post("/hook")(self._receive)

    async def _receive(self, request: Request) -> Response:
        body = await request.body()
        try:
            verify(self.secret, request.headers, body)
        except InvalidSignature:
            with self._lock:
                self.rejected += 1
            return Response(status_code=401)
        event = json.loads(body)
        status = self.answer(event)
        with self._lock:
            self.attempts.append(event["id"])
            if 200 <= status < 300:
                self.delivered.append(event)
        return Response(status_code=status)

    def reset(self) -> None:
        with self._lock:
            self.secret, self.attempts, self.delivered, self.rejected = "", [], [], 0
        self.answer = lambda _event: 204

    def delivered_ids(self) -> list[str]:
        with self._lock:
            return [event["id"] for event in self.delivered]


def fail_first(times: int, *, only: Callable[[dict[str, Any]], bool] = lambda _event: True) -> Answer:
    """An answer that fails (HTTP 500) the first `times` attempts of each matching event."""
    failures: dict[str, int] = {}
    lock = threading.Lock()

    def answer(event: dict[str, Any]) -> int:
        if not only(event):
            return 204
        with lock:
            failures[event["id"]] = failures.get(event["id"], 0) + 1
            return 500 if failures[event["id"]] <= times else 204

    return answer


@contextmanager
def served_receiver() -> Iterator[WebhookReceiver]:
    """A `WebhookReceiver` served over real HTTP (its `url` set, at `/hook`) until the block ends."""
    receiver = WebhookReceiver()
    with serve(receiver.app) as url:
        receiver.url = f"{url}/hook"
        yield receiver
