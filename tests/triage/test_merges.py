"""Registration's merges re-point triage: the merged visits' assessments and tickets name the survivor."""

from typing import Any

import httpx
from fastapi.testclient import TestClient

from kit.testing import eventually, feed_headers
from tests.gateway.factories import random_id_number
from tests.triage.factories import assess, event_types, open_visit, take_ticket


def merge(registration: httpx.Client, unknown_id: str) -> str:
    """Identify the unidentified patient as a newly registered one; the survivor's id."""
    known = registration.post("/patients", json={"id_number": random_id_number(), "name": "李四"})
    assert known.status_code == 201, known.text
    known_id = str(known.json()["id"])
    merged = registration.post(f"/patients/{known_id}/merge", json={"source_patient_id": unknown_id})
    assert merged.status_code == 200, merged.text
    return known_id


def views(client: TestClient, visit_id: str, ticket_id: str) -> dict[str, Any]:
    return {
        "assessments": [a["patient_id"] for a in client.get(f"/visits/{visit_id}/assessments").json()],
        "tickets": [t["patient_id"] for t in client.get(f"/visits/{visit_id}/tickets").json()],
        "ticket": client.get(f"/tickets/{ticket_id}").json()["patient_id"],
    }


def test_a_merge_repoints_assessments_and_tickets_and_a_replay_changes_nothing(
    client: TestClient, registration: httpx.Client
) -> None:
    visit = open_visit(registration)
    unknown_id = visit["patient_id"]
    assess(client, visit["id"], "II")
    assess(client, visit["id"], "III")
    ticket = take_ticket(client, visit["id"], department="emergency")
    other = open_visit(registration)  # another unidentified patient's: not theirs to move
    other_ticket = take_ticket(client, other["id"], department="emergency")

    known_id = merge(registration, unknown_id)
    surviving = {"assessments": [known_id, known_id], "tickets": [known_id], "ticket": known_id}
    eventually(lambda: views(client, visit["id"], ticket["id"]) == surviving, what="triage to re-point")
    assert client.get(f"/tickets/{other_ticket['id']}").json()["patient_id"] == other["patient_id"]

    emitted = event_types(client)
    [merged] = registration.get(
        "/events", headers=feed_headers("registration"), params={"type": "patient.merged"}
    ).json()["events"]
    [consumer] = client.app.state.consumers  # type: ignore[attr-defined]
    consumer.apply(merged)  # delivered again (a replica's replay, a cursor moved back)
    assert views(client, visit["id"], ticket["id"]) == surviving
    assert event_types(client) == emitted


def test_a_ticket_taken_after_the_merge_names_the_survivor(
    client: TestClient, registration: httpx.Client
) -> None:
    visit = open_visit(registration)
    known_id = merge(registration, visit["patient_id"])
    assert take_ticket(client, visit["id"])["patient_id"] == known_id
    assert assess(client, visit["id"])["patient_id"] == known_id
