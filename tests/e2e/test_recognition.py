"""Mutual recognition (检验检查结果互认) through the real gateway and services: a blood count reported
here, or received from another hospital by the LIS, is found by the doctor before ordering; ordering it
again is refused without a recognised reason, and with one the reason is counted and shown to the
patient on the kiosk's report and its PDF."""

import io
from datetime import UTC, datetime, timedelta

from pypdf import PdfReader

from kit.clock import hospital_date
from tests.e2e.clients import (
    Gateway,
    assert_problem,
    ok,
    patient_session,
    register_patient,
    unique_department,
)

CBC = "250101015"  # 血细胞分析 (complete blood count): a result stands 7 days
CHEST_XRAY = "210102015"  # stands 30 days


def test_a_recognised_result_is_found_before_ordering_and_a_repeat_needs_a_reason(gateway: Gateway) -> None:
    person = register_patient(gateway.his)
    department = unique_department()
    visit = ok(
        gateway.his.post(
            "/v1/visits",
            json={
                "patient_id": person["id"],
                "kind": "outpatient",
                "department": department,
                "payment_mode": "settle_later",
            },
        ),
        201,
    )
    first = ok(gateway.doctor.post("/v1/orders", json={"visit_id": visit["id"], "test_code": CBC}), 201)
    final = {"status": "final", "conclusion": "正常", "verified_by": "李技师"}
    ok(gateway.lab.post(f"/v1/orders/{first['id']}/reports", json=final), 201)

    # An X-ray from another tertiary-A hospital three weeks ago, received through the LIS.
    xray = {
        "external_id": f"EXT-{person['id']}",
        "patient_id": person["id"],
        "test_code": CHEST_XRAY,
        "performed_at": (datetime.now(UTC) - timedelta(days=21)).isoformat(),
        "institution_code": "H310000001",
        "institution_name": "上海市第一人民医院",
        "institution_level": "tertiary_a",
        "conclusion": "两肺未见明显异常",
        "verified_by": "外院医师",
    }
    ok(gateway.lab.post("/v1/external-results", json=xray), 201)
    assert ok(gateway.lab.post("/v1/external-results", json=xray))["external_id"] == xray["external_id"]
    assert_problem(gateway.kiosk.post("/v1/external-results", json=xray), 403)

    recognised = f"/v1/patients/{person['id']}/recognised-results"
    [cbc] = ok(gateway.doctor.get(recognised, params={"test_code": CBC}))
    assert (cbc["source"], cbc["institution_level"]) == ("report", "tertiary_a")
    [other] = ok(gateway.doctor.get(recognised, params={"test_code": CHEST_XRAY}))
    assert (other["source"], other["institution_name"]) == ("external", "上海市第一人民医院")

    for test_code in (CBC, CHEST_XRAY):
        refused = gateway.doctor.post("/v1/orders", json={"visit_id": visit["id"], "test_code": test_code})
        assert assert_problem(refused, 409)["type"].endswith("/recognised-result-exists")
    justified = {"visit_id": visit["id"], "test_code": CBC, "duplicate_reason": "patient_request"}
    repeat = ok(gateway.doctor.post("/v1/orders", json=justified), 201)
    assert repeat["duplicate_reason"] == "patient_request"

    today = hospital_date(datetime.now(UTC)).isoformat()
    counts = ok(gateway.his.get("/v1/recognition/duplicates", params={"from_date": today, "to_date": today}))
    assert counts["by_department"][department] == 1

    # The repeated test's report, on the patient's kiosk: the reason is in the JSON and on the paper.
    report = ok(gateway.lab.post(f"/v1/orders/{repeat['id']}/reports", json=final), 201)
    kiosk = {"x-patient-token": patient_session(gateway, person, "kiosk")["token"]}
    seen = ok(gateway.kiosk.get(f"/v1/reports/{report['id']}", headers=kiosk))
    assert seen["duplicate_reason"] == "patient_request"
    pdf = gateway.kiosk.get(f"/v1/reports/{report['id']}/pdf", headers=kiosk)
    assert pdf.status_code == 200, pdf.text
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf.content)).pages)
    assert "患者要求" in text
    # Patient-facing clients do not look results up for ordering.
    assert gateway.kiosk.get(recognised, params={"test_code": CBC}, headers=kiosk).status_code == 403
