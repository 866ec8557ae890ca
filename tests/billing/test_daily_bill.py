"""The daily itemised bill (一日清单): one hospital day's lines, totals equal to their sum."""

from datetime import date, timedelta

import httpx
from fastapi.testclient import TestClient

from kit.clock import hospital_date, utcnow
from kit.testing import orm_sessions_begun
from tests.billing.factories import (
    INFUSION,
    account,
    assert_no_floats,
    backdate_account,
    new_visit,
    post_charge,
    post_payment,
)


def test_daily_bill_lists_the_days_charges_and_sums_them(
    registration: httpx.Client, client: TestClient
) -> None:
    visit = new_visit(registration, client, kind="inpatient", department="surgery")
    backdate_account(client, visit["id"], days=1)  # admitted yesterday
    bed = post_charge(client, visit["id"], "110900001")
    day = date.fromisoformat(bed["service_date"])
    yesterday = (day - timedelta(days=1)).isoformat()
    earlier_bed = post_charge(client, visit["id"], "110900001", service_date=yesterday)
    nursing = post_charge(client, visit["id"], "120100002")
    infusion = post_charge(client, visit["id"], INFUSION, 2)
    post_payment(client, visit["id"], charge_ids=[bed["id"], earlier_bed["id"]])

    response = client.get(f"/visits/{visit['id']}/daily-bill", params={"date": day.isoformat()})

    assert response.status_code == 200, response.text
    bill = response.json()
    assert_no_floats(bill)
    assert (bill["visit_id"], bill["patient_id"], bill["date"]) == (
        visit["id"],
        visit["patient_id"],
        str(day),
    )
    assert [line["charge_id"] for line in bill["lines"]] == [bed["id"], nursing["id"], infusion["id"]]
    assert bill["lines"][2] == {
        "charge_id": infusion["id"],
        "item_code": INFUSION,
        "national_code": "120400006",  # of the catalogue entry that priced it
        "item_name": "静脉输液(第一组)",
        "category": "treatment",
        "unit": "组",
        "unit_price_fen": 500,
        "quantity": 2,
        "amount_fen": 1000,
        "insurance_class": "甲",
        "department": "surgery",  # a charge by hand: the visit's department, though no bed-day is posted
        "status": "unpaid",
        "charged_at": infusion["charged_at"],
    }
    assert bill["total_fen"] == sum(line["amount_fen"] for line in bill["lines"]) == 3000 + 2500 + 1000
    assert bill["subtotals"] == [
        {"category": "bed", "amount_fen": 3000},
        {"category": "nursing", "amount_fen": 2500},
        {"category": "treatment", "amount_fen": 1000},
    ]
    assert (bill["running_total_fen"], bill["deposit_fen"]) == (3000 + 3000 + 2500 + 1000, 0)
    assert bill["balance_fen"] == 6000 - bill["running_total_fen"]  # two bed-days paid
    assert (bill["paid_fen"], bill["unpaid_fen"]) == (3000, 3500)

    previous = client.get(f"/visits/{visit['id']}/daily-bill", params={"date": yesterday}).json()
    assert [line["charge_id"] for line in previous["lines"]] == [earlier_bed["id"]]
    assert (previous["total_fen"], previous["paid_fen"], previous["unpaid_fen"]) == (3000, 3000, 0)


def test_daily_bill_defaults_to_today_hospital_time(registration: httpx.Client, client: TestClient) -> None:
    visit = new_visit(registration, client)
    post_charge(client, visit["id"], INFUSION)

    before = hospital_date(utcnow()).isoformat()
    bill = client.get(f"/visits/{visit['id']}/daily-bill").json()
    after = hospital_date(utcnow()).isoformat()

    assert bill["date"] in {before, after}
    todays = [c for c in account(client, visit["id"])["charges"] if c["service_date"] == bill["date"]]
    assert [line["charge_id"] for line in bill["lines"]] == [c["id"] for c in todays]
    assert bill["total_fen"] == sum(c["amount_fen"] for c in todays)


def test_empty_day_unknown_visit_and_bad_date(registration: httpx.Client, client: TestClient) -> None:
    visit = new_visit(registration, client)

    empty = client.get(f"/visits/{visit['id']}/daily-bill", params={"date": "2020-01-01"}).json()
    unknown = client.get("/visits/3c5d0a7e-0000-4000-8000-000000000000/daily-bill")
    malformed = client.get(f"/visits/{visit['id']}/daily-bill", params={"date": "2020-13-01"})

    assert (empty["lines"], empty["total_fen"], empty["paid_fen"], empty["unpaid_fen"]) == ([], 0, 0, 0)
    assert unknown.status_code == 404 and unknown.json()["type"].endswith("/visit-not-found")
    assert malformed.status_code == 400 and malformed.json()["type"].endswith("/invalid-parameter")


def test_the_json_bill_is_read_without_an_orm_session(registration: httpx.Client, client: TestClient) -> None:
    """Every journey reads its bill: it is Core statements on a reader connection (built once), not a
    request's ORM session and its worker-thread unit of work; the PDF still reads the same bill."""
    visit = new_visit(registration, client, kind="inpatient", department="surgery")
    post_charge(client, visit["id"], INFUSION, 2)
    with orm_sessions_begun() as begun:
        bill = client.get(f"/visits/{visit['id']}/daily-bill")
        begun_by_json = list(begun)
        pdf = client.get(f"/visits/{visit['id']}/daily-bill/pdf")

    assert bill.status_code == 200, bill.text
    assert bill.json()["total_fen"] == 1000
    assert begun_by_json == []
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    assert len(begun) > len(begun_by_json)  # the PDF's request session (the listener sees sessions)
