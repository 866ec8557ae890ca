"""Kiosk printing and patient reading: only released reports reach a patient channel, each print is
recorded and numbered (a reprint says 副本), a visit's unprinted reports print at once, and every
look, print and refusal is in the audit, exportable as FHIR AuditEvents."""

import io
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from fastapi.testclient import TestClient
from pypdf import PdfReader

from kit.testing import FakeFeed, internal_headers, serve
from services.results.app import create_app
from tests.results.conftest import results_settings
from tests.results.factories import CHEST_XRAY, events, place_order, post_report, released_order

KIOSK = "kiosk-hall-1"
MISSING = "00000000-0000-4000-8000-000000000000"


def kiosk(patient_id: str, request_id: str = "req", *, kind: str = "kiosk") -> dict[str, str]:
    """What the gateway forwards for a patient-bound client holding `patient_id`'s token."""
    headers = internal_headers(KIOSK, {"results:read"}, audience="results", patient=patient_id, kind=kind)
    return headers | {"x-request-id": request_id, "x-forwarded-for": "198.51.100.9, 10.0.0.5"}


def pdf_text(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/pdf"
    reader = PdfReader(io.BytesIO(response.content))
    return "".join(page.extract_text() for page in reader.pages)


def audit_rows(client: TestClient) -> dict[str, dict[str, Any]]:
    rows = client.get("/audit/result-access", params={"limit": 500}).json()
    return {row["request_id"]: row for row in rows}


def test_the_kiosk_lists_only_released_reports_with_their_print_counts(
    client: TestClient, registration: httpx.Client
) -> None:
    order = released_order(client, registration)
    final = post_report(client, order["id"])
    xray = place_order(client, order["visit_id"], CHEST_XRAY)
    post_report(client, xray["id"], status="preliminary", critical=True)  # a preliminary critical one
    me = order["patient_id"]

    listed = client.get(f"/patients/{me}/released-reports", headers=kiosk(me, "req-list"))
    assert listed.status_code == 200, listed.text
    assert [(r["id"], r["version"], r["printed_copies"]) for r in listed.json()] == [(final["id"], 1, 0)]

    client.post(f"/reports/{final['id']}/prints", headers=kiosk(me))
    again = client.get(f"/patients/{me}/released-reports", headers=kiosk(me)).json()
    assert [r["printed_copies"] for r in again] == [1]
    row = audit_rows(client)["req-list"]
    assert (row["action"], row["outcome"], row["report_ids"]) == ("released_reports", "found", [final["id"]])


def test_patient_b_never_reaches_patient_as_reports_and_each_refusal_is_audited(
    client: TestClient, registration: httpx.Client
) -> None:
    theirs = released_order(client, registration, patient_index=0)
    report = post_report(client, theirs["id"])
    me = released_order(client, registration, patient_index=1)["patient_id"]

    listed = client.get(f"/patients/{theirs['patient_id']}/released-reports", headers=kiosk(me, "b-list"))
    pdf = client.get(f"/reports/{report['id']}/pdf", headers=kiosk(me, "b-pdf"))
    printed = client.post(f"/reports/{report['id']}/prints", headers=kiosk(me, "b-print"))
    visit = client.post(f"/visits/{theirs['visit_id']}/prints", headers=kiosk(me, "b-visit"))
    missing = client.get(f"/reports/{MISSING}/pdf", headers=kiosk(me, "b-missing"))

    assert listed.json() == [] and visit.json()["prints"] == []
    assert pdf.status_code == printed.status_code == missing.status_code == 404
    assert pdf.json()["type"] == printed.json()["type"] == missing.json()["type"]
    assert report["id"] not in pdf.text + printed.text
    # Nothing was printed for A, and the staff view of A's reports shows no copy.
    staff = client.get(f"/patients/{theirs['patient_id']}/released-reports").json()
    assert [r["printed_copies"] for r in staff] == [0]
    assert events(client, "report.printed") == []
    rows = audit_rows(client)
    assert {key: rows[key]["outcome"] for key in ("b-list", "b-pdf", "b-print", "b-visit", "b-missing")} == {
        "b-list": "refused",
        "b-pdf": "refused",
        "b-print": "refused",
        "b-visit": "refused",
        "b-missing": "not_found",
    }
    assert all(rows[key]["acting_for"] == me for key in ("b-list", "b-pdf", "b-print", "b-visit"))
    assert rows["b-pdf"]["patient_id"] == theirs["patient_id"]


def test_a_preliminary_report_is_never_released_to_a_patient_channel(
    client: TestClient, registration: httpx.Client
) -> None:
    order = released_order(client, registration)
    report = post_report(client, order["id"], status="preliminary", critical=True)
    me = order["patient_id"]

    pdf = client.get(f"/reports/{report['id']}/pdf", headers=kiosk(me, "pre-pdf"))
    printed = client.post(f"/reports/{report['id']}/prints", headers=kiosk(me, "pre-print"))
    visit = client.post(f"/visits/{order['visit_id']}/prints", headers=kiosk(me, "pre-visit"))
    assert pdf.status_code == printed.status_code == 404
    assert visit.json()["prints"] == []
    rows = audit_rows(client)
    assert (rows["pre-pdf"]["outcome"], rows["pre-print"]["outcome"]) == ("not_released", "not_released")
    assert rows["pre-visit"]["outcome"] == "empty"


def test_an_unverified_or_withheld_final_report_is_not_printed_until_released(
    client: TestClient, registration: httpx.Client
) -> None:
    order = released_order(client, registration)
    report = post_report(client, order["id"], verified_by=None)  # final, but nobody verified it yet
    me = order["patient_id"]

    def printable() -> bool:
        listed = client.get(f"/patients/{me}/released-reports", headers=kiosk(me)).json()
        printed = client.post(f"/reports/{report['id']}/prints", headers=kiosk(me))
        assert (printed.status_code == 201) == bool(listed), printed.text
        return printed.status_code == 201

    assert not printable()
    verified = client.post(f"/reports/{report['id']}/verification", json={"verified_by": "李技师"})
    assert verified.status_code == 200, verified.text
    assert printable()
    hold = {"reason": "需当面告知病情"}
    assert client.post(f"/reports/{report['id']}/withhold", json=hold).status_code == 200
    assert not printable()
    assert client.post(f"/reports/{report['id']}/unwithhold", json=hold).status_code == 200
    assert printable()


def test_the_pdf_carries_the_chinese_names_units_and_conclusion(
    client: TestClient, registration: httpx.Client
) -> None:
    order = released_order(client, registration)
    report = post_report(client, order["id"])
    text = pdf_text(client.get(f"/reports/{report['id']}/pdf", headers=kiosk(order["patient_id"])))

    for expected in ("血细胞分析", "白细胞计数", "血红蛋白", "10^9/L", "g/L", "3.5-9.5", "偏低", "轻度贫血"):
        assert expected in text, expected
    assert "副本" not in text
    assert client.get("/orders", params={"status": "reported"}).status_code == 200  # reading printed nothing
    assert events(client, "report.printed") == []


def test_a_reprint_is_numbered_marked_as_a_copy_and_raises_report_printed(
    client: TestClient, registration: httpx.Client
) -> None:
    order = released_order(client, registration)
    report = post_report(client, order["id"])
    me = order["patient_id"]

    first = client.post(f"/reports/{report['id']}/prints", headers=kiosk(me, "print-1"))
    second = client.post(f"/reports/{report['id']}/prints", headers=kiosk(me, "print-2"))
    assert first.status_code == second.status_code == 201, first.text
    assert (first.json()["copy_number"], first.json()["is_copy"]) == (1, False)
    assert (second.json()["copy_number"], second.json()["is_copy"]) == (2, True)

    original = pdf_text(client.get(first.json()["pdf_url"].removeprefix("/v1"), headers=kiosk(me)))
    copy = pdf_text(client.get(second.json()["pdf_url"].removeprefix("/v1"), headers=kiosk(me)))
    assert "副本" not in original and "第 1 份" in original
    assert "副本" in copy and "第 2 份" in copy and "白细胞计数" in copy
    printed = [e["data"] for e in events(client, "report.printed")]
    assert [(d["report_id"], d["copy_number"], d["report_version"]) for d in printed] == [
        (report["id"], 1, 1),
        (report["id"], 2, 1),
    ]
    rows = audit_rows(client)
    assert (rows["print-2"]["action"], rows["print-2"]["outcome"]) == ("print", "printed")
    assert rows["print-2"]["client_kind"] == "kiosk"


def test_a_print_retried_with_its_idempotency_key_is_the_same_copy(
    client: TestClient, registration: httpx.Client
) -> None:
    order = released_order(client, registration)
    report = post_report(client, order["id"])
    headers = kiosk(order["patient_id"]) | {"idempotency-key": "print-once"}

    first = client.post(f"/reports/{report['id']}/prints", headers=headers)
    retry = client.post(f"/reports/{report['id']}/prints", headers=headers)
    assert retry.status_code == 201 and retry.headers["idempotent-replayed"] == "true"
    assert retry.json() == first.json()
    assert len(events(client, "report.printed")) == 1


def test_printing_a_visit_prints_each_unprinted_released_report_once_and_is_idempotent(
    client: TestClient, registration: httpx.Client
) -> None:
    order = released_order(client, registration)
    me, visit_id = order["patient_id"], order["visit_id"]
    blood = post_report(client, order["id"])
    xray_order = place_order(client, visit_id, CHEST_XRAY)
    xray = post_report(client, xray_order["id"], conclusion="双肺纹理清晰", observations=[])
    pending = place_order(client, visit_id, "250301001")  # 尿常规, still preliminary
    post_report(client, pending["id"], status="preliminary")
    client.post(f"/reports/{blood['id']}/prints", headers=kiosk(me))  # the blood count is already out

    keyed = kiosk(me, "visit-1") | {"idempotency-key": "slip-K7M2Q9XD"}
    printed = client.post(f"/visits/{visit_id}/prints", headers=keyed)
    retry = client.post(f"/visits/{visit_id}/prints", headers=keyed)
    assert printed.status_code == 201, printed.text
    assert [(p["report_id"], p["copy_number"]) for p in printed.json()["prints"]] == [(xray["id"], 1)]
    assert retry.json() == printed.json() and retry.headers["idempotent-replayed"] == "true"
    assert client.post(f"/visits/{visit_id}/prints", headers=kiosk(me)).json()["prints"] == []
    assert len(events(client, "report.printed")) == 2  # the single print and the visit's one
    text = pdf_text(client.get(printed.json()["prints"][0]["pdf_url"].removeprefix("/v1"), headers=kiosk(me)))
    assert "双肺纹理清晰" in text


def test_a_print_of_another_patient_is_a_404_even_by_its_pdf_url(
    client: TestClient, registration: httpx.Client
) -> None:
    theirs = released_order(client, registration, patient_index=0)
    report = post_report(client, theirs["id"])
    printed = client.post(f"/reports/{report['id']}/prints", headers=kiosk(theirs["patient_id"])).json()
    me = released_order(client, registration, patient_index=1)["patient_id"]

    stolen = client.get(printed["pdf_url"].removeprefix("/v1"), headers=kiosk(me, "stolen"))
    assert stolen.status_code == 404
    assert audit_rows(client)["stolen"]["outcome"] == "refused"


def test_the_phone_line_gets_the_same_rule_and_is_audited_as_phone(
    client: TestClient, registration: httpx.Client
) -> None:
    order = released_order(client, registration)
    final = post_report(client, order["id"])
    preliminary = post_report(
        client, place_order(client, order["visit_id"], CHEST_XRAY)["id"], status="preliminary"
    )
    me = order["patient_id"]
    phone = kiosk(me, "phone-list", kind="phone")

    listed = client.get(f"/patients/{me}/released-reports", headers=phone).json()
    assert [r["id"] for r in listed] == [final["id"]]
    refused = client.get(f"/reports/{preliminary['id']}/pdf", headers=kiosk(me, "phone-pdf", kind="phone"))
    assert refused.status_code == 404
    rows = audit_rows(client)
    assert (rows["phone-list"]["client_kind"], rows["phone-pdf"]["client_kind"]) == ("phone", "phone")
    assert rows["phone-pdf"]["outcome"] == "not_released"


def test_kiosks_printing_one_report_at_once_each_get_their_own_copy_number(
    client: TestClient,
    registration: httpx.Client,
    results_data_dir: Path,
    registration_url: str,
    billing: FakeFeed,
) -> None:
    """Over real HTTP, threads released together: copies are numbered 1..n, never twice the same
    (PostgreSQL locks the report row; SQLite's one writer serialises)."""
    order = released_order(client, registration)
    report = post_report(client, order["id"])
    headers = kiosk(order["patient_id"])
    kiosks = 8
    start = threading.Barrier(kiosks)
    settings = results_settings(results_data_dir, registration_url, billing.url)

    with serve(create_app(settings)) as url:

        def print_once(_: int) -> httpx.Response:
            with httpx.Client(base_url=url, headers=headers, timeout=60) as http:
                start.wait()
                return http.post(f"/reports/{report['id']}/prints", json={})

        with ThreadPoolExecutor(kiosks) as pool:
            answers = list(pool.map(print_once, range(kiosks)))

    assert [a.status_code for a in answers] == [201] * kiosks, [a.text for a in answers]
    assert sorted(a.json()["copy_number"] for a in answers) == list(range(1, kiosks + 1))
    assert len(events(client, "report.printed")) == kiosks
