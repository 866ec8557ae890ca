"""The nightly bed-day job (inpatient_days.py): every night of a stay charged once — by the class of the
bed lain in at the end of that day, named after its ward's department — however often the job runs,
with missed nights caught up, the discharge day not counted (算入不算出), and racing runs posting once."""

import threading
from datetime import timedelta

import httpx
from fastapi.testclient import TestClient

from kit.clock import utcnow
from services.billing.config import BillingSettings
from services.billing.service import inpatient_days
from tests.billing.factories import account, billing_events, keyed, new_visit, post_charge, rejections
from tests.billing.inpatients import (
    GENERAL_BED_FEN,
    GRADE_I_FEN,
    GRADE_II_FEN,
    ICU_BED_FEN,
    admitted_visit,
    database,
    day_charges,
    deposit,
    move_stay_back,
    new_ward,
    run_days,
    today,
    wait_for_stay,
)
from tests.billing.test_catalogue import seed_lines, upload

GENERAL_BED, ICU_BED, GRADE_II, GRADE_I = "110900001", "110900004", "120100003", "120100002"
DOUBLE_ROOM, SINGLE_ROOM = "110900001D", "110900001S"  # the hospital's own codes of 110900001


def test_every_night_is_posted_once_however_often_the_job_runs(
    registration: httpx.Client, client: TestClient
) -> None:
    visit = admitted_visit(registration, client)
    move_stay_back(client, visit["id"], days=3)
    yesterday = today() - timedelta(days=1)

    first = run_days(client, yesterday)
    again = run_days(client, yesterday)

    nights = [(today() - timedelta(days=n)).isoformat() for n in (3, 2, 1)]
    expected = [
        (night, code, fen)
        for night in nights
        for code, fen in ((GENERAL_BED, GENERAL_BED_FEN), (GRADE_II, GRADE_II_FEN))
    ]
    assert day_charges(client, visit["id"]) == expected
    assert (first["posted"], again["posted"]) == (6, 0)
    posted = [e for e in billing_events(client, "charge.posted") if e["visit_id"] == visit["id"]]
    assert [e["data"]["origin"] for e in posted].count("inpatient_day") == 6


def test_a_missed_night_is_caught_up_by_the_next_run(registration: httpx.Client, client: TestClient) -> None:
    visit = admitted_visit(registration, client)
    move_stay_back(client, visit["id"], days=3)
    run_days(client, today() - timedelta(days=3))  # the first night ran; the next two did not

    caught_up = run_days(client, today())

    dates = [day for day, code, _ in day_charges(client, visit["id"]) if code == GENERAL_BED]
    assert dates == [(today() - timedelta(days=n)).isoformat() for n in (3, 2, 1, 0)]
    assert caught_up["posted"] == 6  # three nights, bed and nursing


def test_a_transfer_day_is_one_bed_day_priced_by_the_bed_at_the_end_of_it(
    registration: httpx.Client, client: TestClient
) -> None:
    visit = admitted_visit(registration, client)
    move_stay_back(client, visit["id"], days=1)
    moved = registration.post(
        f"/visits/{visit['id']}/transfers", json={"ward": visit["ward"], "bed": "2", "note": "转ICU"}
    )
    assert moved.status_code == 201, moved.text
    wait_for_stay(client, visit["id"], beds=2)

    run_days(client, today())
    run_days(client, today())

    yesterday, now = (today() - timedelta(days=1)).isoformat(), today().isoformat()
    assert day_charges(client, visit["id"]) == [
        (yesterday, GENERAL_BED, GENERAL_BED_FEN),
        (yesterday, GRADE_II, GRADE_II_FEN),
        (now, ICU_BED, ICU_BED_FEN),
        (now, GRADE_I, GRADE_I_FEN),
    ]


def test_the_discharge_day_is_not_charged_and_a_same_day_stay_is_one_day(
    registration: httpx.Client, client: TestClient
) -> None:
    longer, same_day = admitted_visit(registration, client), admitted_visit(registration, client)
    move_stay_back(client, longer["id"], days=2)
    for visit in (longer, same_day):
        assert registration.post(f"/visits/{visit['id']}/discharge").status_code == 200
        wait_for_stay(client, visit["id"], discharged=True)

    run_days(client, today())

    nights = [day for day, code, _ in day_charges(client, longer["id"]) if code == GENERAL_BED]
    assert nights == [(today() - timedelta(days=n)).isoformat() for n in (2, 1)]
    assert [day for day, code, _ in day_charges(client, same_day["id"]) if code == GENERAL_BED] == [
        today().isoformat()
    ]


def test_a_discharge_settlement_before_the_nights_run_bills_every_day_of_the_stay(
    registration: httpx.Client, client: TestClient
) -> None:
    longer, same_day = admitted_visit(registration, client), admitted_visit(registration, client)
    move_stay_back(client, longer["id"], days=2)
    for visit in (longer, same_day):  # discharged at any hour, before the nightly job has run
        assert registration.post(f"/visits/{visit['id']}/discharge").status_code == 200
        wait_for_stay(client, visit["id"], discharged=True)

    settled = {
        visit["id"]: client.post(
            f"/visits/{visit['id']}/settlement", json={"method": "cash"}, headers=keyed()
        )
        for visit in (longer, same_day)
    }
    late_run = run_days(client, today())

    day_fen = GENERAL_BED_FEN + GRADE_II_FEN
    for visit, nights in ((longer, 2), (same_day, 1)):
        response = settled[visit["id"]]
        assert response.status_code == 201, response.text
        body = response.json()
        billed = [line["charge_id"] for line in body["invoice"]["lines"]]
        days = [c for c in account(client, visit["id"])["charges"] if c["origin"] == "inpatient_day"]
        assert len(days) == 2 * nights and {c["id"] for c in days} <= set(billed)
        assert body["total_fen"] == sum(line["amount_fen"] for line in body["invoice"]["lines"])
        assert sum(c["amount_fen"] for c in days) == nights * day_fen
        assert not any(c["supplementary"] for c in days)  # on the invoice, not on a 补费 bill
    assert late_run["posted"] == 0  # the job finds every day posted: never twice


def test_each_night_is_priced_by_its_own_date_across_a_price_change(
    registration: httpx.Client, client: TestClient
) -> None:
    visit = admitted_visit(registration, client)
    move_stay_back(client, visit["id"], days=3)
    run_days(client, today() - timedelta(days=3))  # night −3 posted at the old price; −2 is missed
    changed = today() - timedelta(days=1)
    # The ward bed costs 3600 fen from yesterday: a new catalogue version with both periods.
    kept = [line for line in seed_lines() if not line.startswith(f"{GENERAL_BED},")]
    row = "{0},{0},普通病房床位费,Ward bed (general),日,bed,甲,list,{1},,,{2},{3}"
    rows = [
        row.format(GENERAL_BED, GENERAL_BED_FEN, "2024-01-01", (changed - timedelta(days=1)).isoformat()),
        row.format(GENERAL_BED, 3600, changed.isoformat(), ""),
    ]
    assert upload(client, "\n".join(kept + rows) + "\n").status_code == 201

    run_days(client, today())

    beds = [(day, fen) for day, code, fen in day_charges(client, visit["id"]) if code == GENERAL_BED]
    assert beds == [
        ((today() - timedelta(days=3)).isoformat(), GENERAL_BED_FEN),  # posted before: keeps its price
        ((today() - timedelta(days=2)).isoformat(), GENERAL_BED_FEN),  # caught up: the old price still
        (changed.isoformat(), 3600),  # caught up after the change: the price of its own night
        (today().isoformat(), 3600),
    ]


def test_a_night_already_charged_by_hand_is_refused_once_and_shown_to_the_cashier(
    registration: httpx.Client, client: TestClient
) -> None:
    visit = admitted_visit(registration, client)
    move_stay_back(client, visit["id"], days=1)
    yesterday = (today() - timedelta(days=1)).isoformat()
    by_hand = post_charge(client, visit["id"], GENERAL_BED, service_date=yesterday)

    first, again = (
        run_days(client, today() - timedelta(days=1)),
        run_days(client, today() - timedelta(days=1)),
    )

    assert (first["posted"], first["refused"], again["posted"], again["refused"]) == (1, 1, 0, 0)
    beds = [c for c in account(client, visit["id"])["charges"] if c["item_code"] == GENERAL_BED]
    assert [c["id"] for c in beds] == [by_hand["id"]]  # one bed-day that day: never a second (重复收费)
    assert [code for _, code, _ in day_charges(client, visit["id"])] == [GRADE_II]
    [shown] = rejections(client, visit["id"])
    assert (shown["item_code"], shown["reason"]) == (GENERAL_BED, "max-per-day-exceeded")
    [event] = [e for e in billing_events(client, "charge.refused") if e["visit_id"] == visit["id"]]
    assert (event["data"]["source"], event["data"]["item_code"], event["data"]["reason"]) == (
        "inpatient_days",
        GENERAL_BED,
        "max-per-day-exceeded",
    )


def test_the_nights_posted_by_the_job_raise_the_low_balance_alert_once(
    registration: httpx.Client, client: TestClient
) -> None:
    visit = admitted_visit(registration, client)
    move_stay_back(client, visit["id"], days=3)
    fee = account(client, visit["id"])["charges_total_fen"]
    day_fen = GENERAL_BED_FEN + GRADE_II_FEN  # 4500 a night
    deposit(client, visit["id"], fee + 3 * day_fen + 1_000, low_balance_threshold_fen=5_000)

    run_days(client, today() - timedelta(days=2))  # two nights: 14500 − 9000 = 5500 left, above
    quiet = [e for e in billing_events(client, "deposit.low_balance") if e["visit_id"] == visit["id"]]
    run_days(client, today())  # two more: 5500 − 9000 = −3500, across the line once

    alerts = [e for e in billing_events(client, "deposit.low_balance") if e["visit_id"] == visit["id"]]
    assert quiet == []
    assert [(a["data"]["balance_fen"], a["data"]["threshold_fen"]) for a in alerts] == [(-3_500, 5_000)]


def test_a_room_is_priced_by_its_class_and_a_day_has_one_bed_whatever_its_class(
    registration: httpx.Client, client: TestClient
) -> None:
    ward = new_ward(registration, beds={"1": "single", "2": "double", "3": "double"})
    visits = {}
    for bed in ("1", "2", "3"):
        opened = new_visit(registration, client)
        placed = registration.post(f"/visits/{opened['id']}/admission", json={"ward": ward, "bed": bed})
        assert placed.status_code == 201, placed.text
        wait_for_stay(client, opened["id"])
        visits[bed] = opened["id"]
    by_hand = post_charge(client, visits["3"], GENERAL_BED)  # today's bed already charged, another class

    ran = run_days(client, today())

    assert day_charges(client, visits["1"]) == [
        (today().isoformat(), SINGLE_ROOM, 9000),
        (today().isoformat(), GRADE_II, GRADE_II_FEN),
    ]
    assert day_charges(client, visits["2"])[0] == (today().isoformat(), DOUBLE_ROOM, 5000)
    assert [code for _, code, _ in day_charges(client, visits["3"])] == [GRADE_II]  # not a second bed
    beds = [c["id"] for c in account(client, visits["3"])["charges"] if c["item_code"].startswith("1109")]
    assert beds == [by_hand["id"]] and ran["refused"] >= 1
    [shown] = rejections(client, visits["3"])
    assert (shown["item_code"], shown["reason"]) == (DOUBLE_ROOM, "mutually-exclusive")


def test_racing_runs_post_each_day_once(registration: httpx.Client, client: TestClient) -> None:
    visits = [admitted_visit(registration, client) for _ in range(3)]
    for visit in visits:
        move_stay_back(client, visit["id"], days=2)
    settings: BillingSettings = client.app.state.settings  # type: ignore[attr-defined]
    barrier = threading.Barrier(4)
    results: list[int] = []

    def run() -> None:
        barrier.wait()
        done = inpatient_days.run_inpatient_days(
            database(client), up_to=today(), items=inpatient_days.DayItems.of(settings)
        )
        results.append(done.posted)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sum(results) == 3 * 3 * 2  # three stays, three days each, bed and nursing: once in all
    for visit in visits:
        days = day_charges(client, visit["id"])
        assert len(days) == len(set((day, code) for day, code, _ in days)) == 6


def test_the_nightly_job_posts_up_to_yesterday_and_issues_its_bills(
    registration: httpx.Client, client: TestClient
) -> None:
    visit = admitted_visit(registration, client)
    move_stay_back(client, visit["id"], days=1)
    settings: BillingSettings = client.app.state.settings  # type: ignore[attr-defined]
    issued: list[object] = []
    job = inpatient_days.NightlyJob(
        database(client),
        items=inpatient_days.DayItems.of(settings),
        every_seconds=60,
        after=issued.append,
        clock=utcnow,
    )

    job.run_once()

    yesterday = (today() - timedelta(days=1)).isoformat()
    assert [day for day, _, _ in day_charges(client, visit["id"])] == [yesterday, yesterday]
    assert [day.isoformat() for day in issued] == [yesterday]  # type: ignore[attr-defined]


def test_a_run_for_a_day_not_yet_come_is_refused_and_changes_nothing(
    registration: httpx.Client, client: TestClient
) -> None:
    visit = admitted_visit(registration, client)
    before = account(client, visit["id"])["charges"]

    refused = client.post("/inpatient-days/runs", json={"date": (today() + timedelta(days=1)).isoformat()})
    malformed = client.post("/inpatient-days/runs", json={"date": "2026-02-30"})

    assert refused.status_code == 422 and refused.json()["type"].endswith("/invalid-run-date")
    assert malformed.status_code == 422
    assert account(client, visit["id"])["charges"] == before
