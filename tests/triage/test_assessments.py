"""Assessing visits at the four emergency levels, validated against registration."""

from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from kit import testing
from kit.testing import feed_headers
from patientflow.supervisor import free_port
from services.triage.app import create_app
from services.triage.config import TriageSettings
from services.triage.models import TriageTable
from tests.triage.conftest import FrozenClock
from tests.triage.factories import assess, event_types, open_visit


@pytest.mark.parametrize(
    ("level", "zone", "response_minutes"),
    [("I", "red", 0), ("II", "red", 10), ("III", "yellow", 30), ("IV", "green", 240)],
)
def test_level_sets_zone_and_response_time(
    client: TestClient, registration: httpx.Client, level: str, zone: str, response_minutes: int
) -> None:
    visit = open_visit(registration)
    assessment = assess(client, visit["id"], level, chief_complaint="胸痛30分钟")
    assert assessment["visit_id"] == visit["id"]
    assert assessment["patient_id"] == visit["patient_id"]
    assert (assessment["level"], assessment["zone"]) == (level, zone)
    assert assessment["response_minutes"] == response_minutes
    assert assessment["chief_complaint"] == "胸痛30分钟"


def test_triage_event_carries_visit_patient_level_and_zone(
    client: TestClient, registration: httpx.Client
) -> None:
    visit = open_visit(registration)
    assessment = assess(client, visit["id"], "II")
    [event] = client.get("/events", headers=feed_headers("triage")).json()["events"]
    assert event["type"] == "visit.triaged" and event["source"] == "triage"
    assert event["aggregate"] == {"type": "visit", "id": visit["id"]}
    assert (event["visit_id"], event["patient_id"]) == (visit["id"], visit["patient_id"])
    assert event["data"] == {
        "assessment_id": assessment["id"],
        "level": "II",
        "zone": "red",
        "suggested_level": None,
        "green_channel": True,
    }
    assert "chief_complaint" not in str(event)


def test_reassessment_adds_a_row_and_the_list_is_newest_last(
    client: TestClient, registration: httpx.Client, clock: FrozenClock
) -> None:
    visit = open_visit(registration)
    first = assess(client, visit["id"], "IV")
    clock.advance(minutes=20)
    second = assess(client, visit["id"], "II", note="血压下降")
    listed = client.get(f"/visits/{visit['id']}/assessments").json()
    assert [a["id"] for a in listed] == [first["id"], second["id"]]
    assert [a["level"] for a in listed] == ["IV", "II"]
    assert event_types(client) == ["visit.triaged", "visit.triaged", "triage.level_changed"]


def test_visit_never_assessed_has_an_empty_list(client: TestClient) -> None:
    assert client.get("/visits/never-seen/assessments").json() == []


@pytest.mark.parametrize(
    "body",
    [
        {"level": "V"},
        {"level": "i"},
        {"level": None},
        {"chief_complaint": "x" * 201},
        {"note": "x" * 501},
        {"surprise": 1},
    ],
)
def test_invalid_assessment_is_422_problem_and_stores_nothing(
    client: TestClient, registration: httpx.Client, body: dict[str, object]
) -> None:
    visit = open_visit(registration)
    response = client.post("/assessments", json={"visit_id": visit["id"], "level": "III"} | body)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"].endswith("/validation-error")
    assert client.get(f"/visits/{visit['id']}/assessments").json() == []
    assert event_types(client) == []


def test_visit_id_cannot_reach_other_registration_paths(client: TestClient) -> None:
    response = client.post("/assessments", json={"visit_id": "../patients/x", "level": "III"})
    assert response.status_code == 422


def test_unknown_visit_is_404_problem(client: TestClient) -> None:
    response = client.post("/assessments", json={"visit_id": "0" * 36, "level": "I"})
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"].endswith("/visit-not-found")
    assert event_types(client) == []


def test_registration_down_is_503_problem_and_stores_nothing(data_dir: Path) -> None:
    settings = testing.make_test_settings(
        TriageSettings, data_dir, registration_url=f"http://127.0.0.1:{free_port()}"
    )
    with testing.service_client(create_app(settings), TriageTable.metadata) as client:
        response = client.post("/assessments", json={"visit_id": "0" * 36, "level": "I"})
        assert response.status_code == 503
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["retry-after"]
        assert "registration" in response.json()["detail"]
        ticket = client.post("/queues/internal/tickets", json={"visit_id": "0" * 36})
        assert ticket.status_code == 503
        assert event_types(client) == []


def test_calls_without_internal_credentials_are_refused(client: TestClient) -> None:
    assert client.get("/queues/internal", headers={"authorization": ""}).status_code == 401
