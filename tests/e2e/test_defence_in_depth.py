"""The services decide for themselves, through the real gateway and processes: a kiosk acting for
patient A asking for B's report gets a 404, and the audit the administrator reads says the kiosk was
refused (not `found`); straight at a service, a token for another service or without the scope fails."""

import uuid
from typing import Any

import httpx

from gateway.patients import mint_patient_token
from kit.auth import mint_internal_token
from kit.testing import HTTP_TIMEOUT_SECONDS
from tests.e2e.clients import Gateway, assert_problem, ok
from tests.e2e.test_patient_tokens import patient_with_report
from tests.fuzz import assert_client_error

KIOSK = "kiosk-dev"


def acting_for(gateway: Gateway, client: str, patient_id: str) -> dict[str, str]:
    """The headers of `client` holding `patient_id`'s patient token (as a patient session gives it:
    minted here, so this test does not depend on how a session is opened)."""
    token, _ = mint_patient_token(
        gateway.system.env["PATIENTFLOW_INTERNAL_SECRET"], client=client, patient=patient_id, lifetime=300
    )
    return {"authorization": f"Bearer {gateway.system.api_keys[client]}", "x-patient-token": token}


def audit_rows(gateway: Gateway, patient_id: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = ok(
        gateway.admin.get("/v1/audit/result-access", params={"patient_id": patient_id})
    )
    return rows


def test_a_kiosk_gets_404_for_another_patients_report_and_the_audit_says_refused(gateway: Gateway) -> None:
    a, b = patient_with_report(gateway), patient_with_report(gateway)
    kiosk = acting_for(gateway, KIOSK, a["patient"])
    request_id = uuid.uuid4().hex

    theirs = gateway.anonymous.get(f"/v1/reports/{b['report']}", headers=kiosk | {"x-request-id": request_id})
    missing = gateway.anonymous.get(f"/v1/reports/{uuid.uuid4()}", headers=kiosk)
    assert_problem(theirs, 404)
    assert_problem(missing, 404)
    assert {k: v for k, v in theirs.json().items() if k != "instance"} == {
        k: v for k, v in missing.json().items() if k != "instance"
    }  # "not yours" and "no such report" cannot be told apart
    assert b["patient"] not in theirs.text

    [row] = [r for r in audit_rows(gateway, b["patient"]) if r["request_id"] == request_id]
    assert (row["client"], row["action"], row["report_id"]) == (KIOSK, "read_report", b["report"])
    assert (row["outcome"], row["report_ids"], row["acting_for"]) == ("refused", [], a["patient"])

    own = ok(
        gateway.anonymous.get(
            f"/v1/reports/{a['report']}", headers=kiosk | {"x-request-id": request_id + "-own"}
        )
    )
    assert own["id"] == a["report"]
    [mine] = [r for r in audit_rows(gateway, a["patient"]) if r["request_id"] == request_id + "-own"]
    assert (mine["outcome"], mine["report_ids"]) == ("found", [a["report"]])


def test_a_service_refuses_a_token_for_another_service_or_without_the_scope(gateway: Gateway) -> None:
    system = gateway.system
    secret = system.env["PATIENTFLOW_INTERNAL_SECRET"]
    report = patient_with_report(gateway)["report"]

    def read_report(token: str) -> httpx.Response:
        with httpx.Client(base_url=system.url("results"), timeout=HTTP_TIMEOUT_SECONDS) as results:
            return results.get(f"/reports/{report}", headers={"authorization": f"Bearer {token}"})

    for_billing = mint_internal_token(secret, "his-dev", {"results:read"}, audience="billing")
    without_scope = mint_internal_token(secret, "his-dev", {"billing:read"}, audience="results")
    right = mint_internal_token(secret, "his-dev", {"results:read"}, audience="results")
    assert_client_error(read_report(for_billing))
    assert read_report(for_billing).status_code == 401
    assert read_report(without_scope).status_code == 403
    assert ok(read_report(right))["id"] == report
