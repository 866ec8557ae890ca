"""Settlement with insurance: the split per scheme and class (covered share, deductible, cap), the
invoice it issues (immutable; the supplementary bill's invoice supersedes it) and the day's
reconciliation, whose totals match the ledger exactly."""

import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from kit.clock import hospital_date, utcnow
from kit.database import Database
from kit.testing import FakeFeed, database_url_under_test, eventually, service_client
from services.billing.app import create_app
from services.billing.immutable import RowImmutable
from services.billing.models import BillingTable, Invoice, InvoiceLine, Payment
from services.billing.service import insurance
from services.billing.service.insurance import ClassRule, InsuranceSplitInvalid, parse_split_table
from tests.billing.conftest import billing_settings, order_placed
from tests.billing.factories import (
    CBC,
    OUTPATIENT_FEE_FEN,
    account,
    billing_events,
    keyed,
    new_visit,
    post_charge,
    post_payment,
    register_insured,
)
from tests.billing.inpatients import database

PCT = "250404005"  # 降钙素原, 乙, 15000 fen
PCT_FEN = 15_000
# employee (insurance_split.csv): 甲 90 %, no deductible; 乙 70 % above a 100-yuan deductible.
FEE_INSURER = 1_800  # 90 % of the 2000-fen consultation (甲)
PCT_INSURER = 3_500  # 70 % of (15000 − 10000) (乙)


def employee_visit(registration: httpx.Client, client: TestClient, **overrides: Any) -> dict[str, Any]:
    patient = register_insured(registration, "女，约30岁")
    return new_visit(registration, client, patient["id"], payment_mode="settle_later", **overrides)


def settle(client: TestClient, visit_id: str, **body: Any) -> httpx.Response:
    return client.post(f"/visits/{visit_id}/settlement", json={"method": "cash"} | body, headers=keyed())


def test_the_split_rounds_the_insurer_half_up_and_the_patient_pays_the_exact_rest() -> None:
    table = {("employee", "甲"): ClassRule(covered_bp=3333, deductible_fen=0, cap_fen=10**12)}

    # 15 × 0.3333 = 4.9995 → 5; 3 × 0.3333 = 0.9999 → 1; 1 × 0.3333 → 0
    for total, insurer in ((15, 5), (3, 1), (1, 0)):
        split = insurance.split(table, scheme="employee", lines=[("甲", total)])
        assert (split.insurer_fen, split.patient_fen) == (insurer, total - insurer)


def test_the_deductible_comes_first_and_the_cap_bounds_the_insurer() -> None:
    table = {("resident", "乙"): ClassRule(covered_bp=5000, deductible_fen=1000, cap_fen=2000)}

    below = insurance.split(table, scheme="resident", lines=[("乙", 900)])
    above = insurance.split(table, scheme="resident", lines=[("乙", 3000)])
    capped = insurance.split(table, scheme="resident", lines=[("乙", 100_000)])
    unknown = insurance.split(table, scheme="self_pay", lines=[("乙", 3000)])

    assert (below.insurer_fen, above.insurer_fen, capped.insurer_fen, unknown.insurer_fen) == (
        0,
        1000,
        2000,
        0,
    )


@given(
    lines=st.lists(st.tuples(st.sampled_from(insurance.CLASSES), st.integers(0, 10**9)), max_size=12),
    bp=st.integers(0, 10_000),
    deductible=st.integers(0, 10**6),
    cap=st.integers(0, 10**9),
)
def test_shares_always_sum_to_the_total(
    lines: list[tuple[str, int]], bp: int, deductible: int, cap: int
) -> None:
    table = {
        ("s", c): ClassRule(covered_bp=bp, deductible_fen=deductible, cap_fen=cap) for c in insurance.CLASSES
    }
    split = insurance.split(table, scheme="s", lines=lines)
    assert split.insurer_fen + split.patient_fen == split.total_fen == sum(a for _, a in lines)
    assert 0 <= split.insurer_fen <= min(split.total_fen, 3 * cap)


def test_a_bad_split_table_names_every_bad_line() -> None:
    text = (
        "scheme,insurance_class,covered_bp,deductible_fen,cap_fen\nemployee,甲,10001,0,0\nemployee,丁,0,0,0\n"
    )
    with pytest.raises(InsuranceSplitInvalid) as caught:
        parse_split_table(text)
    assert "line 2" in str(caught.value) and "line 3" in str(caught.value)


def test_settlement_splits_by_the_visits_scheme_and_issues_an_invoice(
    registration: httpx.Client, client: TestClient
) -> None:
    visit = employee_visit(registration, client)
    post_charge(client, visit["id"], PCT)
    patient_share = OUTPATIENT_FEE_FEN + PCT_FEN - FEE_INSURER - PCT_INSURER

    wrong = settle(client, visit["id"], amount_fen=OUTPATIENT_FEE_FEN + PCT_FEN)
    assert wrong.status_code == 422 and wrong.json()["due_fen"] == patient_share
    response = settle(client, visit["id"], amount_fen=patient_share)

    assert response.status_code == 201, response.text
    settled = response.json()
    assert (settled["insurer_fen"], settled["patient_fen"]) == (FEE_INSURER + PCT_INSURER, patient_share)
    invoice = settled["invoice"]
    assert (invoice["total_fen"], invoice["insurer_fen"], invoice["patient_fen"]) == (
        OUTPATIENT_FEE_FEN + PCT_FEN,
        FEE_INSURER + PCT_INSURER,
        patient_share,
    )
    assert invoice["paid_by"] == {"insurance": FEE_INSURER + PCT_INSURER, "cash": patient_share}
    assert [(line["insurance_class"], line["amount_fen"]) for line in invoice["lines"]] == [
        ("甲", OUTPATIENT_FEE_FEN),
        ("乙", PCT_FEN),
    ]
    assert invoice["number"].startswith("FP") and invoice["insurance_scheme"] == "employee"
    state = account(client, visit["id"])
    assert state["balance_fen"] == 0
    assert sorted(p["method"] for p in state["payments"]) == ["cash", "insurance"]
    [issued] = billing_events(client, "invoice.issued")
    assert issued["data"]["invoice_id"] == invoice["id"] and issued["data"]["supersedes"] is None


def test_a_deposit_covering_the_patients_share_is_on_the_invoice(
    registration: httpx.Client, client: TestClient
) -> None:
    visit = employee_visit(registration, client)
    deposit = {"amount_fen": 200, "method": "cash"}
    assert client.post(f"/visits/{visit['id']}/deposits", json=deposit, headers=keyed()).status_code == 201

    settled = settle(client, visit["id"], amount_fen=0).json()

    assert settled["payment"]["method"] == "deposit" and settled["deposit_applied_fen"] == 200
    assert settled["invoice"]["paid_by"] == {"insurance": FEE_INSURER, "deposit": 200}


def test_an_insurer_covering_everything_makes_one_payment(
    tmp_path: Path,
    data_dir: Path,
    registration: httpx.Client,
    registration_url: str,
    results_feed: FakeFeed,
) -> None:
    table = tmp_path / "split.csv"
    table.write_text(f"{','.join(insurance.COLUMNS)}\nemployee,甲,10000,0,1000000\n", encoding="utf-8")
    settings = billing_settings(
        data_dir, registration_url=registration_url, results_url=results_feed.url, insurance_split_path=table
    )
    with service_client(create_app(settings), BillingTable.metadata) as client:
        visit = employee_visit(registration, client)

        settled = settle(client, visit["id"], amount_fen=0).json()

        assert (settled["insurer_fen"], settled["patient_fen"]) == (OUTPATIENT_FEE_FEN, 0)
        assert settled["invoice"]["paid_by"] == {"insurance": OUTPATIENT_FEE_FEN}
        state = account(client, visit["id"])
        assert [(p["method"], p["amount_fen"]) for p in state["payments"]] == [
            ("insurance", OUTPATIENT_FEE_FEN)
        ]
        assert state["balance_fen"] == 0

        # Corrected, the insurer alone gets its payment back; the patient paid nothing, gets nothing.
        fee = state["charges"][0]
        body = {"reason": "重复挂号", "operator": "收费员"}
        assert client.post(f"/charges/{fee['id']}/reversal", json=body, headers=keyed()).status_code == 201
        new = client.get(f"/visits/{visit['id']}/invoices").json()[-1]
        assert (new["total_fen"], new["insurer_fen"], new["paid_by"]) == (0, 0, {})
        state = account(client, visit["id"])
        assert [p["amount_fen"] for p in state["payments"]] == [OUTPATIENT_FEE_FEN, -OUTPATIENT_FEE_FEN]
        assert state["balance_fen"] == 0
        assert [r["kind"] for r in client.get(f"/visits/{visit['id']}/receipts").json()] == ["payment"]


def test_a_self_pay_visit_pays_it_all_itself(registration: httpx.Client, client: TestClient) -> None:
    visit = new_visit(registration, client, payment_mode="settle_later")

    settled = settle(client, visit["id"], amount_fen=OUTPATIENT_FEE_FEN).json()

    assert (settled["insurer_fen"], settled["invoice"]["paid_by"]) == (0, {"cash": OUTPATIENT_FEE_FEN})


def test_an_invoice_cannot_be_changed_or_removed(registration: httpx.Client, client: TestClient) -> None:
    visit = employee_visit(registration, client)
    invoice_id = settle(client, visit["id"]).json()["invoice"]["id"]

    for change in ("amount", "delete", "line"):
        with pytest.raises(RowImmutable), database(client).session() as session:
            invoice = session.get(Invoice, invoice_id)
            line = session.get(InvoiceLine, (invoice_id, 1))
            assert invoice is not None and line is not None
            if change == "amount":
                invoice.patient_fen = 0
                session.add(invoice)
            elif change == "delete":
                session.delete(invoice)
            else:
                line.amount_fen = 1
                session.add(line)
            session.flush()
    [kept] = client.get(f"/visits/{visit['id']}/invoices").json()
    assert kept["patient_fen"] == OUTPATIENT_FEE_FEN - FEE_INSURER


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE invoice SET patient_fen = 0",
        "DELETE FROM invoice_line",
        "UPDATE receipt SET amount_fen = 1",
        "DELETE FROM receipt",
    ],
)
def test_the_database_itself_refuses_to_change_invoices_and_receipts(
    registration: httpx.Client, client: TestClient, statement: str
) -> None:
    """Not only the ORM: a plain SQL statement on billing's own connection is refused, by a trigger on
    SQLite, by the privileges of billing's own role on PostgreSQL (migration 0009)."""
    visit = employee_visit(registration, client)
    settled = settle(client, visit["id"]).json()

    with pytest.raises(DBAPIError, match=refusal(database(client))), database(client).session() as session:
        session.execute(text(statement))

    assert_settlement_kept(client, visit["id"], settled)


def refusal(database: Database) -> str:
    return "permission denied" if database.writer.dialect.name == "postgresql" else "immutable"


def assert_settlement_kept(client: TestClient, visit_id: str, settled: dict[str, Any]) -> None:
    [kept] = client.get(f"/visits/{visit_id}/invoices").json()
    assert (kept["patient_fen"], len(kept["lines"])) == (OUTPATIENT_FEE_FEN - FEE_INSURER, 1)
    [receipt] = client.get(f"/visits/{visit_id}/receipts").json()
    assert receipt["amount_fen"] == settled["payment"]["amount_fen"]


@pytest.mark.skipif(database_url_under_test() is None, reason="roles are PostgreSQL's")
@pytest.mark.parametrize("table", ["receipt", "invoice_line", "invoice"])
def test_the_wipes_flag_gets_billings_own_connection_nowhere(
    registration: httpx.Client, client: TestClient, table: str
) -> None:
    """The triggers let a connection that says it is the test wipe delete; billing's own role has no
    DELETE on invoices and receipts to begin with (nor UPDATE, nor TRUNCATE), so saying so changes nothing."""
    visit = employee_visit(registration, client)
    settled = settle(client, visit["id"]).json()

    with pytest.raises(DBAPIError, match="permission denied"), database(client).session() as session:
        session.execute(text("SET LOCAL patientflow.wipe = 'on'"))
        session.execute(text(f"DELETE FROM {table}"))

    with database(client).session() as session:
        assert session.execute(text("SELECT current_user")).scalar_one() == "patientflow_billing"
        rights = {
            privilege: session.execute(
                text(f"SELECT has_table_privilege('{table}', '{privilege}')")
            ).scalar_one()
            for privilege in ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE")
        }
    assert rights == {"SELECT": True, "INSERT": True, "UPDATE": False, "DELETE": False, "TRUNCATE": False}
    assert_settlement_kept(client, visit["id"], settled)


def test_the_supplementary_bill_issues_an_invoice_that_supersedes_the_first(
    registration: httpx.Client, client: TestClient, results_feed: FakeFeed
) -> None:
    visit = employee_visit(registration, client)
    first = settle(client, visit["id"]).json()["invoice"]
    order_placed(results_feed, visit, CBC)  # 甲, 2000 fen, read after settlement
    eventually(lambda: account(client, visit["id"])["supplementary_due_fen"], what="the late charge")

    payment = post_payment(client, visit["id"], amount_fen=200)  # 10 % of 2000; the insurer pays 1800

    assert payment["insurer_fen"] == 1_800
    old, new = client.get(f"/visits/{visit['id']}/invoices").json()
    assert (old["id"], old["superseded_by"], new["supersedes"]) == (first["id"], new["id"], first["id"])
    assert (old["total_fen"], old["insurer_fen"]) == (OUTPATIENT_FEE_FEN, FEE_INSURER)  # unchanged
    assert (new["total_fen"], new["insurer_fen"], new["patient_fen"]) == (4_000, 3_600, 400)
    assert new["paid_by"] == {"insurance": 3_600, "cash": 400}
    assert len(new["lines"]) == 2 and payment["invoice_number"] == new["number"]
    assert account(client, visit["id"])["balance_fen"] == 0
    assert [e["data"]["supersedes"] for e in billing_events(client, "invoice.issued")] == [None, first["id"]]


def test_a_correction_after_settlement_issues_a_new_invoice_and_gives_back_both_shares(
    registration: httpx.Client, client: TestClient
) -> None:
    visit = employee_visit(registration, client)
    pct = post_charge(client, visit["id"], PCT)
    first = settle(client, visit["id"], method="wechat").json()["invoice"]
    assert first["insurer_fen"] == FEE_INSURER + PCT_INSURER

    reversal = client.post(
        f"/charges/{pct['id']}/reversal", json={"reason": "未做检查", "operator": "收费员"}, headers=keyed()
    )

    assert reversal.status_code == 201, reversal.text
    old, new = client.get(f"/visits/{visit['id']}/invoices").json()
    assert (old["id"], old["superseded_by"], new["supersedes"]) == (first["id"], new["id"], first["id"])
    assert (old["total_fen"], old["insurer_fen"]) == (OUTPATIENT_FEE_FEN + PCT_FEN, FEE_INSURER + PCT_INSURER)
    # Split again over the corrected lines: only the consultation fee is left (甲 90 %).
    assert (new["total_fen"], new["insurer_fen"], new["patient_fen"]) == (
        OUTPATIENT_FEE_FEN,
        FEE_INSURER,
        200,
    )
    assert new["paid_by"] == {"insurance": FEE_INSURER, "wechat": 200}
    assert [line["amount_fen"] for line in new["lines"]] == [OUTPATIENT_FEE_FEN, PCT_FEN, -PCT_FEN]
    state = account(client, visit["id"])
    owed_back = sorted((p["method"], p["amount_fen"]) for p in state["payments"] if p["amount_fen"] < 0)
    assert owed_back == [("insurance", -PCT_INSURER), ("wechat", -(PCT_FEN - PCT_INSURER))]
    assert state["balance_fen"] == 0
    refunds = [r for r in client.get(f"/visits/{visit['id']}/receipts").json() if r["kind"] == "refund"]
    assert [(r["amount_fen"], r["method"]) for r in refunds] == [(PCT_FEN - PCT_INSURER, "wechat")]
    issued = billing_events(client, "invoice.issued")
    assert [e["data"]["supersedes"] for e in issued] == [None, first["id"]]
    day = client.get("/reconciliation", params={"date": hospital_date(utcnow()).isoformat()}).json()
    assert day["balanced"] is True, day["mismatches"]
    assert day["totals_by_kind"]["payment_refund"] == -PCT_FEN
    assert day["totals_by_kind"]["insurer_share"] == FEE_INSURER


def test_the_days_reconciliation_matches_the_ledger(registration: httpx.Client, client: TestClient) -> None:
    insured = employee_visit(registration, client)
    post_charge(client, insured["id"], PCT)
    assert settle(client, insured["id"]).status_code == 201
    self_pay = new_visit(registration, client)
    post_payment(client, self_pay["id"])

    response = client.get("/reconciliation", params={"date": hospital_date(utcnow()).isoformat()})

    assert response.status_code == 200, response.text
    day = response.json()
    assert day["balanced"] is True and day["mismatches"] == []
    assert day["totals_by_kind"]["charge"] == 2 * OUTPATIENT_FEE_FEN + PCT_FEN
    assert day["totals_by_kind"]["insurer_share"] == FEE_INSURER + PCT_INSURER
    assert day["totals_by_method"]["payment"]["insurance"] == FEE_INSURER + PCT_INSURER
    assert day["totals_by_kind"]["payment"] == day["totals_by_kind"]["charge"]
    assert (
        sum(line["amount_fen"] for line in day["lines"] if line["kind"] == "payment")
        == day["totals_by_kind"]["payment"]
    )
    other_day = client.get("/reconciliation", params={"date": "2020-01-01"}).json()
    assert (other_day["lines"], other_day["balanced"]) == ([], True)
    assert client.get("/reconciliation", params={"date": "not-a-day"}).status_code == 400


def test_an_insurer_payment_without_an_invoice_unbalances_the_day(
    registration: httpx.Client, client: TestClient
) -> None:
    """The report checks the insurer's money against the invoices' insurer shares itself: a payment by
    method `insurance` written past billing (no split, no invoice) makes the day unbalanced, named."""
    insured = employee_visit(registration, client)
    assert settle(client, insured["id"]).status_code == 201
    day = hospital_date(utcnow()).isoformat()
    assert client.get("/reconciliation", params={"date": day}).json()["balanced"] is True

    with database(client).session() as session:
        session.execute(
            Payment.__table__.insert().values(  # type: ignore[attr-defined]
                id=str(uuid.uuid4()),
                visit_id=insured["id"],
                amount_fen=500,
                method="insurance",
                insurance_scheme="employee",
                paid_at=utcnow(),
            )
        )

    report = client.get("/reconciliation", params={"date": day}).json()
    assert report["balanced"] is False
    assert report["mismatches"] == [
        f"insurance: the insurer's payments ({FEE_INSURER + 500} fen) ≠ the invoices' insurer shares "
        f"({FEE_INSURER} fen)"
    ]


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_sequence_of_money_moves_keeps_the_ledger_and_the_invoices(
    data: st.DataObject, registration: httpx.Client, client: TestClient
) -> None:
    """Property: for any sequence of charges, retries, reversals (also of the settled bill, and of an
    insured visit's cashier-paid charge, which refund what was paid for the charge over its tenders),
    deposits, payments at the cashier (an insured visit's split at once; by card or out of the
    deposit), refunds of what an open account owes back, the settlement and the deposit refund after
    it, balance = deposits + payments − deposit applied − deposit refunded − charges, summed line by
    line; no key yields two charges; no tender gets back more than it paid, by another method than it
    paid; every invoice's shares sum to its total and to its money by method; and the day's
    reconciliation is balanced, its insurer shares equal to the insurer's payments less its refunds."""
    insured = data.draw(st.booleans(), label="insured")
    visit = (
        employee_visit(registration, client)
        if insured
        else new_visit(registration, client, payment_mode="settle_later")
    )
    vid = visit["id"]
    sent: list[tuple[str, dict[str, Any], dict[str, str]]] = []
    moves = ["charge", "pay", "reverse", "deposit", "settle", "refund", "give_back", "retry"]
    # Paying and reversing twice as likely: refunds of what was paid need both before them.
    for move in data.draw(st.lists(st.sampled_from([*moves, "pay", "reverse"]), max_size=12)):
        state = account(client, vid)
        held = client.get(f"/visits/{vid}/deposits").json()["deposit_held_fen"]
        charges = state["charges"]
        cancelled = {c["reversal_of"] for c in charges} | {c["id"] for c in charges if c["reversal_of"]}
        live = [c for c in charges if c["id"] not in cancelled]
        is_open = state["status"] == "open"
        if move == "charge" and is_open:
            code = data.draw(st.sampled_from([PCT, "120400006"]))
            body: dict[str, Any] = {
                "visit_id": vid,
                "item_code": code,
                "quantity": data.draw(st.integers(1, 3)),
            }
            sent.append(("/charges", body, keyed()))
        elif move == "pay" and is_open and (unpaid := [c for c in live if c["status"] == "unpaid"]):
            # Out of the deposit when it covers the lot (the insured patient's share is less).
            method = "deposit" if held >= sum(c["amount_fen"] for c in unpaid) else "card"
            sent.append(("/payments", {"visit_id": vid, "method": method}, keyed()))
        elif move == "give_back" and state["paid_fen"] > state["charges_total_fen"]:
            owed = state["paid_fen"] - state["charges_total_fen"]
            amount = data.draw(st.none() | st.integers(1, owed))
            body = {"reason": "退费", "operator": "收费员"} | (
                {} if amount is None else {"amount_fen": amount}
            )
            sent.append((f"/visits/{vid}/refunds", body, keyed()))
        elif move == "reverse" and live:  # after settlement: a correction, refunded
            target = data.draw(st.sampled_from(live))
            sent.append(
                (f"/charges/{target['id']}/reversal", {"reason": "错录", "operator": "收费员"}, keyed())
            )
        elif move == "deposit" and is_open:
            body = {"amount_fen": data.draw(st.integers(1, 30_000)), "method": "cash"}
            sent.append((f"/visits/{vid}/deposits", body, keyed()))
        elif move == "settle" and is_open:
            sent.append((f"/visits/{vid}/settlement", {"method": "wechat"}, keyed()))
        elif move == "refund" and not is_open and held > 0:
            sent.append((f"/visits/{vid}/deposit-refunds", {}, keyed()))
        elif move == "retry" and sent:
            sent.append(data.draw(st.sampled_from(sent)))
        else:
            continue
        path, body, headers = sent[-1]
        before = state["balance_fen"]
        response = client.post(path, json=body, headers=headers)
        assert response.status_code == 201, response.text

        state = account(client, vid)
        money = client.get(f"/visits/{vid}/deposits").json()
        lines_total = sum(c["amount_fen"] for c in state["charges"])
        paid = sum(p["amount_fen"] for p in state["payments"])
        deposited = sum(d["amount_fen"] for d in money["deposits"])
        refunded = sum(r["amount_fen"] for r in money["refunds"])
        assert state["charges_total_fen"] == lines_total and state["paid_fen"] == paid
        assert (
            money["balance_fen"] == deposited + paid - money["deposit_applied_fen"] - refunded - lines_total
        )
        assert money["deposit_held_fen"] >= 0
        if not is_open:  # a settled bill's correction refunds exactly what it takes off the bill
            assert state["balance_fen"] == before
        if move == "settle":  # 多退少补: a settled account owes nothing either way
            assert state["balance_fen"] == 0, state
        if move == "give_back":  # what is owed back falls by the refund: out by card, into the deposit
            owed_before = -before  # the account's balance is charges − payments: owed back when < 0
            assert (
                money["balance_fen"] - money["deposit_held_fen"]
                == owed_before - response.json()["amount_fen"]
            )
        reversed_ids = [c["reversal_of"] for c in state["charges"] if c["reversal_of"]]
        assert len(reversed_ids) == len(set(reversed_ids))
        paid_in = {p["id"]: p for p in state["payments"] if p["amount_fen"] > 0}
        for original in paid_in.values():
            back = [p for p in state["payments"] if p["refund_of"] == original["id"]]
            assert {p["method"] for p in back} <= {original["method"], "deposit", "insurance"}
            assert -sum(p["amount_fen"] for p in back) <= original["amount_fen"]
        for invoice in client.get(f"/visits/{vid}/invoices").json():
            assert invoice["insurer_fen"] + invoice["patient_fen"] == invoice["total_fen"]
            assert sum(invoice["paid_by"].values()) == invoice["total_fen"]
            assert sum(line["amount_fen"] for line in invoice["lines"]) == invoice["total_fen"]
    keyed_charges = {h["Idempotency-Key"] for p, _, h in sent if p == "/charges"}
    assert len([c for c in account(client, vid)["charges"] if c["origin"] == "manual"]) == len(keyed_charges)
    day = client.get("/reconciliation", params={"date": hospital_date(utcnow()).isoformat()}).json()
    assert day["balanced"] is True, day["mismatches"]
    by_method = day["totals_by_method"]
    insurer_paid = by_method.get("payment", {}).get("insurance", 0)
    insurer_back = by_method.get("payment_refund", {}).get("insurance", 0)
    assert insurer_paid + insurer_back == day["totals_by_kind"].get("insurer_share", 0)
