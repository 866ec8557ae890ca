"""A correction after settlement through the gateway: reversing a charge of a settled employee-insured
visit issues a new invoice that supersedes the old one (split again over the corrected lines), refunds
the patient's part with a receipt, gives back the insurer's share, and the day still reconciles."""

import uuid

from kit.clock import hospital_date, utcnow
from tests.e2e.clients import Gateway, insured_visit, ok

OUTPATIENT_FEE_FEN = 2000  # 普通门诊诊察费, 甲: employee insurance pays 90 %
PCT, PCT_FEN = "250404005", 15_000  # 降钙素原, 乙: 70 % above the 10 000-fen deductible
PCT_INSURER = 3_500


def keyed() -> dict[str, str]:
    return {"Idempotency-Key": str(uuid.uuid4())}


def test_reversing_a_settled_charge_supersedes_the_invoice_and_refunds(gateway: Gateway) -> None:
    visit = insured_visit(gateway, "女，约40岁")
    charge = {"visit_id": visit["id"], "item_code": PCT, "quantity": 1}
    pct = ok(gateway.cashier.post("/v1/charges", json=charge, headers=keyed()), 201)
    settled = ok(
        gateway.cashier.post(
            f"/v1/visits/{visit['id']}/settlement", json={"method": "card"}, headers=keyed()
        ),
        201,
    )
    assert settled["insurer_fen"] == 1_800 + PCT_INSURER

    reversal = {"reason": "检查未做", "operator": "收费员"}
    line = ok(gateway.cashier.post(f"/v1/charges/{pct['id']}/reversal", json=reversal, headers=keyed()), 201)

    assert (line["reversal_of"], line["amount_fen"]) == (pct["id"], -PCT_FEN)
    old, new = ok(gateway.cashier.get(f"/v1/visits/{visit['id']}/invoices"))
    assert (old["id"], old["superseded_by"], new["supersedes"]) == (
        settled["invoice"]["id"],
        new["id"],
        old["id"],
    )
    assert (new["total_fen"], new["insurer_fen"], new["patient_fen"]) == (OUTPATIENT_FEE_FEN, 1_800, 200)
    assert new["paid_by"] == {"insurance": 1_800, "card": 200}
    receipts = ok(gateway.cashier.get(f"/v1/visits/{visit['id']}/receipts"))
    refunds = [(r["amount_fen"], r["method"]) for r in receipts if r["kind"] == "refund"]
    assert refunds == [(PCT_FEN - PCT_INSURER, "card")]
    assert ok(gateway.cashier.get(f"/v1/visits/{visit['id']}/account"))["balance_fen"] == 0
    day = ok(gateway.his.get("/v1/reconciliation", params={"date": hospital_date(utcnow()).isoformat()}))
    assert day["balanced"] is True, day["mismatches"]
    mine = [x for x in day["lines"] if x["visit_id"] == visit["id"] and x["kind"] == "payment_refund"]
    assert sorted(x["amount_fen"] for x in mine) == sorted([-PCT_INSURER, -(PCT_FEN - PCT_INSURER)])
