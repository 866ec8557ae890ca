"""Registration's merges in results: read again (a replica's replay, a cursor moved back) they change
nothing, an order placed with a visit asked of registration just before the merge follows it, and a
print follows it too (the one column of a print the service's own role may update on PostgreSQL)."""

import threading
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from kit.database import Database
from kit.feed import FeedConsumer
from kit.testing import eventually, feed_headers, internal_headers
from services.results import service
from services.results.models import LabOrder, ReportPrint
from services.results.schemas import OrderCreate, PaymentMode, RegistrationVisit
from tests.results.factories import (
    CBC,
    create_emergency_visit,
    create_patient,
    create_unidentified_patient,
    place_order,
    post_report,
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
    registration_consumer(client).apply(event)
    assert client.get(f"/orders/{order['id']}").json()["patient_id"] == known["id"]
    assert client.get(f"/patients/{unknown['id']}/reports").json() == []
    assert client.get("/events", headers=feed_headers("results")).json()["events"] == emitted


def test_a_merge_re_points_the_prints_of_the_merged_record(
    client: TestClient, registration: httpx.Client
) -> None:
    unknown = create_unidentified_patient(registration)
    order = place_order(client, create_emergency_visit(registration, unknown["id"])["id"])
    report = post_report(client, order["id"])
    kiosk = internal_headers(
        "kiosk-1", {"results:read"}, audience="results", patient=unknown["id"], kind="kiosk"
    )
    printed = client.post(f"/reports/{report['id']}/prints", headers=kiosk)
    assert printed.status_code == 201, printed.text
    known_id = merge(registration, unknown["id"])
    database: Database = client.app.state.database  # type: ignore[attr-defined]

    def print_patient() -> str | None:
        with database.session(write=False) as session:
            row = session.get(ReportPrint, printed.json()["id"])
            return row.patient_id if row is not None and row.patient_id == known_id else None

    eventually(print_patient, what="the print to follow the merge")


def merge(registration: httpx.Client, unknown_id: str) -> str:
    known = create_patient(registration, 1)
    merged = registration.post(f"/patients/{known['id']}/merge", json={"source_patient_id": unknown_id})
    assert merged.status_code == 200, merged.text
    return str(known["id"])


def merge_event(registration: httpx.Client) -> dict[str, Any]:
    params = {"type": "patient.merged"}
    [event] = registration.get("/events", headers=feed_headers("registration"), params=params).json()[
        "events"
    ]
    return dict(event)


def registration_consumer(client: TestClient) -> FeedConsumer:
    [consumer] = [c for c in client.app.state.consumers if c.source == "registration"]  # type: ignore[attr-defined]
    assert isinstance(consumer, FeedConsumer)
    return consumer


def stale_visit(registration: httpx.Client) -> RegistrationVisit:
    """A green-channel visit of an unidentified patient, as registration answered before any merge."""
    unknown = create_unidentified_patient(registration)
    visit = create_emergency_visit(registration, unknown["id"])
    return RegistrationVisit(id=visit["id"], patient_id=unknown["id"], payment_mode=PaymentMode.green_channel)


def test_an_order_placed_with_a_visit_asked_before_the_merge_names_the_survivor(
    client: TestClient, registration: httpx.Client
) -> None:
    visit = stale_visit(registration)
    known_id = merge(registration, visit.patient_id)
    database: Database = client.app.state.database  # type: ignore[attr-defined]

    def applied() -> bool:
        with database.session(write=False) as session:
            return session.execute(text("SELECT count(*) FROM merged_visit")).scalar_one() == 1

    eventually(applied, what="results to read the merge")
    with database.session() as session:
        order = service.place_order(session, visit=visit, data=OrderCreate(visit_id=visit.id, test_code=CBC))
    assert order.patient_id == known_id


def test_a_merge_applied_while_an_order_is_in_flight_waits_and_re_points_it(
    client: TestClient, registration: httpx.Client
) -> None:
    database: Database = client.app.state.database  # type: ignore[attr-defined]
    if database.is_sqlite:
        pytest.skip("SQLite serialises writers: a merge cannot interleave with an order")
    consumer = registration_consumer(client)
    consumer.stop()  # the merge is applied by hand below, at the moment the test chooses
    visit = stale_visit(registration)
    known_id = merge(registration, visit.patient_id)
    event = merge_event(registration)

    with database.session() as placing:  # asked registration before the merge, not yet committed
        order = service.place_order(placing, visit=visit, data=OrderCreate(visit_id=visit.id, test_code=CBC))
        placing.flush()
        merging = threading.Thread(target=consumer.apply, args=(event,))
        merging.start()
        eventually(lambda: advisory_waiters(database) > 0, what="the merge to wait for the order")
    merging.join(timeout=30)
    assert not merging.is_alive()
    with database.session(write=False) as session:
        assert session.get(LabOrder, order.id).patient_id == known_id  # type: ignore[union-attr]


def advisory_waiters(database: Database) -> int:
    with database.session(write=False) as session:
        query = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        return int(session.execute(text(query)).scalar_one())
