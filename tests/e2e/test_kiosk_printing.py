"""Kiosk printing and phone lookup through the real gateway, registration and results: a kiosk proven
with the slip prints its patient's released reports (once each, then copies), the phone line reads the
same released reports after its texted code, and the administrator's audit says who, from where."""

import io
import uuid
from typing import Any

from pypdf import PdfReader

from kit.testing import eventually
from tests.e2e.clients import Gateway, assert_problem, ok, patient_session, register_patient

CBC = "250101015"  # 血细胞分析
GLUCOSE = "250307001"  # 血糖
REPORT = {
    "status": "final",
    "verified_by": "李技师",  # only a verified report is released to a patient
    "conclusion": "轻度贫血",
    "observations": [
        {
            "code": "HGB",
            "name": "血红蛋白",
            "value": "98",
            "unit": "g/L",
            "reference_range": "130-175",
            "flag": "L",
        }
    ],
}


def patient_with_reports(gateway: Gateway) -> dict[str, Any]:
    """A patient with a green-channel visit: a final blood count and a preliminary glucose."""
    patient = register_patient(gateway.his, name="李四")
    body = {"patient_id": patient["id"], "kind": "emergency", "department": "emergency"}
    visit = ok(gateway.his.post("/v1/visits", json=body | {"payment_mode": "green_channel"}), 201)
    cbc = ok(gateway.doctor.post("/v1/orders", json={"visit_id": visit["id"], "test_code": CBC}), 201)
    final = ok(gateway.lab.post(f"/v1/orders/{cbc['id']}/reports", json=REPORT), 201)
    glucose = ok(gateway.doctor.post("/v1/orders", json={"visit_id": visit["id"], "test_code": GLUCOSE}), 201)
    pending = {"status": "preliminary", "conclusion": "待复核", "critical": True}
    preliminary = ok(gateway.lab.post(f"/v1/orders/{glucose['id']}/reports", json=pending), 201)
    return {**patient, "visit": visit["id"], "final": final["id"], "preliminary": preliminary["id"]}


def pdf_text(response: Any) -> str:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/pdf"
    assert response.headers["content-disposition"].startswith("inline; filename=")
    return "".join(page.extract_text() for page in PdfReader(io.BytesIO(response.content)).pages)


def test_a_kiosk_prints_its_patients_released_reports_once_then_as_copies(gateway: Gateway) -> None:
    p, q = patient_with_reports(gateway), patient_with_reports(gateway)
    token = patient_session(gateway, p, client="kiosk")["token"]
    kiosk = {"x-patient-token": token}

    listed = ok(gateway.kiosk.get(f"/v1/patients/{p['id']}/released-reports", headers=kiosk))
    assert [(r["id"], r["printed_copies"]) for r in listed] == [(p["final"], 0)]  # not the preliminary

    keyed = kiosk | {"idempotency-key": str(uuid.uuid4())}
    printed = ok(gateway.kiosk.post(f"/v1/visits/{p['visit']}/prints", json={}, headers=keyed), 201)
    retried = gateway.kiosk.post(f"/v1/visits/{p['visit']}/prints", json={}, headers=keyed)
    assert ok(retried, 201) == printed and retried.headers["idempotent-replayed"] == "true"
    (original,) = printed["prints"]
    assert (original["report_id"], original["copy_number"]) == (p["final"], 1)
    text = pdf_text(gateway.kiosk.get(original["pdf_url"], headers=kiosk))
    assert "血红蛋白" in text and "g/L" in text and "副本" not in text

    reprint = ok(gateway.kiosk.post(f"/v1/reports/{p['final']}/prints", json={}, headers=kiosk), 201)
    assert (reprint["copy_number"], reprint["is_copy"]) == (2, True)
    assert "副本" in pdf_text(gateway.kiosk.get(reprint["pdf_url"], headers=kiosk))

    # Patient Q's report, print and visit: the kiosk acting for P gets nothing of them.
    for path in (f"/v1/reports/{q['final']}/pdf", f"/v1/reports/{p['preliminary']}/pdf"):
        assert_problem(gateway.kiosk.get(path, headers=kiosk), 404)
    assert_problem(gateway.kiosk.post(f"/v1/reports/{q['final']}/prints", json={}, headers=kiosk), 404)
    assert (
        ok(gateway.kiosk.post(f"/v1/visits/{q['visit']}/prints", json={}, headers=kiosk), 201)["prints"] == []
    )
    assert ok(gateway.kiosk.get(f"/v1/patients/{q['id']}/released-reports", headers=kiosk)) == []

    trail = ok(gateway.admin.get("/v1/audit/result-access", params={"patient_id": q["id"]}))
    refusals = [row for row in trail if row["acting_for"] == p["id"]]
    assert {row["outcome"] for row in refusals} == {"refused"}
    assert {row["action"] for row in refusals} == {"read_pdf", "print", "print_visit", "released_reports"}
    assert all(row["client"] == "kiosk-dev" and row["client_kind"] == "kiosk" for row in refusals)
    assert all(row["source_address"] == "127.0.0.1" for row in refusals)  # the kiosk's own address
    bundle = ok(
        gateway.admin.get("/v1/audit/result-access", params={"patient_id": q["id"], "format": "fhir"})
    )
    assert bundle["resourceType"] == "Bundle" and bundle["total"] == len(trail)
    acted_for_p = [e["resource"] for e in bundle["entry"] if e["resource"]["agent"][0].get("extension")]
    assert acted_for_p and {event["outcome"] for event in acted_for_p} == {"4"}  # each a refusal


def test_the_kiosks_printed_report_names_its_patient_in_chinese_and_its_list_masks_the_name(
    gateway: Gateway,
) -> None:
    """Results learns the name from registration's feed (asking registration outside any transaction);
    the paper carries it in full, the kiosk's screen list masked, and neither the identity number."""
    p = patient_with_reports(gateway)
    kiosk = {"x-patient-token": patient_session(gateway, p, client="kiosk")["token"]}
    path = f"/v1/patients/{p['id']}/released-reports"

    def masked_name() -> str | None:
        listed = gateway.kiosk.get(path, headers=kiosk)
        return listed.json()[0]["patient_name_masked"] if listed.status_code == 200 else None

    eventually(lambda: masked_name() == "李**", what="results to learn the patient's name")
    printed = ok(gateway.kiosk.post(f"/v1/reports/{p['final']}/prints", json={}, headers=kiosk), 201)
    paper = pdf_text(gateway.kiosk.get(printed["pdf_url"], headers=kiosk))
    assert "姓名 Name: 李四" in paper, paper
    listing = gateway.kiosk.get(path, headers=kiosk).text
    assert "李四" not in listing and p["id_number"] not in paper + listing + str(printed)


def test_the_phone_line_reads_released_reports_after_the_texted_code(gateway: Gateway) -> None:
    p, q = patient_with_reports(gateway), patient_with_reports(gateway)
    token = patient_session(gateway, p, client="phone")["token"]
    phone = {"x-patient-token": token}

    listed = ok(gateway.phone.get(f"/v1/patients/{p['id']}/released-reports", headers=phone))
    assert [r["id"] for r in listed] == [p["final"]]
    assert ok(gateway.phone.get(f"/v1/patients/{q['id']}/released-reports", headers=phone)) == []
    assert_problem(gateway.phone.get(f"/v1/reports/{p['preliminary']}/pdf", headers=phone), 404)
    # another patient's records stay closed on every route, as if they did not exist
    assert ok(gateway.phone.get(f"/v1/patients/{q['id']}/reports", headers=phone)) == []
    slip = {"slip_code": "AAAA2222", "birth_date": p["birth_date"]}
    body = assert_problem(gateway.phone.post("/v1/patient-sessions", json=slip), 422)
    assert body["type"].endswith("/proof-not-for-client-kind")

    trail = ok(gateway.admin.get("/v1/audit/result-access", params={"patient_id": p["id"]}))
    phone_rows = [row for row in trail if row["client"] == "phone-dev"]
    assert {(row["action"], row["outcome"]) for row in phone_rows} == {
        ("released_reports", "found"),
        ("read_pdf", "not_released"),
    }
    assert {row["client_kind"] for row in phone_rows} == {"phone"}
