"""The one release rule (`release.releasable`), alone and on every patient-facing lookup: a report reaches
an app, kiosk or phone line only final (or amended/corrected), verified, not withheld, and, where the
hospital says so, paid. Staff see every report."""

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from kit.auth import Caller
from kit.testing import FakeFeed, eventually, internal_headers
from services.results.models import LabOrder, Report
from services.results.release import Refusal, patient_facing, releasable
from services.results.schemas import ReportStatus
from tests.results.factories import charge_paid, post_report, released_order

NOW = datetime(2026, 12, 1, 8, tzinfo=UTC)
RELEASED_STATUSES = {ReportStatus.final, ReportStatus.amended, ReportStatus.corrected}


def a_report(**overrides: Any) -> Report:
    values: dict[str, Any] = {
        "id": "r",
        "order_id": "o",
        "visit_id": "v",
        "patient_id": "p",
        "test_code": "250101015",
        "test_name": "血细胞分析",
        "status": "final",
        "conclusion": "正常",
        "reported_by": "lab-dev",
        "verified_by": "李技师",
        "verified_at": NOW,
        "withheld": False,
    }
    return Report(**(values | overrides))


def an_order(**overrides: Any) -> LabOrder:
    values: dict[str, Any] = {
        "id": "o",
        "visit_id": "v",
        "patient_id": "p",
        "test_code": "250101015",
        "test_name": "血细胞分析",
        "payment_mode": "settle_later",
        "status": "reported",
        "paid_at": NOW,
    }
    return LabOrder(**(values | overrides))


def test_a_final_verified_paid_report_is_released() -> None:
    assert releasable(a_report(), an_order(), require_payment=True).released


@pytest.mark.parametrize(
    ("report", "order", "refusal"),
    [
        (a_report(status="preliminary", critical=True), an_order(), Refusal.not_final),
        (a_report(status="registered"), an_order(), Refusal.not_final),
        (a_report(status="cancelled"), an_order(), Refusal.not_final),
        (a_report(verified_by=None, verified_at=None), an_order(), Refusal.not_verified),
        (a_report(withheld=True), an_order(), Refusal.withheld),
        (a_report(), an_order(paid_at=None), Refusal.unpaid),
    ],
)
def test_each_reason_to_hold_a_report_back(report: Report, order: LabOrder, refusal: Refusal) -> None:
    decision = releasable(report, order, require_payment=True)
    assert (decision.released, decision.refusal) == (False, refusal)


def test_payment_counts_only_where_the_hospital_requires_it() -> None:
    assert releasable(a_report(), an_order(paid_at=None), require_payment=False).released


@given(
    status=st.sampled_from(list(ReportStatus)),
    verified=st.booleans(),
    withheld=st.booleans(),
    paid=st.booleans(),
    require_payment=st.booleans(),
)
def test_released_exactly_when_every_condition_holds(
    status: ReportStatus, verified: bool, withheld: bool, paid: bool, require_payment: bool
) -> None:
    report = a_report(
        status=status.value,
        verified_by="李技师" if verified else None,
        verified_at=NOW if verified else None,
        withheld=withheld,
    )
    order = an_order(paid_at=NOW if paid else None)
    expected = status in RELEASED_STATUSES and verified and not withheld and (paid or not require_payment)
    assert releasable(report, order, require_payment=require_payment).released is expected


def test_apps_kiosks_and_phone_lines_are_patient_facing_with_or_without_a_token() -> None:
    scopes = frozenset({"results:read"})
    for kind in ("app", "kiosk", "phone"):
        assert patient_facing(Caller("c", scopes, kind=kind))
    assert patient_facing(Caller("c", scopes, patient="p", kind="his"))
    assert not patient_facing(Caller("doctor-dev", scopes, kind="doctor"))


# --- through the service's routes ---------------------------------------------------------------------

KIOSK = "kiosk-hall-1"


def kiosk_for(patient_id: str) -> dict[str, str]:
    return internal_headers(KIOSK, {"results:read"}, audience="results", patient=patient_id, kind="kiosk")


def patient_sees(client: TestClient, order: dict[str, Any], report_id: str) -> dict[str, bool]:
    """What each patient-facing route shows the order's patient of the report, through a kiosk."""
    headers = kiosk_for(order["patient_id"])
    by_visit = client.get(f"/visits/{order['visit_id']}/reports", headers=headers).json()
    by_patient = client.get(f"/patients/{order['patient_id']}/reports", headers=headers).json()
    one = client.get(f"/reports/{report_id}", headers=headers)
    return {
        "visit": report_id in [r["id"] for r in by_visit],
        "patient": report_id in [r["id"] for r in by_patient],
        "report": one.status_code == 200,
    }


NOWHERE = {"visit": False, "patient": False, "report": False}
EVERYWHERE = {"visit": True, "patient": True, "report": True}


def test_a_preliminary_critical_report_never_reaches_a_kiosk_but_the_doctor_sees_it(
    client: TestClient, registration: httpx.Client
) -> None:
    """The regression of issue 11: a kiosk received a preliminary critical report."""
    order = released_order(client, registration)
    report = post_report(client, order["id"], "preliminary", critical=True, critical_note="血钾6.8")
    assert patient_sees(client, order, report["id"]) == NOWHERE
    assert client.get(f"/reports/{report['id']}").status_code == 200  # staff
    # A kiosk without a patient token, by its kind alone, is held to the rule too.
    bare_kiosk = internal_headers(KIOSK, {"results:read"}, audience="results", kind="kiosk")
    assert client.get(f"/reports/{report['id']}", headers=bare_kiosk).status_code == 404
    rows = client.get("/audit/result-access", params={"patient_id": order["patient_id"]}).json()
    assert {r["outcome"] for r in rows if r["action"] == "read_report" and r["client"] == KIOSK} == {
        "not_released"
    }


def test_an_unverified_final_report_waits_for_its_verification(
    client: TestClient, registration: httpx.Client
) -> None:
    order = released_order(client, registration)
    report = post_report(client, order["id"], "final", verified_by=None)
    assert patient_sees(client, order, report["id"]) == NOWHERE
    verified = client.post(f"/reports/{report['id']}/verification", json={"verified_by": "李技师"})
    assert verified.status_code == 200, verified.text
    assert patient_sees(client, order, report["id"]) == EVERYWHERE
    again = client.post(f"/reports/{report['id']}/verification", json={"verified_by": "张技师"})
    assert again.status_code == 409 and again.json()["type"].endswith("/report-already-verified")


def test_a_withheld_report_is_hidden_from_the_patient_until_the_doctor_lifts_it(
    client: TestClient, registration: httpx.Client
) -> None:
    order = released_order(client, registration)
    report = post_report(client, order["id"])
    assert patient_sees(client, order, report["id"]) == EVERYWHERE

    withheld = client.post(f"/reports/{report['id']}/withhold", json={"reason": "需当面告知病情"})
    assert withheld.status_code == 200 and withheld.json()["withheld"] is True
    assert patient_sees(client, order, report["id"]) == NOWHERE
    assert "需当面告知" not in client.get(f"/reports/{report['id']}").text  # the reason stays inside
    twice = client.post(f"/reports/{report['id']}/withhold", json={"reason": "again"})
    assert twice.status_code == 409 and twice.json()["type"].endswith("/hold-unchanged")

    lifted = client.post(f"/reports/{report['id']}/unwithhold", json={"reason": "已当面告知"})
    assert lifted.status_code == 200 and lifted.json()["withheld"] is False
    assert patient_sees(client, order, report["id"]) == EVERYWHERE


def test_withholding_is_for_staff_holding_orders_write_only(
    client: TestClient, registration: httpx.Client
) -> None:
    order = released_order(client, registration)
    report = post_report(client, order["id"])
    by_kiosk = client.post(
        f"/reports/{report['id']}/withhold",
        json={"reason": "x"},
        headers=internal_headers(
            KIOSK, {"results:read", "orders:write"}, audience="results", patient=order["patient_id"]
        ),
    )
    assert by_kiosk.status_code == 403
    lab = internal_headers("lab-dev", {"results:read", "results:write"}, audience="results", kind="lis")
    assert (
        client.post(f"/reports/{report['id']}/withhold", json={"reason": "x"}, headers=lab).status_code == 403
    )
    assert client.get(f"/reports/{report['id']}").json()["withheld"] is False
    oversized = client.post(f"/reports/{report['id']}/withhold", json={"reason": "x" * 501})
    assert oversized.status_code == 422


def test_where_the_hospital_requires_payment_an_unpaid_report_waits_for_billings_charge_paid(
    paying_client: TestClient, registration: httpx.Client, billing: FakeFeed
) -> None:
    """A settle-later order is reported before anyone paid: its report reaches the patient only after
    billing's `charge.paid` for the order is read."""
    client = paying_client
    order = released_order(client, registration)
    report = post_report(client, order["id"])
    assert patient_sees(client, order, report["id"]) == NOWHERE
    assert client.get(f"/reports/{report['id']}").status_code == 200  # staff

    billing.publish(charge_paid(1, order))
    eventually(lambda: patient_sees(client, order, report["id"]) == EVERYWHERE, what="charge.paid to be read")
