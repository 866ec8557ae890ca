"""Results decides for itself: a token for another service is refused, a missing scope too, and a client
acting for one patient gets another patient's orders and reports exactly as if they did not exist, with
the audit saying what it got (`refused`), not what the database holds."""

from typing import Any

import httpx
from fastapi.testclient import TestClient

from kit.testing import internal_headers
from tests.results.factories import post_report, released_order

KIOSK = "kiosk-hall-1"


def acting_for(patient_id: str, request_id: str) -> dict[str, str]:
    """What the gateway forwards for a kiosk holding `patient_id`'s patient token."""
    headers = internal_headers(KIOSK, {"results:read"}, audience="results", patient=patient_id)
    return headers | {"x-request-id": request_id}


def audit_rows(client: TestClient) -> dict[str, dict[str, Any]]:
    rows = client.get("/audit/result-access").json()
    return {row["request_id"]: row for row in rows}


def without_instance(response: httpx.Response) -> dict[str, Any]:
    return {k: v for k, v in response.json().items() if k != "instance"}


def test_another_patients_report_is_a_404_like_a_missing_one_and_audited_as_refused(
    client: TestClient, registration: httpx.Client
) -> None:
    mine = released_order(client, registration, patient_index=0)
    theirs = released_order(client, registration, patient_index=1)
    report = post_report(client, theirs["id"])
    me = mine["patient_id"]

    not_yours = client.get(f"/reports/{report['id']}", headers=acting_for(me, "req-theirs"))
    missing = client.get(
        "/reports/00000000-0000-4000-8000-000000000000", headers=acting_for(me, "req-missing")
    )
    assert not_yours.status_code == missing.status_code == 404
    assert without_instance(not_yours) == without_instance(missing)
    assert report["id"] not in not_yours.text and theirs["patient_id"] not in not_yours.text

    rows = audit_rows(client)
    assert rows["req-theirs"]["outcome"] == "refused"
    assert rows["req-theirs"]["report_ids"] == []  # nothing was shown
    assert (rows["req-theirs"]["patient_id"], rows["req-theirs"]["acting_for"]) == (theirs["patient_id"], me)
    assert rows["req-missing"]["outcome"] == "not_found"
    assert rows["req-missing"]["acting_for"] == me


def test_a_patients_own_report_is_served_and_audited_as_found(
    client: TestClient, registration: httpx.Client
) -> None:
    order = released_order(client, registration)
    report = post_report(client, order["id"])

    own = client.get(f"/reports/{report['id']}", headers=acting_for(order["patient_id"], "req-own"))
    assert own.status_code == 200 and own.json()["id"] == report["id"]
    row = audit_rows(client)["req-own"]
    assert (row["outcome"], row["report_ids"], row["acting_for"]) == (
        "found",
        [report["id"]],
        order["patient_id"],
    )


def test_another_patients_lists_are_empty_and_their_order_a_404(
    client: TestClient, registration: httpx.Client
) -> None:
    mine = released_order(client, registration, patient_index=0)
    theirs = released_order(client, registration, patient_index=1)
    post_report(client, theirs["id"])
    me = mine["patient_id"]

    by_visit = client.get(f"/visits/{theirs['visit_id']}/reports", headers=acting_for(me, "req-visit"))
    by_patient = client.get(
        f"/patients/{theirs['patient_id']}/reports", headers=acting_for(me, "req-patient")
    )
    orders = client.get(f"/visits/{theirs['visit_id']}/orders", headers=acting_for(me, "req-orders"))
    order = client.get(f"/orders/{theirs['id']}", headers=acting_for(me, "req-order"))
    missing_order = client.get("/orders/no-such-order", headers=acting_for(me, "req-no-order"))

    assert by_visit.json() == by_patient.json() == orders.json() == []
    assert order.status_code == missing_order.status_code == 404
    assert order.json()["type"] == missing_order.json()["type"]
    rows = audit_rows(client)
    assert rows["req-visit"]["outcome"] == rows["req-patient"]["outcome"] == "refused"
    assert rows["req-visit"]["report_ids"] == rows["req-patient"]["report_ids"] == []
    # Their own visit still reads normally.
    own = client.get(f"/visits/{mine['visit_id']}/orders", headers=acting_for(me, "req-own"))
    assert [o["id"] for o in own.json()] == [mine["id"]]


def test_a_token_minted_for_another_service_is_refused(client: TestClient) -> None:
    for_billing = internal_headers("his-dev", audience="billing")
    response = client.get("/tests", headers=for_billing)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert "another service" in response.json()["detail"]


def test_each_route_checks_its_own_scope(client: TestClient) -> None:
    reader = internal_headers("lab-dev", {"results:write"}, audience="results")
    refused = client.get("/orders", headers=reader)
    assert refused.status_code == 403 and refused.json()["type"].endswith("/scope-missing")
    assert "results:read" in refused.json()["detail"]
    audit = client.get(
        "/audit/result-access", headers=internal_headers("x", {"results:read"}, audience="results")
    )
    assert audit.status_code == 403
    assert (
        client.get("/orders", headers=internal_headers("x", {"results:read"}, audience="results")).status_code
        == 200
    )


def test_a_client_acting_for_a_patient_cannot_use_routes_not_bound_to_one(
    client: TestClient, registration: httpx.Client
) -> None:
    order = released_order(client, registration)
    worklist = client.get("/orders", headers=acting_for(order["patient_id"], "req-worklist"))
    assert worklist.status_code == 403
    assert worklist.json()["type"].endswith("/patient-route-forbidden")
    assert order["id"] not in worklist.text
