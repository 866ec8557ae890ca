"""The patient index through the gateway: search by each key, masking per client kind, the identity
number's cross-checks, insurance schemes on `visit.opened`, and a merge re-pointing every service."""

import random
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from patientflow.supervisor import System
from tests.e2e.clients import (
    Gateway,
    assert_problem,
    emergency_visit,
    eventually,
    ok,
    random_id_number,
    register_patient,
    unique_department,
)

CBC = "250101015"  # 血细胞分析
REPORT = {"status": "final", "conclusion": "正常", "observations": []}


def unique_surname() -> str:
    """A name prefix no other test's patients share (tests share the system)."""
    return "欧阳" + "".join(random.choice("明华建国志强秀英") for _ in range(6)) + uuid.uuid4().hex[:4]


def hits(client: httpx.Client, **params: str) -> list[dict[str, Any]]:
    return list(ok(client.get("/v1/patients", params=params))["patients"])


def log_text(system: System) -> str:
    return "\n".join(p.read_text(errors="replace") for p in Path(system.data_dir / "logs").glob("*"))


def test_staff_find_a_patient_by_each_key(gateway: Gateway) -> None:
    surname = unique_surname()
    patient = register_patient(gateway.his, surname + "甲")
    namesake = register_patient(gateway.his, surname + "乙")
    assert len(patient["card_number"]) == 12

    assert [h["id"] for h in hits(gateway.his, id_number=patient["id_number"])] == [patient["id"]]
    assert [h["id"] for h in hits(gateway.his, id_number=patient["id_number"].lower())] == [patient["id"]]
    assert [h["id"] for h in hits(gateway.his, card_number=patient["card_number"])] == [patient["id"]]
    assert [h["id"] for h in hits(gateway.his, phone=patient["phone"])] == [patient["id"]]
    by_prefix = hits(gateway.his, name=surname)
    assert sorted(h["id"] for h in by_prefix) == sorted([patient["id"], namesake["id"]])
    assert [h["id"] for h in hits(gateway.his, name=surname + "乙")] == [namesake["id"]]
    # paged within the gateway's cap
    first = ok(gateway.his.get("/v1/patients", params={"name": surname, "limit": 1}))
    second = ok(
        gateway.his.get("/v1/patients", params={"name": surname, "limit": 1, "after": first["next_after"]})
    )
    assert {first["patients"][0]["id"], second["patients"][0]["id"]} == {patient["id"], namesake["id"]}
    assert second["next_after"] is None
    assert_problem(gateway.his.get("/v1/patients", params={"name": surname, "limit": 101}), 400)


@pytest.mark.parametrize(
    ("client", "name_in_full", "phone_in_full"),
    [
        ("his", True, True),
        ("admin", True, True),
        ("nurse", True, False),
        ("doctor", True, False),
        ("cashier", True, False),
    ],
)
def test_answers_are_masked_by_client_kind(
    gateway: Gateway, client: str, name_in_full: bool, phone_in_full: bool
) -> None:
    patient = register_patient(gateway.his, unique_surname())
    response = gateway.clients[client].get("/v1/patients", params={"card_number": patient["card_number"]})
    [hit] = ok(response)["patients"]
    assert patient["id_number"] not in response.text
    assert hit["id_number_masked"] == patient["id_number"][:6] + "********" + patient["id_number"][-4:]
    assert (hit["name"] == patient["name"]) is name_in_full
    assert (hit["phone"] == patient["phone"]) is phone_in_full
    if not phone_in_full:
        assert hit["phone"] == patient["phone"][:3] + "****" + patient["phone"][-4:]
        assert patient["phone"] not in response.text
    assert hit["masked"] == ([] if phone_in_full else ["phone"])


@pytest.mark.parametrize("client", ["lab", "board", "kiosk", "app"])
def test_clients_without_a_desk_cannot_search(gateway: Gateway, client: str) -> None:
    patient = register_patient(gateway.his, unique_surname())
    response = gateway.clients[client].get("/v1/patients", params={"id_number": patient["id_number"]})
    assert_problem(response, response.status_code)
    assert response.status_code in (401, 403) and patient["id_number"] not in response.text


@pytest.mark.parametrize(
    ("params", "slug"),
    [
        ({"card_number": "12345a789"}, "invalid-parameter"),
        ({"card_number": "' OR 1=1 --"}, "invalid-parameter"),
        ({"name": "张" * 3414}, "invalid-parameter"),  # 10 kB of UTF-8
        ({"phone": "phone"}, "invalid-parameter"),
        ({}, "invalid-search"),
    ],
)
def test_bad_searches_are_400_problems(gateway: Gateway, params: dict[str, str], slug: str) -> None:
    body = assert_problem(gateway.his.get("/v1/patients", params=params), 400)
    assert body["type"].endswith(f"/{slug}")


@pytest.mark.parametrize(
    "bad",
    [
        {"card_number": "A1234567"},
        {"card_number": "１２３４５６７８"},
        {"name": "张" * 3414},  # 10 kB of UTF-8
        {"wrong_check_character": True},
    ],
    ids=["letter-in-card", "full-width-card", "10kB-name", "wrong-check-character"],
)
def test_bad_registrations_are_422_problems_that_do_not_echo_the_identity_number(
    gateway: Gateway, bad: dict[str, Any]
) -> None:
    valid = random_id_number()
    wrong = bad.pop("wrong_check_character", False)
    id_number = valid[:17] + ("0" if valid[17] != "0" else "1") if wrong else valid
    body = {"id_number": id_number, "name": unique_surname()} | bad
    response = gateway.his.post("/v1/patients", json=body)
    assert_problem(response, 422)
    assert id_number not in response.text and id_number[6:14] not in response.text
    assert hits(gateway.his, id_number=valid) == []  # nothing stored


def test_a_wrong_check_character_is_400_and_never_echoed_or_logged(system: System, gateway: Gateway) -> None:
    good = random_id_number()
    wrong = good[:17] + ("0" if good[17] != "0" else "1")
    response = gateway.his.get("/v1/patients", params={"id_number": wrong})
    body = assert_problem(response, 400)
    assert body["type"].endswith("/invalid-id-number") and body["field"] == "id_number"
    assert wrong not in response.text and wrong[:14] not in response.text
    # and a search that finds someone leaves none of its keys in any process's log either
    patient = register_patient(gateway.his, unique_surname())
    keys = {"id_number": patient["id_number"], "phone": patient["phone"], "name": patient["name"]}
    found = gateway.nurse.get("/v1/patients", params=keys)
    assert [h["id"] for h in ok(found)["patients"]] == [patient["id"]]
    request_ids = (response.headers["x-request-id"], found.headers["x-request-id"])
    eventually(lambda: all(r in log_text(system) for r in request_ids), what="both requests in the logs")
    logs = log_text(system)
    assert wrong not in logs and wrong[6:14] not in logs
    assert patient["id_number"] not in logs and patient["phone"] not in logs and patient["name"] not in logs


@pytest.mark.parametrize(
    ("given", "field"),
    [({"birth_date": "1901-01-01"}, "birth_date"), ({"sex": "wrong"}, "sex")],
)
def test_a_birth_date_or_sex_the_identity_number_contradicts_stores_nothing(
    gateway: Gateway, given: dict[str, str], field: str
) -> None:
    id_number = random_id_number()
    if given.get("sex") == "wrong":
        given = {"sex": "female" if int(id_number[16]) % 2 else "male"}
    body = {"id_number": id_number, "name": unique_surname()} | given
    response = gateway.his.post("/v1/patients", json=body)
    problem = assert_problem(response, 422)
    assert problem["field"] == field and id_number not in response.text
    assert hits(gateway.his, id_number=id_number) == []


def test_the_insurance_scheme_rides_on_visit_opened(gateway: Gateway) -> None:
    body = {"id_number": random_id_number(), "name": unique_surname(), "insurance_scheme": "employee"}
    patient = ok(gateway.his.post("/v1/patients", json=body), 201)
    visit = {"patient_id": patient["id"], "kind": "outpatient", "department": unique_department()}
    first = ok(gateway.his.post("/v1/visits", json=visit), 201)
    changed = gateway.his.patch(f"/v1/patients/{patient['id']}", json={"insurance_scheme": "urban_resident"})
    assert ok(changed)["insurance_scheme"] == "urban_resident"
    second = ok(gateway.his.post("/v1/visits", json=visit), 201)

    def schemes() -> dict[str, str] | None:
        found: dict[str, str] = {}
        after = 0
        while True:
            params: dict[str, str | int] = {"type": "visit.opened", "after": after, "limit": 100}
            page = ok(gateway.his.get("/v1/events", params=params))
            found |= {
                e["visit_id"]: e["data"]["insurance_scheme"]
                for e in page["events"]
                if e["patient_id"] == patient["id"]
            }
            if page["next_after"] == after:
                return found if len(found) == 2 else None
            after = page["next_after"]

    assert eventually(schemes, what="both visits in the hub's log") == {
        first["id"]: "employee",
        second["id"]: "urban_resident",
    }


def views_of(gateway: Gateway, ids: dict[str, str]) -> dict[str, Any]:
    """The patient every service names for the merged visit's records, as staff read them."""
    visit_id = ids["visit"]
    account = gateway.cashier.get(f"/v1/visits/{visit_id}/account")
    return {
        "visit": ok(gateway.his.get(f"/v1/visits/{visit_id}"))["patient_id"],
        "assessments": {a["patient_id"] for a in ok(gateway.nurse.get(f"/v1/visits/{visit_id}/assessments"))},
        "tickets": {t["patient_id"] for t in ok(gateway.nurse.get(f"/v1/visits/{visit_id}/tickets"))},
        "ticket": ok(gateway.nurse.get(f"/v1/tickets/{ids['ticket']}"))["patient_id"],
        "orders": {o["patient_id"] for o in ok(gateway.doctor.get(f"/v1/visits/{visit_id}/orders"))},
        "order": ok(gateway.doctor.get(f"/v1/orders/{ids['order']}"))["patient_id"],
        "reports": {r["patient_id"] for r in ok(gateway.doctor.get(f"/v1/visits/{visit_id}/reports"))},
        "report": ok(gateway.doctor.get(f"/v1/reports/{ids['report']}"))["patient_id"],
        "account": account.json()["patient_id"] if account.status_code == 200 else None,
        "journey": ok(gateway.his.get(f"/v1/visits/{visit_id}/journey"))["patient_id"],
    }


def test_a_merge_repoints_every_service_and_a_restart_replays_nothing(
    system: System, gateway: Gateway
) -> None:
    department = unique_department()
    unknown = ok(gateway.nurse.post("/v1/patients", json={"unidentified": True, "alias": "女，约30岁"}), 201)
    visit = emergency_visit(gateway.nurse, unknown["id"], department=department)
    ok(gateway.nurse.post("/v1/assessments", json={"visit_id": visit["id"], "level": "II"}), 201)
    ticket = ok(gateway.nurse.post(f"/v1/queues/{department}/tickets", json={"visit_id": visit["id"]}), 201)
    order = ok(gateway.doctor.post("/v1/orders", json={"visit_id": visit["id"], "test_code": CBC}), 201)
    report = ok(gateway.lab.post(f"/v1/orders/{order['id']}/reports", json=REPORT), 201)
    ids = {"visit": visit["id"], "ticket": ticket["id"], "order": order["id"], "report": report["id"]}
    before = eventually(
        lambda: (v := views_of(gateway, ids))["account"] and v, what="billing to open the account"
    )
    assert before["orders"] == {unknown["id"]} and before["assessments"] == {unknown["id"]}

    known = register_patient(gateway.his, unique_surname())
    merged = gateway.his.post(f"/v1/patients/{known['id']}/merge", json={"source_patient_id": unknown["id"]})
    assert ok(merged)["moved_visit_ids"] == [visit["id"]]

    surviving = {
        "visit": known["id"],
        "assessments": {known["id"]},
        "tickets": {known["id"]},
        "ticket": known["id"],
        "orders": {known["id"]},
        "order": known["id"],
        "reports": {known["id"]},
        "report": known["id"],
        "account": known["id"],
        "journey": known["id"],
    }
    eventually(lambda: views_of(gateway, ids) == surviving, what="every service to re-point the visit")
    # new work on the visit is the survivor's too: the merged record's id finds nothing new
    ok(gateway.nurse.post("/v1/assessments", json={"visit_id": visit["id"], "level": "III"}), 201)
    later = ok(gateway.doctor.post("/v1/orders", json={"visit_id": visit["id"], "test_code": CBC}), 201)
    later_report = ok(gateway.lab.post(f"/v1/orders/{later['id']}/reports", json=REPORT), 201)
    assert later["patient_id"] == later_report["patient_id"] == known["id"]
    assert views_of(gateway, ids) == surviving
    reports_of = {
        who: [r["id"] for r in ok(gateway.doctor.get(f"/v1/patients/{who}/reports"))]
        for who in (known["id"], unknown["id"])
    }
    assert sorted(reports_of[known["id"]]) == sorted([report["id"], later_report["id"]])
    assert reports_of[unknown["id"]] == []
    assert ok(gateway.his.get(f"/v1/patients/{unknown['id']}/visits")) == []
    assert [v["id"] for v in ok(gateway.his.get(f"/v1/patients/{known['id']}/visits"))] == [visit["id"]]
    assert ok(gateway.his.get(f"/v1/patients/{unknown['id']}"))["merged_into_id"] == known["id"]

    # The feeds read again from the stored cursors after a restart: the merge is not applied twice and
    # nothing moves back.
    for service in ("triage", "results"):
        system.stop_service(service)
        system.start_service(service)
    assert views_of(gateway, ids) == surviving
    assert ok(gateway.doctor.get(f"/v1/patients/{unknown['id']}/reports")) == []
