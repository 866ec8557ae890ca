"""A request id that follows one request across every hop (header `X-Request-ID`).

An incoming id is adopted only if it is short, plain ASCII and carries no personal number: it is
echoed, forwarded, logged and stored in clear (logs mask message text, not the id), so a client that
puts an identity or mobile number there gets a fresh id instead.
"""

import os
import random
import re
from contextvars import ContextVar

from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID_HEADER = "x-request-id"
_VALID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
# An identity number (15 digits, or 17 and a check digit or X) and a mainland mobile number, as the
# log masker sees them, inside any longer run of digits too.
_PERSONAL_NUMBER = re.compile(r"\d{15}|\d{17}[Xx]|(?<!\d)1[3-9]\d{9}(?!\d)")
_SEPARATED_DIGITS = re.compile(r"[0-9][0-9._:-]*[0-9Xx]")
_SEPARATORS = re.compile(r"[._:-]")
_PERSONAL_LENGTH = re.compile(r"\d{15}|\d{17}[\dXx]|1[3-9]\d{9}")
# The shortest personal number is 11 digits in a row (a mobile): a separator-free id without such a run
# holds none, whatever the other checks would say.
UNSAFE_MINTED_ID = re.compile(r"\d{11}")
_request_id: ContextVar[str | None] = ContextVar("request_id", default=None)


def is_safe_request_id(value: str) -> bool:
    """Short, plain and free of anything that could be a person's identity or phone number."""
    if not _VALID.match(value) or _PERSONAL_NUMBER.search(value):
        return False
    # Separators do not hide a number: 110105-19491231-002X and 138-0013-8000 are still numbers
    # (a run of exactly their length; an all-digit uuid is not one).
    runs = (_SEPARATORS.sub("", run) for run in _SEPARATED_DIGITS.findall(value))
    return not any(_PERSONAL_LENGTH.fullmatch(digits) for digits in runs)


# Request ids correlate, they guard nothing: drawn in-process, not from the kernel. `uuid4` reads
# `os.urandom`, a system call that releases the GIL, so the event loop waited for a worker thread's
# slice (up to 5 ms) in every request that brought no id.
_ids = random.Random(os.urandom(32))
os.register_at_fork(after_in_child=lambda: _ids.seed(os.urandom(32)))  # a forked worker draws its own


def new_request_id() -> str:
    """A fresh id of 32 hex digits; one may by chance hold 15 digits in a row, and must pass every
    hop's check (`is_safe_request_id`). It has no separators, so no run of 11 digits is the whole
    check: one regex search instead of the three of an id a client sent."""
    while UNSAFE_MINTED_ID.search(request_id := f"{_ids.getrandbits(128):032x}"):
        pass
    return request_id


def current_request_id() -> str | None:
    return _request_id.get()


def set_request_id(value: str | None) -> None:
    _request_id.set(value)


REQUEST_ID_SCOPE_KEY = "patientflow.request_id"


class RequestIdMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware cost): adopt a safe incoming id or mint one."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"x-request-id"), "")
        request_id = incoming if is_safe_request_id(incoming) else new_request_id()
        token = _request_id.set(request_id)
        # The 500 handler runs outside this middleware, after the id is reset: it finds it here.
        scope[REQUEST_ID_SCOPE_KEY] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [
                    *message["headers"],
                    (b"x-request-id", request_id.encode("latin-1")),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            _request_id.reset(token)
