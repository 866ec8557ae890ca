"""Suspending and resuming a department's clinic session (门诊暂停): nobody is called while suspended."""

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from kit.testing import feed_headers, http_client
from tests.triage.conftest import FrozenClock
from tests.triage.factories import call_next, event_types, open_visit, take_ticket
from tests.triage.test_concurrency import run_together

REASON = "专家停诊：临时手术"


def suspend(client: TestClient, department: str = "internal", reason: str = REASON) -> dict[str, Any]:
    response = client.post(f"/queues/{department}/suspend", json={"reason": reason})
    assert response.status_code == 200, response.text
    return response.json()


def test_suspending_shows_on_the_queue_and_names_the_waiting_tickets(
    client: TestClient, registration: httpx.Client, clock: FrozenClock
) -> None:
    normal = take_ticket(client, open_visit(registration)["id"])
    elderly = take_ticket(client, open_visit(registration)["id"], priority="priority")
    take_ticket(client, open_visit(registration)["id"], department="surgery")

    queue = suspend(client)

    assert queue["suspended"] is True
    assert queue["suspension"] == {"reason": REASON, "suspended_at": "2026-11-27T00:00:00Z"}
    assert [t["id"] for t in queue["waiting"]] == [elderly["id"], normal["id"]]  # places are kept
    assert client.get("/queues/internal").json() == queue
    assert client.get("/queues/surgery").json()["suspended"] is False
    [event] = client.get(
        "/events", headers=feed_headers("triage"), params={"type": "queue.suspended"}
    ).json()["events"]
    assert event["data"] == {
        "department": "internal",
        "reason": REASON,
        "waiting_ticket_ids": [elderly["id"], normal["id"]],
    }
    assert event["aggregate"] == {"type": "queue", "id": "internal"}
    assert (event["visit_id"], event["patient_id"]) == (None, None)


def test_call_next_on_a_suspended_queue_is_409_and_calls_nobody(
    client: TestClient, registration: httpx.Client
) -> None:
    ticket = take_ticket(client, open_visit(registration)["id"])
    suspend(client)

    response = client.post("/queues/internal/call-next", json={"counter": "3"})

    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"].endswith("/queue-suspended")
    assert client.get(f"/tickets/{ticket['id']}").json()["status"] == "waiting"
    assert client.get("/queues/internal").json()["called_count"] == 0
    assert "ticket.called" not in event_types(client)


def test_resuming_calls_in_the_order_the_queue_had(client: TestClient, registration: httpx.Client) -> None:
    first = take_ticket(client, open_visit(registration)["id"])
    suspend(client)
    later = take_ticket(client, open_visit(registration)["id"])  # patients may still queue

    response = client.post("/queues/internal/resume")

    assert response.status_code == 200
    assert (response.json()["suspended"], response.json()["suspension"]) == (False, None)
    assert [call_next(client)["id"], call_next(client)["id"]] == [first["id"], later["id"]]
    resumed = client.get("/events", headers=feed_headers("triage"), params={"type": "queue.resumed"}).json()[
        "events"
    ]
    assert [e["data"] for e in resumed] == [{"department": "internal"}]
    assert event_types(client) == [
        "ticket.queued",
        "queue.suspended",
        "ticket.queued",
        "queue.resumed",
        "ticket.called",
        "ticket.called",
    ]


def test_queue_events_count_per_department(client: TestClient) -> None:
    suspend(client)
    client.post("/queues/internal/resume")
    suspend(client, reason="停电")
    suspend(client, department="surgery")
    events = client.get("/events", headers=feed_headers("triage")).json()["events"]
    sequences = [(e["aggregate"]["id"], e["type"], e["sequence"]) for e in events]
    assert sequences == [
        ("internal", "queue.suspended", 1),
        ("internal", "queue.resumed", 2),
        ("internal", "queue.suspended", 3),
        ("surgery", "queue.suspended", 1),
    ]


def test_suspending_twice_is_409_and_keeps_the_first_suspension(
    client: TestClient, clock: FrozenClock
) -> None:
    first = suspend(client)
    clock.advance(minutes=5)

    again = client.post("/queues/internal/suspend", json={"reason": "另一个原因"})

    assert again.status_code == 409
    assert again.json()["type"].endswith("/queue-suspended")
    assert client.get("/queues/internal").json()["suspension"] == first["suspension"]
    assert event_types(client) == ["queue.suspended"]


def test_resuming_a_queue_that_is_not_suspended_is_409_and_changes_nothing(client: TestClient) -> None:
    response = client.post("/queues/internal/resume")
    assert response.status_code == 409
    assert response.json()["type"].endswith("/queue-not-suspended")
    suspend(client)
    assert client.post("/queues/internal/resume").status_code == 200
    assert client.post("/queues/internal/resume").status_code == 409
    assert event_types(client) == ["queue.suspended", "queue.resumed"]


@pytest.mark.parametrize(
    "body",
    [
        None,
        {},
        {"reason": ""},
        {"reason": "   "},
        {"reason": "x" * 201},
        {"reason": 5},
        {"reason": "停诊", "by": "x"},
    ],
)
def test_a_malformed_suspension_is_422_and_changes_nothing(client: TestClient, body: Any) -> None:
    response = client.post("/queues/internal/suspend", json=body)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert client.get("/queues/internal").json()["suspended"] is False
    assert event_types(client) == []


@pytest.mark.parametrize("department", ["Internal", "a b", "x" * 33])
def test_a_malformed_department_is_400(client: TestClient, department: str) -> None:
    assert client.post(f"/queues/{department}/suspend", json={"reason": REASON}).status_code == 400
    assert client.post(f"/queues/{department}/resume").status_code == 400


def test_no_ticket_named_by_a_suspension_is_called_before_the_resume(
    served_triage: str, registration: httpx.Client
) -> None:
    """Counters keep pressing call-next while the session is suspended, over real concurrent requests."""
    with http_client(served_triage, audience="triage") as client:
        for _ in range(8):  # more than the counters can call, so none of them sees an empty queue
            client.post("/queues/internal/tickets", json={"visit_id": open_visit(registration)["id"]})

    def press_call_next(client: httpx.Client) -> list[int]:
        return [client.post("/queues/internal/call-next").status_code for _ in range(2)]

    def press_suspend(client: httpx.Client) -> list[int]:
        return [client.post("/queues/internal/suspend", json={"reason": REASON}).status_code]

    jobs: list[Callable[[httpx.Client], list[int]]] = [press_call_next, press_call_next, press_call_next]
    statuses = run_together(served_triage, [*jobs, press_suspend])

    assert statuses[-1] == [200]
    assert {s for calls in statuses[:-1] for s in calls} <= {200, 409}
    with http_client(served_triage, audience="triage") as client:
        events = client.get("/events", headers=feed_headers("triage"), params={"limit": 500}).json()["events"]
        waiting = [t["id"] for t in client.get("/queues/internal").json()["waiting"]]
    [suspended] = [e for e in events if e["type"] == "queue.suspended"]
    after = [e for e in events if e["position"] > suspended["position"]]
    assert [e["type"] for e in after if e["type"] == "ticket.called"] == []
    assert suspended["data"]["waiting_ticket_ids"] == waiting
