"""NUL (U+0000) refused at the door: PostgreSQL's text cannot hold it (the driver raises, a 500) and
SQLite's silently stores it, so a NUL in a request's path or query (400) or JSON body (422) is refused
alike on both databases, before any handler or transaction sees it."""

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kit.errors import INVALID_PARAMETER, INVALID_REQUEST, problem, problem_response

DETAIL = "Text may not contain NUL characters (U+0000)."
JSON_NUL = b"\\u0000"  # how a JSON string spells it
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def _is_json(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-type":
            media = value.split(b";", 1)[0].strip().lower()
            return media == b"application/json" or media.endswith(b"+json")
    return False


class NulGuard:
    """Pure ASGI, inside the request id and the access log (they see the refusal). A JSON body is read
    whole, checked and handed on as one message; any other body goes through untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        query: bytes = scope["query_string"]
        if "\x00" in scope["path"] or b"%00" in query or b"\x00" in query:
            refusal = problem(400, INVALID_PARAMETER, DETAIL, slug="invalid-parameter")
            await problem_response(refusal)(scope, receive, send)
            return
        if scope["method"] not in BODY_METHODS or not _is_json(scope):
            await self.app(scope, receive, send)
            return
        first = await _whole_body(receive)
        if JSON_NUL in first.get("body", b""):
            refusal = problem(422, INVALID_REQUEST, DETAIL, slug="validation-error")
            await problem_response(refusal)(scope, receive, send)
            return
        handed = False

        async def replay() -> Message:
            nonlocal handed
            if not handed:
                handed = True
                return first
            return await receive()

        await self.app(scope, replay, send)


async def _whole_body(receive: Receive) -> Message:
    """The request's body as one `http.request` message (or the disconnect that cut it short)."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return message
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
