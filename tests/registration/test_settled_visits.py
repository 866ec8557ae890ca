"""A visit billing has settled says so in registration (and, as an outpatient or emergency visit, is
closed): it reads billing's `visit.settled`."""

import uuid
from datetime import datetime
from typing import Any

from fastapi.testclient import TestClient

from kit.testing import FakeFeed, eventually
from tests.registration.factories import create_patient, create_visit, visit_event


def visit_settled(visit: dict[str, Any]) -> dict[str, Any]:
    """A `visit.settled` as billing publishes it (contracts.md)."""
    return visit_event(visit, "visit.settled", source="billing", data={"payment_id": None, "total_fen": 0})


def wait_for_status(client: TestClient, visit_id: str, status: str) -> dict[str, Any]:
    def visit_in_status() -> dict[str, Any] | None:
        visit: dict[str, Any] = client.get(f"/visits/{visit_id}").json()
        return visit if visit["status"] == status else None

    return eventually(visit_in_status, what=f"visit {visit_id} to become {status}")


def test_a_visit_settled_in_billing_is_settled_and_closed_here(
    client: TestClient, billing_feed: FakeFeed
) -> None:
    patient = create_patient(client)
    visit = create_visit(client, patient["id"], payment_mode="settle_later")
    other = create_visit(client, patient["id"], kind="emergency", department="emergency")
    assert (visit["status"], visit["settled_at"]) == ("open", None)

    event = billing_feed.publish(visit_settled(visit))
    billing_feed.publish(event)  # redelivered: applied once all the same

    settled = wait_for_status(client, visit["id"], "closed")
    assert settled["close_reason"] == "settled"
    assert datetime.fromisoformat(settled["settled_at"]) == datetime.fromisoformat(event["occurred_at"])
    assert client.get(f"/visits/{other['id']}").json()["status"] == "open"
    listed = client.get(f"/patients/{patient['id']}/visits").json()
    assert {v["id"]: v["status"] for v in listed} == {visit["id"]: "closed", other["id"]: "open"}


def test_an_unknown_visit_settled_in_billing_changes_nothing(
    client: TestClient, billing_feed: FakeFeed
) -> None:
    patient = create_patient(client)
    visit = create_visit(client, patient["id"])
    billing_feed.publish(visit_settled({"id": str(uuid.uuid4()), "patient_id": patient["id"]}))
    marker = billing_feed.publish(visit_settled(visit))  # read after the unknown one

    wait_for_status(client, visit["id"], "closed")  # the consumer went on past the unknown visit
    assert marker["position"] == 2
