"""The catalogue and the charging rules through the gateway, with the real processes: the published
price list for patients, uploads only with `catalogue:write` and refused row by row, every charging
rule's refusal as the client sees it (409 problem+json with its reason; a feed's on
`/v1/rejected-charges`; `charge.refused` at the hub), reversals, and racing bed-days posting once."""

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from threading import Barrier
from typing import Any

import httpx

from kit.clock import hospital_date, utcnow
from services.billing.config import CATALOGUE_PATH
from tests.e2e.clients import (
    Gateway,
    assert_problem,
    charges_of_visit,
    eventually,
    ok,
    patient_session,
    register_patient,
)

WARD_BED = "110900001"  # 普通病房床位费, 3000 fen: one a day, inpatients only
DEBRIDEMENT, DRESSING = "311201001", "120600001"  # 清创缝合 includes that day's 换药
NURSING_I, NURSING_II = "120100002", "120100003"
BLOOD_GROUP = "260000002"  # 血型鉴定: once a stay
HEAD_CT = "210300001"  # 头颅CT平扫: orderable at results, one a day
RACERS = 10


def keyed() -> dict[str, str]:
    return {"Idempotency-Key": str(uuid.uuid4())}


def new_visit(gateway: Gateway, kind: str = "inpatient") -> dict[str, Any]:
    patient = ok(gateway.nurse.post("/v1/patients", json={"unidentified": True, "alias": "女，约60岁"}), 201)
    body = {"patient_id": patient["id"], "kind": kind, "department": "surgery"}
    return ok(gateway.nurse.post("/v1/visits", json=body), 201)  # type: ignore[no-any-return]


def charge(gateway: Gateway, visit_id: str, item_code: str, **extra: Any) -> httpx.Response:
    body = {"visit_id": visit_id, "item_code": item_code, "quantity": 1} | extra
    return gateway.cashier.post("/v1/charges", json=body, headers=keyed())


def refused(response: httpx.Response, reason: str) -> dict[str, Any]:
    problem = assert_problem(response, 409)
    assert problem["type"].endswith("/charge-refused") and problem["reason"] == reason
    return problem


def hub_refusals(gateway: Gateway, visit_id: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    after = 0
    while True:
        params: dict[str, str | int] = {"type": "charge.refused", "after": after, "limit": 100}
        page = ok(gateway.his.get("/v1/events", params=params))
        if not page["events"]:
            return found
        found += [e for e in page["events"] if e["visit_id"] == visit_id]
        after = page["next_after"]


def test_the_price_list_is_published_and_uploads_need_catalogue_write(gateway: Gateway) -> None:
    patient = register_patient(gateway.nurse)
    as_patient = {"x-patient-token": patient_session(gateway, patient)["token"]}  # a patient's app
    published = ok(gateway.app.get("/v1/catalogue", headers=as_patient))
    assert {"national_code", "insurance_class", "effective_from"} <= published[0].keys()
    assert ok(gateway.app.get(f"/v1/catalogue/{WARD_BED}", headers=as_patient))["price_fen"] == 3000

    seed = CATALOGUE_PATH.read_bytes()
    as_csv = {"content-type": "text/csv"}
    assert_problem(gateway.cashier.post("/v1/catalogue-versions", content=seed, headers=as_csv), 403)
    bad = seed + "120400099,120400099,坏行,Bad row,次,treatment,甲,list,0,,,2024-01-01,\n".encode()
    problem = assert_problem(gateway.admin.post("/v1/catalogue-versions", content=bad, headers=as_csv), 422)
    assert [e["line"] for e in problem["errors"]] == [len(seed.decode().splitlines()) + 1]

    loaded = ok(gateway.admin.post("/v1/catalogue-versions", content=seed, headers=as_csv), 201)
    versions = ok(gateway.cashier.get("/v1/catalogue-versions"))
    assert versions[0]["id"] == loaded["id"] and versions[0]["current"] is True
    detail = ok(gateway.cashier.get(f"/v1/catalogue-versions/{loaded['id']}"))
    assert len(detail["entries"]) == loaded["entry_count"]
    rules = ok(gateway.cashier.get("/v1/charge-rules"))
    assert {r["rule"] for r in rules["rules"]} == {
        "includes", "excludes", "max_per_day", "max_per_stay", "visit_kinds"
    }  # fmt: skip


def test_every_charging_rule_refuses_visibly(gateway: Gateway) -> None:
    today = hospital_date(utcnow())
    inpatient = new_visit(gateway)
    assert charge(gateway, inpatient["id"], WARD_BED).status_code == 201

    bed_again = refused(charge(gateway, inpatient["id"], WARD_BED), "max-per-day-exceeded")
    assert bed_again["service_date"] == today.isoformat()
    assert charge(gateway, inpatient["id"], DEBRIDEMENT).status_code == 201
    refused(charge(gateway, inpatient["id"], DRESSING), "included-in-charged-item")
    assert charge(gateway, inpatient["id"], NURSING_I).status_code == 201
    refused(charge(gateway, inpatient["id"], NURSING_II), "mutually-exclusive")
    assert charge(gateway, inpatient["id"], BLOOD_GROUP).status_code == 201
    refused(charge(gateway, inpatient["id"], BLOOD_GROUP), "max-per-stay-exceeded")
    outpatient = new_visit(gateway, kind="outpatient")
    refused(charge(gateway, outpatient["id"], WARD_BED), "visit-kind-not-allowed")

    items = [c["item_code"] for c in charges_of_visit(gateway, inpatient["id"], at_least=4)]
    assert sorted(items) == sorted([WARD_BED, DEBRIDEMENT, NURSING_I, BLOOD_GROUP])
    expected = [
        "max-per-day-exceeded", "included-in-charged-item", "mutually-exclusive", "max-per-stay-exceeded"
    ]  # fmt: skip
    eventually(
        lambda: [e["data"]["reason"] for e in hub_refusals(gateway, inpatient["id"])] == expected,
        what="each refusal as charge.refused at the hub",
    )


def test_a_refused_order_is_on_the_rejected_charges(gateway: Gateway) -> None:
    visit = new_visit(gateway)
    first = ok(gateway.doctor.post("/v1/orders", json={"visit_id": visit["id"], "test_code": HEAD_CT}), 201)
    second = ok(gateway.doctor.post("/v1/orders", json={"visit_id": visit["id"], "test_code": HEAD_CT}), 201)

    def rejected() -> list[dict[str, Any]] | None:
        found = ok(gateway.cashier.get("/v1/rejected-charges", params={"visit_id": visit["id"]}))
        return found or None

    [rejection] = eventually(rejected, what="the second order on /v1/rejected-charges")
    assert (rejection["order_id"], rejection["reason"], rejection["source"]) == (
        second["id"],
        "max-per-day-exceeded",
        "results",
    )
    orders = [c["order_id"] for c in charges_of_visit(gateway, visit["id"], at_least=1) if c["order_id"]]
    assert orders == [first["id"]]


def test_a_reversed_bed_day_can_be_posted_again(gateway: Gateway) -> None:
    visit = new_visit(gateway)
    yesterday = (hospital_date(utcnow()) - timedelta(days=1)).isoformat()
    # Registration opened the visit today: a back-dated bed-day is refused as out of the visit.
    assert_problem(charge(gateway, visit["id"], WARD_BED, service_date=yesterday), 422)
    bed = ok(charge(gateway, visit["id"], WARD_BED), 201)
    path = f"/v1/charges/{bed['id']}/reversal"
    body = {"reason": "床位费重复录入", "operator": "护士长 李四"}

    line = ok(gateway.cashier.post(path, json=body, headers=keyed()), 201)
    assert (line["amount_fen"], line["reversal_of"], line["operator"]) == (-3000, bed["id"], body["operator"])
    assert_problem(gateway.cashier.post(path, json=body, headers=keyed()), 409)
    assert_problem(gateway.doctor.post(path, json=body, headers=keyed()), 403)
    ok(charge(gateway, visit["id"], WARD_BED), 201)
    total = ok(gateway.cashier.get(f"/v1/visits/{visit['id']}/account"))["charges_total_fen"]
    assert total == 3000


def test_racing_bed_days_through_the_gateway_post_exactly_one(gateway: Gateway) -> None:
    visit = new_visit(gateway)
    barrier = Barrier(RACERS)

    def post(_: int) -> httpx.Response:
        barrier.wait()
        return charge(gateway, visit["id"], WARD_BED)

    with ThreadPoolExecutor(max_workers=RACERS) as pool:
        responses = list(pool.map(post, range(RACERS)))

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * (RACERS - 1), [r.text for r in responses]
    beds = [c for c in charges_of_visit(gateway, visit["id"], at_least=1) if c["item_code"] == WARD_BED]
    assert len(beds) == 1
