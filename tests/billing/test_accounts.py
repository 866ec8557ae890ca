"""Visit accounts from registration's feed: opening, the registration fee exactly once, patient merges."""

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import delete
from sqlmodel import SQLModel

from kit.testing import eventually, feed_headers
from services.billing import consumers
from services.billing.models import ConsumedEvent, FeedCursor
from tests.billing.factories import (
    EMERGENCY_FEE_FEN,
    ID_NUMBERS,
    OUTPATIENT_FEE_FEN,
    account,
    consumer,
    new_visit,
    open_visit,
    register_patient,
    register_unidentified,
    wait_for_account,
    wait_until_consumed,
)


def test_visit_opened_opens_account_and_charges_registration_fee(
    registration: httpx.Client, client: TestClient
) -> None:
    patient = register_patient(registration)
    visit = open_visit(registration, patient["id"])

    opened = wait_for_account(client, visit["id"], charges=1)
    assert opened["patient_id"] == patient["id"]
    assert (opened["kind"], opened["payment_mode"], opened["status"]) == ("outpatient", "prepay", "open")
    [fee] = opened["charges"]
    assert (fee["item_code"], fee["item_name"], fee["origin"]) == (
        "110200001",
        "普通门诊诊察费",
        "registration",
    )
    assert fee["amount_fen"] == OUTPATIENT_FEE_FEN and fee["status"] == "unpaid"
    assert opened["charges_total_fen"] == opened["balance_fen"] == OUTPATIENT_FEE_FEN
    assert opened["paid_fen"] == 0


def test_emergency_fee_and_inpatient_without_fee(registration: httpx.Client, client: TestClient) -> None:
    emergency = new_visit(
        registration, client, kind="emergency", department="emergency", payment_mode="green_channel"
    )
    inpatient = new_visit(registration, client, kind="inpatient", department="surgery")

    assert account(client, emergency["id"])["charges_total_fen"] == EMERGENCY_FEE_FEN
    assert account(client, emergency["id"])["payment_mode"] == "green_channel"
    assert account(client, inpatient["id"])["charges"] == []  # opened in the same transaction as its fee


def test_registration_fee_is_charged_once_however_often_the_event_arrives(
    registration: httpx.Client, client: TestClient
) -> None:
    visit = new_visit(registration, client)
    [opened] = registration.get(
        "/events", headers=feed_headers("registration"), params={"type": "visit.opened"}
    ).json()["events"]
    database = client.app.state.database  # type: ignore[attr-defined]

    wait_until_consumed(client, "registration", opened["position"])
    reader = consumer(client, "registration")

    def replay_feed(*forget: type[SQLModel]) -> None:
        """Forget how far billing read (and what it applied), then apply the event again."""
        with database.session() as session:
            for table in forget:
                session.execute(delete(table))
        reader.apply(opened)

    reader.apply(opened)  # redelivered: the cursor is already past it
    replay_feed(FeedCursor)  # from position 0: the consumed-event record skips it
    replay_feed(FeedCursor, ConsumedEvent)  # both forgotten: the charge's unique source event id holds
    with database.session() as session:
        consumers.apply_registration_event(session, opened)  # the handler itself, once more

    charges = account(client, visit["id"])["charges"]
    assert [c["item_code"] for c in charges] == ["110200001"]
    assert (
        len(
            client.get("/events", headers=feed_headers("billing"), params={"type": "charge.posted"}).json()[
                "events"
            ]
        )
        == 1
    )


def test_merge_repoints_the_unidentified_patients_account(
    registration: httpx.Client, client: TestClient
) -> None:
    unknown = register_unidentified(registration)
    visit = open_visit(
        registration, unknown["id"], kind="emergency", department="emergency", payment_mode="green_channel"
    )
    wait_for_account(client, visit["id"], charges=1)
    known = register_patient(registration, id_number=ID_NUMBERS[1], name="赵六")

    merged = registration.post(f"/patients/{known['id']}/merge", json={"source_patient_id": unknown["id"]})
    assert merged.status_code == 200, merged.text

    eventually(lambda: account(client, visit["id"])["patient_id"] == known["id"], what="the merged account")
    assert account(client, visit["id"])["charges"][0]["patient_id"] == known["id"]


def test_unknown_visit_has_no_account(client: TestClient) -> None:
    response = client.get("/visits/2b1f0c8e-0000-4000-8000-000000000000/account")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"].endswith("/visit-not-found")
    assert client.get("/visits/not..an..id/account").status_code == 400
