"""Plain factory functions for results tests: patients and visits on the live registration, orders here."""

import uuid
from typing import Any

import httpx

from kit.testing import feed_headers
from tests.registration.factories import VALID_ID_NUMBERS

CBC = "250101015"  # 血细胞分析(全血细胞计数+五分类)
CHEST_XRAY = "210102015"
TECHNICIAN = "李技师"


def create_patient(registration: httpx.Client, index: int = 0, **overrides: Any) -> dict[str, Any]:
    body = {"id_number": VALID_ID_NUMBERS[index], "name": "张三"} | overrides
    response = registration.post("/patients", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def create_unidentified_patient(registration: httpx.Client) -> dict[str, Any]:
    response = registration.post("/patients", json={"unidentified": True, "alias": "男，约40岁"})
    assert response.status_code == 201, response.text
    return response.json()


def create_visit(registration: httpx.Client, patient_id: str, **overrides: Any) -> dict[str, Any]:
    body = {"patient_id": patient_id, "kind": "outpatient", "department": "internal"} | overrides
    response = registration.post("/visits", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def create_emergency_visit(registration: httpx.Client, patient_id: str) -> dict[str, Any]:
    return create_visit(
        registration, patient_id, kind="emergency", department="emergency", payment_mode="green_channel"
    )


def place_order(
    client: httpx.Client, visit_id: str, test_code: str = CBC, **overrides: Any
) -> dict[str, Any]:
    response = client.post("/orders", json={"visit_id": visit_id, "test_code": test_code} | overrides)
    assert response.status_code == 201, response.text
    return response.json()


def released_order(
    client: httpx.Client, registration: httpx.Client, patient_index: int = 0
) -> dict[str, Any]:
    """A settle-later order the lab may start at once."""
    patient = create_patient(registration, patient_index)
    visit = create_visit(registration, patient["id"], payment_mode="settle_later")
    return place_order(client, visit["id"])


def report_body(status: str = "final", **overrides: Any) -> dict[str, Any]:
    observations = [
        {"code": "WBC", "name": "白细胞计数", "value": "6.2", "unit": "10^9/L", "reference_range": "3.5-9.5"},
        {"code": "HGB", "name": "血红蛋白", "value": "98", "unit": "g/L", "flag": "L"},
    ]
    # A final report comes verified (审核), as a lab sends it; the release rule needs it.
    verified = {"verified_by": TECHNICIAN} if status == "final" else {}
    return {"status": status, "conclusion": "轻度贫血", "observations": observations} | verified | overrides


def post_report(
    client: httpx.Client, order_id: str, status: str = "final", **overrides: Any
) -> dict[str, Any]:
    response = client.post(f"/orders/{order_id}/reports", json=report_body(status, **overrides))
    assert response.status_code == 201, response.text
    return response.json()


def charge_paid(position: int, order: dict[str, Any], *, event_id: str | None = None) -> dict[str, Any]:
    """A billing `charge.paid` event as billing's feed would serve it."""
    return {
        "id": event_id or str(uuid.uuid4()),
        "type": "charge.paid",
        "source": "billing",
        "position": position,
        "aggregate": {"type": "visit", "id": order["visit_id"]},
        "sequence": position,
        "occurred_at": "2026-11-27T08:00:00+00:00",
        "visit_id": order["visit_id"],
        "patient_id": order["patient_id"],
        "data": {"charge_id": str(uuid.uuid4()), "order_id": order["id"], "payment_id": str(uuid.uuid4())},
    }


def events(client: httpx.Client, event_type: str | None = None) -> list[dict[str, Any]]:
    params = {"limit": 500} | ({"type": event_type} if event_type else {})
    response = client.get("/events", headers=feed_headers("results"), params=params)
    assert response.status_code == 200, response.text
    return list(response.json()["events"])
