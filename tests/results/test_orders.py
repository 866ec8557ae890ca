"""Ordering tests: the catalogue, the payment gate per payment mode, and what a refused order leaves."""

from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from kit.testing import FakeFeed, internal_headers, orm_sessions_begun, service_client
from services.results.app import create_app
from services.results.models import ResultsTable
from tests.results.conftest import results_settings
from tests.results.factories import (
    CBC,
    CHEST_XRAY,
    create_emergency_visit,
    create_patient,
    create_visit,
    events,
    place_order,
    post_report,
)

BILLING_CODES = {
    "250101015",
    "250301001",
    "250302001",
    "250305002",
    "250305005",
    "250307001",
    "250403001",
    "250203001",
    "250501001",
    "210102015",
    "210300001",
    "220201001",
    "310701001",
}


def test_orderable_tests_are_seeded_with_billing_catalogue_codes(client: TestClient) -> None:
    tests = client.get("/tests").json()
    assert {t["code"] for t in tests} == BILLING_CODES
    cbc = next(t for t in tests if t["code"] == CBC)
    assert (
        cbc["name_zh"] == "血细胞分析(全血细胞计数+五分类)" and cbc["name_en"] == "Complete blood count (CBC)"
    )
    assert cbc["kind"] == "lab" and cbc["turnaround_minutes"] > 0
    assert next(t for t in tests if t["code"] == CHEST_XRAY)["kind"] == "imaging"


def test_prepay_order_awaits_payment_and_announces_only_the_placement(
    client: TestClient, registration: httpx.Client
) -> None:
    patient = create_patient(registration)
    visit = create_visit(registration, patient["id"])
    order = place_order(client, visit["id"], ordered_by="dr-li")

    assert order["status"] == "awaiting_payment" and order["released_at"] is None
    assert order["patient_id"] == patient["id"] and order["payment_mode"] == "prepay"
    assert order["test_name"] == "血细胞分析(全血细胞计数+五分类)"
    assert client.get(f"/orders/{order['id']}").json() == order
    [placed] = events(client)
    assert placed["type"] == "order.placed"
    assert placed["aggregate"] == {"type": "order", "id": order["id"]}
    assert (placed["visit_id"], placed["patient_id"]) == (visit["id"], patient["id"])
    assert placed["data"] == {
        "order_id": order["id"],
        "test_code": CBC,
        "quantity": 1,
        "payment_mode": "prepay",
        "status": "awaiting_payment",
        "department": "internal",  # the visit's: the ordering department (开单科室) by default
    }
    assert order["department"] == "internal"


@pytest.mark.parametrize("payment_mode", ["settle_later", "green_channel"])
def test_deferred_payment_modes_release_the_order_at_once(
    client: TestClient, registration: httpx.Client, payment_mode: str
) -> None:
    patient = create_patient(registration)
    if payment_mode == "green_channel":
        visit = create_emergency_visit(registration, patient["id"])
    else:
        visit = create_visit(registration, patient["id"], payment_mode=payment_mode)
    order = place_order(client, visit["id"])

    assert order["status"] == "released" and order["released_at"] is not None
    placed, released = events(client)
    assert placed["type"] == "order.placed" and placed["data"]["status"] == "released"
    assert placed["data"]["payment_mode"] == payment_mode
    assert released["type"] == "order.released"
    assert released["data"] == {"order_id": order["id"], "test_code": CBC, "reason": "payment_mode"}
    assert (released["visit_id"], released["patient_id"]) == (visit["id"], patient["id"])
    assert released["sequence"] == placed["sequence"] + 1


def test_an_order_from_a_consulting_department_carries_it_in_order_placed_and_critical_values(
    client: TestClient, registration: httpx.Client
) -> None:
    visit = create_visit(registration, create_patient(registration)["id"], payment_mode="settle_later")
    order = place_order(client, visit["id"], department="neurology")  # a consult on an internal visit

    assert order["department"] == "neurology"
    placed = next(e for e in events(client) if e["type"] == "order.placed")
    assert placed["data"]["department"] == "neurology"  # billing's line shows it (开单科室)
    post_report(client, order["id"], critical=True)
    [value] = client.get("/critical-values", params={"department": "neurology"}).json()
    assert value["order_id"] == order["id"]


def test_unknown_test_code_is_422_and_stores_nothing(client: TestClient, registration: httpx.Client) -> None:
    visit = create_visit(registration, create_patient(registration)["id"])
    response = client.post("/orders", json={"visit_id": visit["id"], "test_code": "999999999"})
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"].endswith("/unknown-test")
    assert client.get(f"/visits/{visit['id']}/orders").json() == []
    assert events(client) == []


def test_unknown_visit_is_404_and_stores_nothing(client: TestClient, registration: httpx.Client) -> None:
    response = client.post("/orders", json={"visit_id": "no-such-visit", "test_code": CBC})
    assert response.status_code == 404
    assert response.json()["type"].endswith("/visit-not-found")
    assert client.get("/orders").json() == []
    assert events(client) == []


def test_registration_down_is_503_and_stores_nothing(
    results_data_dir: Path, billing: FakeFeed, dead_url: str
) -> None:
    app = create_app(results_settings(results_data_dir, dead_url, billing.url))
    with service_client(app, ResultsTable.metadata) as client:
        response = client.post("/orders", json={"visit_id": "any-visit", "test_code": CBC})
        assert response.status_code == 503
        assert response.json()["type"].endswith("/upstream-unavailable")
        assert "retry-after" in response.headers
        assert client.get("/orders").json() == []
        assert events(client) == []


def test_same_idempotency_key_and_body_returns_the_first_answer(
    client: TestClient, registration: httpx.Client
) -> None:
    visit = create_visit(registration, create_patient(registration)["id"])
    body = {"visit_id": visit["id"], "test_code": CBC}
    headers = {"Idempotency-Key": "order-7f3a"}

    first = client.post("/orders", json=body, headers=headers)
    again = client.post("/orders", json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert len(client.get(f"/visits/{visit['id']}/orders").json()) == 1
    assert len(events(client, "order.placed")) == 1

    changed = client.post("/orders", json=body | {"test_code": CHEST_XRAY}, headers=headers)
    assert changed.status_code == 422
    assert changed.json()["type"].endswith("/idempotency-key-reused")


def test_idempotency_keys_are_scoped_by_client(client: TestClient, registration: httpx.Client) -> None:
    visit = create_visit(registration, create_patient(registration)["id"])
    body = {"visit_id": visit["id"], "test_code": CBC}
    first = client.post("/orders", json=body, headers={"Idempotency-Key": "k1"})
    other = client.post(
        "/orders",
        json=body,
        headers={"Idempotency-Key": "k1", **internal_headers("his-2", audience="results")},
    )
    assert first.status_code == other.status_code == 201
    assert first.json()["id"] != other.json()["id"]


def test_without_a_key_each_post_is_a_new_order(client: TestClient, registration: httpx.Client) -> None:
    visit = create_visit(registration, create_patient(registration)["id"])
    first = place_order(client, visit["id"])
    second = place_order(client, visit["id"], CHEST_XRAY)
    listed = client.get(f"/visits/{visit['id']}/orders").json()
    assert [o["id"] for o in listed] == [first["id"], second["id"]]


def test_lab_worklist_lists_released_orders_oldest_first(
    client: TestClient, registration: httpx.Client
) -> None:
    patient = create_patient(registration)
    prepay = create_visit(registration, patient["id"])
    later = create_visit(registration, patient["id"], payment_mode="settle_later")
    waiting = place_order(client, prepay["id"])
    first = place_order(client, later["id"])
    second = place_order(client, later["id"], CHEST_XRAY)

    worklist = client.get("/orders", params={"status": "released"}).json()
    assert [o["id"] for o in worklist] == [first["id"], second["id"]]
    assert [o["id"] for o in client.get("/orders", params={"status": "released", "limit": 1}).json()] == [
        first["id"]
    ]
    awaiting = client.get("/orders", params={"status": "awaiting_payment"}).json()
    assert [o["id"] for o in awaiting] == [waiting["id"]]
    assert client.get("/orders", params={"limit": 201}).status_code == 400
    assert client.get("/orders", params={"status": "lost"}).status_code == 400


def test_clients_cannot_set_the_patient_or_status(client: TestClient, registration: httpx.Client) -> None:
    visit = create_visit(registration, create_patient(registration)["id"])
    for extra in ({"patient_id": "someone-else"}, {"status": "released"}):
        response = client.post("/orders", json={"visit_id": visit["id"], "test_code": CBC} | extra)
        assert response.status_code == 422
    assert client.get("/orders").json() == []


def test_unknown_order_is_404_problem(client: TestClient) -> None:
    response = client.get("/orders/nope")
    assert response.status_code == 404
    assert response.json()["type"].endswith("/order-not-found")


def test_calls_without_internal_credentials_are_refused(client: TestClient) -> None:
    assert client.get("/tests", headers={"authorization": ""}).status_code == 401
    assert client.get("/healthz", headers={"authorization": ""}).status_code == 200


def test_an_order_is_read_without_an_orm_session(client: TestClient, registration: httpx.Client) -> None:
    """A workstation polls its order until payment releases it: Core on a reader connection, not a
    request's ORM session; the answer is the order as placed, and another patient's is a 404."""
    visit = create_visit(registration, create_patient(registration)["id"])
    order = place_order(client, visit["id"])
    with orm_sessions_begun() as begun:
        found = client.get(f"/orders/{order['id']}")

    assert found.status_code == 200, found.text
    assert found.json() == order
    assert begun == []
    kiosk = internal_headers("kiosk", {"results:read"}, audience="results", patient="another", kind="kiosk")
    assert client.get(f"/orders/{order['id']}", headers=kiosk).status_code == 404
