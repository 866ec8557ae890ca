"""An inpatient's bill through the gateway with the real processes, as the ward, the cashier and the
patient's app see it: admission → deposit → the night's bed-day job (run twice: charged once) → the
daily bill issued and announced at the hub → the app reads it, prints it and acknowledges it → 知情率;
another patient's app reaches none of it."""

import io
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from pypdf import PdfReader

from kit.clock import hospital_date, utcnow
from tests.e2e.clients import (
    Gateway,
    assert_problem,
    eventually,
    hub_events,
    ok,
    patient_session,
    register_patient,
)

GENERAL_BED_FEN, GRADE_II_FEN = 3000, 1500
CBC, CBC_FEN = "250101015", 2000


@contextmanager
def app_for(gateway: Gateway, patient: dict[str, Any]) -> Iterator[httpx.Client]:
    """The development app acting for one patient (a session opened with the texted code)."""
    token = patient_session(gateway, patient)["token"]
    headers = dict(gateway.app.headers) | {"x-patient-token": token}
    with httpx.Client(base_url=gateway.app.base_url, headers=headers, timeout=30) as client:
        yield client


def admitted(gateway: Gateway, patient: dict[str, Any]) -> str:
    visit = ok(
        gateway.his.post(
            "/v1/visits", json={"patient_id": patient["id"], "kind": "outpatient", "department": "internal"}
        ),
        201,
    )
    ward = f"w-{uuid.uuid4().hex[:8]}"
    body = {"code": ward, "department": "cardiology", "name": "心内科病区", "beds": [{"code": "1"}]}
    ok(gateway.nurse.post("/v1/wards", json=body), 201)
    ok(gateway.nurse.post(f"/v1/visits/{visit['id']}/admission", json={"ward": ward, "bed": "1"}), 201)
    eventually(
        lambda: gateway.cashier.get(f"/v1/visits/{visit['id']}/account").json().get("kind") == "inpatient",
        what="billing to read the admission",
    )
    return str(visit["id"])


def test_admission_bed_days_daily_bill_and_the_patients_acknowledgement(gateway: Gateway) -> None:
    me, other = register_patient(gateway.his, "王五"), register_patient(gateway.his, "赵六")
    visit_id = admitted(gateway, me)
    today = {"date": hospital_date(utcnow()).isoformat()}
    key = {"Idempotency-Key": str(uuid.uuid4())}
    deposit = ok(
        gateway.cashier.post(
            f"/v1/visits/{visit_id}/deposits", json={"amount_fen": 200_000, "method": "card"}, headers=key
        ),
        201,
    )

    # A neurology consult orders a blood count (开单科室 neurology, not the cardiology ward).
    body = {"visit_id": visit_id, "test_code": CBC, "department": "neurology"}
    order = ok(gateway.doctor.post("/v1/orders", json=body), 201)
    eventually(
        lambda: any(
            c["order_id"] == order["id"]
            for c in gateway.cashier.get(f"/v1/visits/{visit_id}/account").json()["charges"]
        ),
        what="billing to charge the consult's order",
    )

    # The nightly job for tonight, run twice (a retry, a second scheduler): one bed-day, one nursing day.
    for _ in range(2):
        ok(gateway.cashier.post("/v1/inpatient-days/runs", json=today))
    charges = ok(gateway.cashier.get(f"/v1/visits/{visit_id}/account"))["charges"]
    days = [(c["item_code"], c["amount_fen"]) for c in charges if c["origin"] == "inpatient_day"]
    assert days == [("110900001", GENERAL_BED_FEN), ("120100003", GRADE_II_FEN)]

    issued = ok(gateway.cashier.post("/v1/daily-bills/runs", json=today))
    assert issued["bills"] >= 1
    eventually(lambda: hub_events(gateway, "daily_bill.ready", visit_id), what="daily_bill.ready at the hub")

    with app_for(gateway, me) as app, app_for(gateway, other) as stranger:
        bill = ok(app.get(f"/v1/visits/{visit_id}/daily-bill", params=today))
        assert bill["total_fen"] == 2000 + GENERAL_BED_FEN + GRADE_II_FEN + CBC_FEN  # with today's 诊察费
        assert (bill["deposit_fen"], bill["balance_fen"]) == (200_000, 200_000 - bill["running_total_fen"])
        assert sorted((line["item_code"], line["department"]) for line in bill["lines"]) == [
            ("110200001", "internal"),  # the outpatient visit's consultation fee
            ("110900001", "cardiology"),  # the bed-day: the ward's
            ("120100003", "cardiology"),
            (CBC, "neurology"),  # the consult's order: its own ordering department
        ]
        printed = app.get(f"/v1/visits/{visit_id}/daily-bill/pdf", params=today)
        assert printed.status_code == 200 and printed.headers["content-type"] == "application/pdf"
        text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(printed.content)).pages)
        assert "住院患者费用一日清单" in text and "普通病房床位费" in text
        assert "开单科室" in text and "neurology" in text
        assert ok(app.get(f"/v1/visits/{visit_id}/receipts"))[0]["number"] == deposit["receipt_number"]

        for call in (
            stranger.get(f"/v1/visits/{visit_id}/daily-bill", params=today),
            stranger.get(f"/v1/visits/{visit_id}/daily-bill/pdf", params=today),
            stranger.get(f"/v1/visits/{visit_id}/deposits"),
            stranger.post(f"/v1/visits/{visit_id}/daily-bill/acknowledgements", json=today),
        ):
            assert_problem(call, 404)
        assert_problem(app.post("/v1/daily-bills/runs", json=today), 403)  # staff only

        acknowledged = ok(app.post(f"/v1/visits/{visit_id}/daily-bill/acknowledgements", json=today), 201)
        assert (
            ok(app.get(f"/v1/visits/{visit_id}/daily-bill", params=today))["acknowledged_at"]
            == (acknowledged["acknowledged_at"])
        )

    rate = ok(gateway.cashier.get("/v1/daily-bills/acknowledgements", params=today))
    assert rate["acknowledged"] >= 1 and visit_id not in rate["unacknowledged_visit_ids"]
