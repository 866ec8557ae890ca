"""Admissions and transfers racing for one bed over real HTTP: one patient per bed (SQLite, PostgreSQL).

The bed is unique on the stay table, so the database itself refuses the second patient: the check in
the code that looks for a holder first could be passed by every racer at once.
"""

import uuid
from collections import Counter
from functools import partial

import httpx

from kit.testing import feed_headers
from tests.registration.factories import VALID_ID_NUMBERS, run_together, staff

RACERS = 10


def post(path: str, body: dict[str, str], client: httpx.Client) -> httpx.Response:
    return client.post(path, json=body)


def open_visits(client: httpx.Client, count: int) -> list[str]:
    patient = client.post("/patients", json={"id_number": VALID_ID_NUMBERS[1], "name": "李四"}).json()
    body = {"patient_id": patient["id"], "kind": "emergency", "department": "emergency"}
    return [client.post("/visits", json=body).json()["id"] for _ in range(count)]


def new_ward(client: httpx.Client, beds: int) -> str:
    code = f"w-{uuid.uuid4().hex[:8]}"
    body = {
        "code": code,
        "department": "icu",
        "name": "重症",
        "beds": [{"code": str(n + 1)} for n in range(beds)],
    }
    assert client.post("/wards", json=body).status_code == 201
    return code


def occupants(client: httpx.Client, ward: str) -> dict[str, str | None]:
    return {bed["code"]: bed["occupied_by_visit_id"] for bed in client.get(f"/wards/{ward}").json()["beds"]}


def test_concurrent_admissions_to_one_bed_admit_exactly_one(served_registration: str) -> None:
    with staff(served_registration) as client:
        visits, ward = open_visits(client, RACERS), new_ward(client, beds=1)

    responses = run_together(
        served_registration,
        [partial(post, f"/visits/{v}/admission", {"ward": ward, "bed": "1"}) for v in visits],
    )

    assert Counter(r.status_code for r in responses) == {201: 1, 409: RACERS - 1}, [r.text for r in responses]
    assert {r.json()["type"].rsplit("/", 1)[1] for r in responses if r.status_code == 409} == {"bed-occupied"}
    [winner] = [v for v, r in zip(visits, responses, strict=True) if r.status_code == 201]
    with staff(served_registration) as client:
        assert occupants(client, ward) == {"1": winner}
        kinds = Counter(client.get(f"/visits/{v}").json()["kind"] for v in visits)
        admitted = client.get(
            "/events", params={"type": "visit.admitted"}, headers=feed_headers("registration")
        )
    assert kinds == {"inpatient": 1, "emergency": RACERS - 1}  # the losers are unchanged
    assert [e["visit_id"] for e in admitted.json()["events"]] == [winner]


def test_concurrent_transfers_into_one_free_bed_move_exactly_one(served_registration: str) -> None:
    with staff(served_registration) as client:
        visits, ward = open_visits(client, RACERS), new_ward(client, beds=RACERS + 1)
        for n, visit in enumerate(visits):
            assert (
                client.post(f"/visits/{visit}/admission", json={"ward": ward, "bed": str(n + 1)}).status_code
                == 201
            )
    free = str(RACERS + 1)

    responses = run_together(
        served_registration,
        [
            partial(post, f"/visits/{v}/transfers", {"ward": ward, "bed": free, "note": "换床"})
            for v in visits
        ],
    )

    assert Counter(r.status_code for r in responses) == {201: 1, 409: RACERS - 1}, [r.text for r in responses]
    [mover] = [v for v, r in zip(visits, responses, strict=True) if r.status_code == 201]
    with staff(served_registration) as client:
        beds = occupants(client, ward)
    assert beds[free] == mover and sorted(v for v in beds.values() if v) == sorted(visits)
