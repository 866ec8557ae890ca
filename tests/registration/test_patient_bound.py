"""Registration decides for itself: a client acting for one patient reads only that patient and their
visits; anyone else's answer 404 exactly as a missing one (whatever the gateway let through)."""

from fastapi.testclient import TestClient

from kit.testing import internal_headers
from tests.registration.factories import create_patient, create_visit


def acting_for(patient_id: str) -> dict[str, str]:
    return internal_headers(
        "kiosk-hall-1", {"registration:read"}, audience="registration", patient=patient_id
    )


def test_another_patient_and_their_visits_are_404_like_missing_ones(client: TestClient) -> None:
    me = create_patient(client)
    them = create_patient(client, id_number=None, unidentified=True, name=None)
    their_visit = create_visit(client, them["id"])
    mine = create_visit(client, me["id"])

    for path, missing in [
        (f"/patients/{them['id']}", "/patients/no-such-patient"),
        (f"/patients/{them['id']}/visits", "/patients/no-such-patient/visits"),
        (f"/visits/{their_visit['id']}", "/visits/no-such-visit"),
    ]:
        refused, absent = (
            client.get(path, headers=acting_for(me["id"])),
            client.get(missing, headers=acting_for(me["id"])),
        )
        assert refused.status_code == absent.status_code == 404, path
        assert refused.json()["type"] == absent.json()["type"]

    assert client.get(f"/patients/{me['id']}", headers=acting_for(me["id"])).status_code == 200
    assert client.get(f"/visits/{mine['id']}", headers=acting_for(me["id"])).json()["patient_id"] == me["id"]
    visits = client.get(f"/patients/{me['id']}/visits", headers=acting_for(me["id"])).json()
    assert [v["id"] for v in visits] == [mine["id"]]
