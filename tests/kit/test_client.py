"""The typed sibling call (kit.client): what reaches the sibling, and what each answer becomes."""

import asyncio
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
from pydantic import BaseModel
from starlette.types import Receive, Scope, Send

from kit import causes
from kit.auth import TokenSource
from kit.client import ServiceClient
from kit.errors import BadGateway, ServiceUnavailable
from kit.requestid import set_request_id
from kit.testing import TEST_SECRET, serve


class Visit(BaseModel):
    id: str
    patient_id: str


class Sibling:
    """A raw ASGI sibling: records each request's raw path and headers, answers what a test set."""

    def __init__(self) -> None:
        self.seen: list[tuple[bytes, dict[str, str]]] = []
        self.status, self.body, self.headers = (
            200,
            b'{"id": "v-1", "patient_id": "p-1"}',
            [(b"x-feed-head", b"42")],
        )
        self.released = threading.Event()
        self.released.set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        self.seen.append((scope["raw_path"], headers))
        while not self.released.is_set():
            await asyncio.sleep(0.01)
        await send({"type": "http.response.start", "status": self.status, "headers": self.headers})
        await send({"type": "http.response.body", "body": self.body})


@pytest.fixture
def sibling() -> Iterator[Sibling]:
    yield Sibling()


@pytest.fixture
def url(sibling: Sibling) -> Iterator[str]:
    with serve(sibling) as url:  # type: ignore[arg-type]
        yield url
        sibling.released.set()  # before the server stops: it waits for the requests it holds


def client(url: str, **kwargs: Any) -> ServiceClient:
    return ServiceClient("registration", url, TokenSource(TEST_SECRET, "service:billing", set()), **kwargs)


def get_both(registration: ServiceClient, visit_id: str = "v-1") -> list[Visit | None]:
    """The same call made blocking and awaited: both ways must agree."""
    return [outcome for outcome in failures_or_answers(registration, visit_id) if not _raise(outcome)]


def failures_or_answers(registration: ServiceClient, visit_id: str = "v-1") -> list[Any]:
    """What the blocking and the awaited call each gave back, or raised; the client closed after."""

    async def awaited() -> Any:
        try:
            return await registration.get(Visit, "/visits/{visit_id}", visit_id=visit_id)
        except Exception as exc:
            return exc
        finally:
            await registration.aclose()

    try:
        blocking: Any = registration.get_sync(Visit, "/visits/{visit_id}", visit_id=visit_id)
    except Exception as exc:
        blocking = exc
    return [blocking, asyncio.run(awaited())]


def _raise(outcome: Any) -> bool:
    if isinstance(outcome, Exception):
        raise outcome
    return False


@pytest.mark.parametrize("visit_id", ["a/../b", "../../patients", "x?y#z", "%2E%2E", "...", "v-1"])
def test_a_path_parameter_stays_one_segment(sibling: Sibling, url: str, visit_id: str) -> None:
    get_both(client(url), visit_id)
    for raw_path, _ in sibling.seen:  # blocking and awaited alike
        root, route, segment = raw_path.decode().split("/")
        assert (root, route, unquote(segment)) == ("", "visits", visit_id)


@pytest.mark.parametrize("visit_id", ["..", "."])
def test_a_dot_segment_names_nothing_and_is_not_sent(sibling: Sibling, url: str, visit_id: str) -> None:
    assert get_both(client(url), visit_id) == [None, None]
    assert sibling.seen == []


def test_the_answer_is_the_callers_model_and_the_sibling_feed_head_is_noted(
    sibling: Sibling, url: str
) -> None:
    with causes.caused_by():
        assert get_both(client(url), "v-1") == [Visit(id="v-1", patient_id="p-1")] * 2
        assert causes.current() == (causes.Cause("registration", 42),)


def test_credentials_and_request_id_travel(sibling: Sibling, url: str) -> None:
    set_request_id("req-77")
    try:
        get_both(client(url), "v-1")
    finally:
        set_request_id(None)
    for _, headers in sibling.seen:
        assert headers["authorization"].startswith("Bearer pf1.")
        assert headers["x-request-id"] == "req-77"


def test_404_is_none(sibling: Sibling, url: str) -> None:
    sibling.status, sibling.body = 404, b'{"status": 404}'
    assert get_both(client(url), "v-1") == [None, None]


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (200, b'{"id": "v-1"}'),  # patient_id missing
        (200, b"<html>oops</html>"),
        (500, b'{"status": 500}'),
        (401, b'{"status": 401}'),
    ],
)
def test_an_unusable_answer_is_502_upstream_error(
    sibling: Sibling, url: str, status: int, body: bytes
) -> None:
    sibling.status, sibling.body = status, body
    for failure in failures_or_answers(client(url)):
        assert isinstance(failure, BadGateway)
        assert (failure.status, failure.slug) == (502, "upstream-error")


def test_no_answer_in_time_is_503_upstream_unavailable_with_retry_after(sibling: Sibling, url: str) -> None:
    sibling.released.clear()  # the sibling takes the request and never answers
    for failure in failures_or_answers(client(url, timeout=httpx.Timeout(0.2, connect=1.0))):
        assert isinstance(failure, ServiceUnavailable)
        assert (failure.status, failure.slug) == (503, "upstream-unavailable")
        assert "Retry-After" in failure.headers


def test_no_connection_is_503_upstream_unavailable() -> None:
    with serve(Sibling()) as url:  # type: ignore[arg-type]
        pass  # stopped: nothing listens on its port any more
    for failure in failures_or_answers(client(url)):
        assert isinstance(failure, ServiceUnavailable)
        assert failure.slug == "upstream-unavailable"
