"""One ordering: call-next, the queue, the board and `GET …/order` follow the rule engine, with the queue's
rules, service classes, skip recall interval and cap per station set in its settings."""

from datetime import timedelta
from typing import Any

import httpx
from fastapi.testclient import TestClient

from kit.database import Database
from services.triage import service
from services.triage.schemas import RegistrationVisit, TicketCreate
from tests.triage.conftest import FrozenClock
from tests.triage.factories import assess, call_next, open_visit, take_ticket
from tests.triage.test_board import board_headers
from tests.triage.test_queue_actions import act, configure, queue_in_order, ticket_events, waiting_ids


def order_of(client: TestClient, department: str = "internal") -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = client.get(f"/queues/{department}/order").json()["order"]
    return entries


def queued(
    client: TestClient, registration: httpx.Client, *, level: str | None = None, **ticket: Any
) -> dict[str, Any]:
    visit = open_visit(registration)
    if level:
        assess(client, visit["id"], level)
    return take_ticket(client, visit["id"], **ticket)


def test_a_level_one_arriving_after_a_waiting_level_two_is_called_first(
    client: TestClient, registration: httpx.Client, clock: FrozenClock
) -> None:
    level_two = queued(client, registration, level="II")
    clock.advance(minutes=3)
    level_one = queued(client, registration, level="I")
    called = call_next(client)
    assert called["id"] == level_one["id"]
    assert called["reason"] == "level I, arrived 08:03, green channel: ahead of everyone"
    assert call_next(client)["id"] == level_two["id"]


def test_call_next_takes_the_first_of_the_order_in_a_mixed_queue(
    client: TestClient, registration: httpx.Client, clock: FrozenClock
) -> None:
    """Ratio, shortest work first and a wait condition at once: every call is the order's first entry,
    for the reason the order gave, and the queue view and the board list the same order."""
    rules = {
        "normal_per_priority": 2,
        "shortest_work_first": True,
        "wait_conditions": [{"service_class": "complex", "minutes": 20}],
    }
    configure(client, rules=rules)
    mix: list[dict[str, Any]] = [
        {},
        {"service_class": "complex"},
        {"priority": "priority"},
        {"level": "III", "service_class": "complex"},
        {"level": "IV"},
        {"priority": "priority", "service_class": "complex"},
        {},
        {"service_class": "complex"},
        {"level": "II"},
    ]
    tickets = []
    for fields in mix:
        tickets.append(queued(client, registration, **fields))
        clock.advance(minutes=3)
    board_numbers = [
        t["display_number"]
        for t in client.get("/queues/internal/board", headers=board_headers()).json()["tickets"]
    ]
    order = order_of(client)
    assert board_numbers == [e["display_number"] for e in order]
    assert waiting_ids(client) == [e["ticket_id"] for e in order]
    calls = []
    while order:
        called = call_next(client)
        assert (called["id"], called["reason"]) == (order[0]["ticket_id"], order[0]["reason"])
        calls.append(called)
        clock.advance(minutes=2)
        order = order_of(client)
    assert sorted(c["id"] for c in calls) == sorted(t["id"] for t in tickets)
    reasons = [c["reason"] for c in calls]
    assert reasons[0] == "level II, arrived 08:24, green channel: ahead of everyone"
    assert any(r.endswith("past the 20-minute condition: called first") for r in reasons)
    assert reasons[1] == (
        "arrived 08:03, complex (~10 min), shorter work first, "
        "waited 26 min, the longest of the complex patients, past the 20-minute condition: called first"
    )
    assert (
        reasons[3]
        == "arrived 08:00, simple (~3 min), shorter work first, normal turn (1 of 2 normal : 1 priority)"
    )


def test_the_order_the_route_projects_is_the_order_of_the_calls(
    client: TestClient, registration: httpx.Client, clock: FrozenClock
) -> None:
    """With rules that do not depend on the clock, the whole projected order is what calling yields."""
    configure(client, rules={"normal_per_priority": 1, "shortest_work_first": True})
    for fields in ({}, {"service_class": "complex"}, {"priority": "priority"}, {}, {"priority": "priority"}):
        queued(client, registration, **fields)
        clock.advance(minutes=1)
    projected = [e["ticket_id"] for e in order_of(client)]
    assert [call_next(client)["id"] for _ in projected] == projected


def test_rules_in_a_queue_s_settings_order_it_and_bad_rules_change_nothing(
    client: TestClient, registration: httpx.Client, clock: FrozenClock
) -> None:
    normal = queued(client, registration)
    clock.advance(minutes=1)
    frail = queued(client, registration, priority="priority")
    assert [e["ticket_id"] for e in order_of(client)] == [frail["id"], normal["id"]]
    setting = configure(client, rules={"normal_per_priority": 1})
    assert setting["rules_configured"] is True and setting["rules"]["normal_per_priority"] == 1
    assert [e["ticket_id"] for e in order_of(client)] == [normal["id"], frail["id"]]
    assert client.get("/queues/internal/order").json()["rules"]["normal_per_priority"] == 1
    for bad in (
        {"green_channel_levels": ["II"]},  # nothing takes level I out of the green channel
        {"default_service_class": "x-ray"},  # no expected time for it
        {"wait_conditions": [{"minutes": 0}]},
        {"wait_conditions": [{"minutes": 5, "tier": "priority", "action": "priority"}]},
        {"service_minutes": {"Simple!": 3}},
        {"service_minutes": {"simple": 1e300}},
        {"ageing_minutes": 10**30},
        {"priority_ranks": {"elderly": -(10**20)}},
        {"colour": "red"},
    ):
        response = client.put("/queues/internal/settings", json={"kind": "department", "rules": bad})
        assert response.status_code == 422, bad
        assert response.headers["content-type"].startswith("application/problem+json")
    assert client.get("/queues/internal/settings").json()["rules"]["normal_per_priority"] == 1
    assert call_next(client)["id"] == normal["id"]
    # Settings without rules go back to the service's configuration (here: the defaults).
    assert configure(client)["rules_configured"] is False
    assert call_next(client)["id"] == frail["id"]


def test_service_class_set_at_queueing_or_by_the_desk_counts_for_shortest_work_first(
    client: TestClient, registration: httpx.Client, clock: FrozenClock
) -> None:
    configure(client, rules={"shortest_work_first": True, "service_minutes": {"simple": 2, "complex": 8}})
    complex_work = queued(client, registration, service_class="complex")
    clock.advance(minutes=1)
    unclassified = queued(client, registration)
    assert (complex_work["service_class"], unclassified["service_class"]) == ("complex", None)
    order = order_of(client)
    assert [e["ticket_id"] for e in order] == [unclassified["id"], complex_work["id"]]
    assert order[0]["reason"] == "arrived 08:01, simple (~2 min), shorter work first"
    # The desk finds the first patient's business is simple after all, and the second's complex.
    response = client.put(f"/tickets/{complex_work['id']}/service-class", json={"service_class": "simple"})
    assert response.status_code == 200, response.text
    assert response.json()["service_class"] == "simple"
    again = client.put(f"/tickets/{unclassified['id']}/service-class", json={"service_class": "complex"})
    assert again.status_code == 200
    assert [e["ticket_id"] for e in order_of(client)] == [complex_work["id"], unclassified["id"]]
    assert call_next(client)["id"] == complex_work["id"]


def test_an_unknown_service_class_is_422_and_changes_nothing(
    client: TestClient, registration: httpx.Client
) -> None:
    visit = open_visit(registration)
    response = client.post(
        "/queues/internal/tickets", json={"visit_id": visit["id"], "service_class": "x-ray"}
    )
    assert response.status_code == 422
    assert response.json()["type"].endswith("/unknown-service-class")
    assert response.json()["service_classes"] == ["complex", "simple"]
    assert client.get("/queues/internal").json()["waiting_count"] == 0
    ticket = take_ticket(client, visit["id"])
    for bad in ({"service_class": "x-ray"}, {"service_class": "Simple"}, {"service_class": "s" * 17}, {}):
        assert client.put(f"/tickets/{ticket['id']}/service-class", json=bad).status_code == 422
    assert client.get(f"/tickets/{ticket['id']}").json()["service_class"] is None
    act(client, ticket, "cancel")
    closed = client.put(f"/tickets/{ticket['id']}/service-class", json={"service_class": "complex"})
    assert closed.status_code == 409
    assert (
        client.put(f"/tickets/{'0' * 36}/service-class", json={"service_class": "simple"}).status_code == 404
    )


def test_a_station_at_its_cap_calls_nobody_more_until_one_is_seen(
    client: TestClient, registration: httpx.Client, clock: FrozenClock
) -> None:
    configure(client, station_cap=2)
    for code in ("3", "4"):
        client.put(f"/queues/internal/stations/{code}", json={"label": f"{code}号诊室"})
    first, second, third, fourth = queue_in_order(client, registration, clock, 4)
    assert call_next(client, counter="3")["id"] == first["id"]
    assert call_next(client, counter="3")["id"] == second["id"]
    full = client.post("/queues/internal/call-next", json={"counter": "3"})
    assert full.status_code == 409
    assert full.headers["content-type"].startswith("application/problem+json")
    assert full.json()["type"].endswith("/station-full")
    assert full.json()["detail"] == (
        "Station 3 has 2 patients called and not yet seen (cap 2): finish, skip or hold one first."
    )
    assert (full.json()["station"], full.json()["station_cap"]) == ("3", 2)
    assert waiting_ids(client) == [third["id"], fourth["id"]]  # nobody was called by the refusal
    assert call_next(client, counter="4")["id"] == third["id"]  # another room still calls
    moved = client.post(f"/tickets/{third['id']}/recall", json={"counter": "3"})  # recalled to a full room
    assert moved.status_code == 409 and moved.json()["type"].endswith("/station-full")
    assert act(client, second, "recall")["counter"] == "3"  # recalled where it already counts
    act(client, first, "finish")
    assert call_next(client, counter="3")["id"] == fourth["id"]
    assert client.get("/queues/internal/settings").json()["station_cap"] == 2


def test_a_skipped_ticket_sits_out_n_calls_and_the_order_says_so(
    client: TestClient, registration: httpx.Client, clock: FrozenClock
) -> None:
    configure(client, skip_requeue_after=2)
    a, b, c, d = queue_in_order(client, registration, clock, 4)
    call_next(client)
    skipped = act(client, a, "skip")
    assert (skipped["skip_recall_calls"], skipped["skip_recall_at"], skipped["lined_up_at"]) == (
        2,
        None,
        a["lined_up_at"],  # its place in line is kept; the rule engine makes it sit out
    )
    order = order_of(client)
    assert [e["ticket_id"] for e in order] == [b["id"], c["id"], a["id"], d["id"]]
    assert order[2]["reason"] == "arrived 08:00, skipped at 08:04, back in line after 2 calls"
    assert call_next(client)["id"] == b["id"]
    assert order_of(client)[1]["reason"] == "arrived 08:00, skipped at 08:04, back in line after 2 calls"
    assert call_next(client)["id"] == c["id"]
    called = call_next(client)
    assert called["id"] == a["id"] and called["reason"].endswith("back in line after 2 calls")
    assert called["skipped_at"] is None and called["skips"] == 1


def test_a_skipped_ticket_is_back_after_m_minutes_when_fewer_calls_came(
    client: TestClient, registration: httpx.Client, clock: FrozenClock
) -> None:
    configure(client, skip_requeue_after=5, skip_requeue_minutes=4)
    a, b, c = queue_in_order(client, registration, clock, 3)
    call_next(client)
    skipped = act(client, a, "skip")
    assert skipped["skip_recall_calls"] == 2  # only two others wait: it lets them go, no more
    assert [e["ticket_id"] for e in order_of(client)] == [b["id"], c["id"], a["id"]]
    clock.advance(minutes=4)
    order = order_of(client)
    assert [e["ticket_id"] for e in order] == [a["id"], b["id"], c["id"]]
    assert order[0]["reason"] == "arrived 08:00, skipped at 08:03, back in line at 08:07"
    [event] = ticket_events(client, "ticket.skipped")
    assert event["data"]["recall_at"] == "2026-11-27T00:07:00+00:00"
    assert call_next(client)["id"] == a["id"]


def test_a_late_insertion_counts_the_on_time_calls_made_earlier_in_the_day(
    client: TestClient, registration: httpx.Client, clock: FrozenClock
) -> None:
    """`late_every` counts on-time calls across the day: the two already made put the late booked patient
    ahead of a walk-in who came before them (the order replays the day only for rules like this one)."""
    configure(client, rules={"appointments": "booked-time", "late_every": 2})
    for _ in range(2):
        queued(client, registration)
        clock.advance(minutes=1)
        call_next(client)
    walk_in = queued(client, registration)
    clock.advance(minutes=1)
    visit = open_visit(registration)
    database: Database = client.app.state.database  # type: ignore[attr-defined]
    with database.session() as session:  # checked in 30 minutes after the slot: late
        late = service.enqueue(
            session,
            visit=RegistrationVisit(id=visit["id"], patient_id=visit["patient_id"]),
            masked_name="张*",
            department="internal",
            data=TicketCreate(visit_id=visit["id"]),
            appointment_at=clock.now - timedelta(minutes=30),
        )
    called = call_next(client)
    assert called["id"] == late.id, called["reason"]
    assert called["reason"].endswith("late, inserted after 2 on-time patients")
    assert call_next(client)["id"] == walk_in["id"]
