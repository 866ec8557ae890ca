"""Test servers: an app served by uvicorn in a thread, and a fake billing feed the tests fill."""

import socket
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import uvicorn
from fastapi import FastAPI, Query

from kit.testing import make_test_settings
from services.results.config import ResultsSettings

START_TIMEOUT_SECONDS = 20


class LiveServer:
    """An ASGI app served by uvicorn on a free 127.0.0.1 port in a background thread."""

    def __init__(self, app: FastAPI) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"
        # ws="none": the websockets implementation is not needed and warns on import.
        config = uvicorn.Config(app, log_level="warning", ws="none", lifespan="on")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, name="live-server", daemon=True
        )

    def __enter__(self) -> "LiveServer":
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the live server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *_exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()


class FakeBillingFeed:
    """Billing's `GET /events`, serving whatever events a test appends."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.url = ""
        self.app = FastAPI()

        @self.app.get("/events")
        def read_feed(
            after: int = 0, limit: Annotated[int, Query(ge=1, le=500)] = 100, type: str | None = None
        ) -> dict[str, Any]:
            page = [e for e in self.events if e["position"] > after and (type is None or e["type"] == type)]
            page = page[:limit]
            return {"events": page, "next_after": page[-1]["position"] if page else after}


def results_settings(data_dir: Path, registration_url: str, billing_url: str) -> ResultsSettings:
    return make_test_settings(
        ResultsSettings, data_dir, registration_url=registration_url, billing_url=billing_url
    )
