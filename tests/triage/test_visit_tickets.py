"""A visit's tickets across departments (`GET /visits/{id}/tickets`), which the journey view reads."""

import httpx
from fastapi.testclient import TestClient

from tests.triage.conftest import FrozenClock
from tests.triage.factories import call_next, open_visit, take_ticket


def test_a_visits_tickets_oldest_first_with_their_times(
    client: TestClient, registration: httpx.Client, clock: FrozenClock
) -> None:
    visit, other = open_visit(registration), open_visit(registration)
    first = take_ticket(client, visit["id"], department="internal")
    clock.advance(minutes=4)
    called = call_next(client, department="internal", counter="2")
    clock.advance(minutes=6)
    finished = client.post(f"/tickets/{first['id']}/finish").json()
    clock.advance(minutes=1)
    take_ticket(client, other["id"], department="radiology")
    second = take_ticket(client, visit["id"], department="radiology")

    response = client.get(f"/visits/{visit['id']}/tickets")

    assert response.status_code == 200
    tickets = response.json()
    assert [t["id"] for t in tickets] == [first["id"], second["id"]]
    assert tickets[0] == finished
    assert (tickets[0]["called_at"], tickets[0]["wait_seconds"]) == (called["called_at"], 240)
    assert tickets[0]["finished_at"] is not None
    assert (tickets[1]["status"], tickets[1]["department"], tickets[1]["number"]) == (
        "waiting",
        "radiology",
        2,
    )
    assert tickets[1]["called_at"] is None and tickets[1]["finished_at"] is None


def test_a_visit_that_never_queued_has_no_tickets(client: TestClient, registration: httpx.Client) -> None:
    take_ticket(client, open_visit(registration)["id"])
    response = client.get(f"/visits/{open_visit(registration)['id']}/tickets")
    assert response.status_code == 200
    assert response.json() == []


def test_a_malformed_visit_id_is_400(client: TestClient) -> None:
    response = client.get("/visits/" + "x" * 37 + "/tickets")
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
