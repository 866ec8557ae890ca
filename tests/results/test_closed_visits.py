"""A visit registration has closed takes no new order (409 `visit-closed`); a report for an order placed
before it closed is still accepted."""

import httpx
from fastapi.testclient import TestClient

from tests.results.factories import (
    create_emergency_visit,
    create_unidentified_patient,
    place_order,
    report_body,
)


def test_a_closed_visit_takes_no_order_but_earlier_orders_are_reported(
    client: TestClient, registration: httpx.Client
) -> None:
    visit = create_emergency_visit(registration, create_unidentified_patient(registration)["id"])
    earlier = place_order(client, visit["id"])
    assert registration.post(f"/visits/{visit['id']}/close").status_code == 200

    refused = client.post("/orders", json={"visit_id": visit["id"], "test_code": earlier["test_code"]})
    assert refused.status_code == 409, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert refused.json()["type"].endswith("/visit-closed") and refused.json()["visit_id"] == visit["id"]
    assert [o["id"] for o in client.get(f"/visits/{visit['id']}/orders").json()] == [earlier["id"]]

    report = client.post(f"/orders/{earlier['id']}/reports", json=report_body())
    assert report.status_code == 201, report.text
