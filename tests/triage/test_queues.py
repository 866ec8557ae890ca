"""Department queues: gap-free numbers, who is called first, calling and finishing tickets."""

import httpx
import pytest
from fastapi.testclient import TestClient

from kit.testing import feed_headers
from tests.triage.conftest import FrozenClock
from tests.triage.factories import assess, call_next, event_types, open_visit, take_ticket


def test_new_ticket_is_waiting_with_the_first_number(client: TestClient, registration: httpx.Client) -> None:
    visit = open_visit(registration)
    response = client.post("/queues/internal/tickets", json={"visit_id": visit["id"]})
    assert response.status_code == 201
    ticket = response.json()
    assert response.headers["location"] == f"/v1/tickets/{ticket['id']}"
    assert (ticket["visit_id"], ticket["patient_id"]) == (visit["id"], visit["patient_id"])
    assert ticket["department"] == "internal"
    assert (ticket["number"], ticket["display_number"]) == (1, "I001")
    assert (ticket["status"], ticket["priority"], ticket["rank"]) == ("waiting", "normal", 2)
    assert ticket["called_at"] is None and ticket["finished_at"] is None and ticket["wait_seconds"] is None
    assert client.get(f"/tickets/{ticket['id']}").json() == ticket


def test_numbers_are_gap_free_per_department_even_after_refusals(
    client: TestClient, registration: httpx.Client
) -> None:
    first, second, third = (open_visit(registration) for _ in range(3))
    numbers = [take_ticket(client, first["id"])["number"]]
    assert client.post("/queues/internal/tickets", json={"visit_id": first["id"]}).status_code == 409
    assert client.post("/queues/internal/tickets", json={"visit_id": "0" * 36}).status_code == 404
    numbers.append(take_ticket(client, second["id"])["number"])
    numbers.append(take_ticket(client, third["id"])["number"])
    assert numbers == [1, 2, 3]
    assert take_ticket(client, first["id"], department="surgery")["number"] == 1
    assert take_ticket(client, second["id"], department="surgery")["number"] == 2


def test_numbers_restart_on_each_hospital_day(
    client: TestClient, registration: httpx.Client, clock: FrozenClock
) -> None:
    visits = [open_visit(registration) for _ in range(3)]
    clock.set(clock.now.replace(hour=15, minute=50))  # 23:50 in Beijing on the 27th
    assert take_ticket(client, visits[0]["id"])["number"] == 1
    assert take_ticket(client, visits[1]["id"])["number"] == 2
    clock.advance(minutes=20)  # 00:10 on the 28th, still the 27th in UTC
    assert take_ticket(client, visits[2]["id"])["number"] == 1


def test_level_one_is_called_before_earlier_normal_tickets(
    client: TestClient, registration: httpx.Client, clock: FrozenClock
) -> None:
    early, later = open_visit(registration), open_visit(registration)
    take_ticket(client, early["id"])
    clock.advance(minutes=5)
    assess(client, later["id"], "I")
    urgent = take_ticket(client, later["id"])
    assert urgent["rank"] == 0
    assert call_next(client)["id"] == urgent["id"]
    assert call_next(client)["visit_id"] == early["id"]


def test_priority_and_level_three_come_before_normal_and_ties_go_first_come(
    client: TestClient, registration: httpx.Client, clock: FrozenClock
) -> None:
    normal, elderly, level_three, level_four = (open_visit(registration) for _ in range(4))
    assess(client, level_three["id"], "III")
    assess(client, level_four["id"], "IV")
    order = [
        take_ticket(client, normal["id"]),
        take_ticket(client, elderly["id"], priority="priority"),
        take_ticket(client, level_three["id"]),
        take_ticket(client, level_four["id"]),
    ]
    assert [t["rank"] for t in order] == [2, 1, 1, 2]
    queue = client.get("/queues/internal").json()
    expected = [elderly["id"], level_three["id"], normal["id"], level_four["id"]]
    assert [t["visit_id"] for t in queue["waiting"]] == expected
    assert [call_next(client)["visit_id"] for _ in range(4)] == expected


def test_reassessment_moves_a_waiting_ticket_up(client: TestClient, registration: httpx.Client) -> None:
    first, worsening = open_visit(registration), open_visit(registration)
    take_ticket(client, first["id"])
    ticket = take_ticket(client, worsening["id"])
    assess(client, worsening["id"], "II")
    assert client.get(f"/tickets/{ticket['id']}").json()["rank"] == 0
    assert call_next(client)["id"] == ticket["id"]


def test_call_next_reports_the_wait_and_counter(
    client: TestClient, registration: httpx.Client, clock: FrozenClock
) -> None:
    ticket = take_ticket(client, open_visit(registration)["id"])
    clock.advance(minutes=7, seconds=30)
    called = call_next(client, counter="3")
    assert called["id"] == ticket["id"]
    assert (called["status"], called["counter"], called["wait_seconds"]) == ("called", "3", 450)
    assert called["called_at"] == clock.now.isoformat().replace("+00:00", "Z")
    assert called.pop("reason") == "arrived 08:00"  # why this one, in the rule engine's words
    assert client.get(f"/tickets/{ticket['id']}").json() == called


def test_call_next_accepts_no_body_and_refuses_a_long_counter(
    client: TestClient, registration: httpx.Client
) -> None:
    take_ticket(client, open_visit(registration)["id"])
    refused = client.post("/queues/internal/call-next", json={"counter": "x" * 17})
    assert refused.status_code == 422
    response = client.post("/queues/internal/call-next")
    assert response.status_code == 200
    assert response.json()["counter"] is None


def test_empty_queue_is_404_queue_empty(client: TestClient, registration: httpx.Client) -> None:
    take_ticket(client, open_visit(registration)["id"], department="surgery")
    response = client.post("/queues/internal/call-next", json={})
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"].endswith("/queue-empty")


def test_queue_view_counts_waiting_and_called(client: TestClient, registration: httpx.Client) -> None:
    for _ in range(3):
        take_ticket(client, open_visit(registration)["id"])
    called = call_next(client)
    client.post(f"/tickets/{call_next(client)['id']}/finish")
    queue = client.get("/queues/internal").json()
    assert queue["department"] == "internal"
    assert (queue["waiting_count"], queue["called_count"]) == (1, 1)
    assert called["id"] not in [t["id"] for t in queue["waiting"]]
    assert client.get("/queues/nobody-here").json()["waiting"] == []


def test_one_active_ticket_per_visit_and_department(client: TestClient, registration: httpx.Client) -> None:
    visit = open_visit(registration)
    ticket = take_ticket(client, visit["id"])
    again = client.post("/queues/internal/tickets", json={"visit_id": visit["id"], "priority": "priority"})
    assert again.status_code == 409
    assert again.json()["type"].endswith("/already-queued")
    assert again.json()["existing_ticket_id"] == ticket["id"]
    take_ticket(client, visit["id"], department="radiology")  # another department is fine
    call_next(client)
    assert client.post("/queues/internal/tickets", json={"visit_id": visit["id"]}).status_code == 409
    client.post(f"/tickets/{ticket['id']}/finish")
    assert take_ticket(client, visit["id"])["number"] == 2  # finished: may queue again


def test_finish_only_from_called(client: TestClient, registration: httpx.Client) -> None:
    ticket = take_ticket(client, open_visit(registration)["id"])
    waiting = client.post(f"/tickets/{ticket['id']}/finish")
    assert waiting.status_code == 409
    assert waiting.json()["type"].endswith("/ticket-not-called")
    call_next(client)
    finished = client.post(f"/tickets/{ticket['id']}/finish")
    assert finished.status_code == 200
    assert finished.json()["status"] == "finished" and finished.json()["finished_at"]
    assert client.post(f"/tickets/{ticket['id']}/finish").status_code == 409
    assert event_types(client) == ["ticket.queued", "ticket.called", "ticket.finished"]


def test_unknown_ticket_is_404(client: TestClient) -> None:
    for response in (client.get("/tickets/nope"), client.post("/tickets/nope/finish")):
        assert response.status_code == 404
        assert response.json()["type"].endswith("/ticket-not-found")


@pytest.mark.parametrize("department", ["Internal", "a b", "x" * 33, "内科"])
def test_malformed_department_is_400(client: TestClient, registration: httpx.Client, department: str) -> None:
    visit = open_visit(registration)
    response = client.post(f"/queues/{department}/tickets", json={"visit_id": visit["id"]})
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"


def test_unknown_priority_is_422(client: TestClient, registration: httpx.Client) -> None:
    visit = open_visit(registration)
    response = client.post("/queues/internal/tickets", json={"visit_id": visit["id"], "priority": "vip"})
    assert response.status_code == 422


def test_ticket_events_follow_the_ticket_in_order(client: TestClient, registration: httpx.Client) -> None:
    visit = open_visit(registration)
    assess(client, visit["id"], "III")
    ticket = take_ticket(client, visit["id"], priority="priority")
    called = call_next(client, counter="2")
    client.post(f"/tickets/{ticket['id']}/finish")

    events = client.get("/events", headers=feed_headers("triage")).json()["events"]
    events = [e for e in events if e["type"] != "queue.nearly_up"]  # the queue's, not the ticket's
    assert [e["type"] for e in events] == [
        "visit.triaged",
        "ticket.queued",
        "ticket.called",
        "ticket.finished",
    ]
    assert [e["position"] for e in events] == sorted(e["position"] for e in events)
    ticket_events = events[1:]
    assert [e["sequence"] for e in ticket_events] == [1, 2, 3]
    for event in events:
        assert (event["visit_id"], event["patient_id"]) == (visit["id"], visit["patient_id"])
    for event in ticket_events:
        assert event["aggregate"] == {"type": "ticket", "id": ticket["id"]}
    base = {"ticket_id": ticket["id"], "department": "internal", "number": 1}
    assert [e["data"] for e in ticket_events] == [
        base | {"priority": "priority"},
        base | {"wait_seconds": called["wait_seconds"]},
        base,
    ]
