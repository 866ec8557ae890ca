"""Mutual recognition (检验检查结果互认): a recent final, verified result of the same item, from this
hospital or one of the same grade or higher (results from other hospitals included), is found before
ordering; repeating it needs a recognised reason, which is kept, raised, counted and shown to the patient."""

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from fastapi.testclient import TestClient

from kit.clock import hospital_date
from kit.testing import FakeFeed, eventually, internal_headers, service_client
from services.results.app import create_app
from services.results.models import ResultsTable
from services.results.schemas import InstitutionLevel
from tests.results.conftest import results_settings
from tests.results.factories import (
    CBC,
    CHEST_XRAY,
    create_patient,
    create_unidentified_patient,
    create_visit,
    events,
    place_order,
    post_report,
)
from tests.results.test_printing import kiosk, pdf_text

URINALYSIS = "250301001"
GLUCOSE = "250307001"  # fast-changing: takes no part in recognition


def lis() -> dict[str, str]:
    return internal_headers("lis-east", {"results:read", "results:write"}, audience="results", kind="lis")


def external(patient_id: str, **overrides: Any) -> dict[str, Any]:
    body = {
        "external_id": "EXT-1",
        "patient_id": patient_id,
        "test_code": CBC,
        "performed_at": (datetime.now(UTC) - timedelta(days=2)).isoformat(),
        "institution_code": "H310000001",
        "institution_name": "上海市第一人民医院",
        "institution_level": "tertiary_a",
        "conclusion": "血常规未见异常",
        "observations": [{"code": "WBC", "name": "白细胞计数", "value": "6.0", "unit": "10^9/L"}],
        "verified_by": "外院技师",
    }
    return body | overrides


def recognised(client: TestClient, patient_id: str, test_code: str = CBC) -> list[dict[str, Any]]:
    response = client.get(f"/patients/{patient_id}/recognised-results", params={"test_code": test_code})
    assert response.status_code == 200, response.text
    return list(response.json())


def open_visit(registration: httpx.Client, index: int = 0) -> tuple[str, str]:
    patient = create_patient(registration, index)
    visit = create_visit(registration, patient["id"], payment_mode="settle_later")
    return patient["id"], visit["id"]


def test_a_final_verified_report_is_recognised_and_repeating_it_needs_a_reason(
    client: TestClient, registration: httpx.Client
) -> None:
    patient_id, visit_id = open_visit(registration)
    first = place_order(client, visit_id)
    post_report(client, first["id"], "preliminary")
    assert recognised(client, patient_id) == []  # a preliminary report stands in for nothing
    report = post_report(client, first["id"])
    assert report["performing_institution_code"] == "PF0000001"
    assert report["institution_level"] == "tertiary_a"

    [found] = recognised(client, patient_id)
    assert (found["source"], found["id"], found["institution_level"]) == (
        "report",
        report["id"],
        "tertiary_a",
    )
    assert datetime.fromisoformat(found["valid_until"]) - datetime.fromisoformat(
        found["performed_at"]
    ) == timedelta(days=7)

    refused = client.post("/orders", json={"visit_id": visit_id, "test_code": CBC})
    assert refused.status_code == 409, refused.text
    assert refused.json()["type"].endswith("/recognised-result-exists")
    assert [r["id"] for r in refused.json()["recognised"]] == [report["id"]]
    assert len(client.get(f"/visits/{visit_id}/orders").json()) == 1  # nothing was ordered
    bad = client.post("/orders", json={"visit_id": visit_id, "test_code": CBC, "duplicate_reason": "bored"})
    assert bad.status_code == 422

    # Another item is not a duplicate.
    assert place_order(client, visit_id, URINALYSIS)["duplicate_reason"] is None
    again = place_order(client, visit_id, duplicate_reason="condition_changed", duplicate_note="发热加重")
    assert (again["duplicate_reason"], again["duplicate_note"]) == ("condition_changed", "发热加重")
    [justified] = events(client, "order.duplicate_justified")
    assert justified["aggregate"]["id"] == again["id"]
    assert justified["data"]["reason"] == "condition_changed"
    assert justified["data"]["department"] == "internal"
    assert [r["id"] for r in justified["data"]["recognised"]] == [report["id"]]


def test_the_patient_sees_why_a_test_was_repeated_in_the_report_and_on_paper(
    client: TestClient, registration: httpx.Client
) -> None:
    patient_id, visit_id = open_visit(registration)
    post_report(client, place_order(client, visit_id)["id"])
    repeat = place_order(client, visit_id, duplicate_reason="before_surgery_or_transfusion")
    report = post_report(client, repeat["id"])

    seen = client.get(f"/reports/{report['id']}", headers=kiosk(patient_id))
    assert seen.status_code == 200, seen.text
    assert seen.json()["duplicate_reason"] == "before_surgery_or_transfusion"
    text = pdf_text(client.get(f"/reports/{report['id']}/pdf", headers=kiosk(patient_id)))
    assert "重复检查原因" in text and "手术或输血前" in text
    assert "patientflow 示范医院" in text


def test_results_from_other_hospitals_are_recognised_by_window_and_grade(
    client: TestClient, registration: httpx.Client
) -> None:
    patient_id, visit_id = open_visit(registration)
    created = client.post("/external-results", json=external(patient_id), headers=lis())
    assert created.status_code == 201, created.text
    repeat = client.post(
        "/external-results", json=external(patient_id, conclusion="复核无异常"), headers=lis()
    )
    assert repeat.status_code == 200 and repeat.json()["id"] == created.json()["id"]
    [found] = recognised(client, patient_id)
    assert (found["source"], found["id"]) == ("external", created.json()["id"])
    assert (found["institution_name"], found["conclusion"]) == ("上海市第一人民医院", "复核无异常")

    old = (datetime.now(UTC) - timedelta(days=8)).isoformat()
    lower = {"institution_code": "H2", "institution_name": "某区中心医院", "institution_level": "tertiary"}
    for body in (
        external(patient_id, external_id="EXT-OLD", performed_at=old),  # beyond a blood count's 7 days
        external(patient_id, external_id="EXT-LOWER", **lower),  # a lower grade than ours (三级甲等)
    ):
        assert client.post("/external-results", json=body, headers=lis()).status_code == 201
    assert [r["id"] for r in recognised(client, patient_id)] == [created.json()["id"]]

    # Imaging stands longer: a chest X-ray of 20 days ago is still recognised.
    xray = external(patient_id, external_id="EXT-XR", test_code=CHEST_XRAY, performed_at=old, observations=[])
    assert client.post("/external-results", json=xray, headers=lis()).status_code == 201
    assert len(recognised(client, patient_id, CHEST_XRAY)) == 1
    assert client.post("/orders", json={"visit_id": visit_id, "test_code": CHEST_XRAY}).status_code == 409

    # A fast-changing value takes no part: ordered freely whatever came before.
    glucose = external(patient_id, external_id="EXT-GLU", test_code=GLUCOSE)
    assert client.post("/external-results", json=glucose, headers=lis()).status_code == 201
    assert recognised(client, patient_id, GLUCOSE) == []
    assert place_order(client, visit_id, GLUCOSE)["duplicate_reason"] is None


def test_only_lis_or_his_post_external_results_and_bad_ones_change_nothing(
    client: TestClient, registration: httpx.Client
) -> None:
    patient_id, _ = open_visit(registration)
    nurse = internal_headers("nurse-1", {"results:write"}, audience="results", kind="nurse")
    assert client.post("/external-results", json=external(patient_id), headers=nurse).status_code == 403
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    for body in (
        external(patient_id, performed_at=future),
        external(patient_id, test_code="999999999"),
        external(patient_id, institution_level="quaternary"),
        external(patient_id, performed_at="2026-01-01T00:00:00"),  # no time zone
        external(patient_id, external_id="x" * 65),
    ):
        response = client.post("/external-results", json=body, headers=lis())
        assert response.status_code == 422, (body, response.text)
    assert recognised(client, patient_id) == []


def test_patient_facing_clients_cannot_look_up_recognised_results(
    client: TestClient, registration: httpx.Client
) -> None:
    patient_id, _ = open_visit(registration)
    looked = client.get(
        f"/patients/{patient_id}/recognised-results", params={"test_code": CBC}, headers=kiosk(patient_id)
    )
    assert looked.status_code == 403
    unknown = client.get(f"/patients/{patient_id}/recognised-results", params={"test_code": "nope"})
    assert unknown.status_code == 400


def test_duplicates_are_counted_by_reason_and_department(
    client: TestClient, registration: httpx.Client
) -> None:
    _, visit_id = open_visit(registration)
    post_report(client, place_order(client, visit_id)["id"])
    for reason in ("patient_request", "patient_request", "emergency"):
        place_order(client, visit_id, duplicate_reason=reason)
    # A reason given when nothing is recognised is no duplicate, and is not counted.
    assert place_order(client, visit_id, URINALYSIS, duplicate_reason="emergency")["duplicate_reason"] is None

    today = hospital_date(datetime.now(UTC)).isoformat()
    counted = client.get("/recognition/duplicates", params={"from_date": today, "to_date": today})
    assert counted.status_code == 200, counted.text
    body = counted.json()
    assert body["total"] == 3
    assert body["by_reason"] == {"emergency": 1, "patient_request": 2}
    assert body["by_department"] == {"internal": 3}
    yesterday = (hospital_date(datetime.now(UTC)) - timedelta(days=1)).isoformat()
    earlier = client.get("/recognition/duplicates", params={"from_date": yesterday, "to_date": yesterday})
    assert earlier.json()["total"] == 0
    backwards = client.get("/recognition/duplicates", params={"from_date": today, "to_date": yesterday})
    assert backwards.status_code == 400
    huge = client.get("/recognition/duplicates", params={"from_date": today, "to_date": "9999-12-31"})
    assert huge.status_code == 400


def test_results_from_other_hospitals_follow_a_merge(client: TestClient, registration: httpx.Client) -> None:
    unknown = create_unidentified_patient(registration)
    created = client.post("/external-results", json=external(unknown["id"]), headers=lis())
    assert created.status_code == 201, created.text
    known = create_patient(registration)
    merged = registration.post(f"/patients/{known['id']}/merge", json={"source_patient_id": unknown["id"]})
    assert merged.status_code == 200, merged.text
    eventually(
        lambda: [r["id"] for r in recognised(client, known["id"])] == [created.json()["id"]],
        what="results to move the merged record's external results",
    )
    assert recognised(client, unknown["id"]) == []


def test_a_lower_grade_hospital_recognises_results_of_its_own_grade(
    results_data_dir: Path, registration_url: str, registration: httpx.Client, billing: FakeFeed
) -> None:
    settings = results_settings(results_data_dir, registration_url, billing.url)
    settings.institution_level = InstitutionLevel.secondary
    with service_client(create_app(settings), ResultsTable.metadata) as client:
        patient_id, _ = open_visit(registration)
        for n, level in enumerate(("primary", "secondary", "tertiary")):
            body = external(patient_id, external_id=f"EXT-{n}", institution_level=level)
            assert client.post("/external-results", json=body, headers=lis()).status_code == 201
        levels = sorted(r["institution_level"] for r in recognised(client, patient_id))
        assert levels == ["secondary", "tertiary"]
