"""The patient index: medical cards, insurance schemes, search by each key with masking per client kind,
and the birth date and sex cross-checked against the identity number."""

import logging
import uuid
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from fastapi.testclient import TestClient
from sqlalchemy import text

from kit.database import Database
from kit.logging import mask_phone
from kit.migrations import alembic_config, upgrade
from kit.testing import database_url_under_test, feed_headers, internal_headers
from services.registration.app import create_app
from services.registration.patient_index import SEARCH_VIEWS
from tests.registration.factories import VALID_ID_NUMBERS, create_patient, create_visit

MIGRATIONS = Path(create_app.__code__.co_filename).parent / "migrations"
FEMALE_1949 = VALID_ID_NUMBERS[0]  # 11010519491231002X: born 1949-12-31, female
MALE_1990 = VALID_ID_NUMBERS[2]  # 110101199003074477: born 1990-03-07, male


def search(client: TestClient, *, kind: str | None = "his", **params: Any) -> Any:
    """GET /patients as a gateway client of `kind` would call it."""
    headers = internal_headers(f"{kind}-dev", audience="registration", kind=kind)
    return client.get("/patients", params=params, headers=headers)


def found_ids(client: TestClient, **params: Any) -> list[str]:
    response = search(client, **params)
    assert response.status_code == 200, response.text
    return [hit["id"] for hit in response.json()["patients"]]


def patient_count(client: TestClient) -> int:
    events = client.get("/events", headers=feed_headers("registration"), params={"limit": 500})
    return sum(1 for e in events.json()["events"] if e["type"] == "patient.registered")


# --- medical cards and insurance schemes ---------------------------------------------------------


def test_every_patient_gets_a_card_issued_unless_they_bring_one(client: TestClient) -> None:
    issued = create_patient(client)
    unknown = create_patient(client, unidentified=True, id_number=None, name=None)
    brought = create_patient(client, id_number=MALE_1990, name="李四", card_number="0031234567")
    for patient in (issued, unknown):
        assert len(patient["card_number"]) == 12 and patient["card_number"].isdigit()
    assert issued["card_number"] != unknown["card_number"]
    assert brought["card_number"] == "0031234567"
    assert client.get(f"/patients/{brought['id']}").json()["card_number"] == "0031234567"


def test_a_card_already_on_file_is_409_naming_its_patient_and_stores_nothing(client: TestClient) -> None:
    holder = create_patient(client, card_number="123456789")
    before = patient_count(client)
    response = client.post(
        "/patients", json={"id_number": MALE_1990, "name": "李四", "card_number": "123456789"}
    )
    assert response.status_code == 409, response.text
    assert response.json()["type"].endswith("/duplicate-card-number")
    assert response.json()["existing_patient_id"] == holder["id"]
    assert patient_count(client) == before
    assert found_ids(client, id_number=MALE_1990) == []


@pytest.mark.parametrize("card_number", ["12345a789", "１２３４５６７８", "12345", "1" * 21, "123 456"])
def test_a_card_number_is_6_to_20_ascii_digits(client: TestClient, card_number: str) -> None:
    response = client.post(
        "/patients", json={"id_number": MALE_1990, "name": "李四", "card_number": card_number}
    )
    assert response.status_code == 422 and MALE_1990 not in response.text


def test_the_insurance_scheme_is_recorded_changed_and_carried_by_visit_opened(client: TestClient) -> None:
    patient = create_patient(client)
    assert patient["insurance_scheme"] == "self_pay"
    first = create_visit(client, patient["id"])
    changed = client.patch(f"/patients/{patient['id']}", json={"insurance_scheme": "rural_cooperative"})
    assert changed.status_code == 200, changed.text
    assert changed.json()["insurance_scheme"] == "rural_cooperative"
    second = create_visit(client, patient["id"])
    events = client.get("/events", headers=feed_headers("registration"), params={"type": "visit.opened"})
    schemes = {e["visit_id"]: e["data"]["insurance_scheme"] for e in events.json()["events"]}
    assert schemes == {first["id"]: "self_pay", second["id"]: "rural_cooperative"}
    employee = create_patient(client, id_number=MALE_1990, name="李四", insurance_scheme="employee")
    assert employee["insurance_scheme"] == "employee"
    refused = client.post(
        "/patients", json={"id_number": VALID_ID_NUMBERS[3], "name": "王五", "insurance_scheme": "vip"}
    )
    assert refused.status_code == 422


def test_a_change_of_scheme_or_card_is_announced_without_the_card_number(client: TestClient) -> None:
    patient = create_patient(client)
    path = f"/patients/{patient['id']}"
    assert client.patch(path, json={"insurance_scheme": "self_pay"}).status_code == 200  # no change
    assert (
        client.patch(path, json={"insurance_scheme": "employee", "card_number": "88001234"}).status_code
        == 200
    )
    assert client.patch(path, json={"card_number": "88001234"}).status_code == 200  # the same card again
    feed = client.get("/events", headers=feed_headers("registration"), params={"type": "patient.updated"})
    [updated] = feed.json()["events"]
    assert updated["patient_id"] == patient["id"]
    assert updated["data"] == {"changed": ["insurance_scheme", "card_number"], "insurance_scheme": "employee"}
    assert "88001234" not in feed.text


def test_another_card_may_be_recorded_but_never_one_on_file(client: TestClient) -> None:
    patient = create_patient(client)
    other = create_patient(client, id_number=MALE_1990, name="李四")
    recorded = client.patch(f"/patients/{patient['id']}", json={"card_number": "88880001"})
    assert recorded.status_code == 200 and recorded.json()["card_number"] == "88880001"
    assert found_ids(client, card_number="88880001") == [patient["id"]]
    taken = client.patch(f"/patients/{other['id']}", json={"card_number": "88880001"})
    assert taken.status_code == 409 and taken.json()["existing_patient_id"] == patient["id"]
    assert client.get(f"/patients/{other['id']}").json()["card_number"] == other["card_number"]
    assert client.patch(f"/patients/{patient['id']}", json={}).status_code == 422
    assert client.patch(f"/patients/{uuid.uuid4()}", json={"insurance_scheme": "employee"}).status_code == 404


def test_a_merged_record_changes_no_more(client: TestClient) -> None:
    unknown = create_patient(client, unidentified=True, id_number=None, name=None)
    known = create_patient(client)
    merged = client.post(f"/patients/{known['id']}/merge", json={"source_patient_id": unknown["id"]})
    assert merged.status_code == 200, merged.text
    response = client.patch(f"/patients/{unknown['id']}", json={"insurance_scheme": "employee"})
    assert response.status_code == 409 and response.json()["merged_into_id"] == known["id"]


# --- the birth date and sex cross-checked --------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "field", "slug"),
    [
        ({"birth_date": "1949-12-30"}, "birth_date", "birth-date-mismatch"),
        ({"sex": "male"}, "sex", "sex-mismatch"),
        ({"birth_date": "1949-12-31", "sex": "male"}, "sex", "sex-mismatch"),
    ],
)
def test_a_birth_date_or_sex_the_identity_number_contradicts_is_refused_naming_the_field(
    client: TestClient, given: dict[str, str], field: str, slug: str
) -> None:
    before = patient_count(client)
    response = client.post("/patients", json={"id_number": FEMALE_1949, "name": "张三"} | given)
    assert response.status_code == 422, response.text
    body = response.json()
    assert response.headers["content-type"] == "application/problem+json"
    assert body["type"].endswith(f"/{slug}") and body["field"] == field
    assert FEMALE_1949 not in response.text
    assert patient_count(client) == before
    assert found_ids(client, id_number=FEMALE_1949) == []


def test_a_birth_date_and_sex_that_agree_are_accepted(client: TestClient) -> None:
    patient = create_patient(client, id_number=FEMALE_1949, birth_date="1949-12-31", sex="female")
    assert (patient["birth_date"], patient["sex"]) == ("1949-12-31", "female")


def test_an_unidentified_patients_estimates_are_kept_unchecked(client: TestClient) -> None:
    unknown = create_patient(
        client, unidentified=True, id_number=None, name=None, sex="male", birth_date="1985-01-01"
    )
    assert (unknown["sex"], unknown["birth_date"]) == ("male", "1985-01-01")


# --- search ---------------------------------------------------------------------------------------


def test_search_finds_by_identity_number_card_phone_and_name(client: TestClient) -> None:
    zhang = create_patient(client, id_number=FEMALE_1949, name="张三", phone="13912345678")
    zhangfeng = create_patient(client, id_number=MALE_1990, name="张三丰", phone="13800000001")
    li = create_patient(client, id_number=VALID_ID_NUMBERS[3], name="李四", phone="13912345678")

    assert found_ids(client, id_number=FEMALE_1949) == [zhang["id"]]
    assert found_ids(client, id_number=" 11010519491231002x ") == [zhang["id"]]  # normalised
    assert found_ids(client, card_number=li["card_number"]) == [li["id"]]
    assert sorted(found_ids(client, phone="13912345678")) == sorted([zhang["id"], li["id"]])
    assert sorted(found_ids(client, name="张")) == sorted([zhang["id"], zhangfeng["id"]])  # by prefix
    assert sorted(found_ids(client, name="张三")) == sorted([zhang["id"], zhangfeng["id"]])
    assert found_ids(client, name="张三丰") == [zhangfeng["id"]]
    assert found_ids(client, name="三") == []  # a prefix, not a substring
    assert found_ids(client, name="张", phone="13912345678") == [zhang["id"]]  # every key must match
    assert found_ids(client, phone="13912345670") == []
    assert found_ids(client, card_number="999999999999") == []


def test_wildcards_in_a_name_are_taken_literally(client: TestClient) -> None:
    create_patient(client, name="张三")
    odd = create_patient(client, id_number=MALE_1990, name="a%_\\b")
    assert found_ids(client, name="%") == [] and found_ids(client, name="_三") == []
    assert found_ids(client, name="\\") == [] and found_ids(client, name="a%_\\") == [odd["id"]]


def test_search_pages_in_a_stable_order_within_the_cap(client: TestClient) -> None:
    ids = [
        create_patient(client, id_number=number, name=f"王{n}")["id"]
        for n, number in enumerate(VALID_ID_NUMBERS)
    ]
    first = search(client, name="王", limit=2).json()
    second = search(client, name="王", limit=2, after=first["next_after"]).json()
    third = search(client, name="王", limit=2, after=second["next_after"]).json()
    pages = [first, second, third]
    assert [hit["id"] for page in pages for hit in page["patients"]] == sorted(ids)
    assert third["next_after"] is None
    assert search(client, name="王", limit=101).status_code == 400


@pytest.mark.parametrize(
    ("params", "slug"),
    [
        ({"id_number": "110105194912310021"}, "invalid-id-number"),  # wrong check character
        ({"id_number": "11010519491331002X"}, "invalid-id-number"),  # no 13th month
        ({"id_number": "１１０１０５１９４９１２３１００２Ｘ"}, "invalid-id-number"),  # full-width digits
        ({"card_number": "12345a789"}, "invalid-parameter"),
        ({"phone": "139-1234-5678"}, "invalid-parameter"),
        ({"name": "张" * 3414}, "invalid-parameter"),  # 10 kB of UTF-8
        ({"name": "a" * 10_240}, "invalid-parameter"),
        ({"id_number": "1" * 33}, "invalid-parameter"),
        ({}, "invalid-search"),
        ({"name": "   "}, "invalid-search"),
    ],
)
def test_bad_searches_are_400_problems_that_repeat_nothing(
    client: TestClient, caplog: pytest.LogCaptureFixture, params: dict[str, str], slug: str
) -> None:
    with caplog.at_level(logging.DEBUG):
        response = search(client, **params)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"].endswith(f"/{slug}")
    # The service's own lines (the test's httpx client logs its URL; services silence httpx).
    logged = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("httpx"))
    for value in params.values():
        if value.strip():
            assert value not in response.text and value[:20] not in response.text
            assert value[:20] not in logged


def test_a_client_acting_for_a_patient_cannot_search(client: TestClient) -> None:
    patient = create_patient(client)
    headers = internal_headers("app-dev", audience="registration", patient=patient["id"], kind="app")
    response = client.get("/patients", params={"id_number": FEMALE_1949}, headers=headers)
    assert response.status_code == 403


@pytest.mark.parametrize(
    ("kind", "name", "phone"),
    [
        ("his", "张三丰", "13912345678"),
        ("admin", "张三丰", "13912345678"),
        ("nurse", "张三丰", "139****5678"),
        ("doctor", "张三丰", "139****5678"),
        ("cashier", "张三丰", "139****5678"),
        ("lis", "张**", "139****5678"),
        (None, "张**", "139****5678"),
    ],
)
def test_answers_mask_per_client_kind_and_never_show_the_identity_number(
    client: TestClient, kind: str | None, name: str, phone: str
) -> None:
    create_patient(client, id_number=FEMALE_1949, name="张三丰", phone="13912345678")
    response = search(client, kind=kind, id_number=FEMALE_1949)
    [hit] = response.json()["patients"]
    assert (hit["name"], hit["phone"]) == (name, phone)
    assert hit["id_number_masked"] == "110105********002X" and FEMALE_1949 not in response.text
    view = SEARCH_VIEWS.get(kind or "")
    assert ("phone" in hit["masked"]) == (view is None or not view.phone)
    assert ("name" in hit["masked"]) == (view is None or not view.name)


def test_an_unidentified_patients_alias_is_masked_with_the_name(client: TestClient) -> None:
    unknown = create_patient(
        client, unidentified=True, id_number=None, name=None, alias="车祸伤者", phone="13700000000"
    )
    [full] = search(client, kind="his", card_number=unknown["card_number"]).json()["patients"]
    [masked] = search(client, kind="lis", card_number=unknown["card_number"]).json()["patients"]
    assert full["alias"] == "车祸伤者" and masked["alias"] is None and masked["name"] is None


def test_phones_are_masked_to_their_last_four() -> None:
    assert mask_phone("13912345678") == "139****5678"
    assert mask_phone("+8613912345678") == "+86*******5678"
    assert mask_phone("654321") == "****4321"
    assert mask_phone("1234") == "****"


def test_a_merged_record_is_found_and_names_the_survivor(client: TestClient) -> None:
    unknown = create_patient(client, unidentified=True, id_number=None, name=None)
    known = create_patient(client)
    client.post(f"/patients/{known['id']}/merge", json={"source_patient_id": unknown["id"]})
    [hit] = search(client, card_number=unknown["card_number"]).json()["patients"]
    assert hit["merged_into_id"] == known["id"]


# --- the migration --------------------------------------------------------------------------------


def test_the_migration_issues_cards_to_patients_already_on_file(tmp_path: Path) -> None:
    url = database_url_under_test()
    schema = f"test_index_migrate_{uuid.uuid4().hex[:6]}" if url else None
    database = Database(url or f"sqlite:///{tmp_path / 'before.db'}", schema)
    try:
        with database.writer.begin() as connection:
            config = alembic_config(MIGRATIONS, connection)
            before = ScriptDirectory.from_config(config).get_revision("0007_patient_index").down_revision
            assert isinstance(before, str)
            command.upgrade(config, before)
            for n in range(3):
                connection.execute(
                    text("INSERT INTO patient (id, identified, created_at) VALUES (:id, false, :at)"),
                    {"id": f"p{n}", "at": "2026-01-01T00:00:00+00:00"},
                )
        upgrade(database, MIGRATIONS)
        with database.writer.begin() as connection:
            rows = connection.execute(text("SELECT card_number, insurance_scheme FROM patient")).all()
        cards = [card for card, _scheme in rows]
        assert len(set(cards)) == 3 and all(len(c) == 12 and c.isdigit() for c in cards)
        assert {scheme for _card, scheme in rows} == {"self_pay"}
    finally:
        if schema:
            with database.writer.begin() as connection:
                connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        database.dispose()
