"""A NUL in what a client sends registration is a 4xx on both databases and stores nothing (PostgreSQL's
text cannot hold it: the driver's error was a 500)."""

from fastapi.testclient import TestClient

from tests.registration.factories import create_patient


def test_a_nul_in_an_id_a_query_or_a_body_is_a_problem_and_changes_nothing(client: TestClient) -> None:
    patient = create_patient(client)
    before = client.get("/patients", params={"name": patient["name"]}).json()

    for path in ["/visits/%00", "/patients/%00", "/visits/a%00b/with-name", f"/patients/{patient['id']}%00"]:
        response = client.get(path)
        assert response.status_code == 400, path
        assert response.headers["content-type"].startswith("application/problem+json")
    assert client.get("/patients", params={"name": "张\x00三"}).status_code == 400

    refused = client.post("/patients", json={"unidentified": True, "alias": "男\x00约40岁"})
    assert refused.status_code == 422 and refused.json()["type"].endswith("/validation-error")
    assert "\x00" not in refused.text  # the refusal does not echo the input
    renamed = client.patch(f"/patients/{patient['id']}", json={"name": "李\x00四"})
    assert renamed.status_code == 422
    assert client.get(f"/patients/{patient['id']}").json() == patient
    assert client.get("/patients", params={"name": patient["name"]}).json() == before
