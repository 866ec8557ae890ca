"""Triage decides for itself: acting for one patient, another patient's ticket is a 404 like a missing
one, and another patient's visit has no assessments or tickets to show."""

import httpx
from fastapi.testclient import TestClient

from kit.testing import internal_headers
from tests.triage.factories import assess, open_visit, take_ticket


def acting_for(patient_id: str) -> dict[str, str]:
    return internal_headers("kiosk-hall-1", {"triage:read"}, audience="triage", patient=patient_id)


def test_another_patients_ticket_and_visit_read_as_missing(
    client: TestClient, registration: httpx.Client
) -> None:
    mine, theirs = open_visit(registration), open_visit(registration)
    assess(client, theirs["id"])
    their_ticket = take_ticket(client, theirs["id"])
    my_ticket = take_ticket(client, mine["id"])
    me = mine["patient_id"]

    refused = client.get(f"/tickets/{their_ticket['id']}", headers=acting_for(me))
    missing = client.get("/tickets/no-such-ticket", headers=acting_for(me))
    assert refused.status_code == missing.status_code == 404
    assert refused.json()["type"] == missing.json()["type"]
    assert client.get(f"/visits/{theirs['id']}/assessments", headers=acting_for(me)).json() == []
    assert client.get(f"/visits/{theirs['id']}/tickets", headers=acting_for(me)).json() == []

    assert client.get(f"/tickets/{my_ticket['id']}", headers=acting_for(me)).status_code == 200
    assert [t["id"] for t in client.get(f"/visits/{mine['id']}/tickets", headers=acting_for(me)).json()] == [
        my_ticket["id"]
    ]
