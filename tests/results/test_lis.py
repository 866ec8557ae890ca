"""LIS/PACS intake: a `lis` client posts and updates reports by its own id; the same id (per client) is
always the same report, however often it is sent and even when posts race (over real HTTP, on SQLite and
PostgreSQL)."""

import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from kit import testing
from kit.testing import FakeFeed, http_client, internal_headers
from services.results.app import create_app
from services.results.models import ResultsTable
from tests.results.conftest import results_settings
from tests.results.factories import events, released_order, report_body


def lis(client: str = "lis-east") -> dict[str, str]:
    """A LIS client's headers, minted when used (internal tokens are short-lived)."""
    return internal_headers(client, {"results:read", "results:write"}, audience="results", kind="lis")


def lis_report(
    order: dict[str, Any], external_id: str = "LIS-0001", status: str = "final", **overrides: Any
) -> dict[str, Any]:
    return report_body(status, external_id=external_id, order_id=order["id"]) | overrides


def test_the_same_external_id_updates_one_report_and_a_repeat_changes_nothing(
    client: TestClient, registration: httpx.Client
) -> None:
    order = released_order(client, registration)
    first = client.post("/lis/reports", json=lis_report(order, status="preliminary"), headers=lis())
    assert first.status_code == 201, first.text
    final = client.post("/lis/reports", json=lis_report(order), headers=lis())
    repeat = client.post("/lis/reports", json=lis_report(order), headers=lis())
    assert (final.status_code, repeat.status_code) == (200, 200)
    assert first.json()["id"] == final.json()["id"] == repeat.json()["id"]
    assert (final.json()["version"], repeat.json()["version"]) == (2, 2)
    assert final.json()["external_id"] == "LIS-0001"
    assert [r["id"] for r in client.get(f"/visits/{order['visit_id']}/reports").json()] == [
        first.json()["id"]
    ]
    assert [e["type"] for e in events(client) if e["type"].startswith("report.")] == [
        "report.preliminary",
        "report.final",
    ]

    corrected = lis_report(order, status="corrected", conclusion="更正", reason="仪器校准后复测")
    assert client.post("/lis/reports", json=corrected, headers=lis()).json()["status"] == "corrected"
    back = client.post("/lis/reports", json=lis_report(order, status="preliminary"), headers=lis())
    assert back.status_code == 409


def test_only_lis_clients_use_intake_and_one_lis_cannot_touch_anothers_report(
    client: TestClient, registration: httpx.Client
) -> None:
    order = released_order(client, registration)
    doctor = internal_headers("doctor-dev", {"results:write"}, audience="results", kind="doctor")
    refused = client.post("/lis/reports", json=lis_report(order), headers=doctor)
    assert refused.status_code == 403 and refused.json()["type"].endswith("/lis-client-required")
    assert client.post("/lis/reports", json=lis_report(order), headers=lis()).status_code == 201
    # Another LIS with the same id of its own: a different report, and this order has one already.
    other = client.post("/lis/reports", json=lis_report(order), headers=lis("lis-west"))
    assert other.status_code == 409 and other.json()["type"].endswith("/external-report-conflict")
    # The same id naming another order is refused, not a second report.
    second = released_order(client, registration, patient_index=1)
    moved = client.post("/lis/reports", json=lis_report(second), headers=lis())
    assert moved.status_code == 409
    assert client.get(f"/visits/{second['visit_id']}/reports").json() == []


@pytest.mark.parametrize(
    "overrides",
    [
        {"external_id": "x" * 65},
        {"external_id": "含中文"},
        {"external_id": ""},
        {"order_id": "o" * 37},
        {"status": "draft"},
        {"verified_by": "x" * 65},
    ],
)
def test_malformed_lis_reports_are_422_and_store_nothing(
    client: TestClient, registration: httpx.Client, overrides: dict[str, Any]
) -> None:
    order = released_order(client, registration)
    response = client.post("/lis/reports", json=lis_report(order) | overrides, headers=lis())
    assert response.status_code == 422
    assert client.get(f"/visits/{order['visit_id']}/reports").json() == []


@pytest.fixture
def served_results(
    results_data_dir: Path, registration_url: str, registration: httpx.Client, billing: FakeFeed
) -> Iterator[str]:
    settings = results_settings(results_data_dir, registration_url, billing.url)
    testing.wipe(settings.resolved_database_url, settings.resolved_schema, ResultsTable.metadata)
    with testing.serve(create_app(settings)) as url:
        yield url


def run_together(base_url: str, jobs: list[tuple[dict[str, str], dict[str, Any]]]) -> list[httpx.Response]:
    """Each post on its own thread and HTTP client, all released at the same moment."""
    start = threading.Barrier(len(jobs))

    def run(job: tuple[dict[str, str], dict[str, Any]]) -> httpx.Response:
        headers, body = job
        with httpx.Client(base_url=base_url, headers=headers, timeout=60) as client:
            start.wait()
            return client.post("/lis/reports", json=body)

    with ThreadPoolExecutor(len(jobs)) as pool:
        return list(pool.map(run, jobs))


def test_racing_posts_of_one_report_make_one_report(served_results: str, registration: httpx.Client) -> None:
    with http_client(served_results, audience="results") as client:
        order = released_order(client, registration)
        responses = run_together(served_results, [(lis(), lis_report(order))] * 8)
        assert Counter(r.status_code for r in responses) == {201: 1, 200: 7}, [r.text for r in responses]
        assert len({r.json()["id"] for r in responses}) == 1
        assert len(client.get(f"/visits/{order['visit_id']}/reports").json()) == 1
        assert len(events(client, "report.final")) == 1


def test_racing_posts_of_one_external_id_for_two_orders_make_one_report_and_a_409(
    served_results: str, registration: httpx.Client
) -> None:
    """Two orders are two locks: only the unique (client, external id) keeps the report single."""
    with http_client(served_results, audience="results") as client:
        first = released_order(client, registration, patient_index=0)
        second = released_order(client, registration, patient_index=1)
        responses = run_together(served_results, [(lis(), lis_report(first)), (lis(), lis_report(second))])
        assert sorted(r.status_code for r in responses) == [201, 409], [r.text for r in responses]
        stored = [
            *client.get(f"/visits/{first['visit_id']}/reports").json(),
            *client.get(f"/visits/{second['visit_id']}/reports").json(),
        ]
        assert len(stored) == 1
