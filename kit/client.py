"""Calling a sibling service synchronously: bounded timeouts, internal credentials, clear failures."""

from collections.abc import Callable
from typing import Any

import httpx
from fastapi import Request

from kit.auth import TokenSource
from kit.errors import BadGateway, ServiceUnavailable
from kit.requestid import current_request_id

DEFAULT_TIMEOUT = httpx.Timeout(5.0, connect=1.0)


class ServiceClient:
    """One pooled client per sibling service, opened once and shared by all requests."""

    def __init__(
        self, name: str, base_url: str, tokens: TokenSource, *, timeout: httpx.Timeout = DEFAULT_TIMEOUT
    ) -> None:
        """`name` is the sibling's service name: its tokens are minted for that audience alone."""
        self.name = name
        self.tokens = tokens
        self._client = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout)

    def get_json(self, path: str) -> dict[str, Any] | None:
        """The JSON body of a GET, None on 404; ServiceUnavailable when the service can't answer."""
        headers = {"authorization": self.tokens.header(self.name)}
        request_id = current_request_id()
        if request_id:
            headers["x-request-id"] = request_id
        try:
            response = self._client.get(path, headers=headers)
        except httpx.HTTPError as exc:
            raise ServiceUnavailable(
                f"The {self.name} service did not answer ({type(exc).__name__}).",
                slug="upstream-unavailable",
            ) from exc
        if response.status_code == 404:
            return None
        if response.status_code >= 400:
            # Any other refusal of a GET is our fault or theirs, never the client's: 502, not a 401/403
            # that the client would read as its own credentials failing.
            raise BadGateway(
                f"The {self.name} service answered {response.status_code}.", slug="upstream-error"
            )
        body: dict[str, Any] = response.json()
        return body

    def close(self) -> None:
        self._client.close()


def sibling(name: str) -> Callable[[Request], ServiceClient]:
    """A dependency giving routes the app's one client for sibling `name` (`build_service_app(siblings=)`)."""

    def client(request: Request) -> ServiceClient:
        found: ServiceClient = request.app.state.siblings[name]
        return found

    return client
