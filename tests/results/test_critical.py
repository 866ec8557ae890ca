"""Critical values (危急值): a critical report also raises `report.critical`, in the same transaction."""

from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.results.factories import (
    create_patient,
    create_visit,
    events,
    place_order,
    post_report,
    released_order,
    report_body,
)

NOTE = "血钾6.8 mmol/L，已电话通知急诊王医生"
POTASSIUM = {"code": "K", "name": "钾", "value": "6.8", "unit": "mmol/L", "reference_range": "3.5-5.3"}


def test_a_critical_final_report_raises_report_critical_after_report_final(
    client: TestClient, registration: httpx.Client
) -> None:
    order = released_order(client, registration)

    report = post_report(client, order["id"], critical=True, critical_note=NOTE)

    assert (report["critical"], report["critical_note"]) == (True, NOTE)
    assert client.get(f"/reports/{report['id']}").json()["critical"] is True
    reported = [e for e in events(client) if e["type"].startswith("report.")]
    assert [e["type"] for e in reported] == ["report.final", "report.critical"]
    critical = reported[1]
    [value] = client.get("/critical-values").json()
    assert critical["data"] == {
        "order_id": order["id"],
        "report_id": report["id"],
        "test_code": "250101015",
        "department": "internal",  # the ordering department
        "critical_value_ids": [value["id"]],
    }
    assert (critical["visit_id"], critical["patient_id"]) == (order["visit_id"], order["patient_id"])
    assert critical["aggregate"] == {"type": "order", "id": order["id"]}
    assert critical["sequence"] == reported[0]["sequence"] + 1


def test_a_critical_preliminary_report_raises_it_before_the_final(
    client: TestClient, registration: httpx.Client
) -> None:
    order = released_order(client, registration)
    preliminary = post_report(client, order["id"], "preliminary", critical=True)
    post_report(client, order["id"], "final")
    reported = [
        (e["type"], e["data"]["report_id"]) for e in events(client) if e["type"].startswith("report.")
    ]
    assert reported[:2] == [("report.preliminary", preliminary["id"]), ("report.critical", preliminary["id"])]
    assert [t for t, _ in reported] == ["report.preliminary", "report.critical", "report.final"]


def test_an_observation_flagged_critical_makes_the_report_critical(
    client: TestClient, registration: httpx.Client
) -> None:
    order = released_order(client, registration)
    report = post_report(client, order["id"], observations=[POTASSIUM | {"flag": "critical"}])
    assert (report["critical"], report["critical_note"]) == (True, None)
    assert "report.critical" in [e["type"] for e in events(client)]


def test_an_ordinary_report_is_not_critical_and_raises_nothing_more(
    client: TestClient, registration: httpx.Client
) -> None:
    order = released_order(client, registration)
    report = post_report(client, order["id"])
    assert (report["critical"], report["critical_note"]) == (False, None)
    assert "report.critical" not in [e["type"] for e in events(client)]


def test_the_event_carries_no_note(client: TestClient, registration: httpx.Client) -> None:
    order = released_order(client, registration)
    post_report(client, order["id"], critical=True, critical_note=NOTE)
    [critical] = events(client, "report.critical")
    assert NOTE not in str(critical)


@pytest.mark.parametrize(
    "overrides",
    [
        {"critical": "very"},
        {"critical": True, "critical_note": ""},
        {"critical": True, "critical_note": "x" * 501},
        {"critical_note": NOTE},  # a note without the flag
        {"critical": False, "critical_note": NOTE},
    ],
)
def test_malformed_critical_fields_are_422_and_store_nothing(
    client: TestClient, registration: httpx.Client, overrides: dict[str, Any]
) -> None:
    order = released_order(client, registration)
    before = events(client)
    response = client.post(f"/orders/{order['id']}/reports", json=report_body(**overrides))
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert client.get(f"/visits/{order['visit_id']}/reports").json() == []
    assert events(client) == before


def test_a_refused_critical_report_raises_no_event(client: TestClient, registration: httpx.Client) -> None:
    order = released_order(client, registration)
    post_report(client, order["id"])
    again = client.post(f"/orders/{order['id']}/reports", json=report_body(critical=True, critical_note=NOTE))
    assert again.status_code == 409
    assert "report.critical" not in [e["type"] for e in events(client)]


def test_an_unpaid_order_cannot_take_a_critical_report(
    client: TestClient, registration: httpx.Client
) -> None:
    visit = create_visit(registration, create_patient(registration)["id"])
    order = place_order(client, visit["id"])
    response = client.post(f"/orders/{order['id']}/reports", json=report_body(critical=True))
    assert response.status_code == 402
    assert [e["type"] for e in events(client)] == ["order.placed"]
