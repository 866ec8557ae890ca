"""An app acting for patient P sees P's events in the log and on the live stream, and nobody else's."""

from typing import Any

import httpx

from tests.e2e.clients import Gateway, eventually, ok, patient_session, register_patient, unique_department
from tests.events.sse import sse_messages

Event = dict[str, Any]
PAGE = 100  # the gateway's page-size cap


def open_visit(gateway: Gateway) -> dict[str, Any]:
    patient = register_patient(gateway.his)
    body = {"patient_id": patient["id"], "kind": "outpatient", "department": unique_department()}
    return dict(ok(gateway.his.post("/v1/visits", json=body), 201)) | {"patient": patient}


def whole_log(client: httpx.Client, **params: str) -> list[Event]:
    """Every event the client may see, paging with `next_after` as a subscriber would."""
    events: list[Event] = []
    after = 0
    while True:
        page = ok(client.get("/v1/events", params={"after": after, "limit": PAGE, **params}))
        events += page["events"]
        if page["next_after"] == after:
            return events
        after = page["next_after"]


def test_an_apps_log_and_stream_carry_only_its_patients_events(gateway: Gateway) -> None:
    p, q = open_visit(gateway), open_visit(gateway)
    # the hub has logged both visits (as a client with every read scope sees it)
    eventually(
        lambda: {p["id"], q["id"]} <= {e["visit_id"] for e in whole_log(gateway.his, type="visit.opened")},
        what="both visits in the hub's log",
    )
    session = patient_session(gateway, p["patient"])
    headers = dict(gateway.app.headers) | {"x-patient-token": session["token"]}
    # read=10 s: below the hub's 15 s heartbeat, so a missing event fails the test instead of hanging it
    timeout = httpx.Timeout(30, read=10)
    with httpx.Client(base_url=gateway.app.base_url, headers=headers, timeout=timeout) as app:
        seen = whole_log(app)
        assert {e["patient_id"] for e in seen} == {p["patient_id"]}
        assert {(e["type"], e["visit_id"]) for e in seen} >= {("visit.opened", p["id"])}

        # live: triage both visits; the app's stream brings P's triage and never Q's
        with app.stream("GET", "/v1/events/stream", params={"after": seen[-1]["position"]}) as stream:
            assert stream.status_code == 200
            for visit in (q, p):
                body = {"visit_id": visit["id"], "level": "IV"}
                ok(gateway.nurse.post("/v1/assessments", json=body), 201)
            for message in sse_messages(stream.iter_lines()):
                if message.comment is not None:
                    continue
                event = message.json()
                assert event["patient_id"] == p["patient_id"], event
                if event["type"] == "visit.triaged":
                    assert event["visit_id"] == p["id"]
                    break
