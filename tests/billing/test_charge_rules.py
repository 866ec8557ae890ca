"""Charging rules as data: each rule refuses what it must (409 `charge-refused` with its reason, the
event `charge.refused`, feed refusals on `/rejected-charges`), counts net of reversals, races post
exactly one, and rule files are checked row by row like the catalogue."""

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from threading import Barrier
from typing import Any

import httpx
from fastapi.testclient import TestClient

from kit.clock import hospital_date, utcnow
from kit.testing import FakeFeed
from services.billing.service.rules import COLUMNS
from tests.billing.conftest import order_placed
from tests.billing.factories import (
    INFUSION,
    account,
    backdate_account,
    billing_events,
    keyed,
    new_visit,
    post_charge,
    rejections,
    wait_until_consumed,
)

WARD_BED = "110900001"  # 普通病房床位费: one a day, inpatients only
DEBRIDEMENT, DRESSING = "311201001", "120600001"  # 清创缝合 includes that day's 换药
NURSING_I, NURSING_II = "120100002", "120100003"  # one nursing grade a day
BLOOD_GROUP = "260000002"  # 血型鉴定: once a stay
RULES_HEADER = ",".join(COLUMNS)


def charge(client: TestClient, visit_id: str, item_code: str, **extra: Any) -> httpx.Response:
    body = {"visit_id": visit_id, "item_code": item_code, "quantity": 1} | extra
    return client.post("/charges", json=body, headers=keyed())


def assert_refused(response: httpx.Response, reason: str) -> dict[str, Any]:
    assert response.status_code == 409, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem: dict[str, Any] = response.json()
    assert problem["type"].endswith("/charge-refused")
    assert problem["reason"] == reason and isinstance(problem["rule_id"], int)
    return problem


def inpatient(registration: httpx.Client, client: TestClient, *, days: int = 2) -> dict[str, Any]:
    visit = new_visit(registration, client, kind="inpatient", department="surgery")
    backdate_account(client, visit["id"], days=days)
    return visit


def items_charged(client: TestClient, visit_id: str) -> list[str]:
    return [c["item_code"] for c in account(client, visit_id)["charges"]]


def test_two_bed_days_for_one_day_with_two_keys_charge_one(
    registration: httpx.Client, client: TestClient
) -> None:
    visit = inpatient(registration, client)
    today = hospital_date(utcnow())
    first = charge(client, visit["id"], WARD_BED)
    assert first.status_code == 201, first.text

    second = charge(client, visit["id"], WARD_BED)

    problem = assert_refused(second, "max-per-day-exceeded")
    assert (problem["max_quantity"], problem["already_charged"]) == (1, 1)
    assert problem["service_date"] == today.isoformat()
    assert items_charged(client, visit["id"]) == [WARD_BED]
    refused = billing_events(client, "charge.refused")
    assert [(e["visit_id"], e["data"]["reason"], e["data"]["source"]) for e in refused] == [
        (visit["id"], "max-per-day-exceeded", "api")
    ]
    assert refused[0]["data"]["rule_id"] == problem["rule_id"]
    yesterday = (today - timedelta(days=1)).isoformat()
    assert charge(client, visit["id"], WARD_BED, service_date=yesterday).status_code == 201  # another day


def test_a_refused_key_is_not_used_up(registration: httpx.Client, client: TestClient) -> None:
    """Refused, nothing is stored under the key: after the blocking bed-day is reversed, the same request
    with the same key posts."""
    visit = inpatient(registration, client)
    first = post_charge(client, visit["id"], WARD_BED)
    headers = keyed()
    body = {"visit_id": visit["id"], "item_code": WARD_BED, "quantity": 1}
    assert_refused(client.post("/charges", json=body, headers=headers), "max-per-day-exceeded")

    reversal = client.post(
        f"/charges/{first['id']}/reversal",
        json={"reason": "错记床位", "operator": "cashier-7"},
        headers=keyed(),
    )
    assert reversal.status_code == 201, reversal.text
    again = client.post("/charges", json=body, headers=headers)

    assert again.status_code == 201, again.text
    assert account(client, visit["id"])["charges_total_fen"] == 3000


def test_an_item_included_in_another_is_refused_both_ways(
    registration: httpx.Client, client: TestClient
) -> None:
    visit = new_visit(registration, client)
    post_charge(client, visit["id"], DEBRIDEMENT)

    assert_refused(charge(client, visit["id"], DRESSING), "included-in-charged-item")

    other = new_visit(registration, client)
    post_charge(client, other["id"], DRESSING)
    problem = assert_refused(charge(client, other["id"], DEBRIDEMENT), "includes-charged-item")
    assert problem["other_item_code"] == DRESSING
    assert items_charged(client, visit["id"])[1:] == [DEBRIDEMENT]
    assert items_charged(client, other["id"])[1:] == [DRESSING]


def test_mutually_exclusive_items_share_no_day(registration: httpx.Client, client: TestClient) -> None:
    visit = inpatient(registration, client)
    post_charge(client, visit["id"], NURSING_I)
    yesterday = (hospital_date(utcnow()) - timedelta(days=1)).isoformat()

    assert_refused(charge(client, visit["id"], NURSING_II), "mutually-exclusive")
    assert charge(client, visit["id"], NURSING_II, service_date=yesterday).status_code == 201


def test_a_per_stay_maximum_counts_every_day(registration: httpx.Client, client: TestClient) -> None:
    visit = inpatient(registration, client)
    yesterday = (hospital_date(utcnow()) - timedelta(days=1)).isoformat()
    post_charge(client, visit["id"], BLOOD_GROUP, service_date=yesterday)

    problem = assert_refused(charge(client, visit["id"], BLOOD_GROUP), "max-per-stay-exceeded")
    assert problem["already_charged"] == 1


def test_an_item_only_for_some_visit_kinds(registration: httpx.Client, client: TestClient) -> None:
    visit = new_visit(registration, client)  # outpatient

    problem = assert_refused(charge(client, visit["id"], WARD_BED), "visit-kind-not-allowed")
    assert (problem["visit_kind"], problem["allowed_kinds"]) == ("outpatient", ["inpatient"])
    assert items_charged(client, visit["id"]) == ["110200001"]  # its consultation fee only


def test_a_quantity_over_the_daily_maximum_in_one_line_is_refused(
    registration: httpx.Client, client: TestClient
) -> None:
    visit = inpatient(registration, client)
    assert_refused(charge(client, visit["id"], WARD_BED, quantity=2), "max-per-day-exceeded")


def test_refused_feed_charges_are_listed_and_announced(
    registration: httpx.Client, client: TestClient, results_feed: FakeFeed
) -> None:
    visit = inpatient(registration, client)
    first = order_placed(results_feed, visit, BLOOD_GROUP)
    second = order_placed(results_feed, visit, BLOOD_GROUP)
    wait_until_consumed(client, "results", second["position"])

    [rejected] = rejections(client, visit["id"])
    assert (rejected["event_id"], rejected["reason"], rejected["source"]) == (
        second["id"],
        "max-per-stay-exceeded",
        "results",
    )
    assert rejected["order_id"] == second["data"]["order_id"]
    assert [c["order_id"] for c in account(client, visit["id"])["charges"]] == [first["data"]["order_id"]]
    [refused] = [e for e in billing_events(client, "charge.refused") if e["visit_id"] == visit["id"]]
    assert refused["data"]["source_event_id"] == second["id"]
    assert (refused["data"]["reason"], refused["data"]["order_id"]) == (
        "max-per-stay-exceeded",
        second["data"]["order_id"],
    )


def test_racing_bed_days_for_one_day_post_exactly_one(registration: httpx.Client, client: TestClient) -> None:
    visit = inpatient(registration, client)
    racers = 8
    barrier = Barrier(racers)

    def post(_: int) -> httpx.Response:
        barrier.wait()
        return charge(client, visit["id"], WARD_BED)

    with ThreadPoolExecutor(max_workers=racers) as pool:
        responses = list(pool.map(post, range(racers)))

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * (racers - 1), [r.text for r in responses if r.status_code >= 500]
    assert {r.json()["reason"] for r in responses if r.status_code == 409} == {"max-per-day-exceeded"}
    assert items_charged(client, visit["id"]) == [WARD_BED]


def upload_rules(client: TestClient, rows: list[str]) -> httpx.Response:
    content = "\n".join([RULES_HEADER, *rows]) + "\n"
    return client.post(
        "/charge-rule-versions", content=content.encode(), headers={"content-type": "text/csv"}
    )


def test_a_rules_upload_reports_every_bad_row_and_loads_nothing(client: TestClient) -> None:
    before = client.get("/charge-rules").json()
    response = upload_rules(
        client,
        [
            f"max_per_day,{INFUSION},,2,,",  # 2: fine
            "max_per_day,999999999,,1,,",  # 3: not in the catalogue
            f"max_per_day,{INFUSION},,,,",  # 4: no maximum
            f"split,{INFUSION},,1,,",  # 5: no such rule
            f"includes,{INFUSION},{INFUSION},,,",  # 6: paired with itself
            f"visit_kinds,{INFUSION},,,ward,",  # 7: no such visit kind
            f"max_per_day,{INFUSION},,3,,",  # 8: the same rule as line 2
        ],
    )

    assert response.status_code == 422
    problem = response.json()
    assert problem["type"].endswith("/charge-rules-invalid")
    assert sorted({e["line"] for e in problem["errors"]}) == [3, 4, 5, 6, 7, 8]
    assert client.get("/charge-rules").json() == before


def test_uploaded_rules_replace_the_rules_in_force(registration: httpx.Client, client: TestClient) -> None:
    seeded = client.get("/charge-rules").json()
    assert seeded["current"] is True and seeded["source"] == "file:charge_rules.csv"
    response = upload_rules(client, [f"max_per_day,{INFUSION},,1,,一日一组"])
    assert response.status_code == 201, response.text
    loaded = response.json()
    assert [(r["rule"], r["item_code"], r["max_quantity"]) for r in loaded["rules"]] == [
        ("max_per_day", INFUSION, 1)
    ]
    inpatient_visit = inpatient(registration, client)

    assert_refused(charge(client, inpatient_visit["id"], INFUSION, quantity=2), "max-per-day-exceeded")
    post_charge(client, inpatient_visit["id"], WARD_BED)
    assert charge(client, inpatient_visit["id"], WARD_BED).status_code == 201  # that rule is gone
    versions = client.get("/charge-rule-versions").json()
    assert [(v["id"], v["current"]) for v in versions] == [(loaded["id"], True), (seeded["id"], False)]
    old = client.get(f"/charge-rule-versions/{seeded['id']}").json()
    assert old["rules"] == seeded["rules"]
