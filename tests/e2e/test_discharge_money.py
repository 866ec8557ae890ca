"""The money of a stay's end through the gateway with the real processes, as the cashier sees it: a
green-channel account followed up with its relief category, a discharge settled before any nightly run
(the stay's day billed on the invoice, not left for a 补费 bill), the deposit's rest refunded once; and
an open account's credit refunded over the tenders that paid it."""

import uuid
from typing import Any

from kit.clock import hospital_date, utcnow
from tests.e2e.clients import Gateway, assert_problem, eventually, ok, visit_account

INFUSION, INFUSION_FEN = "120400006", 500  # 静脉输液
EMERGENCY_FEE_FEN = 2500  # 急诊诊察费, charged when the visit opens
GENERAL_BED_FEN, GRADE_II_FEN = 3000, 1500  # 普通病房床位费, Ⅱ级护理
REASON = {"reason": "未做治疗", "operator": "收费员"}


def keyed() -> dict[str, str]:
    return {"Idempotency-Key": str(uuid.uuid4())}


def emergency_visit(gateway: Gateway) -> dict[str, Any]:
    patient = ok(gateway.nurse.post("/v1/patients", json={"unidentified": True, "alias": "女，约40岁"}), 201)
    body = {
        "patient_id": patient["id"],
        "kind": "emergency",
        "department": "emergency",
        "payment_mode": "green_channel",
    }
    visit: dict[str, Any] = ok(gateway.nurse.post("/v1/visits", json=body), 201)
    eventually(lambda: visit_account(gateway, visit["id"]), what="billing to open the account")
    return visit


def pending_follow_ups(gateway: Gateway) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = ok(
        gateway.cashier.get("/v1/green-channel/follow-ups", params={"limit": 100})
    )
    return found


def test_a_green_channel_stay_is_followed_up_settled_at_discharge_and_its_deposit_refunded(
    gateway: Gateway,
) -> None:
    visit = emergency_visit(gateway)
    vid = visit["id"]
    assert visit["payment_mode"] == "green_channel"
    assert ok(gateway.cashier.get(f"/v1/visits/{vid}/standing"))["needs_follow_up"] is True
    relief = ok(
        gateway.cashier.put(f"/v1/visits/{vid}/relief", json={"category": "no_means", "note": "疾病应急救助"})
    )
    assert relief["needs_follow_up"] is False
    assert ok(gateway.cashier.get(f"/v1/visits/{vid}/standing"))["needs_follow_up"] is False
    pending = pending_follow_ups(gateway)
    assert all(row["needs_follow_up"] for row in pending) and vid not in {row["visit_id"] for row in pending}

    ward = f"w-{uuid.uuid4().hex[:8]}"
    beds = {"code": ward, "department": "cardiology", "name": "心内科病区", "beds": [{"code": "1"}]}
    ok(gateway.nurse.post("/v1/wards", json=beds), 201)
    ok(gateway.nurse.post(f"/v1/visits/{vid}/admission", json={"ward": ward, "bed": "1"}), 201)
    deposit = ok(
        gateway.cashier.post(f"/v1/visits/{vid}/deposits", json={"amount_fen": 50_000, "method": "card"},
                             headers=keyed()),
        201,
    )  # fmt: skip
    charge = {"visit_id": vid, "item_code": INFUSION, "quantity": 1}
    ok(gateway.cashier.post("/v1/charges", json=charge, headers=keyed()), 201)
    ok(gateway.nurse.post(f"/v1/visits/{vid}/discharge", json={"note": "好转出院"}))
    eventually(
        lambda: (a := visit_account(gateway, vid)) and a["awaiting_discharge_settlement"],
        what="billing to read the discharge",
    )

    # Settled at once, before any nightly run: the same-day stay's one day is on the invoice.
    settled = eventually(
        lambda: (r := gateway.cashier.post(f"/v1/visits/{vid}/settlement", json={"method": "card"},
                                           headers=keyed())).status_code == 201 and r.json(),
        what="the discharge settlement",
    )  # fmt: skip
    total = EMERGENCY_FEE_FEN + INFUSION_FEN + GENERAL_BED_FEN + GRADE_II_FEN
    assert (settled["total_fen"], settled["invoice"]["total_fen"]) == (total, total)
    assert (settled["payment"]["method"], settled["deposit_applied_fen"]) == ("deposit", total)
    assert settled["deposit_refundable_fen"] == 50_000 - total
    today = {"date": hospital_date(utcnow()).isoformat()}
    ok(gateway.cashier.post("/v1/inpatient-days/runs", json=today))  # the night's job, later: nothing new
    account = ok(gateway.cashier.get(f"/v1/visits/{vid}/account"))
    assert sum(c["amount_fen"] for c in account["charges"]) == total
    assert not any(c["supplementary"] for c in account["charges"])

    refund = ok(gateway.cashier.post(f"/v1/visits/{vid}/deposit-refunds", json={}, headers=keyed()), 201)
    again = gateway.cashier.post(f"/v1/visits/{vid}/deposit-refunds", json={}, headers=keyed())

    assert (refund["amount_fen"], refund["method"]) == (50_000 - total, "card")
    assert_problem(again, 409)
    money = ok(gateway.cashier.get(f"/v1/visits/{vid}/deposits"))
    assert (money["deposit_held_fen"], money["balance_fen"]) == (0, 0)
    receipts = ok(gateway.cashier.get(f"/v1/visits/{vid}/receipts"))
    assert [r["kind"] for r in receipts] == ["deposit", "payment", "deposit_refund"]
    assert receipts[0]["number"] == deposit["receipt_number"]
    day = ok(gateway.his.get("/v1/reconciliation", params=today))
    assert day["balanced"] is True, day["mismatches"]


def test_an_open_accounts_credit_is_refunded_over_the_tenders_that_paid_it(gateway: Gateway) -> None:
    patient = ok(gateway.nurse.post("/v1/patients", json={"unidentified": True, "alias": "男，约30岁"}), 201)
    visit = ok(
        gateway.his.post(
            "/v1/visits", json={"patient_id": patient["id"], "kind": "outpatient", "department": "internal"}
        ),
        201,
    )
    vid = visit["id"]
    eventually(lambda: visit_account(gateway, vid), what="billing to open the account")
    fee = ok(
        gateway.cashier.post("/v1/payments", json={"visit_id": vid, "method": "wechat"}, headers=keyed()), 201
    )
    ok(
        gateway.cashier.post(
            "/v1/charges", json={"visit_id": vid, "item_code": INFUSION, "quantity": 1}, headers=keyed()
        ),
        201,
    )
    infusion = ok(
        gateway.cashier.post("/v1/payments", json={"visit_id": vid, "method": "card"}, headers=keyed()), 201
    )
    for paid in (fee, infusion):
        [charge_id] = paid["charge_ids"]
        ok(gateway.cashier.post(f"/v1/charges/{charge_id}/reversal", json=REASON, headers=keyed()), 201)

    part = ok(gateway.cashier.post(f"/v1/visits/{vid}/refunds", json={"amount_fen": 600} | REASON,
                                   headers=keyed()), 201)  # fmt: skip
    too_much = gateway.cashier.post(f"/v1/visits/{vid}/refunds", json={"amount_fen": 2_000} | REASON,
                                    headers=keyed())  # fmt: skip
    rest = ok(gateway.cashier.post(f"/v1/visits/{vid}/refunds", json=REASON, headers=keyed()), 201)

    # 2500 owed back, the newest tender first: the card's 500, then 100 of the wechat 2000; then the rest.
    assert [(p["method"], p["amount_fen"]) for p in part["parts"]] == [("card", 500), ("wechat", 100)]
    assert all(p["receipt_number"] for p in part["parts"] + rest["parts"])
    assert_problem(too_much, 409)
    assert too_much.json()["refundable_fen"] == 1_900
    assert [(p["method"], p["amount_fen"]) for p in rest["parts"]] == [("wechat", 1_900)]
    assert_problem(gateway.cashier.post(f"/v1/visits/{vid}/refunds", json=REASON, headers=keyed()), 409)
    assert ok(gateway.cashier.get(f"/v1/visits/{vid}/account"))["balance_fen"] == 0
