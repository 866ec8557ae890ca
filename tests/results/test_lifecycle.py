"""A report's lifecycle: registered → preliminary → final → amended / corrected, or cancelled; one report
per order, forwards only; an amendment tells each reader of the old version (`report.amended_notice`)."""

from typing import Any

import httpx
from fastapi.testclient import TestClient

from kit.testing import internal_headers
from tests.results.factories import TECHNICIAN, events, post_report, released_order, report_body

POTASSIUM = {"code": "K", "name": "钾", "value": "6.8", "unit": "mmol/L", "reference_range": "3.5-5.3"}


def amendment(status: str = "amended", **overrides: Any) -> dict[str, Any]:
    body = report_body("final", conclusion="中度贫血", reason="复核后修改结论") | {"status": status}
    return body | overrides


def reader(client: TestClient, subject: str, patient_id: str | None = None, kind: str | None = None) -> Any:
    headers = internal_headers(subject, {"results:read"}, audience="results", patient=patient_id, kind=kind)
    return lambda path: client.get(path, headers=headers)


def test_registered_then_preliminary_then_final_is_one_report_moving_forward(
    client: TestClient, registration: httpx.Client
) -> None:
    order = released_order(client, registration)
    registered = post_report(client, order["id"], "registered", conclusion="", observations=[])
    preliminary = post_report(client, order["id"], "preliminary")
    final = post_report(client, order["id"], "final")
    assert registered["id"] == preliminary["id"] == final["id"]
    assert [registered["status"], preliminary["status"], final["status"]] == [
        "registered",
        "preliminary",
        "final",
    ]
    assert [r["id"] for r in client.get(f"/visits/{order['visit_id']}/reports").json()] == [final["id"]]
    back = client.post(f"/orders/{order['id']}/reports", json=report_body("registered"))
    assert back.status_code == 409


def test_an_amendment_keeps_the_id_and_tells_each_reader_of_the_old_version_once(
    client: TestClient, registration: httpx.Client
) -> None:
    order = released_order(client, registration)
    report = post_report(client, order["id"])
    path = f"/reports/{report['id']}"
    patient = order["patient_id"]
    reader(client, "doctor-dev", kind="doctor")(path)
    reader(client, "doctor-dev", kind="doctor")(f"/visits/{order['visit_id']}/reports")  # same reader
    reader(client, "kiosk-hall-1", patient, kind="kiosk")(path)
    reader(client, "app-dev", patient, kind="app")(f"/patients/{patient}/reports")
    # Never shown the report: not a reader.
    reader(client, "kiosk-hall-2", "someone-else", kind="kiosk")(path)

    amended = client.post(f"{path}/amendments", json=amendment())
    assert amended.status_code == 200, amended.text
    body = amended.json()
    assert (body["id"], body["status"], body["version"], body["conclusion"]) == (
        report["id"],
        "amended",
        report["version"] + 1,
        "中度贫血",
    )
    notices = events(client, "report.amended_notice")
    assert sorted((e["data"]["reader_client"], e["data"]["reader_patient_id"]) for e in notices) == [
        ("app-dev", patient),
        ("doctor-dev", None),
        ("kiosk-hall-1", patient),
    ]
    assert {(e["data"]["report_id"], e["data"]["status"], e["data"]["version"]) for e in notices} == {
        (report["id"], "amended", 2)
    }
    # The amended report reaches the patient (verified again), as the corrected one would.
    assert reader(client, "kiosk-hall-1", patient, kind="kiosk")(path).json()["conclusion"] == "中度贫血"


def test_an_amendment_without_verification_is_held_back_from_the_patient(
    client: TestClient, registration: httpx.Client
) -> None:
    order = released_order(client, registration)
    report = post_report(client, order["id"])
    kiosk = reader(client, "kiosk-hall-1", order["patient_id"], kind="kiosk")
    assert kiosk(f"/reports/{report['id']}").status_code == 200
    corrected = client.post(
        f"/reports/{report['id']}/amendments", json=amendment("corrected", verified_by=None)
    )
    assert corrected.status_code == 200 and corrected.json()["verified_by"] is None
    assert kiosk(f"/reports/{report['id']}").status_code == 404
    assert len(events(client, "report.amended_notice")) == 1


def test_only_a_final_report_is_amended_and_an_amendment_needs_a_reason(
    client: TestClient, registration: httpx.Client
) -> None:
    order = released_order(client, registration)
    preliminary = post_report(client, order["id"], "preliminary")
    refused = client.post(f"/reports/{preliminary['id']}/amendments", json=amendment())
    assert refused.status_code == 409 and refused.json()["type"].endswith("/report-not-final")
    post_report(client, order["id"], "final")
    no_reason = amendment()
    no_reason.pop("reason")
    assert client.post(f"/reports/{preliminary['id']}/amendments", json=no_reason).status_code == 422
    as_final = amendment() | {"status": "final"}
    assert client.post(f"/reports/{preliminary['id']}/amendments", json=as_final).status_code == 422
    # Amended statuses are not posted on the order either.
    assert client.post(f"/orders/{order['id']}/reports", json=amendment()).status_code == 422
    assert events(client, "report.amended_notice") == []


def test_a_cancelled_report_notifies_its_readers_and_gives_the_order_back_to_the_lab(
    client: TestClient, registration: httpx.Client
) -> None:
    order = released_order(client, registration)
    report = post_report(client, order["id"])
    kiosk = reader(client, "kiosk-hall-1", order["patient_id"], kind="kiosk")
    kiosk(f"/reports/{report['id']}")

    cancelled = client.post(f"/reports/{report['id']}/cancellation", json={"reason": "标本溶血"})
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert kiosk(f"/reports/{report['id']}").status_code == 404
    assert client.get(f"/orders/{order['id']}").json()["status"] == "released"
    [notice] = events(client, "report.amended_notice")
    assert (notice["data"]["status"], notice["data"]["reader_client"]) == ("cancelled", "kiosk-hall-1")
    again = client.post(f"/reports/{report['id']}/cancellation", json={"reason": "again"})
    assert again.status_code == 409 and again.json()["type"].endswith("/report-cancelled")
    # The lab reports the order again: a new report.
    redo = post_report(client, order["id"])
    assert redo["id"] != report["id"] and redo["verified_by"] == TECHNICIAN


def test_a_critical_value_is_raised_once_however_often_its_report_moves(
    client: TestClient, registration: httpx.Client
) -> None:
    order = released_order(client, registration)
    critical = {"observations": [POTASSIUM | {"flag": "critical"}]}
    post_report(client, order["id"], "preliminary", **critical)
    post_report(client, order["id"], "final", **critical)
    assert len(events(client, "report.critical")) == 1
    assert len(client.get("/critical-values").json()) == 1


def test_lifecycle_writes_on_unknown_reports_are_404(client: TestClient) -> None:
    missing = "00000000-0000-4000-8000-000000000000"
    for action, body in (
        ("amendments", amendment()),
        ("cancellation", {"reason": "x"}),
        ("verification", {"verified_by": "x"}),
        ("withhold", {"reason": "x"}),
    ):
        response = client.post(f"/reports/{missing}/{action}", json=body)
        assert response.status_code == 404 and response.json()["type"].endswith("/report-not-found")
