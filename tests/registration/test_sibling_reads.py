"""The reads siblings make of registration by id, below the ORM: the same answers as the ORM's views."""

from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from kit.testing import internal_headers
from tests.registration.factories import VALID_ID_NUMBERS, create_patient, create_visit


def test_a_patient_read_answers_as_the_patient_was_registered(client: TestClient) -> None:
    """`GET /patients/{id}` (a Core row) gives exactly the view registration built of the ORM patient."""
    registered = [
        create_patient(client),
        create_patient(client, id_number=VALID_ID_NUMBERS[1], name="李四", insurance_scheme="employee"),
        create_patient(client, id_number=None, unidentified=True, name=None, alias="男，约40岁"),
        create_patient(client, id_number=VALID_ID_NUMBERS[2], name="王五", card_number="880001234"),
    ]
    for patient in registered:
        response = client.get(f"/patients/{patient['id']}")
        assert response.status_code == 200, response.text
        assert response.json() == patient

    source, target = registered[2], registered[0]
    merged = client.post(f"/patients/{target['id']}/merge", json={"source_patient_id": source["id"]})
    assert merged.status_code == 200, merged.text
    assert client.get(f"/patients/{target['id']}").json() == merged.json()["patient"]
    assert client.get(f"/patients/{source['id']}").json() == source | {"merged_into_id": target["id"]}


def test_a_visit_with_its_patients_name_is_the_visit_as_read_plus_the_name(client: TestClient) -> None:
    named = create_visit(client, create_patient(client, name="欧阳娜娜")["id"])
    unnamed = create_visit(
        client, create_patient(client, id_number=None, unidentified=True, name=None, alias="车祸伤者")["id"]
    )

    for visit, name in [(named, "欧阳娜娜"), (unnamed, None)]:
        response = client.get(f"/visits/{visit['id']}/with-name")
        assert response.status_code == 200, response.text
        # The alias of an unidentified patient is clinical text: it is never given as a name.
        assert response.json() == client.get(f"/visits/{visit['id']}").json() | {"patient_name": name}

    missing = client.get("/visits/no-such-visit/with-name")
    assert missing.status_code == 404
    assert missing.json()["type"] == client.get("/visits/no-such-visit").json()["type"]
    for odd in ["患者-甲", "x" * 10_000, "%00", "1;DROP TABLE visit"]:
        answer = client.get(f"/visits/{odd}/with-name")
        assert answer.status_code in (400, 404, 414), (odd[:20], answer.status_code)
        assert answer.headers["content-type"].startswith("application/problem+json")


def test_only_services_read_a_visit_with_its_patients_name(client: TestClient) -> None:
    patient = create_patient(client, name="张三")
    visit = create_visit(client, patient["id"])
    kiosk = internal_headers(
        "kiosk-hall-1", {"registration:read"}, audience="registration", patient=patient["id"]
    )

    assert client.get(f"/visits/{visit['id']}", headers=kiosk).status_code == 200
    assert client.get(f"/visits/{visit['id']}/with-name", headers=kiosk).status_code == 403


def test_the_reads_siblings_make_are_answered_without_fastapis_handler(client: TestClient) -> None:
    """Every sibling's most frequent calls take the lean path (`kit.routing.lean_app`): a change that
    gave them a query parameter or a model to return would quietly put FastAPI's solver back."""
    app: FastAPI = client.app  # type: ignore[assignment]
    lean = {
        route.path
        for route in app.routes
        if isinstance(route, APIRoute) and getattr(route.app, "lean", False)
    }
    assert lean == {"/patients/{patient_id}", "/visits/{visit_id}", "/visits/{visit_id}/with-name"}
