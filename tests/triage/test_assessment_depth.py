"""Assessment in depth: vital signs validated and stored, the suggested level and the nurse's override,
zones and response limits, re-triage timers (`triage.overdue`), `triage.level_changed`, the green
channel flag, and outpatient routing to a department's queue (分诊)."""

from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from kit.testing import feed_headers
from services.triage.timers import OverdueTimer
from tests.triage.conftest import FrozenClock
from tests.triage.factories import assess, call_next, event_types, open_visit, take_ticket

STABLE = {"heart_rate": 80, "systolic_bp": 120, "diastolic_bp": 80, "spo2": 98, "consciousness": "A"}


def events(client: TestClient, event_type: str) -> list[dict[str, Any]]:
    page = client.get("/events", headers=feed_headers("triage"), params={"limit": 500}).json()["events"]
    return [e for e in page if e["type"] == event_type]


def timer(client: TestClient, clock: FrozenClock) -> OverdueTimer:
    app: Any = client.app
    return OverdueTimer(app.state.database, app.state.settings, clock=clock)


def test_vital_signs_give_the_level_and_are_stored_with_the_sign_that_decided_it(
    client: TestClient, registration: httpx.Client
) -> None:
    visit = open_visit(registration)
    body = {
        "visit_id": visit["id"],
        "chief_complaint": "胸痛30分钟",
        "vitals": STABLE | {"heart_rate": 150, "temperature": 37.2, "respiratory_rate": 20},
        "pain_score": 6,
    }
    response = client.post("/assessments", json=body)
    assert response.status_code == 201, response.text
    created = response.json()
    assert (created["level"], created["zone"], created["response_minutes"]) == ("II", "red", 10)
    assert (created["suggested_level"], created["suggested_by"]) == ("II", "heart_rate")
    assert created["suggestion_reason"] == "level II: heart rate 150 > 140"
    assert created["override_reason"] is None
    assert created["green_channel"] is True
    assert (created["heart_rate"], created["temperature"], created["consciousness"]) == (150, 37.2, "A")
    assert created["pain_score"] == 6
    assert datetime.fromisoformat(created["due_at"]) == datetime.fromisoformat(
        created["assessed_at"]
    ) + timedelta(minutes=10)
    assert client.get(f"/visits/{visit['id']}/assessments").json() == [created]


def test_a_level_other_than_the_suggestion_needs_a_reason(
    client: TestClient, registration: httpx.Client
) -> None:
    visit = open_visit(registration)
    body = {"visit_id": visit["id"], "level": "III", "vitals": STABLE | {"spo2": 78}}
    refused = client.post("/assessments", json=body)
    assert refused.status_code == 422
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["type"].endswith("/override-reason-required")
    assert refused.json()["suggested_level"] == "I"
    assert client.get(f"/visits/{visit['id']}/assessments").json() == []
    assert event_types(client) == []

    overridden = assess(
        client, visit["id"], "III", vitals=STABLE | {"spo2": 78}, override_reason="指脉氧探头脱落，复测98%"
    )
    assert (overridden["level"], overridden["suggested_level"]) == ("III", "I")
    assert overridden["override_reason"] == "指脉氧探头脱落，复测98%"
    assert (overridden["zone"], overridden["green_channel"]) == ("yellow", False)


def test_a_level_without_vital_signs_needs_no_reason_and_has_no_suggestion(
    client: TestClient, registration: httpx.Client
) -> None:
    visit = open_visit(registration)
    plain = assess(client, visit["id"], "IV")
    assert (plain["suggested_level"], plain["suggested_by"], plain["zone"]) == (None, None, "green")


@pytest.mark.parametrize(
    "extra",
    [
        {"vitals": {"heart_rate": 1200}},
        {"vitals": {"heart_rate": -1}},
        {"vitals": {"systolic_bp": 80, "diastolic_bp": 120}},
        {"vitals": {"systolic_bp": 400}},
        {"vitals": {"respiratory_rate": 200}},
        {"vitals": {"spo2": 101}},
        {"vitals": {"temperature": 375}},
        {"vitals": {"temperature": 12}},
        {"vitals": {"consciousness": "X"}},
        {"vitals": {"heart_rate": "fast"}},
        {"vitals": {"glucose": 5}},
        {"pain_score": 11},
        {"pain_score": -1},
        {"department": "../x"},
        {"override_reason": ""},
        {"level": None, "vitals": {}},
    ],
)
def test_nonsense_signs_are_422_problem_and_store_nothing(
    client: TestClient, registration: httpx.Client, extra: dict[str, Any]
) -> None:
    visit = open_visit(registration)
    response = client.post("/assessments", json={"visit_id": visit["id"], "level": "III"} | extra)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert client.get(f"/visits/{visit['id']}/assessments").json() == []
    assert event_types(client) == []


def test_a_reassessment_that_changes_the_level_emits_level_changed(
    client: TestClient, registration: httpx.Client
) -> None:
    visit = open_visit(registration)
    first = assess(client, visit["id"], "IV")
    assess(client, visit["id"], "IV", note="复评无变化")
    assert events(client, "triage.level_changed") == []
    worse = client.post("/assessments", json={"visit_id": visit["id"], "vitals": {"systolic_bp": 65}}).json()
    (changed,) = events(client, "triage.level_changed")
    assert changed["data"] == {
        "assessment_id": worse["id"],
        "previous_assessment_id": client.get(f"/visits/{visit['id']}/assessments").json()[1]["id"],
        "from_level": "IV",
        "to_level": "I",
        "zone": "red",
    }
    assert first["id"] != worse["id"]


def queue_flags(client: TestClient, department: str = "emergency") -> dict[str, tuple[str | None, bool]]:
    waiting = client.get(f"/queues/{department}").json()["waiting"]
    return {t["visit_id"]: (t["level"], t["overdue"]) for t in waiting}


def test_a_patient_waiting_past_the_limit_is_flagged_and_emitted_once(
    client: TestClient, registration: httpx.Client, clock: FrozenClock
) -> None:
    seen, waiting = open_visit(registration), open_visit(registration)
    assess(client, seen["id"], "III")
    assess(client, waiting["id"], "III")
    take_ticket(client, seen["id"], "emergency")
    ticket = take_ticket(client, waiting["id"], "emergency")
    call_next(client, "emergency")  # `seen` queued first: called, so no longer waiting
    clock.advance(minutes=30)  # exactly at the limit: not past it
    assert queue_flags(client) == {waiting["id"]: ("III", False)}
    assert timer(client, clock).run_once() == []

    clock.advance(seconds=1)
    assert queue_flags(client) == {waiting["id"]: ("III", True)}
    (visit_ticket,) = client.get(f"/visits/{waiting['id']}/tickets").json()
    assert (visit_ticket["overdue"], visit_ticket["level"]) == (True, "III")
    latest = client.get(f"/visits/{waiting['id']}/assessments").json()[-1]
    assert visit_ticket["due_at"] == latest["due_at"]
    assert timer(client, clock).run_once() == [latest["id"]]
    clock.advance(minutes=10)
    assert timer(client, clock).run_once() == []  # once per assessment
    (overdue,) = events(client, "triage.overdue")
    assert (overdue["visit_id"], overdue["data"]["assessment_id"]) == (waiting["id"], latest["id"])
    assert overdue["data"]["level"] == "III"
    assert overdue["data"]["ticket_ids"] == [ticket["id"]]
    assert overdue["data"]["waited_minutes"] == 30.0  # when the timer fired


def test_a_reassessment_restarts_the_timer(
    client: TestClient, registration: httpx.Client, clock: FrozenClock
) -> None:
    visit = open_visit(registration)
    assess(client, visit["id"], "IV")
    take_ticket(client, visit["id"], "emergency")
    clock.advance(minutes=200)
    reassessed = assess(client, visit["id"], "III", note="再次评估：疼痛加重")
    clock.advance(minutes=100)  # past the first assessment's 240 minutes, not 30 past the second's...
    assert queue_flags(client) == {visit["id"]: ("III", True)}  # ...but it is: 100 > 30
    assert timer(client, clock).run_once() == [reassessed["id"]]  # the superseded one never fires
    fresh = assess(client, visit["id"], "III", note="再次评估")
    assert queue_flags(client) == {visit["id"]: ("III", False)}
    clock.advance(minutes=31)
    assert timer(client, clock).run_once() == [fresh["id"]]
    assert len(events(client, "triage.overdue")) == 2


def test_limits_are_settings(registration: httpx.Client, settings: Any, clock: FrozenClock) -> None:
    from kit import testing
    from services.triage.app import create_app
    from services.triage.assessment import LevelMinutes
    from services.triage.models import TriageTable

    custom = settings.model_copy(
        update={"response_minutes": LevelMinutes(IV=60), "reassess_minutes": LevelMinutes(III=15)}
    )
    with testing.service_client(create_app(custom), TriageTable.metadata) as client:
        level_iv = assess(client, open_visit(registration)["id"], "IV")
        level_iii = assess(client, open_visit(registration)["id"], "III")
    assert level_iv["response_minutes"] == 60
    assessed = datetime.fromisoformat(level_iii["assessed_at"])
    assert datetime.fromisoformat(level_iii["due_at"]) == assessed + timedelta(minutes=15)
    assert level_iii["response_minutes"] == 30  # the doctor's limit; re-assessment comes first


def test_nobody_waiting_is_never_overdue(
    client: TestClient, registration: httpx.Client, clock: FrozenClock
) -> None:
    visit = open_visit(registration)
    assess(client, visit["id"], "I")  # assessed, never queued (taken straight to resuscitation)
    clock.advance(minutes=5)
    assert timer(client, clock).run_once() == []


def test_a_department_in_the_assessment_queues_the_visit_there(
    client: TestClient, registration: httpx.Client
) -> None:
    visit = open_visit(registration, kind="outpatient", department="internal")
    routed = assess(client, visit["id"], "III", department="cardiology")
    (ticket,) = client.get(f"/visits/{visit['id']}/tickets").json()
    assert (routed["department"], routed["ticket_id"]) == ("cardiology", ticket["id"])
    assert (ticket["department"], ticket["rank"], ticket["level"]) == ("cardiology", 1, "III")
    again = assess(client, visit["id"], "II", department="cardiology", note="复评")
    assert again["ticket_id"] == ticket["id"]  # still one ticket, re-ranked
    (reranked,) = client.get(f"/visits/{visit['id']}/tickets").json()
    assert (reranked["rank"], reranked["level"]) == (0, "II")
    assert client.get("/queues/cardiology").json()["waiting_count"] == 1
    assert event_types(client).count("ticket.queued") == 1
