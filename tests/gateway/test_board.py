"""The calling board (gateway/board.py, board_feed.py): sessions, the screen's shape, the hub follower.

Over HTTP the gateway runs against a stand-in triage (board projections the test sets) and a stand-in
event hub (a log stream the test publishes into, and can cut).
"""

import json
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from gateway.app import create_app as create_gateway
from gateway.board import BoardSession, board_screen, open_session, seal_session
from gateway.board_feed import BoardFeed, SseParser, departments_of
from gateway.errors import BoardSessionMissing
from gateway.keys import hash_key
from gateway.patients import mint_patient_token
from gateway.routes import ADMIN_SCOPE
from gateway.upstreams import Upstreams
from kit.testing import TEST_SECRET, eventually, serve
from kit.wakeups import Wakeup
from tests.gateway.factories import bearer, gateway_settings
from tests.gateway.servers import _answer, _lifespan

# --- the session cookie ------------------------------------------------------------------------------


def test_a_session_cookie_opens_with_its_secret_until_it_expires() -> None:
    session = BoardSession("board-hall", hash_key("pf_key"), expires=1060)
    cookie = seal_session(TEST_SECRET, session)
    assert open_session(TEST_SECRET, cookie, now=1059) == session
    assert "pf_key" not in cookie
    with pytest.raises(BoardSessionMissing):
        open_session(TEST_SECRET, cookie, now=1060)
    with pytest.raises(BoardSessionMissing):
        open_session("another-secret", cookie, now=1000)


def test_forged_or_foreign_cookies_open_no_session() -> None:
    cookie = seal_session(TEST_SECRET, BoardSession("board-hall", "0" * 64, expires=2**40))
    prefix, _payload, signature = cookie.split(".")
    other = seal_session(TEST_SECRET, BoardSession("board-other", "1" * 64, expires=2**40)).split(".")[1]
    patient_token, _ = mint_patient_token(TEST_SECRET, client="board-hall", patient="p-1", lifetime=60)
    for candidate in (
        f"{prefix}.{other}.{signature}",  # another session under this signature
        patient_token,  # signed with the same secret, for another purpose
        "pb1.garbage",
        "pb1..",
        "pb1.é.x",
        "",
    ):
        with pytest.raises(BoardSessionMissing):
            open_session(TEST_SECRET, candidate)


# --- what a screen may see --------------------------------------------------------------------------


def ticket(number: str, status: str, counter: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"display_number": number, "name": "张*三", "status": status, "counter": counter, **extra}


def test_a_screen_copies_only_what_it_shows_latest_calls_and_the_next_few() -> None:
    projection = {
        "department": "internal",
        "suspended": False,
        "patient_id": "p-1",  # whatever triage might ever add stays out
        "tickets": [
            ticket("A003", "called", "2", visit_id="v-3"),
            ticket("A001", "called", "1"),
            *(ticket(f"A{n:03d}", "waiting", chief_complaint="胸痛") for n in range(4, 12)),
        ],
    }
    screen = board_screen(projection, calls_shown=1, next_shown=3)
    assert screen.model_dump() == {
        "department": "internal",
        "suspended": False,
        "calls": [{"display_number": "A003", "name": "张*三", "counter": "2"}],
        "next": [{"display_number": f"A{n:03d}", "name": "张*三"} for n in (4, 5, 6)],
        "waiting_count": 8,
    }


# --- the hub follower ---------------------------------------------------------------------------------


def test_board_events_name_the_departments_they_change() -> None:
    called = {"type": "ticket.called", "patient_id": "p", "data": {"department": "internal", "number": 3}}
    moved = {"type": "ticket.transferred", "data": {"department": "internal", "to_department": "cashier"}}
    assert departments_of(called) == {"internal"}
    assert departments_of(moved) == {"internal", "cashier"}
    assert departments_of({"type": "queue.suspended", "data": {"department": "er"}}) == {"er"}
    assert departments_of({"type": "report.final", "data": {"department": "internal"}}) == set()
    assert departments_of({"type": "ticket.called", "data": ["internal"]}) == set()
    assert departments_of({"type": 3}) == set()


def test_the_parser_joins_messages_split_across_chunks() -> None:
    parser = SseParser()
    stream = b': stream open\n\nid: 7\r\nevent: ticket.called\ndata: {"a":\ndata: 1}\n\nid: 8\nda'
    messages = list(parser.feed(stream))
    assert [(m.id, m.event, m.data) for m in messages] == [("7", "ticket.called", ['{"a":', "1}"])]
    rest = list(parser.feed(b"ta: {}\n\n: heartbeat\n\n"))
    assert [(m.id, m.data) for m in rest] == [("8", ["{}"])]


def test_a_department_counts_as_changed_after_its_event_or_a_reconnect() -> None:
    feed = BoardFeed(Upstreams(gateway_settings(None)), TEST_SECRET, retry_seconds=1)
    assert feed.version_of("internal") == feed.version_of("er") == 0
    feed.mark({"internal"})
    internal = feed.version_of("internal")
    assert internal > 0 and feed.version_of("er") == 0
    feed.mark(set())  # an event of no board wakes nobody
    assert feed.changes.version == internal
    feed.mark_everything()
    assert feed.version_of("er") > internal and feed.version_of("internal") > internal


# --- over HTTP, with stand-in triage and event hub ----------------------------------------------------


@dataclass
class Triage:
    """Board projections by department; counts reads."""

    boards: dict[str, dict[str, Any]] = field(default_factory=dict)
    reads: dict[str, int] = field(default_factory=dict)
    seen_authorization: list[str] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        path: str = scope["path"]
        if path == "/readyz":
            await _answer(send, 200, {"status": "ready"})
            return
        department = path.removeprefix("/queues/").removesuffix("/board")
        self.reads[department] = self.reads.get(department, 0) + 1
        self.seen_authorization.append(dict(scope["headers"])[b"authorization"].decode())
        board = self.boards.get(department, {"department": department, "suspended": False, "tickets": []})
        await _answer(send, 200, board)


@dataclass
class Hub:
    """The event hub's log stream: serves what the test publishes; `cut` ends the open streams."""

    events: list[dict[str, Any]] = field(default_factory=list)
    queries: list[str] = field(default_factory=list)
    published: Wakeup = field(default_factory=Wakeup)
    cuts: int = 0
    refusing: bool = False  # while set, new streams are answered 404
    refused: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def publish(self, event_type: str, department: str) -> int:
        with self.lock:
            position = len(self.events) + 1
            data = {"ticket_id": f"t-{position}", "department": department, "number": position}
            self.events.append(
                {"type": event_type, "position": position, "patient_id": "p-secret", "data": data}
            )
        self.published.bump()
        return position

    def cut(self) -> None:
        self.cuts += 1
        self.published.bump()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["path"] == "/readyz":
            await _answer(send, 200, {"status": "ready"})
            return
        if scope["method"] == "DELETE":  # a revocation first drops the client's subscriptions
            await _answer(send, 200, {"deleted": 0})
            return
        if self.refusing:
            self.refused += 1
            await _answer(send, 404, {})
            return
        query = scope["query_string"].decode()
        self.queries.append(query)
        sent = int(query.removeprefix("after=")) if query else len(self.events)
        cuts = self.cuts
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b": stream open\n\n", "more_body": True})
        while cuts == self.cuts and not self.published.closed:
            seen = self.published.version
            with self.lock:
                fresh = self.events[sent:]
            for event in fresh:
                message = f"id: {event['position']}\nevent: {event['type']}\ndata: {json.dumps(event)}\n\n"
                await send({"type": "http.response.body", "body": message.encode(), "more_body": True})
            sent += len(fresh)
            await self.published.wait_async(seen, 0.5)
        await send({"type": "http.response.body", "body": b""})


@dataclass
class BoardGateway:
    url: str
    triage: Triage
    hub: Hub
    feed: BoardFeed
    keys: dict[str, str]


def keys_file_with_kinds(path: Path, clients: dict[str, tuple[str, str, list[str]]]) -> Path:
    """`clients`: name -> (key, kind, scopes); only hashes are written."""
    entries = [
        {"client": name, "kind": kind, "sha256": hash_key(key), "scopes": scopes}
        for name, (key, kind, scopes) in clients.items()
    ]
    path.write_text(json.dumps({"keys": entries}), encoding="utf-8")
    return path


@pytest.fixture
def board_gateway(tmp_path: Path) -> Iterator[BoardGateway]:
    keys = {name: secrets.token_urlsafe(24) for name in ("board-hall", "nurse", "admin")}
    keys_file = keys_file_with_kinds(
        tmp_path / "keys.json",
        {
            "board-hall": (keys["board-hall"], "board", ["board:read"]),
            "nurse": (keys["nurse"], "nurse", ["triage:read", "board:read"]),
            "admin": (keys["admin"], "admin", [ADMIN_SCOPE]),
        },
    )
    triage, hub = Triage(), Hub()
    with serve(triage) as triage_url, serve(hub) as hub_url:
        settings = gateway_settings(
            keys_file,
            triage_url=triage_url,
            events_url=hub_url,
            board_refresh_seconds=300,  # only events (or a reconnect) make a stream re-read here
            board_heartbeat_seconds=0.2,
            board_feed_retry_seconds=0.05,
        )
        app = create_gateway(settings)
        try:
            with serve(app) as url:
                yield BoardGateway(url, triage, hub, app.state.board_feed, keys)
        finally:
            hub.published.close()  # the stand-in's streams end, so the servers can stop


def session_cookie(gateway: BoardGateway, key: str) -> dict[str, str]:
    opened = httpx.post(f"{gateway.url}/v1/board-sessions", headers=bearer(key), timeout=5)
    assert opened.status_code == 201, opened.text
    return {"cookie": f"pf_board={opened.cookies['pf_board']}"}


def boards_of(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    """The screens a board stream sends, parsed (heartbeats and `retry:` skipped)."""
    event = None
    for line in lines:
        if line.startswith("event: "):
            event = line.removeprefix("event: ")
        elif line.startswith("data: ") and event == "board":
            yield json.loads(line.removeprefix("data: "))


def test_only_a_board_kind_key_opens_a_session(board_gateway: BoardGateway) -> None:
    url = f"{board_gateway.url}/v1/board-sessions"
    refused = httpx.post(url, headers=bearer(board_gateway.keys["nurse"]), timeout=5)  # holds board:read
    assert refused.status_code == 403 and "set-cookie" not in refused.headers
    assert refused.headers["content-type"].startswith("application/problem+json")
    opened = httpx.post(url, headers=bearer(board_gateway.keys["board-hall"]), timeout=5)
    assert opened.status_code == 201 and opened.json()["client"] == "board-hall"
    assert board_gateway.keys["board-hall"] not in opened.headers["set-cookie"]


def test_the_stream_re_reads_its_board_on_its_departments_events_only(board_gateway: BoardGateway) -> None:
    triage, hub, feed = board_gateway.triage, board_gateway.hub, board_gateway.feed
    cookie = session_cookie(board_gateway, board_gateway.keys["board-hall"])
    url = f"{board_gateway.url}/v1/boards/internal/stream"
    with httpx.stream("GET", url, headers=cookie, timeout=10) as stream:
        assert stream.status_code == 200
        screens = boards_of(stream.iter_lines())
        assert next(screens)["calls"] == []
        eventually(lambda: feed.following, what="the gateway to follow the hub")
        triage.boards["internal"] = {
            "department": "internal",
            "suspended": False,
            "tickets": [ticket("A001", "called", "3")],
        }
        hub.publish("ticket.queued", "cashier")  # another department's: no board of it is open
        last = hub.publish("ticket.called", "internal")
        screen = next(screens)
        assert screen["calls"] == [{"display_number": "A001", "name": "张*三", "counter": "3"}]
        assert "cashier" not in triage.reads
        # Triage is asked as the board client itself (its internal token), never as the gateway.
        assert all(header.startswith("Bearer ") for header in triage.seen_authorization)

        # The hub's stream breaks and the hub refuses for a while; the board changes meanwhile, with no
        # event. Once the hub is back the gateway follows after the last position it saw, and every
        # board re-reads once (an event might have been missed in between).
        eventually(lambda: feed.position == last, what="the gateway to see the call's event")
        hub.refusing = True
        hub.cut()
        eventually(lambda: hub.refused, what="the gateway to try the hub again")
        triage.boards["internal"]["tickets"].append(ticket("A002", "called", "1"))
        hub.refusing = False
        screen = next(screens)
        assert [c["display_number"] for c in screen["calls"]] == ["A001", "A002"]
        assert hub.queries[-1] == f"after={last}"


def test_a_revoked_board_key_ends_its_sessions_and_streams(board_gateway: BoardGateway) -> None:
    keys = board_gateway.keys
    cookie = session_cookie(board_gateway, keys["board-hall"])
    url = f"{board_gateway.url}/v1/boards/internal"
    assert httpx.get(url, headers=cookie, timeout=5).status_code == 200
    with httpx.stream("GET", f"{url}/stream", headers=cookie, timeout=10) as stream:
        lines = stream.iter_lines()
        assert next(boards_of(lines))["department"] == "internal"
        revoked = httpx.post(
            f"{board_gateway.url}/v1/admin/clients/board-hall/revoke",
            headers=bearer(keys["admin"]),
            timeout=5,
        )
        assert revoked.status_code == 200, revoked.text
        assert list(boards_of(lines)) == []  # the stream ends by itself at its next heartbeat
    refused = httpx.get(url, headers=cookie, timeout=5)
    assert refused.status_code == 401
    assert refused.headers["content-type"].startswith("application/problem+json")


def test_a_stream_ends_at_half_its_session_and_its_answer_renews_the_cookie(tmp_path: Path) -> None:
    key = secrets.token_urlsafe(24)
    keys_file = keys_file_with_kinds(tmp_path / "keys.json", {"board-hall": (key, "board", ["board:read"])})
    triage, hub = Triage(), Hub()
    with serve(triage) as triage_url, serve(hub) as hub_url:
        settings = gateway_settings(
            keys_file, triage_url=triage_url, events_url=hub_url, board_session_seconds=2
        )
        try:
            with serve(create_gateway(settings)) as url:
                opened = httpx.post(f"{url}/v1/board-sessions", headers=bearer(key), timeout=5)
                cookie = {"cookie": f"pf_board={opened.cookies['pf_board']}"}
                with httpx.stream("GET", f"{url}/v1/boards/internal/stream", headers=cookie, timeout=10) as s:
                    renewed = s.headers["set-cookie"].lower()
                    assert "httponly" in renewed and "path=/v1/boards" in renewed
                    assert s.cookies["pf_board"] != opened.cookies["pf_board"] or "max-age=" in renewed
                    assert len(list(boards_of(s.iter_lines()))) == 1  # the screen, then the end
        finally:
            hub.published.close()
