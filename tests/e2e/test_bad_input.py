"""Bad input through the gateway: the right status, problem+json, and nothing changed."""

import uuid
from typing import Any
from urllib.parse import quote

from tests.e2e.clients import Gateway, assert_problem, charges_of_visit, ok, random_id_number


def _visit(gateway: Gateway) -> dict[str, Any]:
    patient = ok(
        gateway.his.post("/v1/patients", json={"id_number": random_id_number(), "name": "王五"}), 201
    )
    return ok(
        gateway.his.post(
            "/v1/visits", json={"patient_id": patient["id"], "kind": "outpatient", "department": "internal"}
        ),
        201,
    )


def test_invalid_identity_number_is_422_and_not_registered(gateway: Gateway) -> None:
    number = random_id_number()
    wrong = number[:17] + ("0" if number[17] != "0" else "1")
    body = assert_problem(gateway.his.post("/v1/patients", json={"id_number": wrong, "name": "赵六"}), 422)
    assert wrong not in str(body)
    ok(gateway.his.post("/v1/patients", json={"id_number": number, "name": "赵六"}), 201)


def test_unknown_catalogue_item_is_422_and_charges_nothing(gateway: Gateway) -> None:
    visit = _visit(gateway)
    before = charges_of_visit(gateway, visit["id"], at_least=1)
    response = gateway.cashier.post(
        "/v1/charges",
        json={"visit_id": visit["id"], "item_code": "999999999", "quantity": 1},
        headers={"Idempotency-Key": str(uuid.uuid4())},
    )
    assert_problem(response, 422)
    assert charges_of_visit(gateway, visit["id"], at_least=1) == before


def test_unknown_visit_is_404_everywhere(gateway: Gateway) -> None:
    missing = str(uuid.uuid4())
    assert_problem(gateway.his.get(f"/v1/visits/{missing}"), 404)
    assert_problem(
        gateway.doctor.post("/v1/orders", json={"visit_id": missing, "test_code": "250101015"}), 404
    )
    assert_problem(gateway.nurse.post("/v1/assessments", json={"visit_id": missing, "level": "III"}), 404)
    charge = gateway.cashier.post(
        "/v1/charges",
        json={"visit_id": missing, "item_code": "110200001", "quantity": 1},
        headers={"Idempotency-Key": str(uuid.uuid4())},
    )
    assert_problem(charge, 404)


def test_missing_key_is_401_and_wrong_scope_is_403(gateway: Gateway) -> None:
    assert_problem(gateway.anonymous.get("/v1/catalogue"), 401)
    number = random_id_number()
    # the lab may not register patients; and the refused call registered nobody
    assert_problem(gateway.lab.post("/v1/patients", json={"id_number": number, "name": "钱七"}), 403)
    ok(gateway.his.post("/v1/patients", json={"id_number": number, "name": "钱七"}), 201)


def test_malformed_json_is_422_problem(gateway: Gateway) -> None:
    response = gateway.his.post(
        "/v1/patients", content=b'{"id_number": ', headers={"content-type": "application/json"}
    )
    assert_problem(response, 422)


def test_request_id_travels_from_the_gateway_into_the_service(gateway: Gateway) -> None:
    response = gateway.his.get(f"/v1/visits/{uuid.uuid4()}", headers={"x-request-id": "trace-e2e-1"})
    body = assert_problem(response, 404)
    assert body["instance"] == "urn:request:trace-e2e-1"  # written by registration, behind the gateway
    assert response.headers["x-request-id"] == "trace-e2e-1"


def test_a_404_never_repeats_the_identity_number_or_name_it_was_looked_up_by(gateway: Gateway) -> None:
    id_number, name = random_id_number(), "欧阳娜娜"
    visit = _visit(gateway)
    charges_of_visit(gateway, visit["id"], at_least=1)  # billing has the account
    his = gateway.his
    for key in (id_number, name):
        keyed = {"Idempotency-Key": str(uuid.uuid4())}
        paths = [
            f"/v1/patients/{key}", f"/v1/patients/{key}/visits", f"/v1/visits/{key}",
            f"/v1/visits/{key}/account", f"/v1/visits/{key}/daily-bill",
            f"/v1/orders/{key}", f"/v1/tickets/{key}", f"/v1/reports/{key}",
            f"/v1/catalogue/{key}", f"/v1/event-schemas/{key}", f"/v1/subscriptions/{key}",
        ]  # fmt: skip
        in_path = [his.get(path) for path in paths] + [
            his.post(f"/v1/patients/{key}/merge", json={"source_patient_id": str(uuid.uuid4())}),
        ]
        in_body = [
            his.post("/v1/visits", json={"patient_id": key, "kind": "outpatient", "department": "internal"}),
            his.post("/v1/orders", json={"visit_id": key, "test_code": "250101015"}),
            his.post("/v1/assessments", json={"visit_id": key, "level": "III"}),
            his.post(
                "/v1/payments",
                json={"visit_id": visit["id"], "charge_ids": [str(uuid.uuid4()), key], "method": "cash"},
                headers=keyed,
            ),
        ]
        answers = in_path + in_body
        not_found = [
            assert_problem(answer, answer.status_code) for answer in answers if answer.status_code == 404
        ]
        assert len(not_found) >= (len(answers) if key == id_number else 8)  # a name may fail validation
        # A value that fails validation is a bad parameter (400) in the path, a malformed body (422) in one.
        assert all(answer.status_code in (400, 404) for answer in in_path), [a.text for a in in_path]
        assert all(answer.status_code in (404, 422) for answer in in_body), [a.text for a in in_body]
        for answer in answers:
            assert key not in answer.text and quote(key) not in answer.text, answer.text
    payment = his.post(
        "/v1/payments",
        json={"visit_id": visit["id"], "charge_ids": [str(uuid.uuid4()), id_number], "method": "cash"},
        headers={"Idempotency-Key": str(uuid.uuid4())},
    )
    assert assert_problem(payment, 404)["missing_positions"] == [0, 1]


def _in_other_digits(text: str, zero: str) -> str:
    return "".join(chr(ord(zero) + int(ch)) if ch.isdigit() else ch for ch in text)


def test_an_identity_number_in_other_digits_is_422_not_a_second_patient(gateway: Gateway) -> None:
    """Arabic-Indic (٠) or full-width (０) digits are digits to Python and to `\\d`: the same person
    could be registered again beside the 409, and a phone or code typed so would be taken."""
    number = random_id_number()
    ok(gateway.his.post("/v1/patients", json={"id_number": number, "name": "赵六"}), 201)
    for zero in ("\u0660", "\uff10"):
        twin = _in_other_digits(number[:17], zero) + number[17]  # the check character stays ASCII
        body = assert_problem(gateway.his.post("/v1/patients", json={"id_number": twin, "name": "赵六"}), 422)
        assert twin not in str(body)
        phone = {
            "id_number": random_id_number(),
            "name": "赵六",
            "phone": _in_other_digits("13800138000", zero),
        }
        assert_problem(gateway.his.post("/v1/patients", json=phone), 422)
        otp = {"id_number": number, "otp": _in_other_digits("123456", zero)}
        assert_problem(gateway.app.post("/v1/patient-sessions", json=otp), 422)
        challenge = {"id_number": twin}
        assert_problem(gateway.app.post("/v1/patient-sessions/challenges", json=challenge), 422)
