"""Posting reports, looking them up by visit, patient and id, the audit of every look, and merges."""

from typing import Any

import httpx
from fastapi.testclient import TestClient

from kit.testing import eventually, internal_headers
from tests.results.factories import (
    create_patient,
    create_unidentified_patient,
    create_visit,
    events,
    place_order,
    post_report,
    released_order,
    report_body,
)


def audit(client: TestClient, **params: Any) -> list[dict[str, Any]]:
    response = client.get("/audit/result-access", params=params)
    assert response.status_code == 200, response.text
    return list(response.json())


def test_prepay_order_cannot_be_reported_before_payment(
    client: TestClient, registration: httpx.Client
) -> None:
    visit = create_visit(registration, create_patient(registration)["id"])
    order = place_order(client, visit["id"])

    response = client.post(f"/orders/{order['id']}/reports", json=report_body())
    assert response.status_code == 402
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["type"].endswith("/order-awaiting-payment")
    assert "until paid" in body["detail"]
    assert client.get(f"/visits/{visit['id']}/reports").json() == []
    assert [e["type"] for e in events(client)] == ["order.placed"]


def test_preliminary_then_final_then_nothing_more(client: TestClient, registration: httpx.Client) -> None:
    order = released_order(client, registration)

    preliminary = post_report(client, order["id"], "preliminary", conclusion="待复核")
    assert client.get(f"/orders/{order['id']}").json()["status"] == "released"
    final = post_report(client, order["id"], "final")
    # One report per order: the final one is the preliminary one moved forward.
    assert final["status"] == "final" and final["id"] == preliminary["id"]
    assert (preliminary["version"], final["version"]) == (1, 2)
    assert (final["verified_by"], final["verified_at"] is not None) == ("李技师", True)
    assert (final["order_id"], final["visit_id"], final["patient_id"]) == (
        order["id"],
        order["visit_id"],
        order["patient_id"],
    )
    assert final["test_code"] == order["test_code"] and final["test_name"] == order["test_name"]
    assert final["observations"][1]["flag"] == "L"
    assert client.get(f"/orders/{order['id']}").json()["status"] == "reported"
    assert client.get("/orders", params={"status": "released"}).json() == []

    again = client.post(f"/orders/{order['id']}/reports", json=report_body("preliminary"))
    assert again.status_code == 409
    assert again.json()["type"].endswith("/report-already-final")

    reported = [e for e in events(client) if e["type"].startswith("report.")]
    assert [e["type"] for e in reported] == ["report.preliminary", "report.final"]
    assert reported[1]["data"] == {
        "order_id": order["id"],
        "report_id": final["id"],
        "test_code": "250101015",
    }
    assert all(
        e["visit_id"] == order["visit_id"] and e["patient_id"] == order["patient_id"] for e in reported
    )


def test_report_on_unknown_order_is_404(client: TestClient) -> None:
    response = client.post("/orders/nope/reports", json=report_body())
    assert response.status_code == 404
    assert response.json()["type"].endswith("/order-not-found")


def test_malformed_reports_are_refused_and_store_nothing(
    client: TestClient, registration: httpx.Client
) -> None:
    order = released_order(client, registration)
    observation = {"code": "WBC", "name": "白细胞计数", "value": "6.2"}
    bad_bodies = [
        report_body(status="draft"),
        report_body(conclusion="x" * 2001),
        report_body(observations=[observation | {"flag": "HH"}]),
        report_body(observations=[observation] * 101),
        report_body(observations=[observation | {"value": 6.2}]),
        report_body(reported_by="someone"),
    ]
    for body in bad_bodies:
        assert client.post(f"/orders/{order['id']}/reports", json=body).status_code == 422
    assert client.get(f"/visits/{order['visit_id']}/reports").json() == []
    assert post_report(client, order["id"], observations=[observation] * 100)["observations"][
        99
    ] == observation | {
        "unit": None,
        "reference_range": None,
        "flag": None,
    }


def test_lookups_return_only_that_visits_and_that_patients_reports_newest_first(
    client: TestClient, registration: httpx.Client
) -> None:
    mine = released_order(client, registration, patient_index=0)
    theirs = released_order(client, registration, patient_index=1)
    my_second = place_order(client, mine["visit_id"], "210102015")
    older = post_report(client, mine["id"])
    newer = post_report(client, my_second["id"], conclusion="双肺未见异常")
    their_report = post_report(client, theirs["id"])

    by_visit = client.get(f"/visits/{mine['visit_id']}/reports").json()
    assert [r["id"] for r in by_visit] == [newer["id"], older["id"]]
    by_patient = client.get(f"/patients/{mine['patient_id']}/reports").json()
    assert [r["id"] for r in by_patient] == [newer["id"], older["id"]]
    assert their_report["id"] not in str(by_visit) + str(by_patient)
    assert [r["id"] for r in client.get(f"/patients/{theirs['patient_id']}/reports").json()] == [
        their_report["id"]
    ]
    assert client.get(f"/reports/{older['id']}").json() == older
    assert [
        r["id"] for r in client.get(f"/visits/{mine['visit_id']}/reports", params={"limit": 1}).json()
    ] == [newer["id"]]


def test_report_by_id_answers_not_yours_exactly_like_not_found(
    client: TestClient, registration: httpx.Client
) -> None:
    mine = released_order(client, registration, patient_index=0)
    theirs = released_order(client, registration, patient_index=1)
    report = post_report(client, theirs["id"])

    own = client.get(f"/reports/{report['id']}", params={"patient_id": theirs["patient_id"]})
    assert own.status_code == 200
    not_yours = client.get(f"/reports/{report['id']}", params={"patient_id": mine["patient_id"]})
    missing = client.get(
        "/reports/00000000-0000-4000-8000-000000000000", params={"patient_id": mine["patient_id"]}
    )
    assert not_yours.status_code == missing.status_code == 404
    assert not_yours.headers["content-type"] == missing.headers["content-type"] == "application/problem+json"

    def without_instance(response: httpx.Response) -> dict[str, Any]:
        return {k: v for k, v in response.json().items() if k != "instance"}

    assert without_instance(not_yours) == without_instance(missing)
    assert report["id"] not in not_yours.text


def test_every_lookup_is_audited_including_empty_and_not_found(
    client: TestClient, registration: httpx.Client
) -> None:
    order = released_order(client, registration)
    report = post_report(client, order["id"])
    # As the gateway forwards a kiosk's call: its kind in the token, its address in X-Forwarded-For.
    kiosk = internal_headers("kiosk-hall-1", audience="results", kind="kiosk") | {
        "x-forwarded-for": "10.8.0.21"
    }
    stranger = create_patient(registration, 1)

    client.get(f"/visits/{order['visit_id']}/reports", headers=kiosk | {"x-request-id": "req-visit"})
    client.get(f"/patients/{order['patient_id']}/reports", headers=kiosk | {"x-request-id": "req-patient"})
    client.get(f"/patients/{stranger['id']}/reports", headers=kiosk | {"x-request-id": "req-empty"})
    client.get("/visits/unknown-visit/reports", headers=kiosk | {"x-request-id": "req-empty-visit"})
    client.get(f"/reports/{report['id']}", headers=kiosk | {"x-request-id": "req-one"})
    missing = client.get("/reports/no-such-report", headers=kiosk | {"x-request-id": "req-missing"})
    assert missing.status_code == 404

    rows = {row["request_id"]: row for row in audit(client)}
    assert set(rows) == {"req-visit", "req-patient", "req-empty", "req-empty-visit", "req-one", "req-missing"}
    assert all(row["client"] == "kiosk-hall-1" for row in rows.values())
    assert rows["req-visit"] | {"id": 0, "at": ""} == {
        "id": 0,
        "at": "",
        "client": "kiosk-hall-1",
        "action": "visit_reports",
        "patient_id": order["patient_id"],
        "visit_id": order["visit_id"],
        "report_id": None,
        "report_ids": [report["id"]],
        "outcome": "found",
        "request_id": "req-visit",
        "acting_for": None,
        "client_kind": "kiosk",
        "source_address": "10.8.0.21",
    }
    assert (rows["req-patient"]["action"], rows["req-patient"]["report_ids"]) == (
        "patient_reports",
        [report["id"]],
    )
    assert (rows["req-empty"]["patient_id"], rows["req-empty"]["outcome"]) == (stranger["id"], "empty")
    assert rows["req-empty"]["report_ids"] == []
    assert (rows["req-empty-visit"]["visit_id"], rows["req-empty-visit"]["outcome"]) == (
        "unknown-visit",
        "empty",
    )
    assert (rows["req-one"]["action"], rows["req-one"]["report_id"]) == ("read_report", report["id"])
    assert rows["req-one"]["patient_id"] == order["patient_id"]
    assert (rows["req-missing"]["report_id"], rows["req-missing"]["outcome"]) == (
        "no-such-report",
        "not_found",
    )

    for_patient = audit(client, patient_id=order["patient_id"])
    assert {row["request_id"] for row in for_patient} == {"req-visit", "req-patient", "req-one"}


def test_writing_and_listing_orders_is_not_a_result_lookup(
    client: TestClient, registration: httpx.Client
) -> None:
    order = released_order(client, registration)
    post_report(client, order["id"])
    client.get(f"/orders/{order['id']}")
    client.get(f"/visits/{order['visit_id']}/orders")
    assert audit(client) == []


def test_merge_repoints_orders_and_reports_to_the_identified_patient(
    client: TestClient, registration: httpx.Client
) -> None:
    unknown = create_unidentified_patient(registration)
    visit = create_visit(
        registration, unknown["id"], kind="emergency", department="emergency", payment_mode="green_channel"
    )
    order = place_order(client, visit["id"])
    report = post_report(client, order["id"])
    known = create_patient(registration)
    merged = registration.post(f"/patients/{known['id']}/merge", json={"source_patient_id": unknown["id"]})
    assert merged.status_code == 200, merged.text

    def repointed() -> bool:
        return bool(client.get(f"/orders/{order['id']}").json()["patient_id"] == known["id"])

    eventually(repointed, what="results to consume patient.merged")
    assert [r["id"] for r in client.get(f"/patients/{known['id']}/reports").json()] == [report["id"]]
    assert client.get(f"/patients/{unknown['id']}/reports").json() == []
    assert client.get(f"/reports/{report['id']}").json()["patient_id"] == known["id"]
    assert [o["patient_id"] for o in client.get(f"/visits/{visit['id']}/orders").json()] == [known["id"]]


def test_oversized_ids_are_refused_before_any_lookup(client: TestClient) -> None:
    long_id = "r" * 37
    for path in (f"/reports/{long_id}", f"/visits/{long_id}/reports", f"/patients/{long_id}/reports"):
        assert client.get(path).status_code == 400
    assert audit(client) == []
