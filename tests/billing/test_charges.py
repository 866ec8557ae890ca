"""Direct charges (`POST /charges`): catalogue prices, idempotency keys, and refusals that store nothing."""

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import httpx
from fastapi.testclient import TestClient

from kit.clock import hospital_date, utcnow
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
    register_unidentified,
)

GHOST_VISIT = "0f6c1d52-0000-4000-8000-000000000000"


def test_charge_is_priced_from_the_catalogue(registration: httpx.Client, client: TestClient) -> None:
    visit = new_visit(registration, client)
    body = {"visit_id": visit["id"], "item_code": INFUSION, "quantity": 3, "note": "第二组起按组计"}

    before = hospital_date(utcnow()).isoformat()
    response = client.post("/charges", json=body, headers=keyed())
    after = hospital_date(utcnow()).isoformat()

    assert response.status_code == 201, response.text
    charge = response.json()
    assert charge["visit_id"] == visit["id"] and charge["patient_id"] == visit["patient_id"]
    assert (charge["item_code"], charge["item_name"], charge["unit"]) == (INFUSION, "静脉输液(第一组)", "组")
    assert (charge["unit_price_fen"], charge["quantity"], charge["amount_fen"]) == (500, 3, 1500)
    assert (charge["origin"], charge["order_id"], charge["status"]) == ("manual", None, "unpaid")
    assert charge["service_date"] in {before, after}  # today, hospital time
    assert account(client, visit["id"])["charges_total_fen"] == OUTPATIENT_FEE_FEN + 1500
    posted = billing_events(client, "charge.posted")[-1]
    assert (posted["visit_id"], posted["patient_id"]) == (visit["id"], visit["patient_id"])
    assert posted["data"] == {
        "charge_id": charge["id"],
        "item_code": INFUSION,
        "quantity": 3,
        "amount_fen": 1500,
        "order_id": None,
        "origin": "manual",
    }


def test_replay_with_the_same_key_returns_the_first_answer(
    registration: httpx.Client, client: TestClient
) -> None:
    visit = new_visit(registration, client)
    body = {"visit_id": visit["id"], "item_code": INFUSION, "quantity": 1}
    headers = keyed()

    first = client.post("/charges", json=body, headers=headers)
    replay = client.post("/charges", json=body, headers=headers)

    assert (first.status_code, replay.status_code) == (201, 201)
    assert replay.json() == first.json()
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert len(account(client, visit["id"])["charges"]) == 2  # the fee and one infusion


def test_same_key_with_another_body_is_422_and_missing_key_is_400(
    registration: httpx.Client, client: TestClient
) -> None:
    visit = new_visit(registration, client)
    headers = keyed()
    body = {"visit_id": visit["id"], "item_code": INFUSION, "quantity": 1}
    assert client.post("/charges", json=body, headers=headers).status_code == 201

    reused = client.post("/charges", json=body | {"quantity": 2}, headers=headers)
    missing = client.post("/charges", json=body)

    assert reused.status_code == 422 and reused.json()["type"].endswith("/idempotency-key-reused")
    assert missing.status_code == 400 and missing.json()["type"].endswith("/idempotency-key-missing")
    assert missing.headers["content-type"] == "application/problem+json"
    assert len(account(client, visit["id"])["charges"]) == 2


def test_unknown_item_is_422_and_stores_nothing(registration: httpx.Client, client: TestClient) -> None:
    visit = new_visit(registration, client)
    before = account(client, visit["id"])
    headers = keyed()

    response = client.post(
        "/charges", json={"visit_id": visit["id"], "item_code": "123456789", "quantity": 1}, headers=headers
    )

    assert response.status_code == 422
    assert response.json()["type"].endswith("/unknown-item")
    assert account(client, visit["id"]) == before
    # Nothing was stored under the key either: it still works for a proper request.
    good = {"visit_id": visit["id"], "item_code": INFUSION, "quantity": 1}
    assert client.post("/charges", json=good, headers=headers).status_code == 201


def test_unknown_visit_is_404_and_stores_nothing(client: TestClient) -> None:
    headers = keyed()
    body = {"visit_id": GHOST_VISIT, "item_code": INFUSION, "quantity": 1}

    response = client.post("/charges", json=body, headers=headers)

    assert response.status_code == 404
    assert response.json()["type"].endswith("/visit-not-found")
    assert client.get(f"/visits/{GHOST_VISIT}/account").status_code == 404
    assert billing_events(client) == []
    assert client.post("/charges", json=body, headers=headers).status_code == 404  # not a stored answer


def test_charge_for_a_visit_billing_has_not_read_yet_asks_registration(
    registration: httpx.Client, client: TestClient
) -> None:
    consumer(client, "registration").stop()
    patient = register_unidentified(registration)
    visit = open_visit(registration, patient["id"], kind="inpatient", department="surgery")

    charge = post_charge(client, visit["id"], "110900001")

    assert charge["patient_id"] == patient["id"] and charge["amount_fen"] == 3000
    assert account(client, visit["id"])["kind"] == "inpatient"


def test_bad_bodies_are_refused(registration: httpx.Client, client: TestClient) -> None:
    visit = new_visit(registration, client)
    good = {"visit_id": visit["id"], "item_code": INFUSION, "quantity": 1}
    tomorrow = (hospital_date(utcnow()) + timedelta(days=1)).isoformat()
    yesterday = (hospital_date(utcnow()) - timedelta(days=1)).isoformat()
    bad_bodies = [
        good | {"quantity": 0},
        good | {"quantity": 1000},
        good | {"quantity": 1.5},
        good | {"quantity": "2"},
        good | {"unit_price_fen": 1},  # clients never name a price
        good | {"note": "x" * 201},
        good | {"service_date": tomorrow},  # never charge ahead
        good | {"service_date": yesterday},  # nor before the visit opened (today)
        good | {"service_date": "0001-01-01"},
        good | {"visit_id": "../patients"},
    ]
    for body in bad_bodies:
        response = client.post("/charges", json=body, headers=keyed())
        assert response.status_code == 422, body
        assert response.headers["content-type"] == "application/problem+json"
    assert len(account(client, visit["id"])["charges"]) == 1


def test_settled_account_takes_no_more_charges(registration: httpx.Client, client: TestClient) -> None:
    visit = new_visit(registration, client, payment_mode="settle_later")
    settled = client.post(f"/visits/{visit['id']}/settlement", json={"method": "cash"}, headers=keyed())
    assert settled.status_code == 201, settled.text

    response = client.post(
        "/charges", json={"visit_id": visit["id"], "item_code": INFUSION, "quantity": 1}, headers=keyed()
    )

    assert response.status_code == 409
    assert response.json()["type"].endswith("/account-settled")
    assert len(account(client, visit["id"])["charges"]) == 1


def test_concurrent_twins_with_one_key_charge_once(registration: httpx.Client, client: TestClient) -> None:
    visit = new_visit(registration, client)
    body = {"visit_id": visit["id"], "item_code": INFUSION, "quantity": 1}
    headers = keyed()

    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(pool.map(lambda _: client.post("/charges", json=body, headers=headers), range(8)))

    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {201, 409} and 201 in statuses
    assert len({r.json()["id"] for r in responses if r.status_code == 201}) == 1
    assert len(account(client, visit["id"])["charges"]) == 2
