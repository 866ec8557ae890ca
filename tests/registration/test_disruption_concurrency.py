"""A cancellation racing bookings over real HTTP against a served registration (SQLite and PostgreSQL):
whichever way each race goes, nobody is left booked on the cancelled session, and every booking that
landed before the cancellation is in its list of affected appointments (so it was told and offered)."""

from collections import Counter
from collections.abc import Callable

import httpx

from tests.registration.factories import run_together, staff
from tests.registration.test_appointment_concurrency import clinic_session, patients

BOOKERS = 30


def test_bookings_racing_a_cancellation_leave_nobody_booked(served_registration: str) -> None:
    with staff(served_registration) as client:
        target = clinic_session(client, quota=BOOKERS + 10)
        early = patients(client, 5)
        for patient_id in early:
            body = {"clinic_session_id": target["id"], "patient_id": patient_id, "channel": "phone"}
            assert client.post("/appointments", json=body).status_code == 201
        racers = patients(client, BOOKERS)

    def booking(patient_id: str) -> Callable[[httpx.Client], httpx.Response]:
        body = {"clinic_session_id": target["id"], "patient_id": patient_id, "channel": "app"}
        return lambda client: client.post("/appointments", json=body)

    def cancellation(client: httpx.Client) -> httpx.Response:
        body = {"action": "cancel", "category": "hospital", "reason": "停电"}
        return client.post(f"/clinic-sessions/{target['id']}/disruptions", json=body)

    answers = run_together(served_registration, [cancellation, *(booking(p) for p in racers)])
    cancelled, bookings = answers[0], answers[1:]
    assert cancelled.status_code == 201, cancelled.text
    assert Counter(r.status_code for r in bookings).keys() <= {201, 409}
    landed = {r.json()["id"] for r in bookings if r.status_code == 201}

    with staff(served_registration) as client:
        on_it = client.get("/appointments", params={"clinic_session_id": target["id"], "limit": 500}).json()
        slots = client.get(f"/clinic-sessions/{target['id']}/slots").json()
    assert {a["status"] for a in on_it} == {"cancelled"}, "someone is still booked on the cancelled session"
    assert len(on_it) == len(early) + len(landed)
    affected = {a["appointment_id"] for a in cancelled.json()["affected"]}
    assert affected == {a["id"] for a in on_it}
    assert slots["free"] == 0
