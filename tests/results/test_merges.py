"""A merge read again from registration's feed (a replica's replay, a cursor moved back) changes nothing."""

import httpx
from fastapi.testclient import TestClient

from kit.testing import eventually, feed_headers
from tests.results.factories import (
    create_emergency_visit,
    create_patient,
    create_unidentified_patient,
    place_order,
)


def test_a_replayed_merge_changes_nothing(client: TestClient, registration: httpx.Client) -> None:
    unknown = create_unidentified_patient(registration)
    order = place_order(client, create_emergency_visit(registration, unknown["id"])["id"])
    known = create_patient(registration)
    merged = registration.post(f"/patients/{known['id']}/merge", json={"source_patient_id": unknown["id"]})
    assert merged.status_code == 200, merged.text
    eventually(
        lambda: client.get(f"/orders/{order['id']}").json()["patient_id"] == known["id"],
        what="results to consume patient.merged",
    )
    emitted = client.get("/events", headers=feed_headers("results")).json()["events"]
    [event] = registration.get(
        "/events", headers=feed_headers("registration"), params={"type": "patient.merged"}
    ).json()["events"]
    [consumer] = [c for c in client.app.state.consumers if c.source == "registration"]  # type: ignore[attr-defined]
    consumer.apply(event)
    assert client.get(f"/orders/{order['id']}").json()["patient_id"] == known["id"]
    assert client.get(f"/patients/{unknown['id']}/reports").json() == []
    assert client.get("/events", headers=feed_headers("results")).json()["events"] == emitted
