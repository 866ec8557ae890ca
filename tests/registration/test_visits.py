"""Opening visits with a payment mode."""

from fastapi.testclient import TestClient

from tests.registration.factories import create_patient, create_visit


def test_visit_defaults_to_prepay(client: TestClient) -> None:
    patient = create_patient(client)
    visit = create_visit(client, patient["id"])
    assert visit["payment_mode"] == "prepay"
    slip = {"slip_code", "slip_expires_at"}
    assert client.get(f"/visits/{visit['id']}").json() == {k: v for k, v in visit.items() if k not in slip}
    assert [v["id"] for v in client.get(f"/patients/{patient['id']}/visits").json()] == [visit["id"]]


def test_green_channel_only_for_emergencies(client: TestClient) -> None:
    patient = create_patient(client)
    response = client.post(
        "/visits",
        json={
            "patient_id": patient["id"],
            "kind": "outpatient",
            "department": "internal",
            "payment_mode": "green_channel",
        },
    )
    assert response.status_code == 422
    assert response.json()["type"].endswith("/visit-refused")
    assert client.get(f"/patients/{patient['id']}/visits").json() == []


def test_unknown_patient_is_404_and_unknown_visit_is_404(client: TestClient) -> None:
    response = client.post("/visits", json={"patient_id": "nope", "kind": "outpatient", "department": "x"})
    assert response.status_code == 404
    assert response.json()["type"].endswith("/patient-not-found")
    assert client.get("/visits/nope").status_code == 404


def test_unknown_payment_mode_is_422(client: TestClient) -> None:
    patient = create_patient(client)
    response = client.post(
        "/visits",
        json={"patient_id": patient["id"], "kind": "outpatient", "department": "x", "payment_mode": "free"},
    )
    assert response.status_code == 422
