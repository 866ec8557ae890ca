"""A visit registration has closed takes no new assessment or ticket (409 `visit-closed`); work already
under way here (a ticket queued before) still goes on."""

import httpx
from fastapi.testclient import TestClient

from tests.triage.factories import open_visit


def close(registration: httpx.Client, visit_id: str) -> None:
    response = registration.post(f"/visits/{visit_id}/close")
    assert response.status_code == 200, response.text


def test_a_closed_visit_is_neither_assessed_nor_queued(
    client: TestClient, registration: httpx.Client
) -> None:
    visit = open_visit(registration)
    close(registration, visit["id"])

    for response in (
        client.post("/assessments", json={"visit_id": visit["id"], "level": "II"}),
        client.post("/queues/emergency/tickets", json={"visit_id": visit["id"]}),
    ):
        assert response.status_code == 409, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        problem = response.json()
        assert problem["type"].endswith("/visit-closed") and problem["visit_id"] == visit["id"]
        assert visit["id"] in problem["detail"] and "closed" in problem["detail"]
    assert client.get(f"/visits/{visit['id']}/assessments").json() == []
    assert client.get(f"/visits/{visit['id']}/tickets").json() == []


def test_a_ticket_queued_before_the_visit_closed_is_still_called_and_finished(
    client: TestClient, registration: httpx.Client
) -> None:
    visit = open_visit(registration)
    ticket = client.post("/queues/emergency/tickets", json={"visit_id": visit["id"]}).json()
    close(registration, visit["id"])

    called = client.post("/queues/emergency/call-next", json={})
    assert called.status_code == 200 and called.json()["id"] == ticket["id"]
    assert client.post(f"/tickets/{ticket['id']}/finish").status_code == 200
