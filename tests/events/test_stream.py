"""`GET /log/stream`: the log as Server-Sent Events, resumable with Last-Event-ID."""

import httpx

from kit.testing import FakeFeed
from tests.events.conftest import HubStarter
from tests.events.factories import as_caller, logged_ids, publish, read_log, source_event, triaged_after
from tests.events.sse import sse_messages, take_events

STREAM_HEADERS = {"accept": "text/event-stream"}


def publish_visit(feeds: dict[str, FakeFeed], visit_id: str, patient_id: str) -> None:
    opened = publish(
        feeds, "registration", source_event("visit.opened", visit_id=visit_id, patient_id=patient_id)
    )
    publish(feeds, "triage", triaged_after(opened))


def test_a_stream_after_0_replays_the_log_then_follows_new_events(
    hub: httpx.Client, feeds: dict[str, FakeFeed]
) -> None:
    publish_visit(feeds, "v1", "p1")
    logged_ids(hub, 2)
    logged = [(str(e["position"]), e["type"], e["id"]) for e in read_log(hub)]
    with hub.stream("GET", "/log/stream", params={"after": 0}, headers=STREAM_HEADERS) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.iter_lines()
        replayed = take_events(lines, 2)
        assert [(m.id, m.event, m.json()["id"]) for m in replayed] == logged
        publish(feeds, "billing", source_event("charge.posted", visit_id="v1", patient_id="p1"))
        [live] = take_events(lines, 1)
    assert (live.event, live.json()["visit_sequence"]) == ("charge.posted", 3)
    assert live.id == str(live.json()["position"]) and int(live.id) > int(logged[-1][0])


def test_a_stream_without_a_position_starts_live(hub: httpx.Client, feeds: dict[str, FakeFeed]) -> None:
    publish_visit(feeds, "v1", "p1")
    logged_ids(hub, 2)
    with hub.stream("GET", "/log/stream", headers=STREAM_HEADERS) as response:
        lines = response.iter_lines()
        assert next(sse_messages(lines)).comment == "stream open"
        publish(feeds, "billing", source_event("charge.posted", visit_id="v1", patient_id="p1"))
        [first] = take_events(lines, 1)  # not the two logged before the stream opened
    assert (first.event, first.json()["visit_sequence"]) == ("charge.posted", 3)


def test_last_event_id_resumes_after_that_position(hub: httpx.Client, feeds: dict[str, FakeFeed]) -> None:
    publish_visit(feeds, "v1", "p1")
    publish_visit(feeds, "v2", "p2")
    ids = logged_ids(hub, 4)
    headers = STREAM_HEADERS | {"last-event-id": str(read_log(hub)[1]["position"])}
    with hub.stream("GET", "/log/stream", params={"after": 0}, headers=headers) as response:
        resumed = take_events(response.iter_lines(), 2)
    assert [m.json()["id"] for m in resumed] == ids[2:]
    assert hub.get("/log/stream", headers={"last-event-id": "two"}).status_code == 400


def test_a_patients_stream_carries_only_that_patients_events_of_the_asked_types(
    hub: httpx.Client, feeds: dict[str, FakeFeed]
) -> None:
    publish_visit(feeds, "v1", "p1")
    publish_visit(feeds, "v2", "p2")
    logged_ids(hub, 4)
    scopes = {"events:read", "registration:read", "triage:read", "billing:read"}
    with (
        as_caller(hub, "app-dev", scopes, patient="p2") as app,
        app.stream(
            "GET", "/log/stream", params={"after": 0, "type": "visit.triaged,charge.posted"}
        ) as response,
    ):
        lines = response.iter_lines()
        [first] = take_events(lines, 1)
        publish(feeds, "billing", source_event("charge.posted", visit_id="v1", patient_id="p1"))
        publish(feeds, "billing", source_event("charge.posted", visit_id="v2", patient_id="p2"))
        [second] = take_events(lines, 1)  # p1's charge, logged first, is not for this stream
    assert (first.event, first.json()["patient_id"]) == ("visit.triaged", "p2")
    assert (second.event, second.json()["visit_id"]) == ("charge.posted", "v2")


def test_an_idle_stream_sends_heartbeats(start_hub: HubStarter) -> None:
    with (
        start_hub(stream_heartbeat_seconds=0.1) as hub,
        hub.stream("GET", "/log/stream", headers=STREAM_HEADERS) as response,
    ):
        comments = []
        for message in sse_messages(response.iter_lines()):
            comments.append(message.comment)
            if message.comment == "heartbeat":
                break
    assert comments[-1] == "heartbeat" and all(c is not None for c in comments)
