"""A patient's place in line and wait band through the real gateway: the patient's own app or kiosk sees
it, another patient's token never does, and the front of the line is told it is nearly up."""

from typing import Any

import httpx

from kit.testing import eventually
from tests.e2e.clients import (
    Gateway,
    assert_problem,
    ok,
    patient_session,
    register_patient,
    unique_department,
)


def queued_patient(gateway: Gateway, department: str) -> dict[str, Any]:
    patient = register_patient(gateway.his)
    body = {"patient_id": patient["id"], "kind": "outpatient", "department": department}
    visit = ok(gateway.his.post("/v1/visits", json=body), 201)
    ticket = ok(gateway.nurse.post(f"/v1/queues/{department}/tickets", json={"visit_id": visit["id"]}), 201)
    return {"person": patient, "visit": visit["id"], "ticket": ticket["id"]}


def acting(gateway: Gateway, kind: str, person: dict[str, Any]) -> httpx.Client:
    device = gateway.clients[kind]
    token = patient_session(gateway, person, kind)["token"]
    return httpx.Client(
        base_url=device.base_url, headers=dict(device.headers) | {"x-patient-token": token}, timeout=30
    )


def test_a_patient_sees_their_own_place_and_band_and_never_another_patients(gateway: Gateway) -> None:
    department = unique_department()
    first, second, third = (queued_patient(gateway, department) for _ in range(3))
    with acting(gateway, "app", second["person"]) as app, acting(gateway, "kiosk", third["person"]) as kiosk:
        answer = ok(app.get(f"/v1/visits/{second['visit']}/queue-positions"))
        [place] = answer["positions"]
        assert (place["ticket_id"], place["position"], place["ahead"], place["status"]) == (
            second["ticket"],
            2,
            1,
            "waiting",
        )
        assert place["wait"]["low_minutes"] < place["wait"]["high_minutes"]
        # Nothing of the patient ahead: not their ticket, visit or patient id.
        for other in (first["ticket"], first["visit"], first["person"]["id"]):
            assert other not in str(answer)

        [own] = ok(kiosk.get(f"/v1/visits/{third['visit']}/queue-positions"))["positions"]
        assert (own["position"], own["ahead"]) == (3, 2)
        # Patient B's token never gets patient A's place: 404, as for a visit that does not exist.
        for device, someone_else in ((kiosk, second), (app, third), (app, first)):
            body = assert_problem(device.get(f"/v1/visits/{someone_else['visit']}/queue-positions"), 404)
            assert someone_else["visit"] not in str(body)
        # The queue's estimates name every waiting ticket: staff only.
        assert_problem(app.get(f"/v1/queues/{department}/estimates"), 403)
        assert_problem(kiosk.get(f"/v1/queues/{department}/estimates"), 403)

        called = ok(gateway.nurse.post(f"/v1/queues/{department}/call-next", json={"counter": "2"}))
        assert called["id"] == first["ticket"]
        [moved] = ok(app.get(f"/v1/visits/{second['visit']}/queue-positions"))["positions"]
        assert (moved["position"], moved["ahead"], moved["nearly_up"]) == (1, 0, True)

    staff = ok(gateway.nurse.get(f"/v1/queues/{department}/estimates"))
    assert [w["ticket_id"] for w in staff["waiting"]] == [second["ticket"], third["ticket"]]
    assert staff["basis"]["busy"] == 1
    assert_problem(gateway.board.get(f"/v1/queues/{department}/estimates"), 403)


def test_the_patients_app_is_told_once_when_the_patient_is_nearly_up(gateway: Gateway) -> None:
    department = unique_department()
    third, fourth = [queued_patient(gateway, department) for _ in range(4)][2:]

    def told(app: httpx.Client) -> list[dict[str, Any]]:
        """The patient's nearly-up events as one page of the log has them: not de-duplicated, since the
        log holds an event once (tests/events/test_log_once.py) and a page reads each row once."""
        page = ok(app.get("/v1/events", params={"type": "queue.nearly_up,ticket.queued"}))
        return [e for e in page["events"] if e["type"] == "queue.nearly_up"]

    with (
        acting(gateway, "app", third["person"]) as third_app,
        acting(gateway, "app", fourth["person"]) as app,
    ):
        found = eventually(lambda: told(third_app), what="the third's nearly-up event")
        assert [e["data"]["ticket_id"] for e in found] == [third["ticket"]], found
        [event] = found
        assert (event["data"]["ticket_id"], event["data"]["position"]) == (third["ticket"], 3)
        # The fourth's app has its own ticket's event, and none yet of being nearly up.
        eventually(
            lambda: ok(app.get("/v1/events", params={"type": "ticket.queued"}))["events"], what="queued"
        )
        assert told(app) == []
        ok(gateway.nurse.post(f"/v1/queues/{department}/call-next", json={}))
        [mine] = eventually(lambda: told(app), what="the fourth's nearly-up event")
        assert (mine["data"]["ticket_id"], mine["data"]["ahead"]) == (fourth["ticket"], 2)
        for _ in range(3):  # the second, the third, then the fourth is called
            ok(gateway.nurse.post(f"/v1/queues/{department}/call-next", json={}))

        def called() -> list[dict[str, Any]]:
            return ok(app.get("/v1/events", params={"type": "ticket.called"}))["events"]

        eventually(called, what="the fourth's call")  # the hub keeps cause before effect: all told by now
        assert len(told(app)) == 1 and len(told(third_app)) == 1
