"""Insured payment at the cashier (实时结算: the split applies when an insured visit pays, not only at
settlement) and refunds that follow the tenders that paid (原路退回: card to card, the deposit's part
back into the deposit, the insurer's share to the insurer)."""

from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from kit.clock import hospital_date, utcnow
from kit.testing import feed_headers
from services.billing.service.tenders import Tender, plan
from tests.billing.factories import (
    INFUSION,
    OUTPATIENT_FEE_FEN,
    account,
    billing_events,
    consumer,
    keyed,
    new_visit,
    open_visit,
    post_charge,
    post_payment,
    register_insured,
)
from tests.billing.test_invoices import FEE_INSURER, PCT, PCT_FEN, PCT_INSURER
from tests.test_event_schemas import validator

REASON = {"reason": "未做检查", "operator": "收费员"}


def insured_visit(registration: httpx.Client, client: TestClient, **overrides: Any) -> dict[str, Any]:
    """A visit of an `employee`-insured patient."""
    return new_visit(registration, client, register_insured(registration)["id"], **overrides)


def receipts(client: TestClient, visit_id: str) -> list[dict[str, Any]]:
    response = client.get(f"/visits/{visit_id}/receipts")
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()
    return found


def reconciliation(client: TestClient) -> dict[str, Any]:
    response = client.get("/reconciliation", params={"date": hospital_date(utcnow()).isoformat()})
    assert response.status_code == 200, response.text
    day: dict[str, Any] = response.json()
    assert day["balanced"] is True, day["mismatches"]
    return day


def deposit(client: TestClient, visit_id: str, amount_fen: int) -> None:
    body = {"amount_fen": amount_fen, "method": "cash"}
    assert client.post(f"/visits/{visit_id}/deposits", json=body, headers=keyed()).status_code == 201


def reverse(client: TestClient, charge_id: str) -> None:
    response = client.post(f"/charges/{charge_id}/reversal", json=REASON, headers=keyed())
    assert response.status_code == 201, response.text


def test_the_last_tender_goes_back_first_and_none_beyond_what_it_paid() -> None:
    tenders = [
        Tender("p1", "deposit", 500),
        Tender("p1", "card", 300, refunded_fen=100),
        Tender("p2", "cash", 50),
    ]

    assert plan(tenders, 600) == ([(tenders[2], 50), (tenders[1], 200), (tenders[0], 350)], 0)
    assert plan(tenders, 800) == ([(tenders[2], 50), (tenders[1], 200), (tenders[0], 500)], 50)
    assert plan(tenders, 0) == ([], 0)


def test_an_insured_cashier_payment_takes_only_the_patients_share(
    registration: httpx.Client, client: TestClient
) -> None:
    visit = insured_visit(registration, client)  # prepay: orders are released when paid
    fee = account(client, visit["id"])["charges"][0]
    patient_share = OUTPATIENT_FEE_FEN - FEE_INSURER

    whole = client.post(
        "/payments",
        json={"visit_id": visit["id"], "method": "wechat", "amount_fen": OUTPATIENT_FEE_FEN},
        headers=keyed(),
    )
    paid = post_payment(client, visit["id"], method="wechat", amount_fen=patient_share)

    assert whole.status_code == 422 and whole.json()["due_fen"] == patient_share
    assert (paid["amount_fen"], paid["insurer_fen"], paid["insurance_scheme"]) == (
        patient_share,
        FEE_INSURER,
        "employee",
    )
    state = account(client, visit["id"])
    assert [c["status"] for c in state["charges"]] == ["paid"] and state["balance_fen"] == 0
    by_method = {p["method"]: (p["amount_fen"], p["insurance_scheme"]) for p in state["payments"]}
    assert by_method == {"insurance": (FEE_INSURER, "employee"), "wechat": (patient_share, None)}
    [receipt] = receipts(client, visit["id"])
    assert (receipt["amount_fen"], receipt["insurer_fen"], receipt["method"]) == (
        patient_share,
        FEE_INSURER,
        "wechat",
    )
    assert [e["data"]["charge_id"] for e in billing_events(client, "charge.paid")] == [fee["id"]]
    [invoice] = client.get(f"/visits/{visit['id']}/invoices").json()
    assert invoice["paid_by"] == {"insurance": FEE_INSURER, "wechat": patient_share}
    day = reconciliation(client)
    assert day["totals_by_kind"]["insurer_share"] == FEE_INSURER
    assert day["totals_by_method"]["payment"]["insurance"] == FEE_INSURER


def test_cashier_payments_and_the_settlement_consume_the_deductible_once(
    registration: httpx.Client, client: TestClient
) -> None:
    visit = insured_visit(registration, client, payment_mode="settle_later")
    post_payment(client, visit["id"], method="card", amount_fen=OUTPATIENT_FEE_FEN - FEE_INSURER)
    post_charge(client, visit["id"], PCT)
    first = post_payment(client, visit["id"], method="card", amount_fen=PCT_FEN - PCT_INSURER)
    post_charge(client, visit["id"], PCT)  # 乙 30000 in all: 70 % of (30000 − 10000) = 14000

    settled = client.post(f"/visits/{visit['id']}/settlement", json={"method": "card"}, headers=keyed())

    assert first["insurer_fen"] == PCT_INSURER  # the deductible is taken off the first PCT only
    assert settled.status_code == 201, settled.text
    body = settled.json()
    # The settlement splits only the unpaid PCT, asks nothing for the cashier-paid lines, and the
    # insurer's part is its share of the whole visit less what it already paid.
    assert (body["insurer_fen"], body["patient_fen"]) == (
        14_000 - PCT_INSURER,
        PCT_FEN - (14_000 - PCT_INSURER),
    )
    invoice = body["invoice"]
    assert (invoice["total_fen"], invoice["insurer_fen"]) == (
        OUTPATIENT_FEE_FEN + 2 * PCT_FEN,
        FEE_INSURER + 14_000,
    )
    assert len(invoice["lines"]) == 3 and invoice["paid_by"]["insurance"] == FEE_INSURER + 14_000
    assert account(client, visit["id"])["balance_fen"] == 0
    day = reconciliation(client)
    assert day["totals_by_kind"]["insurer_share"] == FEE_INSURER + 14_000
    assert day["totals_by_method"]["payment"]["insurance"] == FEE_INSURER + 14_000


def test_a_settlement_paid_by_insurer_deposit_and_card_is_refunded_to_each(
    registration: httpx.Client, client: TestClient
) -> None:
    visit = insured_visit(registration, client, payment_mode="settle_later")
    pct = post_charge(client, visit["id"], PCT)
    deposit(client, visit["id"], 5_000)
    patient_share = OUTPATIENT_FEE_FEN + PCT_FEN - FEE_INSURER - PCT_INSURER  # 11700: 5000 deposit, 6700 card
    settled = client.post(
        f"/visits/{visit['id']}/settlement", json={"method": "card"}, headers=keyed()
    ).json()
    assert settled["invoice"]["paid_by"] == {
        "insurance": FEE_INSURER + PCT_INSURER,
        "deposit": 5_000,
        "card": 6_700,
    }
    assert patient_share == 11_700

    reverse(client, pct["id"])

    # 15000 back: the insurer's 3500 to the insurer; the patient's 11500 the last tender first — the
    # card its whole 6700, the deposit the other 4800 (back into the deposit held), nothing beyond.
    refunded = [
        (e["data"]["method"], e["data"]["amount_fen"]) for e in billing_events(client, "payment.refunded")
    ]
    assert refunded == [("insurance", PCT_INSURER), ("card", 6_700), ("deposit", 4_800)]
    assert all(e["data"]["charge_id"] == pct["id"] for e in billing_events(client, "payment.refunded"))
    schema = validator("payment.refunded")
    for event in billing_events(client, "payment.refunded"):  # the catalogue's v1, extended compatibly
        schema.validate(event)
        assert event["aggregate"] == {"type": "visit", "id": visit["id"]}
    booking_style = billing_events(client, "payment.refunded")[0] | {
        "aggregate": {"type": "appointment", "id": visit["id"]}
    }
    assert not schema.is_valid(booking_style)  # an appointment's refund still names its appointment
    refund_receipts = [
        (r["method"], r["amount_fen"]) for r in receipts(client, visit["id"]) if r["kind"] == "refund"
    ]
    assert refund_receipts == [("card", 6_700), ("deposit", 4_800)]
    money = client.get(f"/visits/{visit['id']}/deposits").json()
    assert money["deposit_held_fen"] == 4_800 and money["balance_fen"] == 4_800
    new = client.get(f"/visits/{visit['id']}/invoices").json()[-1]
    assert new["paid_by"] == {"insurance": FEE_INSURER, "deposit": 200}
    back = client.post(f"/visits/{visit['id']}/deposit-refunds", json={}, headers=keyed())
    assert back.status_code == 201 and back.json()["amount_fen"] == 4_800
    assert client.get(f"/visits/{visit['id']}/deposits").json()["balance_fen"] == 0
    reconciliation(client)


def test_a_patients_own_insurance_tender_goes_back_to_insurance_with_a_receipt_never_as_cash(
    registration: httpx.Client, client: TestClient
) -> None:
    """The patient's own share paid by method `insurance` (e.g. the insurance personal account, 个人账户)
    is a tender like card: a reversal gives it back that way, with a receipt — not as cash for want of
    a tender, and not mixed into the insurer's (统筹) share, which goes back to the insurer alone."""
    self_pay = new_visit(registration, client, payment_mode="settle_later")
    insured = insured_visit(registration, client, payment_mode="settle_later")
    charges = {v["id"]: post_charge(client, v["id"], PCT) for v in (self_pay, insured)}
    for visit in (self_pay, insured):
        settled = client.post(
            f"/visits/{visit['id']}/settlement", json={"method": "insurance"}, headers=keyed()
        )
        assert settled.status_code == 201, settled.text

    for visit in (self_pay, insured):
        reverse(client, charges[visit["id"]]["id"])

    def refunds(visit_id: str) -> list[tuple[str, int, bool]]:
        events = [e for e in billing_events(client, "payment.refunded") if e["visit_id"] == visit_id]
        linked = [e["data"]["payment_id"] != e["data"]["refund_id"] for e in events]
        return [
            (e["data"]["method"], e["data"]["amount_fen"], ok) for e, ok in zip(events, linked, strict=True)
        ]

    # Self-pay: the whole 15000 back to the insurance tender that paid it, naming that payment.
    assert refunds(self_pay["id"]) == [("insurance", PCT_FEN, True)]
    # Insured: the insurer's 3500 to the insurer, the patient's 11500 back to their own insurance tender.
    assert refunds(insured["id"]) == [
        ("insurance", PCT_INSURER, True),
        ("insurance", PCT_FEN - PCT_INSURER, True),
    ]
    for visit, back in ((self_pay, PCT_FEN), (insured, PCT_FEN - PCT_INSURER)):
        refund_receipts = [
            (r["method"], r["amount_fen"]) for r in receipts(client, visit["id"]) if r["kind"] == "refund"
        ]
        assert refund_receipts == [("insurance", back)]  # the patient's; the insurer's clawback has none
        payments = account(client, visit["id"])["payments"]
        assert all(p["method"] == "insurance" for p in payments if p["amount_fen"] < 0)
    insured_payments = account(client, insured["id"])["payments"]
    schemes = sorted((p["amount_fen"], p["insurance_scheme"]) for p in insured_payments)
    insurer_rows = [(fen, scheme) for fen, scheme in schemes if scheme == "employee"]
    assert sum(fen for fen, _ in insurer_rows) == FEE_INSURER  # the insurer keeps only its fee share
    reconciliation(client)


def test_what_an_open_account_owes_back_is_refunded_newest_tender_first(
    registration: httpx.Client, client: TestClient
) -> None:
    visit = new_visit(registration, client)  # self-pay, prepay
    vid = visit["id"]
    deposit(client, vid, 3_000)
    fee = account(client, vid)["charges"][0]
    post_payment(client, vid, method="deposit")  # 2000 out of the deposit
    infusion = post_charge(client, vid, INFUSION)
    post_payment(client, vid, method="card")  # 500 by card
    reverse(client, fee["id"])
    reverse(client, infusion["id"])  # self-pay, not settled: a credit of 2500, nothing refunded yet
    assert billing_events(client, "payment.refunded") == []

    response = client.post(f"/visits/{vid}/refunds", json={"amount_fen": 2_400} | REASON, headers=keyed())

    assert response.status_code == 201, response.text
    parts = [(p["method"], p["amount_fen"]) for p in response.json()["parts"]]
    assert parts == [("card", 500), ("deposit", 1_900)]
    assert all(p["receipt_number"] for p in response.json()["parts"])
    too_much = client.post(f"/visits/{vid}/refunds", json={"amount_fen": 200} | REASON, headers=keyed())
    assert too_much.status_code == 409 and too_much.json()["refundable_fen"] == 100
    assert too_much.headers["content-type"].startswith("application/problem+json")
    rest = client.post(f"/visits/{vid}/refunds", json=REASON, headers=keyed())
    assert [(p["method"], p["amount_fen"]) for p in rest.json()["parts"]] == [("deposit", 100)]
    nothing = client.post(f"/visits/{vid}/refunds", json=REASON, headers=keyed())
    assert nothing.status_code == 409 and nothing.json()["type"].endswith("/nothing-due")
    money = client.get(f"/visits/{vid}/deposits").json()
    assert (money["deposit_held_fen"], money["balance_fen"]) == (3_000, 3_000)  # the deposit is whole again
    methods = [
        (e["data"]["method"], e["data"]["amount_fen"]) for e in billing_events(client, "payment.refunded")
    ]
    assert methods == [("card", 500), ("deposit", 1_900), ("deposit", 100)]
    reconciliation(client)


def test_the_settlement_gives_back_what_the_account_owes_once(
    registration: httpx.Client, client: TestClient
) -> None:
    """多退少补: a card-paid charge reversed on an open account, then settled — the settlement refunds
    the credit to the card, and the refund route has nothing left to give (no second refund)."""
    visit = new_visit(registration, client, payment_mode="settle_later")
    vid = visit["id"]
    fee = account(client, vid)["charges"][0]
    post_payment(client, vid, method="card")
    reverse(client, fee["id"])
    infusion = post_charge(client, vid, INFUSION)  # unpaid: the settlement pays it, by wechat

    settled = client.post(f"/visits/{vid}/settlement", json={"method": "wechat"}, headers=keyed())

    assert settled.status_code == 201, settled.text
    assert settled.json()["payment"]["amount_fen"] == infusion["amount_fen"]
    assert [(p["method"], p["amount_fen"]) for p in settled.json()["refunds"]] == [
        ("card", OUTPATIENT_FEE_FEN)
    ]
    state = account(client, vid)
    assert (state["status"], state["balance_fen"]) == ("settled", 0)
    again = client.post(f"/visits/{vid}/refunds", json=REASON, headers=keyed())
    assert again.status_code == 409 and again.json()["type"].endswith("/nothing-due")
    money = client.get(f"/visits/{vid}/deposits").json()
    assert (money["deposit_held_fen"], money["balance_fen"]) == (0, 0)
    card_back = [r for r in receipts(client, vid) if r["kind"] == "refund"]
    assert [(r["method"], r["amount_fen"]) for r in card_back] == [("card", OUTPATIENT_FEE_FEN)]
    methods = [e["data"]["method"] for e in billing_events(client, "payment.refunded")]
    assert methods == ["card"]
    reconciliation(client)


@pytest.mark.parametrize(
    "body",
    [
        {"amount_fen": -100} | REASON,
        {"amount_fen": 0} | REASON,
        {"amount_fen": 10.5} | REASON,
        {"amount_fen": 100, "method": "bitcoin"} | REASON,
        {"amount_fen": 100},
        {"amount_fen": 100, "reason": "", "operator": "收费员"},
    ],
)
def test_bad_refunds_are_refused_and_change_nothing(
    registration: httpx.Client, client: TestClient, body: dict[str, Any]
) -> None:
    visit = new_visit(registration, client)
    fee = account(client, visit["id"])["charges"][0]
    post_payment(client, visit["id"], method="card")
    reverse(client, fee["id"])
    before = account(client, visit["id"])

    response = client.post(f"/visits/{visit['id']}/refunds", json=body, headers=keyed())

    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert account(client, visit["id"]) == before and billing_events(client, "payment.refunded") == []


def test_refunds_need_a_key_and_a_known_visit(registration: httpx.Client, client: TestClient) -> None:
    visit = new_visit(registration, client)

    keyless = client.post(f"/visits/{visit['id']}/refunds", json=REASON)
    unknown = client.post(
        "/visits/00000000-0000-4000-8000-000000000000/refunds", json=REASON, headers=keyed()
    )
    owed_nothing = client.post(f"/visits/{visit['id']}/refunds", json=REASON, headers=keyed())

    assert keyless.status_code == 400 and unknown.status_code == 404
    assert owed_nothing.status_code == 409 and owed_nothing.json()["type"].endswith("/nothing-due")


def test_a_payment_before_billing_read_the_visits_scheme_waits_for_it(
    registration: httpx.Client, client: TestClient
) -> None:
    """A charge by hand opens the account from registration's answer, which has no scheme: until billing
    has read `visit.opened` (which names it) the payment is 503 and takes nothing, never the whole
    amount from an insured patient; once read, the payment is split."""
    reader = consumer(client, "registration")
    reader.stop()
    patient = register_insured(registration, "女，约20岁")
    visit = open_visit(registration, patient["id"])
    post_charge(client, visit["id"], INFUSION)  # 500 fen, 甲: the insurer pays 90 %

    early = client.post("/payments", json={"visit_id": visit["id"], "method": "card"}, headers=keyed())

    assert early.status_code == 503 and early.json()["type"].endswith("/charges-still-arriving")
    assert early.headers["content-type"].startswith("application/problem+json")
    assert account(client, visit["id"])["payments"] == []
    [opened] = [
        e
        for e in registration.get(
            "/events", headers=feed_headers("registration"), params={"type": "visit.opened"}
        ).json()["events"]
        if e["visit_id"] == visit["id"]
    ]
    reader.apply(opened)  # billing reads it: the scheme, and the fee
    paid = post_payment(client, visit["id"], method="card", amount_fen=200 + 50)
    assert (paid["insurer_fen"], paid["insurance_scheme"]) == (FEE_INSURER + 450, "employee")
