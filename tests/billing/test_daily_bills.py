"""The inpatient's daily itemised bill (一日清单): each line with its ordering department, subtotals by
category, running total, deposit and balance; the printable PDF with its Chinese text; the batch that
issues every inpatient's bill once (`daily_bill.ready`); the patient's acknowledgement and 知情率."""

import io
from datetime import timedelta
from typing import Any

import httpx
from fastapi.testclient import TestClient
from pypdf import PdfReader

from kit.testing import FakeFeed, internal_headers
from tests.billing.conftest import order_placed
from tests.billing.factories import (
    CBC,
    assert_no_floats,
    billing_events,
    new_visit,
    post_charge,
    wait_until_consumed,
)
from tests.billing.inpatients import (
    GENERAL_BED_FEN,
    GRADE_II_FEN,
    admitted_visit,
    deposit,
    move_stay_back,
    run_bills,
    run_days,
    today,
)


def bill(client: TestClient, visit_id: str, day: str, **headers: str) -> httpx.Response:
    return client.get(f"/visits/{visit_id}/daily-bill", params={"date": day}, headers=headers)


def acting_for(patient_id: str, *scopes: str) -> dict[str, str]:
    return internal_headers("app-dev", set(scopes), audience="billing", patient=patient_id)


def test_an_inpatients_bill_has_subtotals_the_running_total_and_the_balance_against_the_deposit(
    registration: httpx.Client, client: TestClient
) -> None:
    visit = admitted_visit(registration, client)
    move_stay_back(client, visit["id"], days=1)
    fee = post_charge(client, visit["id"], "250101015")  # a CBC today, 2000
    deposit(client, visit["id"], 100_000)
    run_days(client, today())

    response = bill(client, visit["id"], today().isoformat())

    assert response.status_code == 200, response.text
    found = response.json()
    assert_no_floats(found)
    day_lines = [line for line in found["lines"] if line["category"] in ("bed", "nursing")]
    assert [(line["item_name"], line["department"]) for line in day_lines] == [
        ("普通病房床位费", "cardiology"),
        ("Ⅱ级护理", "cardiology"),
    ]
    assert found["subtotals"] == [
        {"category": "bed", "amount_fen": GENERAL_BED_FEN},
        {"category": "laboratory", "amount_fen": 2000},
        {"category": "nursing", "amount_fen": GRADE_II_FEN},
        {"category": "registration", "amount_fen": 2000},  # the visit's consultation fee, charged today
    ]
    assert found["total_fen"] == sum(s["amount_fen"] for s in found["subtotals"])
    consultation = 2000  # the outpatient visit's fee, charged yesterday (the visit opened then)
    assert (
        found["running_total_fen"] == consultation + 2 * (GENERAL_BED_FEN + GRADE_II_FEN) + fee["amount_fen"]
    )
    assert (found["deposit_fen"], found["balance_fen"]) == (100_000, 100_000 - found["running_total_fen"])
    yesterday = bill(client, visit["id"], (today() - timedelta(days=1)).isoformat()).json()
    assert yesterday["running_total_fen"] == found["running_total_fen"] - found["total_fen"]
    assert yesterday["deposit_fen"] == 0  # paid in today


def test_each_line_names_its_ordering_department_on_a_day_with_or_without_a_bed_day(
    registration: httpx.Client, client: TestClient, results_feed: FakeFeed
) -> None:
    visit = admitted_visit(registration, client)  # opened in internal medicine, admitted to cardiology
    move_stay_back(client, visit["id"], days=1)
    consult = order_placed(results_feed, visit, CBC, department="neurology")  # a neurology consult's
    wait_until_consumed(client, "results", consult["position"])
    by_hand = post_charge(client, visit["id"])  # at the ward's nurse station: the visit's department

    def departments() -> list[tuple[str | None, str | None]]:
        lines = bill(client, visit["id"], today().isoformat()).json()["lines"]
        return sorted((line["category"], line["department"]) for line in lines)

    # Today before the nightly job: no bed-day is posted, yet every line knows its department.
    assert departments() == [
        ("laboratory", "neurology"),  # the order's, not the ward's
        ("registration", "internal"),  # the outpatient visit's consultation fee, charged today
        ("treatment", "cardiology"),  # the visit's department since admission (the ward's)
    ]
    assert by_hand["department"] == "cardiology"
    run_days(client, today())
    assert departments() == [
        ("bed", "cardiology"),
        ("laboratory", "neurology"),
        ("nursing", "cardiology"),
        ("registration", "internal"),
        ("treatment", "cardiology"),
    ]


def test_the_printed_bill_carries_its_lines_and_totals_in_chinese(
    registration: httpx.Client, client: TestClient, results_feed: FakeFeed
) -> None:
    visit = admitted_visit(registration, client)
    deposit(client, visit["id"], 50_000)
    consult = order_placed(results_feed, visit, CBC, department="neurology")
    wait_until_consumed(client, "results", consult["position"])
    run_days(client, today())

    response = client.get(f"/visits/{visit['id']}/daily-bill/pdf", params={"date": today().isoformat()})

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/pdf"
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(response.content)).pages)
    for expected in (
        "住院患者费用一日清单",
        "普通病房床位费",
        "Ⅱ级护理",
        "床位费",
        "护理费",
        "预交金",
        "500.00",
        "30.00",
        "开单科室",  # each line's ordering department, the order's own among them
        "neurology",
    ):
        assert expected in text, expected
    assert visit["id"] in text


def test_the_batch_issues_every_inpatients_bill_once(registration: httpx.Client, client: TestClient) -> None:
    inpatients = [admitted_visit(registration, client) for _ in range(3)]
    outpatient = new_visit(registration, client)
    run_days(client, today())

    first = run_bills(client, today())
    again = run_bills(client, today())

    ready = [
        e for e in billing_events(client, "daily_bill.ready") if e["data"]["date"] == today().isoformat()
    ]
    assert sorted(e["visit_id"] for e in ready) == sorted(v["id"] for v in inpatients)
    assert outpatient["id"] not in [e["visit_id"] for e in ready]
    assert (first["bills"], first["issued"], again["bills"], again["issued"]) == (3, 3, 3, 0)
    assert first["lines"] == 3 * 3  # each: the consultation fee, its bed-day and its nursing day
    one = next(e for e in ready if e["visit_id"] == inpatients[0]["id"])
    assert one["data"]["total_fen"] == 2000 + GENERAL_BED_FEN + GRADE_II_FEN
    assert one["patient_id"] == inpatients[0]["patient_id"]


def report(client: TestClient) -> dict[str, Any]:
    response = client.get("/daily-bills/acknowledgements", params={"date": today().isoformat()})
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def test_the_patient_acknowledges_their_own_bill_and_the_rate_counts_it(
    registration: httpx.Client, client: TestClient
) -> None:
    mine, theirs = admitted_visit(registration, client), admitted_visit(registration, client)
    me = acting_for(mine["patient_id"], "billing:read", "billing:write")
    body = {"date": today().isoformat()}
    early = client.post(f"/visits/{mine['id']}/daily-bill/acknowledgements", json=body, headers=me)
    run_days(client, today())
    run_bills(client, today())

    refused = client.post(f"/visits/{theirs['id']}/daily-bill/acknowledgements", json=body, headers=me)
    peeked = bill(client, theirs["id"], body["date"], **me)
    printed = client.get(f"/visits/{theirs['id']}/daily-bill/pdf", params=body, headers=me)
    acknowledged = client.post(f"/visits/{mine['id']}/daily-bill/acknowledgements", json=body, headers=me)
    repeated = client.post(f"/visits/{mine['id']}/daily-bill/acknowledgements", json=body, headers=me)

    assert early.status_code == 404 and early.json()["type"].endswith("/daily-bill-not-issued")
    for answer in (refused, peeked, printed):
        assert answer.status_code == 404 and answer.json()["type"].endswith("/visit-not-found")
    assert acknowledged.status_code == repeated.status_code == 201
    assert repeated.json()["acknowledged_at"] == acknowledged.json()["acknowledged_at"]
    assert (
        bill(client, mine["id"], body["date"], **me).json()["acknowledged_at"]
        == acknowledged.json()["acknowledged_at"]
    )
    rate = report(client)
    assert (rate["issued"], rate["acknowledged"], rate["rate"]) == (2, 1, 0.5)
    assert rate["unacknowledged_visit_ids"] == [theirs["id"]]
    client.post(f"/visits/{theirs['id']}/daily-bill/acknowledgements", json=body)  # at the bedside
    assert report(client)["rate"] == 1.0
