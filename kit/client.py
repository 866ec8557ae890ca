"""Calling a sibling service: one typed GET, awaited on request paths, blocking in worker threads.

`await client.get(Visit, "/visits/{visit_id}", visit_id=...)` (or `client.get_sync(...)` in a feed
consumer's thread) quotes each path parameter, sends the internal token and the request id, and gives
back the body validated into the caller's model — None for 404. Every other outcome is a problem:
no answer in time or no connection → 503 `upstream-unavailable` (with Retry-After); any other status
or a body the model refuses → 502 `upstream-error`. The sibling's `x-feed-head` is noted as a cause
(`kit.causes`), so what this unit of work records is logged after what the sibling had committed.

Call it before the unit of work opens — from an async dependency declared before `SessionDep`, or a
feed's `resolve` hook — never while holding the database gate or a transaction.
"""

from collections.abc import Awaitable, Callable
from typing import TypeVar
from urllib.parse import quote

import aiohttp
import httpx
from fastapi import Request
from httpx_aiohttp import AiohttpTransport
from pydantic import BaseModel, ValidationError

from kit.auth import TokenSource
from kit.causes import FEED_HEAD_HEADER, Cause, note
from kit.errors import BadGateway, ServiceUnavailable
from kit.requestid import REQUEST_ID_HEADER, current_request_id

# The connect timeout also bounds the wait for a free pooled connection (aiohttp counts it as connecting):
# on a loaded host a burst of calls can wait longer than a handshake takes. A sibling that is down still
# refuses at once.
DEFAULT_TIMEOUT = httpx.Timeout(5.0, connect=3.0)
RETRY_AFTER_SECONDS = 2
POOL_SIZE = 32
# Everything a call may raise instead of answering (httpx-aiohttp lets some aiohttp errors through).
TRANSPORT_ERRORS = (httpx.HTTPError, aiohttp.ClientError, OSError)  # OSError includes TimeoutError
Model = TypeVar("Model", bound=BaseModel)
DOT_SEGMENTS = frozenset({".", ".."})


class ServiceClient:
    """One pooled client per sibling service, opened once and shared by all requests and workers.

    The async pool is httpx over aiohttp (httpcore's own async pool collapses under concurrency,
    perf-baseline.md), made on first use inside the event loop; the blocking pool is plain httpx.
    """

    def __init__(
        self, name: str, base_url: str, tokens: TokenSource, *, timeout: httpx.Timeout = DEFAULT_TIMEOUT
    ) -> None:
        """`name` is the sibling's service name: its tokens are minted for that audience alone."""
        self.name = name
        self.tokens = tokens
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._sync: httpx.Client | None = None
        self._async: httpx.AsyncClient | None = None

    async def get(self, model: type[Model], path: str, **path_params: str) -> Model | None:
        """The GET's body as `model`, None on 404; for request paths, before the unit of work opens."""
        url = self._url(path, path_params)
        if url is None:
            return None
        try:
            response = await self._async_client().get(url, headers=self._headers())
        except TRANSPORT_ERRORS as exc:
            raise self._unavailable(exc) from exc
        return self._read(response, model)

    def get_sync(self, model: type[Model], path: str, **path_params: str) -> Model | None:
        """`get` for worker threads (a feed's `resolve` hook): blocks, maps every failure the same way."""
        url = self._url(path, path_params)
        if url is None:
            return None
        try:
            response = self._sync_client().get(url, headers=self._headers())
        except TRANSPORT_ERRORS as exc:
            raise self._unavailable(exc) from exc
        return self._read(response, model)

    def _url(self, path: str, path_params: dict[str, str]) -> str | None:
        """The path with each parameter quoted as one segment; None when one is "." or "..", which names
        nothing on any sibling and which URL libraries would resolve into another route (aiohttp's
        yarl decodes %2E and removes dot segments), so the answer is "not found" without asking."""
        if any(value in DOT_SEGMENTS for value in path_params.values()):
            return None
        return path.format_map({key: quote_segment(value) for key, value in path_params.items()})

    def _headers(self) -> dict[str, str]:
        headers = {"authorization": self.tokens.header(self.name)}
        request_id = current_request_id()
        if request_id:
            headers[REQUEST_ID_HEADER] = request_id
        return headers

    def _unavailable(self, exc: BaseException) -> ServiceUnavailable:
        return ServiceUnavailable(
            f"The {self.name} service did not answer ({type(exc).__name__}).",
            slug="upstream-unavailable",
            retry_after=RETRY_AFTER_SECONDS,
        )

    def _read(self, response: httpx.Response, model: type[Model]) -> Model | None:
        """The answer as the caller's model: the one place statuses and bodies become problems."""
        self._note_head(response)
        if response.status_code == 404:
            return None
        if response.status_code >= 400:
            # Any other refusal of a GET is our fault or theirs, never the client's: 502, not a 401/403
            # that the client would read as its own credentials failing.
            raise BadGateway(
                f"The {self.name} service answered {response.status_code}.", slug="upstream-error"
            )
        try:
            return model.model_validate_json(response.content)
        except ValidationError:
            raise BadGateway(
                f"The {self.name} service answered with a body this service cannot read.",
                slug="upstream-error",
            ) from None

    def _note_head(self, response: httpx.Response) -> None:
        head = response.headers.get(FEED_HEAD_HEADER, "")
        if head.isascii() and head.isdigit():
            note(Cause(self.name, int(head)))

    def _sync_client(self) -> httpx.Client:
        if self._sync is None:
            self._sync = httpx.Client(base_url=self.base_url, timeout=self.timeout, trust_env=False)
        return self._sync

    def _async_client(self) -> httpx.AsyncClient:
        if self._async is None:
            limits = httpx.Limits(max_connections=POOL_SIZE, max_keepalive_connections=POOL_SIZE)
            self._async = httpx.AsyncClient(
                base_url=self.base_url,
                timeout=self.timeout,
                limits=limits,
                transport=AiohttpTransport(limits=limits, client=self._aiohttp_session),
                trust_env=False,
            )
        return self._async

    def _aiohttp_session(self) -> aiohttp.ClientSession:
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=POOL_SIZE))
        session._retry_connection = False  # a GET is not resent behind the caller's back either
        return session

    def close(self) -> None:
        """Close the blocking pool (the async one closes in `aclose`)."""
        if self._sync is not None:
            self._sync.close()

    async def aclose(self) -> None:
        """Close both pools; call it in the app's lifespan, in the loop that used the async one."""
        self.close()
        if self._async is not None:
            await self._async.aclose()


def quote_segment(value: str) -> str:
    """`value` as one path segment: an id holding "/", "?" or "#" never reaches another route."""
    return quote(value, safe="")


def sibling(name: str) -> Callable[[Request], Awaitable[ServiceClient]]:
    """A dependency giving routes the app's one client for sibling `name` (`build_service_app(siblings=)`)."""

    async def client(request: Request) -> ServiceClient:  # async: no thread hop to look it up
        found: ServiceClient = request.app.state.siblings[name]
        return found

    return client
