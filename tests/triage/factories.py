"""Plain factory functions for triage tests."""

from typing import Any

import httpx
from fastapi.testclient import TestClient

from kit.testing import feed_headers
from tests.gateway.factories import random_id_number


def open_visit(registration: httpx.Client, **overrides: Any) -> dict[str, Any]:
    """An emergency visit of a new unidentified patient (no identity number to collide across tests)."""
    patient = registration.post("/patients", json={"unidentified": True})
    assert patient.status_code == 201, patient.text
    body = {"patient_id": patient.json()["id"], "kind": "emergency", "department": "emergency"} | overrides
    visit = registration.post("/visits", json=body)
    assert visit.status_code == 201, visit.text
    return visit.json()


def open_named_visit(registration: httpx.Client, name: str, **overrides: Any) -> dict[str, Any]:
    """An outpatient visit of a new identified patient called `name`."""
    patient = registration.post("/patients", json={"id_number": random_id_number(), "name": name})
    assert patient.status_code == 201, patient.text
    body = {"patient_id": patient.json()["id"], "kind": "outpatient", "department": "internal"} | overrides
    visit = registration.post("/visits", json=body)
    assert visit.status_code == 201, visit.text
    return visit.json()


def assess(client: TestClient, visit_id: str, level: str = "III", **overrides: Any) -> dict[str, Any]:
    response = client.post("/assessments", json={"visit_id": visit_id, "level": level} | overrides)
    assert response.status_code == 201, response.text
    return response.json()


def take_ticket(
    client: TestClient, visit_id: str, department: str = "internal", **overrides: Any
) -> dict[str, Any]:
    response = client.post(f"/queues/{department}/tickets", json={"visit_id": visit_id} | overrides)
    assert response.status_code == 201, response.text
    return response.json()


def call_next(client: TestClient, department: str = "internal", **body: Any) -> dict[str, Any]:
    response = client.post(f"/queues/{department}/call-next", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def event_types(client: TestClient) -> list[str]:
    """The types of triage's events in order, without the `queue.nearly_up` notices any queue change may
    add (tests/triage/test_positions.py checks those)."""
    events = client.get("/events", headers=feed_headers("triage"), params={"limit": 500}).json()["events"]
    return [event["type"] for event in events if event["type"] != "queue.nearly_up"]
