"""The calling board (叫号屏): a waiting-room page per department, live over SSE, with a chime.

`GET /board/{department}` is a static page (`gateway/static/board/`). A screen is provisioned once:
the page asks for a `board`-kind key and sends it in the `Authorization` header of
`POST /v1/board-sessions`, which answers with a session cookie (HttpOnly, SameSite=Strict, Secure over
https, path `/v1/boards`) holding the client's name and its key's hash, signed, never the key. The page
then reads `GET /v1/boards/{department}` and follows `GET /v1/boards/{department}/stream` with that
cookie (an EventSource cannot send headers). A key never travels in a URL: board URLs with a query
string are refused.

What reaches the browser is built here from triage's board projection (`GET /queues/{d}/board`, asked
as the board client): display numbers, masked names, rooms; the hub's events (which name patients and
visits) only tell the gateway *when* to re-read (`gateway.board_feed`). A session works only while its
client's key does (revoked or rotated away: 401), and the stream ends at half the session's life, so
the EventSource reconnects and its answer renews the cookie.
"""

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path as FilePath
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response, status
from fastapi.responses import FileResponse, StreamingResponse
from pydantic import ValidationError

from gateway.board_feed import BoardFeed
from gateway.config import GatewaySettings
from gateway.errors import (
    BadGateway,
    BoardSessionForbidden,
    BoardSessionMissing,
    KeyInUrlRefused,
    RouteNotFound,
)
from gateway.keys import Caller, KnownKey, hash_key, presented_key
from gateway.proxy import STREAM_RESPONSE_HEADERS, Proxy
from gateway.schemas import BoardCall, BoardNext, BoardScreen, BoardSessionPublic
from gateway.signed import TokenForged, TokenMalformed, seal, unseal
from gateway.upstreams import Upstreams
from kit.errors import ProblemError, problem_responses
from kit.requestid import current_request_id

BOARD_SCOPE = "board:read"
BOARD_KIND = "board"
COOKIE_NAME = "pf_board"
COOKIE_PATH = "/v1/boards"
TOKEN_PREFIX = "pb1"
_PURPOSE = b"patientflow gateway board-session v1"  # no other signed token can pass as a board session
STATIC_DIR = FilePath(__file__).parent / "static" / "board"
DEPARTMENT_PATTERN = r"^[a-z0-9-]{1,32}$"  # triage's queue names
Department = Annotated[str, Path(pattern=DEPARTMENT_PATTERN, examples=["internal"])]
# The page runs only its own script and talks only to this gateway; a native form submit (which would
# put the key in a URL) is blocked by `form-action 'none'` even if the script failed to load.
PAGE_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
    "cache-control": "no-store",
}


# --- the session cookie ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BoardSession:
    """What a board cookie says: the board client, its key's hash, and until when (epoch seconds)."""

    client: str
    key_hash: str
    expires: int


def seal_session(secret: str, session: BoardSession) -> str:
    claims = {"cli": session.client, "kh": session.key_hash, "exp": session.expires}
    return seal(secret, purpose=_PURPOSE, prefix=TOKEN_PREFIX, claims=claims)


def open_session(secret: str, cookie: str, *, now: float | None = None) -> BoardSession:
    """The session a cookie carries; BoardSessionMissing (401) if it is forged, malformed or expired."""
    invalid = BoardSessionMissing("The board session is not valid: provision the screen again.")
    try:
        claims = unseal(secret, cookie, purpose=_PURPOSE, prefix=TOKEN_PREFIX)
        session = BoardSession(str(claims["cli"]), str(claims["kh"]), int(claims["exp"]))
    except (TokenMalformed, TokenForged, KeyError, TypeError, ValueError):
        raise invalid from None
    if session.expires <= (time.time() if now is None else now):
        raise BoardSessionMissing("The board session has expired: provision the screen again.")
    return session


# --- what a screen may see ------------------------------------------------------------------------


def board_screen(projection: dict[str, Any], *, calls_shown: int, next_shown: int) -> BoardScreen:
    """The screen's view of triage's board projection: only the fields a screen shows, copied one by one
    (anything else triage might ever add stays out), the latest calls and the next few."""
    tickets = projection.get("tickets") or []
    called = [t for t in tickets if t.get("status") == "called"]
    waiting = [t for t in tickets if t.get("status") == "waiting"]
    return BoardScreen(
        department=str(projection["department"]),
        suspended=bool(projection.get("suspended")),
        calls=[
            BoardCall(display_number=t["display_number"], name=t.get("name"), counter=t.get("counter"))
            for t in called[:calls_shown]
        ],
        next=[
            BoardNext(display_number=t["display_number"], name=t.get("name")) for t in waiting[:next_shown]
        ],
        waiting_count=len(waiting),
    )


class BoardReader:
    """Board sessions and screens: who the cookie stands for, and the screen triage's projection gives."""

    def __init__(self, settings: GatewaySettings, proxy: Proxy, upstreams: Upstreams, feed: BoardFeed):
        self.settings = settings
        self.proxy = proxy
        self.upstreams = upstreams
        self.feed = feed

    def key_of(self, session: BoardSession) -> KnownKey:
        """The board client's key a session stands for, while it still works and still opens boards."""
        try:
            known = self.proxy.keys.identify_hash(session.key_hash)
        except ProblemError:
            raise BoardSessionMissing(
                "The board key was revoked or replaced: provision the screen again."
            ) from None
        caller = known.caller
        if caller.name != session.client or caller.kind != BOARD_KIND or BOARD_SCOPE not in caller.scopes:
            raise BoardSessionMissing()
        return known

    def session_of(self, request: Request) -> tuple[BoardSession, Caller]:
        """The request's board session and its caller, counted against the client's rate limit."""
        if request.url.query:
            raise KeyInUrlRefused()
        cookie = request.cookies.get(COOKIE_NAME)
        if not cookie:
            raise BoardSessionMissing()
        session = open_session(self.settings.internal_secret, cookie)
        return session, self.proxy.admit(self.key_of(session))

    def new_session(self, caller: Caller, key_hash: str) -> BoardSession:
        expires = int(time.time()) + self.settings.board_session_seconds
        return BoardSession(caller.name, key_hash, expires)

    def set_cookie(self, request: Request, response: Response, session: BoardSession) -> None:
        response.set_cookie(
            COOKIE_NAME,
            seal_session(self.settings.internal_secret, session),
            max_age=max(0, session.expires - int(time.time())),
            path=COOKIE_PATH,
            secure=request.url.scheme == "https",
            httponly=True,
            samesite="strict",
        )

    def renew_if_due(
        self, request: Request, response: Response, session: BoardSession, caller: Caller
    ) -> None:
        """A fresh cookie once half the session's life has gone (a screen in use never lapses)."""
        if session.expires - time.time() < self.settings.board_session_seconds / 2:
            self.set_cookie(request, response, self.new_session(caller, session.key_hash))

    async def screen(self, caller: Caller, department: str) -> BoardScreen:
        """The department's screen, from triage's board projection read as the board client."""
        headers = [
            (b"authorization", caller.tokens.header("triage").encode("latin-1")),
            (b"x-request-id", (current_request_id() or "").encode("latin-1")),
            (b"accept", b"application/json"),
        ]
        answer = await self.upstreams.send("triage", "GET", f"/queues/{department}/board", headers=headers)
        if answer.status_code != 200:
            raise BadGateway(f"The triage service answered {answer.status_code}.", service="triage")
        try:
            return board_screen(
                answer.json(),
                calls_shown=self.settings.board_calls_shown,
                next_shown=self.settings.board_next_shown,
            )
        except (ValueError, KeyError, TypeError, AttributeError, ValidationError):
            raise BadGateway(
                "The triage service sent a board the gateway cannot read.", service="triage"
            ) from None

    async def stream(self, session: BoardSession, department: str) -> AsyncIterator[str]:
        """Board screens as server-sent events (`event: board`), the current one first, then each change.

        Ends when the gateway stops, when the session stops working, or at half the session's life (the
        browser reconnects and the new stream's answer renews the cookie).
        """
        feed, settings = self.feed, self.settings
        feed.ensure_following()
        renew_at = session.expires - settings.board_session_seconds / 2
        yield "retry: 1000\n\n"
        last_sent: str | None = None
        last_read = 0.0
        quiet_since = time.monotonic()
        seen = feed.changes.version
        read_version = -1
        while not feed.changes.closed and time.time() < renew_at:
            try:
                caller = self.key_of(session).caller
            except BoardSessionMissing:
                return  # the key was revoked: the stream ends (a reconnect is then refused with 401)
            due = feed.version_of(department) != read_version
            if due or time.monotonic() - last_read >= settings.board_refresh_seconds:
                read_version = feed.version_of(department)  # before reading: a change meanwhile re-reads
                last_read = time.monotonic()
                try:
                    payload = (await self.screen(caller, department)).model_dump_json()
                except ProblemError:
                    payload = None  # triage away: the screen keeps what it shows and says it is stale
                message = f"event: board\ndata: {payload}\n\n" if payload else "event: stale\ndata: {}\n\n"
                if message != last_sent:
                    yield message
                    last_sent, quiet_since = message, time.monotonic()
            elif time.monotonic() - quiet_since >= settings.board_heartbeat_seconds:
                yield ": heartbeat\n\n"
                quiet_since = time.monotonic()
            wait = min(
                settings.board_heartbeat_seconds - (time.monotonic() - quiet_since),
                settings.board_refresh_seconds - (time.monotonic() - last_read),
                renew_at - time.time(),
            )
            await feed.changes.wait_async(seen, max(wait, 0.0))
            seen = feed.changes.version


def board_router(settings: GatewaySettings, proxy: Proxy, upstreams: Upstreams, feed: BoardFeed) -> APIRouter:
    """The board page, its sessions, screens and streams; include it before the `/v1/{path}` catch-all."""
    router = APIRouter(tags=["calling board"])
    reader = BoardReader(settings, proxy, upstreams, feed)
    # Opened by the board session cookie alone (never by a key), for a board client holding `board:read`.
    cookie_access = {"x-required-scope": BOARD_SCOPE, "x-board-session": COOKIE_NAME}

    @router.get("/board/{department}", include_in_schema=False)
    async def board_page(request: Request, department: Department) -> FileResponse:
        """The board page for one department (the same static page; its script reads the path)."""
        if request.url.query:
            raise KeyInUrlRefused()
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html", headers=PAGE_HEADERS)

    @router.get("/board-static/{name}", include_in_schema=False)
    async def board_asset(name: Annotated[str, Path(pattern=r"^board\.(js|css)$")]) -> FileResponse:
        """The page's script and style sheet."""
        media_type = "text/javascript" if name.endswith(".js") else "text/css"
        headers = {"x-content-type-options": "nosniff", "cache-control": "no-cache"}
        path = STATIC_DIR / name
        if not path.is_file():
            raise RouteNotFound()
        return FileResponse(path, media_type=media_type, headers=headers)

    @router.post(
        "/v1/board-sessions",
        status_code=status.HTTP_201_CREATED,
        responses=problem_responses(BoardSessionForbidden, KeyInUrlRefused),
        openapi_extra={"x-client-kinds": [BOARD_KIND], "x-required-scope": BOARD_SCOPE},
    )
    async def open_board_session(request: Request, response: Response) -> BoardSessionPublic:
        """Provision a waiting-room screen: a `board` client's key (in `Authorization`, never in the URL)
        buys a session cookie the screen's page then uses for its board and stream (only those).

        403 for any client that is not of kind `board` with `board:read`; 400 for a query string.
        """
        if request.url.query:
            raise KeyInUrlRefused()
        caller = await proxy.authenticate(request, act_for_patient=False)
        if caller.kind != BOARD_KIND or BOARD_SCOPE not in caller.scopes:
            raise BoardSessionForbidden(caller.kind)
        headers = request.headers
        key_hash = hash_key(presented_key(headers.get("authorization"), headers.get("x-api-key")))
        session = reader.new_session(caller, key_hash)
        reader.set_cookie(request, response, session)
        response.headers["cache-control"] = "no-store"
        return BoardSessionPublic(client=caller.name, expires_at=datetime.fromtimestamp(session.expires, UTC))

    @router.get(
        "/v1/boards/{department}",
        responses=problem_responses(BoardSessionMissing, KeyInUrlRefused),
        openapi_extra=cookie_access,
    )
    async def read_board_screen(request: Request, response: Response, department: Department) -> BoardScreen:
        """What the department's waiting-room screen shows: current calls (number, masked name, room) and
        the next few. Needs the board session cookie from `POST /v1/board-sessions` (401 without)."""
        session, caller = reader.session_of(request)
        screen = await reader.screen(caller, department)
        reader.renew_if_due(request, response, session, caller)
        response.headers["cache-control"] = "no-store"
        return screen

    @router.get(
        "/v1/boards/{department}/stream",
        response_class=StreamingResponse,
        responses={
            200: {"content": {"text/event-stream": {}}},
            **problem_responses(BoardSessionMissing, KeyInUrlRefused),
        },
        openapi_extra=cookie_access,
    )
    async def stream_board_screen(request: Request, department: Department) -> StreamingResponse:
        """The department's screen as server-sent events: `event: board` with the whole screen, first at
        once, then whenever a call, a finish or any other queue change alters it (`event: stale` while
        triage cannot be read). Needs the board session cookie; the answer renews it."""
        session, caller = reader.session_of(request)
        renewed = reader.new_session(caller, session.key_hash)
        response = StreamingResponse(
            reader.stream(renewed, department),
            media_type="text/event-stream",
            headers=STREAM_RESPONSE_HEADERS,
        )
        reader.set_cookie(request, response, renewed)
        return response

    return router
