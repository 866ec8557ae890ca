"""Plain factory functions for registration tests."""

from typing import Any

from fastapi.testclient import TestClient

# Valid numbers (GB 11643 check characters computed): the standard's own examples and a few more.
VALID_ID_NUMBERS = [
    "11010519491231002X",
    "440524188001010014",
    "110101199003074477",
    "310104198507120029",
    "320106199202151237",
]


def create_patient(client: TestClient, **overrides: Any) -> dict[str, Any]:
    body = {"id_number": VALID_ID_NUMBERS[0], "name": "张三"} | overrides
    response = client.post("/patients", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def create_visit(client: TestClient, patient_id: str, **overrides: Any) -> dict[str, Any]:
    body = {"patient_id": patient_id, "kind": "outpatient", "department": "internal"} | overrides
    response = client.post("/visits", json=body)
    assert response.status_code == 201, response.text
    return response.json()
