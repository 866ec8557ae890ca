"""The calling board page (叫号屏) in real headless Chromium, against the real system.

A screen is provisioned once with the board key (typed into the page, sent in a header, never in a
URL); from then on its cookie alone opens that board. A call made through the API appears on the
screen over the board stream, with a chime, and nothing the browser receives (page, JSON answers,
server-sent events) names or identifies a patient or says anything clinical.
"""

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from kit.testing import HTTP_TIMEOUT_SECONDS
from tests.e2e.clients import Gateway, assert_problem, ok, queued_visit, unique_department

CHROMIUM = "/usr/bin/chromium"  # Debian's package; `./run test` installs it
COMPLAINT = "右下腹痛伴发热"
NOTE = "疑似阑尾炎"
NAMES = ("司马相如", "李清照")
GRACE_EXCEEDED = "timeout graceful shutdown exceeded"  # uvicorn, cancelling what held it
CALL_WAIT_MS = 10_000  # only keeps a broken test from hanging; the latency itself is measured


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        # A waiting-room screen is a kiosk: it may play sound without anyone touching it first.
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--autoplay-policy=no-user-gesture-required"]
        )
        yield chromium
        chromium.close()


def queued_patient(gateway: Gateway, department: str, name: str) -> dict[str, Any]:
    """An identified patient, assessed with clinical text, holding a ticket in `department`."""
    return queued_visit(gateway, department, name=name, complaint=COMPLAINT, note=NOTE)


def secrets_of(people: list[dict[str, Any]]) -> list[str]:
    """Everything that must never reach a board screen."""
    found = [COMPLAINT, NOTE, *NAMES, "patient_id", "visit_id", "ticket_id", "chief_complaint"]
    for person in people:
        found += [person["patient"]["id"], person["patient"]["id_number"], person["patient"]["phone"]]
        found += [person["visit"]["id"], person["ticket"]["id"]]
    return found


class Screen:
    """A page in its own browser context, recording every answer and server-sent event it received."""

    def __init__(self, browser: Browser) -> None:
        self.context = browser.new_context()
        self.page: Page = self.context.new_page()
        self.bodies: list[str] = []
        self.events: list[str] = []
        self.urls: list[str] = []
        cdp = self.context.new_cdp_session(self.page)
        cdp.send("Network.enable")
        cdp.on("Network.eventSourceMessageReceived", lambda message: self.events.append(message["data"]))
        self.page.on("request", lambda request: self.urls.append(request.url))
        self.page.on("requestfinished", self._keep_body)

    def _keep_body(self, request: Any) -> None:
        response = request.response()
        if response is not None and "/stream" not in request.url:
            self.bodies.append(response.text())

    def board_events(self) -> list[dict[str, Any]]:
        return [json.loads(data) for data in self.events if data.startswith("{") and data != "{}"]

    def calls(self) -> list[str]:
        return list(self.page.locator("#calls .number").all_text_contents())

    def close(self) -> None:
        self.context.close()


def provision(screen: Screen, url: str, key: str) -> None:
    page = screen.page
    page.goto(url)
    page.wait_for_selector("#provision:not([hidden])")
    page.fill("#board-key", key)
    page.click("#provision button[type=submit]")
    page.wait_for_selector("body[data-state=live][data-stream=open]")


def test_a_call_through_the_api_appears_on_the_screen_with_a_chime_and_nothing_private(
    gateway: Gateway, browser: Browser
) -> None:
    department = unique_department()
    people = [queued_patient(gateway, department, name) for name in NAMES]
    first, second = (person["ticket"]["display_number"] for person in people)
    board_url = f"{gateway.system.url('gateway')}/board/{department}"
    key = gateway.system.api_keys["board-dev"]
    screen = Screen(browser)
    try:
        provision(screen, board_url, key)
        page = screen.page
        assert screen.calls() == []
        assert page.locator("#next .number").all_text_contents() == [first, second]
        assert page.locator("#next .name").all_text_contents() == ["司**如", "李*照"]
        cookie = next(c for c in screen.context.cookies() if c["name"] == "pf_board")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/v1/boards"
        assert key not in cookie["value"]

        latencies = []
        for number, counter in ((first, "5"), (second, "2")):
            sent = time.time()
            ok(gateway.doctor.post(f"/v1/queues/{department}/call-next", json={"counter": counter}))
            expect(page.locator("#calls .number").first).to_have_text(number, timeout=CALL_WAIT_MS)
            latencies.append(int(page.evaluate("document.body.dataset.renderedAt")) / 1000 - sent)
        print(f"\nboard latency, API call answered -> number on screen: {[round(s, 3) for s in latencies]} s")
        assert screen.calls() == [second, first]  # the latest call on top
        assert page.locator("#calls .counter").all_text_contents() == ["请到 2 号", "请到 5 号"]
        assert page.locator("#calls .name").first.text_content() == "李*照"
        assert page.evaluate("document.body.dataset.chimes") == "2"  # one chime per new call
        assert page.evaluate("document.body.dataset.audio") == "running"

        # Reloaded (a screen restarted), the board comes back from its cookie alone: no key asked.
        page.reload()
        page.wait_for_selector("body[data-state=live]")
        assert page.locator("#provision").is_hidden() and screen.calls() == [second, first]

        received = "\n".join([page.content(), *screen.bodies, *screen.events, *screen.urls])
        leaked = [secret for secret in secrets_of(people) if secret in received]
        assert not leaked, f"the board page received {leaked}"
        assert key not in "\n".join(screen.urls)
    finally:
        screen.close()


def test_a_screen_without_a_session_asks_for_the_key_and_refuses_a_wrong_one(
    gateway: Gateway, browser: Browser
) -> None:
    screen = Screen(browser)
    try:
        screen.page.goto(f"{gateway.system.url('gateway')}/board/{unique_department()}")
        screen.page.wait_for_selector("#provision:not([hidden])")
        screen.page.fill("#board-key", gateway.system.api_keys["nurse-dev"])
        screen.page.click("#provision button[type=submit]")
        screen.page.wait_for_selector("#provision-error:not(:empty)")
        assert "board" in (screen.page.text_content("#provision-error") or "")
        assert screen.page.locator("#board").is_hidden()
        assert not any(c["name"] == "pf_board" for c in screen.context.cookies())
    finally:
        screen.close()


def test_a_screen_rides_out_a_gateway_restart_on_its_cookie(gateway: Gateway, browser: Browser) -> None:
    system = gateway.system
    department = unique_department()
    people = [queued_patient(gateway, department, name) for name in NAMES]
    first, second = (person["ticket"]["display_number"] for person in people)
    screen = Screen(browser)
    try:
        provision(screen, f"{system.url('gateway')}/board/{department}", system.api_keys["board-dev"])
        ok(gateway.doctor.post(f"/v1/queues/{department}/call-next", json={"counter": "1"}))
        expect(screen.page.locator("#calls .number").first).to_have_text(first)

        # Told to stop, the gateway ends the open board stream at once, rather than uvicorn waiting on it
        # for its graceful timeout and then cancelling it (which it logs).
        log = system.data_dir / "logs" / "gateway.log"
        cancelled_before = log.read_text(errors="replace").count(GRACE_EXCEEDED)
        system.stop_service("gateway")
        assert log.read_text(errors="replace").count(GRACE_EXCEEDED) == cancelled_before
        system.start_service("gateway")

        ok(gateway.doctor.post(f"/v1/queues/{department}/call-next", json={"counter": "2"}))
        expect(screen.page.locator("#calls .number").first).to_have_text(second, timeout=CALL_WAIT_MS)
        assert screen.page.locator("#provision").is_hidden()  # no key asked again
        assert screen.page.evaluate("document.body.dataset.chimes") == "2"
    finally:
        screen.close()


# --- refusals, over plain HTTP ----------------------------------------------------------------------


def fresh_client(gateway: Gateway, key: str | None = None) -> httpx.Client:
    """A client of its own, with `key` (if any), for cookies a test means to hold."""
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=gateway.system.url("gateway"), headers=headers, timeout=HTTP_TIMEOUT_SECONDS)


def board_session(gateway: Gateway, key: str) -> httpx.Client:
    """A client holding a board session cookie (as the page would), and no key."""
    with fresh_client(gateway, key) as provisioning:
        opened = provisioning.post("/v1/board-sessions")
    ok(opened, 201)
    client = fresh_client(gateway)
    client.headers["cookie"] = f"pf_board={opened.cookies['pf_board']}"
    return client


def test_only_a_board_key_opens_a_board_session(gateway: Gateway) -> None:
    for client in (gateway.nurse, gateway.doctor, gateway.admin, gateway.kiosk):
        answer = client.post("/v1/board-sessions")
        assert assert_problem(answer, 403)["type"].endswith("board-session-forbidden")
        assert "set-cookie" not in answer.headers
    assert_problem(gateway.anonymous.post("/v1/board-sessions"), 401)
    with fresh_client(gateway, gateway.system.api_keys["board-dev"]) as board:
        opened = board.post("/v1/board-sessions")
    assert ok(opened, 201)["client"] == "board-dev"
    set_cookie = opened.headers["set-cookie"].lower()
    assert "httponly" in set_cookie and "samesite=strict" in set_cookie and "path=/v1/boards" in set_cookie


def test_without_a_session_cookie_the_board_answers_401(gateway: Gateway) -> None:
    department = unique_department()
    for path in (f"/v1/boards/{department}", f"/v1/boards/{department}/stream"):
        assert_problem(gateway.anonymous.get(path), 401)
        assert_problem(gateway.board.get(path), 401)  # the key itself opens no board: the cookie does
        forged = {"cookie": "pf_board=pb1.eyJjbGkiOiJib2FyZC1kZXYifQ.AAAA"}
        assert_problem(gateway.anonymous.get(path, headers=forged), 401)


def test_a_key_in_a_query_string_is_refused(gateway: Gateway) -> None:
    key = gateway.system.api_keys["board-dev"]
    department = unique_department()
    for url in (
        f"/board/{department}?key={key}",
        f"/v1/board-sessions?key={key}",
        f"/v1/boards/{department}?api_key={key}",
        f"/v1/boards/{department}/stream?key={key}",
    ):
        method = "POST" if "board-sessions" in url else "GET"
        answer = assert_problem(gateway.anonymous.request(method, url), 400)
        assert answer["type"].endswith("key-in-url-refused") and key not in json.dumps(answer)
    # Not even beside a valid header: a key that went into a URL is already in someone's logs.
    assert_problem(gateway.board.post(f"/v1/board-sessions?key={key}"), 400)


def test_a_session_opens_its_board_only_and_ends_with_its_key(gateway: Gateway) -> None:
    department = unique_department()
    person = queued_patient(gateway, department, "欧阳修")
    name = f"board-{uuid.uuid4().hex[:8]}"
    created = ok(
        gateway.admin.post(
            "/v1/admin/clients", json={"name": name, "kind": "board", "scopes": ["board:read"]}
        ),
        201,
    )
    with board_session(gateway, created["key"]) as screen:
        board = ok(screen.get(f"/v1/boards/{department}"))
        assert board == {
            "department": department,
            "suspended": False,
            "calls": [],
            "next": [{"display_number": person["ticket"]["display_number"], "name": "欧*修"}],
            "waiting_count": 1,
        }
        with screen.stream("GET", f"/v1/boards/{department}/stream") as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            lines = stream.iter_lines()
            first_event = next(line for line in lines if line.startswith("data: "))
            assert json.loads(first_event.removeprefix("data: ")) == board
        # The cookie is no API key: the forwarded board route still wants the key itself.
        assert_problem(screen.get(f"/v1/queues/{department}/board"), 401)
        ok(gateway.admin.post(f"/v1/admin/clients/{name}/revoke"))
        assert_problem(screen.get(f"/v1/boards/{department}"), 401)
        assert_problem(screen.get(f"/v1/boards/{department}/stream"), 401)
