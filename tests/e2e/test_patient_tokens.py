"""An app acting for patient P, through the real gateway and services: P's records only, never Q's."""

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.clients import (
    Gateway,
    assert_problem,
    emergency_visit,
    ok,
    patient_session,
    register_patient,
)

CBC = "250101015"  # 血细胞分析 (complete blood count)
REPORT = {
    "status": "final",
    "conclusion": "正常",
    "observations": [{"code": "WBC", "name": "白细胞", "value": "6.1"}],
    "verified_by": "李技师",  # verified (审核): a report reaches patients only so
}


def patient_with_report(gateway: Gateway) -> dict[str, Any]:
    """A patient with a green-channel visit (orders released at once), one order and its final report."""
    patient = register_patient(gateway.his)
    visit = emergency_visit(gateway.his, patient["id"])
    order = ok(gateway.doctor.post("/v1/orders", json={"visit_id": visit["id"], "test_code": CBC}), 201)
    report = ok(gateway.lab.post(f"/v1/orders/{order['id']}/reports", json=REPORT), 201)
    return {
        "patient": patient["id"],
        "visit": visit["id"],
        "order": order["id"],
        "report": report["id"],
        "person": patient,
        "slip_code": visit["slip_code"],
    }


@pytest.fixture(scope="module")
def people(gateway: Gateway) -> dict[str, dict[str, Any]]:
    return {"p": patient_with_report(gateway), "q": patient_with_report(gateway)}


@pytest.fixture(scope="module")
def app_for_p(gateway: Gateway, people: dict[str, dict[str, Any]]) -> Iterator[httpx.Client]:
    """The development app client, acting for P with a fresh patient token."""
    session = patient_session(gateway, people["p"]["person"])  # identity number + texted code
    with httpx.Client(
        base_url=gateway.app.base_url,
        headers=dict(gateway.app.headers) | {"x-patient-token": session["token"]},
        timeout=30,
    ) as client:
        yield client


def test_the_app_reads_its_patients_visit_and_reports(
    app_for_p: httpx.Client, people: dict[str, Any]
) -> None:
    p = people["p"]
    assert ok(app_for_p.get(f"/v1/patients/{p['patient']}"))["id"] == p["patient"]
    assert ok(app_for_p.get(f"/v1/visits/{p['visit']}"))["patient_id"] == p["patient"]
    reports = ok(app_for_p.get(f"/v1/patients/{p['patient']}/reports"))
    assert [r["id"] for r in reports] == [p["report"]]
    assert ok(app_for_p.get(f"/v1/visits/{p['visit']}/reports"))[0]["id"] == p["report"]
    assert ok(app_for_p.get(f"/v1/reports/{p['report']}"))["patient_id"] == p["patient"]
    assert ok(app_for_p.get(f"/v1/orders/{p['order']}"))["id"] == p["order"]


def test_the_app_cannot_reach_another_patients_records(
    app_for_p: httpx.Client, people: dict[str, Any]
) -> None:
    q = people["q"]
    for path in (
        f"/v1/patients/{q['patient']}",
        f"/v1/visits/{q['visit']}",
        f"/v1/visits/{q['visit']}/orders",
        f"/v1/reports/{q['report']}",
        f"/v1/orders/{q['order']}",
    ):
        body = assert_problem(app_for_p.get(path), 404)
        assert q["patient"] not in str(body), path
    # Lists of reports are answered by results, which audits the refusal: empty, as for unknown ids.
    for path in (f"/v1/patients/{q['patient']}/reports", f"/v1/visits/{q['visit']}/reports"):
        assert ok(app_for_p.get(path)) == [], path


def test_the_app_cannot_use_routes_not_bound_to_a_patient(app_for_p: httpx.Client) -> None:
    for path in ("/v1/orders", "/v1/queues/emergency"):
        assert_problem(app_for_p.get(path), 403)
    assert_problem(app_for_p.post("/v1/patients", json={"unidentified": True, "alias": "x"}), 403)


def test_without_a_patient_token_the_app_reaches_nothing(gateway: Gateway, people: dict[str, Any]) -> None:
    body = assert_problem(gateway.app.get(f"/v1/patients/{people['p']['patient']}"), 403)
    assert body["type"].endswith("/patient-token-missing")


def test_a_kiosk_prints_its_patients_reports_only(gateway: Gateway, people: dict[str, Any]) -> None:
    p, q = people["p"], people["q"]
    slip = {"slip_code": p["slip_code"], "birth_date": p["person"]["birth_date"]}  # from the printed slip
    token = ok(gateway.kiosk.post("/v1/patient-sessions", json=slip), 201)["token"]
    headers = {"x-patient-token": token}
    reports = ok(gateway.kiosk.get(f"/v1/patients/{p['patient']}/reports", headers=headers))
    assert [r["id"] for r in reports] == [p["report"]]
    assert_problem(gateway.kiosk.get(f"/v1/reports/{q['report']}", headers=headers), 404)
    assert ok(gateway.kiosk.get(f"/v1/patients/{q['patient']}/reports", headers=headers)) == []
    assert_problem(gateway.his.post("/v1/patient-sessions", json=slip), 403)
    assert_problem(gateway.kiosk.post("/v1/patient-sessions", json={"patient_id": q["patient"]}), 422)
