"""Billing runs against a real registration service (uvicorn in a thread, its own database) and a fake
results feed whose events each test publishes itself."""

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Query
from fastapi.testclient import TestClient

from kit.clock import utcnow
from kit.testing import internal_headers, make_test_settings, service_client, wipe
from services.billing.app import create_app
from services.billing.config import BillingSettings
from services.billing.models import BillingTable
from services.registration.app import create_app as create_registration_app
from services.registration.config import RegistrationSettings
from services.registration.models import RegistrationTable

STARTUP_DEADLINE_SECONDS = 30.0


@contextmanager
def serve_in_thread(app: FastAPI) -> Iterator[str]:
    """Serve an app over real HTTP on a free local port; yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", ws="none", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + STARTUP_DEADLINE_SECONDS
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise RuntimeError("test server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


class FakeResultsFeed:
    """Stands in for the results service's `GET /events`: tests decide what results has published."""

    def __init__(self) -> None:
        self.url = ""
        self._events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self.app = FastAPI()
        self.app.get("/events")(self._read)

    def _read(
        self, after: int = 0, limit: Annotated[int, Query(ge=1, le=500)] = 100, type: str | None = None
    ) -> dict[str, Any]:
        with self._lock:
            page = [e for e in self._events if e["position"] > after and (type is None or e["type"] == type)]
        page = page[:limit]
        return {"events": page, "next_after": page[-1]["position"] if page else after}

    def clear(self) -> None:
        with self._lock:
            self._events.clear()

    def publish(self, event: dict[str, Any]) -> dict[str, Any]:
        """Append an event (a copy, at the next position); publishing one twice is a redelivery."""
        with self._lock:
            stored = {**event, "position": len(self._events) + 1}
            self._events.append(stored)
        return stored

    def order_placed(
        self, visit: dict[str, Any], test_code: str, *, quantity: Any = 1, order_id: str | None = None
    ) -> dict[str, Any]:
        return self.publish(order_placed_event(visit, test_code, quantity=quantity, order_id=order_id))


def order_placed_event(
    visit: dict[str, Any], test_code: str, *, quantity: Any = 1, order_id: str | None = None
) -> dict[str, Any]:
    """An `order.placed` event as results publishes it (contracts.md), at position 1."""
    order_id = order_id or str(uuid.uuid4())
    return {
        "id": str(uuid.uuid4()),
        "type": "order.placed",
        "source": "results",
        "position": 1,
        "aggregate": {"type": "order", "id": order_id},
        "sequence": 1,
        "occurred_at": utcnow().isoformat(),
        "visit_id": visit["id"],
        "patient_id": visit["patient_id"],
        "data": {
            "order_id": order_id,
            "test_code": test_code,
            "quantity": quantity,
            "payment_mode": visit.get("payment_mode", "prepay"),
            "status": "awaiting_payment",
        },
    }


@pytest.fixture(scope="session")
def registration_settings(data_dir: Path) -> RegistrationSettings:
    directory = data_dir / "billing-registration"  # its own SQLite file, apart from registration's tests
    directory.mkdir(exist_ok=True)
    return make_test_settings(RegistrationSettings, directory, database_schema="test_billing_registration")


@pytest.fixture(scope="session")
def registration_url(registration_settings: RegistrationSettings) -> Iterator[str]:
    with serve_in_thread(create_registration_app(registration_settings)) as url:
        yield url


@pytest.fixture(scope="session")
def results_feed() -> Iterator[FakeResultsFeed]:
    feed = FakeResultsFeed()
    with serve_in_thread(feed.app) as url:
        feed.url = url
        yield feed


@pytest.fixture
def registration(
    registration_url: str, registration_settings: RegistrationSettings
) -> Iterator[httpx.Client]:
    """A client of the running registration service, on wiped tables."""
    wipe(
        registration_settings.resolved_database_url,
        registration_settings.resolved_schema,
        RegistrationTable.metadata,
    )
    with httpx.Client(base_url=registration_url, headers=internal_headers(), timeout=10) as client:
        yield client


def billing_settings(data_dir: Path, **overrides: Any) -> BillingSettings:
    return make_test_settings(BillingSettings, data_dir, **overrides)


@pytest.fixture
def client(
    data_dir: Path, registration: httpx.Client, registration_url: str, results_feed: FakeResultsFeed
) -> Iterator[TestClient]:
    """The billing app, started on wiped tables and reading both feeds."""
    results_feed.clear()
    settings = billing_settings(data_dir, registration_url=registration_url, results_url=results_feed.url)
    with service_client(create_app(settings), BillingTable.metadata) as client:
        yield client
