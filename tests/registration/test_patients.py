"""Registering patients: identity numbers, duplicates, unidentified emergencies and merges."""

from fastapi.testclient import TestClient

from kit.testing import feed_headers, internal_headers
from tests.registration.factories import VALID_ID_NUMBERS, create_patient, create_visit


def test_register_patient_masks_identity_number_and_derives_sex_and_birth_date(client: TestClient) -> None:
    patient = create_patient(client, id_number="440524188001010014", name="李四")
    assert patient["identified"] is True
    assert patient["id_number_masked"] == "440524********0014"
    assert "440524188001010014" not in str(patient)
    assert patient["sex"] == "male"
    assert patient["birth_date"] == "1880-01-01"
    assert client.get(f"/patients/{patient['id']}").json()["name"] == "李四"


def test_lower_case_x_is_accepted_and_normalised(client: TestClient) -> None:
    patient = create_patient(client, id_number="11010519491231002x")
    assert patient["id_number_masked"] == "110105********002X"


def test_bad_check_character_is_422_problem_without_echo_and_stores_nothing(client: TestClient) -> None:
    response = client.post("/patients", json={"id_number": "110105194912310021", "name": "张三"})
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["type"].endswith("/invalid-id-number")
    assert {"type", "title", "status", "detail"} <= body.keys()
    assert "110105194912310021" not in response.text
    # the valid number can still be registered: nothing was stored
    create_patient(client, id_number=VALID_ID_NUMBERS[0])


def test_impossible_birth_date_is_refused(client: TestClient) -> None:
    response = client.post("/patients", json={"id_number": "110105194902300010", "name": "张三"})
    assert response.status_code == 422
    assert "birth date" in response.json()["detail"]


def test_duplicate_identity_number_is_409_pointing_to_existing_patient(client: TestClient) -> None:
    first = create_patient(client)
    response = client.post("/patients", json={"id_number": VALID_ID_NUMBERS[0], "name": "王五"})
    assert response.status_code == 409
    assert response.json()["existing_patient_id"] == first["id"]


def test_validation_error_does_not_echo_submitted_personal_data(client: TestClient) -> None:
    response = client.post("/patients", json={"id_number": "11010519491231002X", "name": "秘密名字", "x": 1})
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert "秘密名字" not in response.text and "11010519491231002X" not in response.text


def test_malformed_json_is_422_problem(client: TestClient) -> None:
    response = client.post("/patients", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert response.json()["status"] == 422


def test_calls_without_internal_credentials_are_refused(client: TestClient) -> None:
    response = client.get("/patients/anything", headers={"authorization": ""})
    assert response.status_code == 401
    forged = internal_headers(audience="registration")["authorization"][:-4] + "AAAA"
    assert client.get("/patients/anything", headers={"authorization": forged}).status_code == 401


def test_health_needs_no_credentials(client: TestClient) -> None:
    assert client.get("/healthz", headers={"authorization": ""}).status_code == 200
    assert client.get("/readyz", headers={"authorization": ""}).json()["status"] == "ready"


def test_unidentified_patient_is_merged_into_identified_one_with_visits(client: TestClient) -> None:
    unknown = create_patient(client, unidentified=True, id_number=None, name=None, alias="男，约40岁")
    assert unknown["identified"] is False and unknown["id_number_masked"] is None
    visit = create_visit(
        client, unknown["id"], kind="emergency", department="emergency", payment_mode="green_channel"
    )
    known = create_patient(client, id_number=VALID_ID_NUMBERS[1], name="赵六")

    response = client.post(f"/patients/{known['id']}/merge", json={"source_patient_id": unknown["id"]})
    assert response.status_code == 200, response.text
    assert response.json()["moved_visit_ids"] == [visit["id"]]
    assert client.get(f"/visits/{visit['id']}").json()["patient_id"] == known["id"]
    assert client.get(f"/patients/{unknown['id']}").json()["merged_into_id"] == known["id"]
    again = client.post(f"/patients/{known['id']}/merge", json={"source_patient_id": unknown["id"]})
    assert again.status_code == 409


def test_identified_patient_cannot_be_merged_away(client: TestClient) -> None:
    a = create_patient(client, id_number=VALID_ID_NUMBERS[1])
    b = create_patient(client, id_number=VALID_ID_NUMBERS[2])
    response = client.post(f"/patients/{a['id']}/merge", json={"source_patient_id": b["id"]})
    assert response.status_code == 409
    assert client.get(f"/patients/{b['id']}").json()["merged_into_id"] is None


def test_events_record_registration_visit_and_merge_in_order(client: TestClient) -> None:
    unknown = create_patient(client, unidentified=True, id_number=None, name=None)
    create_visit(
        client, unknown["id"], kind="emergency", department="emergency", payment_mode="green_channel"
    )
    known = create_patient(client, id_number=VALID_ID_NUMBERS[3])
    client.post(f"/patients/{known['id']}/merge", json={"source_patient_id": unknown["id"]})

    feed = client.get("/events", headers=feed_headers("registration"), params={"after": 0}).json()
    types = [e["type"] for e in feed["events"]]
    assert types == ["patient.registered", "visit.opened", "patient.registered", "patient.merged"]
    positions = [e["position"] for e in feed["events"]]
    assert positions == sorted(positions) and len(set(positions)) == 4
    opened = feed["events"][1]
    assert opened["data"]["payment_mode"] == "green_channel"
    assert opened["data"]["registration_fee_item"] == "110200005"
    after = client.get(
        "/events", headers=feed_headers("registration"), params={"after": feed["next_after"]}
    ).json()
    assert after["events"] == []


def test_the_feed_answers_sibling_services_only(client: TestClient) -> None:
    create_patient(client, id_number=VALID_ID_NUMBERS[4])
    # the test client calls as a gateway client would: an outside client never reads a service's feed
    refused = client.get("/events")
    assert refused.status_code == 403
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert "patient.registered" not in refused.text
    sibling = client.get("/events", headers=feed_headers("registration"))
    assert [e["type"] for e in sibling.json()["events"]] == ["patient.registered"]
