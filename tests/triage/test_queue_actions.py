"""Queue kinds, stations and the actions on a ticket: recall, skip (过号) by the queue's rule, hold and
release, no-show, cancel, and transfer keeping priority."""

from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from kit.testing import feed_headers
from services.triage.rules import QueueRules
from tests.triage.conftest import FrozenClock
from tests.triage.factories import assess, call_next, event_types, open_visit, take_ticket
from tests.triage.test_board import board_headers


def queue_in_order(
    client: TestClient,
    registration: httpx.Client,
    clock: FrozenClock,
    count: int,
    department: str = "internal",
) -> list[dict[str, Any]]:
    """`count` tickets a minute apart, so each arrival has its own instant."""
    tickets = []
    for _ in range(count):
        tickets.append(take_ticket(client, open_visit(registration)["id"], department=department))
        clock.advance(minutes=1)
    return tickets


def waiting_ids(client: TestClient, department: str = "internal") -> list[str]:
    return [t["id"] for t in client.get(f"/queues/{department}").json()["waiting"]]


def act(client: TestClient, ticket: dict[str, Any], action: str, **body: Any) -> dict[str, Any]:
    response = client.post(f"/tickets/{ticket['id']}/{action}", json=body or None)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def configure(client: TestClient, department: str = "internal", **setting: Any) -> dict[str, Any]:
    response = client.put(f"/queues/{department}/settings", json={"kind": "department"} | setting)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def ticket_events(client: TestClient, event_type: str) -> list[dict[str, Any]]:
    response = client.get("/events", headers=feed_headers("triage"), params={"type": event_type})
    events: list[dict[str, Any]] = response.json()["events"]
    return events


def test_an_unconfigured_queue_runs_on_the_defaults(client: TestClient) -> None:
    setting = client.get("/queues/internal/settings").json()
    assert setting == {
        "department": "internal",
        "kind": "department",
        "window": None,
        "target_minutes": 10,
        "skip_requeue_after": 3,
        "max_skips": 2,
        "skip_requeue_minutes": None,
        "station_cap": None,
        "rules": QueueRules().model_dump(mode="json"),
        "rules_configured": False,
        "configured": False,
        "stations": [],
    }


def test_window_queues_say_what_they_serve_and_stations_are_listed(client: TestClient) -> None:
    body = {"kind": "window", "window": "cashier", "target_minutes": 5}
    assert client.put("/queues/cashier/settings", json=body).status_code == 200
    for code, label in (("2", "2号窗口"), ("1", "1号窗口")):
        assert client.put(f"/queues/cashier/stations/{code}", json={"label": label}).status_code == 200
    setting = client.get("/queues/cashier/settings").json()
    assert (setting["kind"], setting["window"], setting["target_minutes"]) == ("window", "cashier", 5)
    assert setting["configured"] is True
    assert setting["stations"] == [{"code": "1", "label": "1号窗口"}, {"code": "2", "label": "2号窗口"}]


@pytest.mark.parametrize(
    "body",
    [
        {"kind": "window"},  # a window must say what it serves
        {"kind": "room", "window": "pharmacy"},  # only a window serves one
        {"kind": "window", "window": "bank"},
        {"kind": "kiosk"},
        {"kind": "department", "target_minutes": 0},
        {"kind": "department", "max_skips": -1},
        {"kind": "department", "colour": "red"},
    ],
)
def test_bad_settings_are_422_and_change_nothing(client: TestClient, body: dict[str, Any]) -> None:
    response = client.put("/queues/internal/settings", json=body)
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    assert client.get("/queues/internal/settings").json()["configured"] is False


def test_a_queue_with_stations_calls_only_to_them(client: TestClient, registration: httpx.Client) -> None:
    take_ticket(client, open_visit(registration)["id"])
    client.put("/queues/internal/stations/3", json={"label": "3号诊室"})
    response = client.post("/queues/internal/call-next", json={"counter": "9"})
    assert response.status_code == 422
    assert response.json()["type"].endswith("/unknown-station")
    assert response.json()["stations"] == ["3"]
    assert client.get("/queues/internal").json()["waiting_count"] == 1
    assert call_next(client, counter="3")["counter"] == "3"


def test_stats_measure_against_the_queue_target(
    client: TestClient, registration: httpx.Client, clock: FrozenClock
) -> None:
    configure(client, target_minutes=5)
    take_ticket(client, open_visit(registration)["id"])
    clock.advance(minutes=7)
    call_next(client)
    stats = client.get("/queues/internal/stats", params={"date": "2026-11-27"}).json()
    assert (stats["target_minutes"], stats["within_target_share"]) == (5, 0.0)


def test_recall_calls_the_same_ticket_again_and_only_a_called_one(
    client: TestClient, registration: httpx.Client, clock: FrozenClock
) -> None:
    first, second = queue_in_order(client, registration, clock, 2)
    called = call_next(client, counter="3")
    clock.advance(minutes=2)
    recalled = act(client, called, "recall")
    assert (recalled["status"], recalled["counter"], recalled["recalls"]) == ("called", "3", 1)
    assert act(client, called, "recall", counter="5")["counter"] == "5"
    [event, _] = ticket_events(client, "ticket.recalled")
    assert event["data"] == {
        "ticket_id": first["id"],
        "department": "internal",
        "number": 1,
        "counter": "3",
        "recalls": 1,
    }
    response = client.post(f"/tickets/{second['id']}/recall")
    assert response.status_code == 409
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["type"].endswith("/ticket-not-called")
    assert response.json()["ticket_status"] == "waiting"
    assert client.get(f"/tickets/{second['id']}").json()["status"] == "waiting"


def test_a_skipped_ticket_goes_behind_the_next_n_waiting(
    client: TestClient, registration: httpx.Client, clock: FrozenClock
) -> None:
    configure(client, skip_requeue_after=2, max_skips=3)
    a, b, c, d = queue_in_order(client, registration, clock, 4)
    call_next(client)
    skipped = act(client, a, "skip")
    assert (skipped["status"], skipped["skips"], skipped["counter"]) == ("waiting", 1, None)
    assert waiting_ids(client) == [b["id"], c["id"], a["id"], d["id"]]
    assert ticket_events(client, "ticket.skipped")[0]["data"]["requeued_behind"] == 2


def test_a_skipped_ticket_with_fewer_waiting_goes_last_but_ahead_of_later_arrivals(
    client: TestClient, registration: httpx.Client, clock: FrozenClock
) -> None:
    a, b = queue_in_order(client, registration, clock, 2)
    call_next(client)
    act(client, a, "skip")  # the default rule: sits out the next 3 calls, but only one waits
    [later] = queue_in_order(client, registration, clock, 1)
    assert waiting_ids(client) == [b["id"], a["id"], later["id"]]


def test_a_skipped_ticket_lets_the_next_calls_pass_and_more_urgent_patients_stay_ahead(
    client: TestClient, registration: httpx.Client, clock: FrozenClock
) -> None:
    configure(client, skip_requeue_after=1)
    a, b = queue_in_order(client, registration, clock, 2)
    frail = take_ticket(client, open_visit(registration)["id"], priority="priority")
    assert call_next(client)["id"] == frail["id"]
    act(client, frail, "skip")  # sits out one call, whoever it is for
    assert waiting_ids(client) == [a["id"], frail["id"], b["id"]]
    urgent = open_visit(registration)
    assess(client, urgent["id"], "II")
    urgent_ticket = take_ticket(client, urgent["id"])
    # The level II call is the one the skipped patient sits out; then its priority counts again.
    assert waiting_ids(client) == [urgent_ticket["id"], frail["id"], a["id"], b["id"]]
    order = client.get("/queues/internal/order").json()["order"]
    assert (
        order[1]["reason"]
        == "priority, arrived 08:02, skipped at 08:02, back in line after 1 call, ahead of normal patients"
    )


def test_the_skip_after_max_skips_makes_a_no_show(
    client: TestClient, registration: httpx.Client, clock: FrozenClock
) -> None:
    configure(client, skip_requeue_after=0, max_skips=1)
    [ticket] = queue_in_order(client, registration, clock, 1)
    call_next(client)
    assert act(client, ticket, "skip")["status"] == "waiting"
    call_next(client)
    closed = act(client, ticket, "skip")
    assert (closed["status"], closed["skips"]) == ("noshow", 2)
    assert closed["finished_at"] is not None
    assert [e["data"]["skips"] for e in ticket_events(client, "ticket.noshow")] == [2]
    assert client.post("/queues/internal/call-next", json={}).status_code == 404


def test_a_held_ticket_is_not_called_and_keeps_its_place_when_released(
    client: TestClient, registration: httpx.Client, clock: FrozenClock
) -> None:
    a, b, c = queue_in_order(client, registration, clock, 3)
    held = act(client, a, "hold")
    assert held["status"] == "held"
    queue = client.get("/queues/internal").json()
    assert [t["id"] for t in queue["held"]] == [a["id"]]
    assert call_next(client)["id"] == b["id"]
    assert act(client, a, "release")["status"] == "waiting"
    assert call_next(client)["id"] == a["id"]
    assert call_next(client)["id"] == c["id"]
    assert [e["data"]["held_from"] for e in ticket_events(client, "ticket.held")] == ["waiting"]
    assert len(ticket_events(client, "ticket.released")) == 1


def test_a_held_ticket_still_holds_the_visits_place(client: TestClient, registration: httpx.Client) -> None:
    visit = open_visit(registration)
    act(client, take_ticket(client, visit["id"]), "hold")
    response = client.post("/queues/internal/tickets", json={"visit_id": visit["id"]})
    assert response.status_code == 409


def test_no_show_closes_a_called_ticket_only(client: TestClient, registration: httpx.Client) -> None:
    first, second = (take_ticket(client, open_visit(registration)["id"]) for _ in range(2))
    call_next(client)
    assert act(client, first, "no-show")["status"] == "noshow"
    assert client.post(f"/tickets/{second['id']}/no-show").status_code == 409
    assert client.post(f"/tickets/{first['id']}/finish").status_code == 409
    assert [e["data"]["skips"] for e in ticket_events(client, "ticket.noshow")] == [0]


def test_cancel_withdraws_a_ticket_and_frees_the_visit(
    client: TestClient, registration: httpx.Client
) -> None:
    visit = open_visit(registration)
    ticket = take_ticket(client, visit["id"])
    assert act(client, ticket, "cancel")["status"] == "cancelled"
    again = client.post(f"/tickets/{ticket['id']}/cancel")
    assert again.status_code == 409
    assert again.json()["type"].endswith("/ticket-wrong-state")
    assert again.json()["allowed_from"] == ["called", "held", "waiting"]
    assert take_ticket(client, visit["id"])["number"] == 2
    assert [e["data"]["cancelled_from"] for e in ticket_events(client, "ticket.cancelled")] == ["waiting"]


@pytest.mark.parametrize("action", ["recall", "skip", "hold", "release", "no-show", "cancel", "finish"])
def test_actions_on_a_closed_ticket_are_409_and_change_nothing(
    client: TestClient, registration: httpx.Client, action: str
) -> None:
    ticket = take_ticket(client, open_visit(registration)["id"])
    call_next(client)
    finished = act(client, ticket, "finish")
    before = event_types(client)
    response = client.post(f"/tickets/{ticket['id']}/{action}")
    assert response.status_code == 409
    assert response.headers["content-type"].startswith("application/problem+json")
    assert client.get(f"/tickets/{ticket['id']}").json() == finished
    assert event_types(client) == before


@pytest.mark.parametrize("action", ["recall", "skip", "hold", "release", "no-show", "cancel"])
def test_actions_on_an_unknown_ticket_are_404(client: TestClient, action: str) -> None:
    response = client.post(f"/tickets/{'0' * 36}/{action}")
    assert response.status_code == 404
    assert response.json()["type"].endswith("/ticket-not-found")


def test_transfer_keeps_priority_and_original_arrival(
    client: TestClient, registration: httpx.Client, clock: FrozenClock
) -> None:
    """Consultation → payment → back to the doctor: the patient is not sent to the back of each line."""
    visit = open_visit(registration)
    consult = take_ticket(client, visit["id"], priority="priority")
    clock.advance(minutes=5)
    [frail_at_cashier] = [take_ticket(client, open_visit(registration)["id"], "cashier", priority="priority")]
    clock.advance(minutes=1)
    call_next(client)
    response = client.post(f"/tickets/{consult['id']}/transfer", json={"department": "cashier"})
    assert response.status_code == 200, response.text
    closed, moved = response.json()["closed"], response.json()["ticket"]
    assert response.headers["location"] == f"/v1/tickets/{moved['id']}"
    assert (closed["status"], closed["transferred_to"]) == ("transferred", moved["id"])
    assert (moved["department"], moved["number"], moved["status"]) == ("cashier", 2, "waiting")
    assert (moved["priority"], moved["rank"], moved["transferred_from"]) == ("priority", 1, consult["id"])
    assert moved["lined_up_at"] == consult["enqueued_at"]
    assert waiting_ids(client, "cashier") == [moved["id"], frail_at_cashier["id"]]
    [event] = ticket_events(client, "ticket.transferred")
    assert event["data"] | {"ticket_id": "-"} == {
        "ticket_id": "-",
        "department": "internal",
        "number": 1,
        "to_ticket_id": moved["id"],
        "to_department": "cashier",
        "to_number": 2,
    }
    # … and back to the doctor with the results, still ahead of those who came after the first arrival.
    clock.advance(minutes=30)
    [later] = queue_in_order(client, registration, clock, 1)
    assert call_next(client, "cashier")["id"] == moved["id"]
    back = act(client, moved, "transfer", department="internal")["ticket"]
    assert back["lined_up_at"] == consult["enqueued_at"]
    assert waiting_ids(client) == [back["id"], later["id"]]


def test_transfer_refuses_a_queue_the_visit_is_already_in_and_closed_tickets(
    client: TestClient, registration: httpx.Client
) -> None:
    visit = open_visit(registration)
    ticket = take_ticket(client, visit["id"])
    take_ticket(client, visit["id"], "cashier")
    for department in ("cashier", "internal"):
        response = client.post(f"/tickets/{ticket['id']}/transfer", json={"department": department})
        assert response.status_code == 409
        assert response.json()["type"].endswith("/already-queued")
    assert client.get(f"/tickets/{ticket['id']}").json()["status"] == "waiting"
    act(client, ticket, "cancel")
    response = client.post(f"/tickets/{ticket['id']}/transfer", json={"department": "lab"})
    assert response.status_code == 409
    assert response.json()["type"].endswith("/ticket-wrong-state")
    bad = client.post(f"/tickets/{ticket['id']}/transfer", json={"department": "Lab!"})
    assert bad.status_code == 422


def test_a_closed_visit_is_not_transferred_to_another_queue(
    client: TestClient, registration: httpx.Client
) -> None:
    visit = open_visit(registration)
    ticket = take_ticket(client, visit["id"])
    assert registration.post(f"/visits/{visit['id']}/close").status_code == 200
    response = client.post(f"/tickets/{ticket['id']}/transfer", json={"department": "cashier"})
    assert response.status_code == 409
    assert response.json()["type"].endswith("/visit-closed")
    assert client.get(f"/tickets/{ticket['id']}").json()["status"] == "waiting"
    assert client.get("/queues/cashier").json()["waiting_count"] == 0
    assert act(client, ticket, "cancel")["status"] == "cancelled"  # work under way here still ends


def test_a_recalled_ticket_is_the_latest_call_on_the_board(
    client: TestClient, registration: httpx.Client, clock: FrozenClock
) -> None:
    first, second = queue_in_order(client, registration, clock, 2)
    call_next(client, counter="1")
    clock.advance(minutes=1)
    call_next(client, counter="2")
    clock.advance(minutes=1)
    act(client, first, "recall")
    board = client.get("/queues/internal/board", headers=board_headers()).json()
    assert [t["display_number"] for t in board["tickets"]] == [
        first["display_number"],
        second["display_number"],
    ]
