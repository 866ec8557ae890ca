"""Registration's merges re-point triage: the merged visits' assessments and tickets name the survivor."""

import threading
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from kit.database import Database
from kit.feed import FeedConsumer
from kit.testing import eventually, feed_headers
from services.triage import service
from services.triage.models import Assessment
from services.triage.schemas import AssessmentCreate, RegistrationVisit, TicketCreate, TriageLevel
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
    merged = merge_event(registration)
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


def merge_event(registration: httpx.Client) -> dict[str, Any]:
    events = registration.get(
        "/events", headers=feed_headers("registration"), params={"type": "patient.merged"}
    )
    [event] = events.json()["events"]
    return dict(event)


def test_a_visit_asked_of_registration_before_the_merge_is_written_for_the_survivor(
    client: TestClient, registration: httpx.Client
) -> None:
    visit = open_visit(registration)
    stale = RegistrationVisit(id=visit["id"], patient_id=visit["patient_id"])  # asked before the merge
    known_id = merge(registration, visit["patient_id"])
    eventually(lambda: merge_event(registration)["id"] in applied(client), what="triage to read the merge")
    database: Database = client.app.state.database  # type: ignore[attr-defined]
    with database.session() as session:
        data = AssessmentCreate(visit_id=visit["id"], level=TriageLevel.III)
        assessment = service.assess(session, visit=stale, data=data, settings=client.app.state.settings)  # type: ignore[attr-defined]
        ticket = service.enqueue(
            session,
            visit=stale,
            masked_name="无名氏",
            department="internal",
            data=TicketCreate(visit_id=visit["id"]),
        )
    assert (assessment.patient_id, ticket.patient_id) == (known_id, known_id)


def applied(client: TestClient) -> set[str]:
    database: Database = client.app.state.database  # type: ignore[attr-defined]
    with database.session(write=False) as session:
        return set(session.execute(text("SELECT event_id FROM consumed_event")).scalars())


def test_a_merge_applied_while_a_write_of_the_visit_is_in_flight_waits_and_re_points_it(
    client: TestClient, registration: httpx.Client
) -> None:
    database: Database = client.app.state.database  # type: ignore[attr-defined]
    if database.is_sqlite:
        pytest.skip("SQLite serialises writers: a merge cannot interleave with a write")
    [consumer] = client.app.state.consumers  # type: ignore[attr-defined]
    assert isinstance(consumer, FeedConsumer)
    consumer.stop()  # the merge is applied by hand below, at the moment the test chooses
    visit = open_visit(registration)
    stale = RegistrationVisit(id=visit["id"], patient_id=visit["patient_id"])
    known_id = merge(registration, visit["patient_id"])
    event = merge_event(registration)

    with database.session() as writing:  # a write asked registration before the merge, not yet committed
        data = AssessmentCreate(visit_id=visit["id"], level=TriageLevel.II)
        settings = client.app.state.settings  # type: ignore[attr-defined]
        assessment = service.assess(writing, visit=stale, data=data, settings=settings)
        writing.flush()
        merging = threading.Thread(target=consumer.apply, args=(event,))
        merging.start()
        eventually(lambda: advisory_waiters(database) > 0, what="the merge to wait for the write")
    merging.join(timeout=30)
    assert not merging.is_alive()
    with database.session(write=False) as session:
        assert session.get(Assessment, assessment.id).patient_id == known_id  # type: ignore[union-attr]


def advisory_waiters(database: Database) -> int:
    with database.session(write=False) as session:
        query = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        return int(session.execute(text(query)).scalar_one())
