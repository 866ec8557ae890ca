"""Settlement with insurance through the gateway: an employee-insured visit's settlement splits the bill
(the insurer 90 % of a 甲 line), issues an invoice the cashier and HIS can read, and the day's
reconciliation is balanced and counts the insurer's share."""

import uuid

from kit.clock import hospital_date, utcnow
from tests.e2e.clients import Gateway, insured_visit, ok

OUTPATIENT_FEE_FEN = 2000  # 普通门诊诊察费, 甲: employee insurance pays 90 %


def test_an_insured_settlement_issues_a_split_invoice_and_reconciles(gateway: Gateway) -> None:
    visit = insured_visit(gateway, "男，约50岁")

    settled = ok(
        gateway.cashier.post(
            f"/v1/visits/{visit['id']}/settlement",
            json={"method": "cash", "amount_fen": 200},
            headers={"Idempotency-Key": str(uuid.uuid4())},
        ),
        201,
    )

    assert (settled["insurer_fen"], settled["patient_fen"]) == (1800, 200)
    [invoice] = ok(gateway.cashier.get(f"/v1/visits/{visit['id']}/invoices"))
    assert invoice["id"] == settled["invoice"]["id"]
    assert invoice["paid_by"] == {"insurance": 1800, "cash": 200}
    assert invoice["total_fen"] == OUTPATIENT_FEE_FEN
    day = ok(gateway.his.get("/v1/reconciliation", params={"date": hospital_date(utcnow()).isoformat()}))
    assert day["balanced"] is True, day["mismatches"]
    assert any(line["kind"] == "insurer_share" and line["id"] == invoice["id"] for line in day["lines"])


def test_an_insured_cashier_payment_splits_at_once_and_its_correction_goes_back_to_each_tender(
    gateway: Gateway,
) -> None:
    visit = insured_visit(gateway, "女，约40岁", payment_mode="prepay")

    paid = ok(
        gateway.cashier.post(
            "/v1/payments",
            json={"visit_id": visit["id"], "method": "wechat", "amount_fen": 200},
            headers={"Idempotency-Key": str(uuid.uuid4())},
        ),
        201,
    )

    assert (paid["amount_fen"], paid["insurer_fen"], paid["insurance_scheme"]) == (200, 1800, "employee")
    [receipt] = ok(gateway.cashier.get(f"/v1/visits/{visit['id']}/receipts"))
    assert (receipt["amount_fen"], receipt["insurer_fen"]) == (200, 1800)
    account = ok(gateway.cashier.get(f"/v1/visits/{visit['id']}/account"))
    [fee] = account["charges"]
    assert fee["status"] == "paid" and account["balance_fen"] == 0

    ok(
        gateway.cashier.post(
            f"/v1/charges/{fee['id']}/reversal",
            json={"reason": "重复挂号", "operator": "收费员"},
            headers={"Idempotency-Key": str(uuid.uuid4())},
        ),
        201,
    )

    account = ok(gateway.cashier.get(f"/v1/visits/{visit['id']}/account"))
    back = sorted((p["method"], p["amount_fen"]) for p in account["payments"] if p["amount_fen"] < 0)
    assert back == [("insurance", -1800), ("wechat", -200)] and account["balance_fen"] == 0
    nothing_owed = gateway.cashier.post(
        f"/v1/visits/{visit['id']}/refunds",
        json={"amount_fen": 1, "reason": "退费", "operator": "收费员"},
        headers={"Idempotency-Key": str(uuid.uuid4())},
    )
    assert nothing_owed.status_code == 409
    assert nothing_owed.headers["content-type"].startswith("application/problem+json")
    day = ok(gateway.his.get("/v1/reconciliation", params={"date": hospital_date(utcnow()).isoformat()}))
    assert day["balanced"] is True, day["mismatches"]
