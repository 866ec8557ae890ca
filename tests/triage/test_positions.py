"""A patient's live place and wait band (positions.py), and `queue.nearly_up` once per ticket."""

from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from kit.testing import feed_headers, http_client, internal_headers
from services.triage import service
from services.triage.rules import QueueRules
from services.triage.schemas import QueueOrder
from tests.triage.conftest import FrozenClock
from tests.triage.factories import assess, call_next, open_visit, take_ticket
from tests.triage.test_concurrency import CALLERS, run_together


@pytest.fixture(autouse=True)
def frozen(clock: FrozenClock, monkeypatch: pytest.MonkeyPatch) -> FrozenClock:
    monkeypatch.setattr("services.triage.positions.utcnow", clock)
    return clock


def acting_for(patient_id: str) -> dict[str, str]:
    return internal_headers("app-1", {"triage:read"}, audience="triage", patient=patient_id)


def queued(client: TestClient, registration: httpx.Client, department: str = "internal") -> dict[str, Any]:
    visit = open_visit(registration)
    return take_ticket(client, visit["id"], department) | {"visit": visit}


def nearly_up(client: TestClient) -> list[dict[str, Any]]:
    response = client.get("/events", headers=feed_headers("triage"), params={"type": "queue.nearly_up"})
    events: list[dict[str, Any]] = response.json()["events"]
    return events


def told(client: TestClient) -> list[str]:
    return [e["data"]["ticket_id"] for e in nearly_up(client)]


def position(client: TestClient, ticket: dict[str, Any]) -> dict[str, Any]:
    visit = ticket["visit"]
    response = client.get(f"/visits/{visit['id']}/queue-positions", headers=acting_for(visit["patient_id"]))
    assert response.status_code == 200, response.text
    [place] = response.json()["positions"]
    assert place["ticket_id"] == ticket["id"]
    return dict(place)


def test_the_patient_sees_their_place_in_the_rules_order_and_a_band(
    client: TestClient, registration: httpx.Client, frozen: FrozenClock
) -> None:
    for _ in range(6):
        queued(client, registration)
    for _ in range(3):  # six services of 6 minutes each, timed at two stations
        at_one, at_two = call_next(client, counter="1"), call_next(client, counter="2")
        frozen.advance(minutes=6)
        for ticket in (at_one, at_two):
            assert client.post(f"/tickets/{ticket['id']}/finish").status_code == 200
    rest = [queued(client, registration) for _ in range(6)]
    urgent = queued(client, registration)
    assess(client, urgent["visit"]["id"], "II")  # the rules put a level II first, whenever they came

    place = position(client, urgent)
    assert (place["position"], place["ahead"], place["nearly_up"]) == (1, 0, True)
    last = position(client, rest[-1])
    assert (last["position"], last["ahead"], last["status"]) == (7, 6, "waiting")
    band = last["wait"]
    assert 0 <= band["low_minutes"] < band["expected_minutes"] < band["high_minutes"]
    # 6 ahead, both stations free: the 5th service end from now; 6-minute services (and the 5-minute
    # prior, worth 3 of them) at 2 stations: 5 x 5.67 / 2 = 14.2 minutes.
    assert band["expected_minutes"] == 14.2
    assert band["low_minutes"] < 14.2 < band["high_minutes"]
    assert band["high_minutes"] - band["low_minutes"] >= 3  # equal samples are no promise of equal waits
    assert position(client, rest[0])["wait"]["high_minutes"] <= band["high_minutes"]
    estimates = client.get("/queues/internal/estimates").json()["basis"]
    assert estimates == {"recent_services": 6, "mean_service_minutes": 5.67, "stations": 2, "busy": 0}


def test_places_follow_the_rules_set_in_the_queues_own_settings(
    client: TestClient, registration: httpx.Client, frozen: FrozenClock
) -> None:
    normal = queued(client, registration)
    frozen.advance(minutes=1)
    frail = take_ticket(client, open_visit(registration)["id"], priority="priority")
    assert position(client, normal)["position"] == 2  # by default the priority tier goes first
    rules = {"kind": "department", "rules": {"normal_per_priority": 1}}
    assert client.put("/queues/internal/settings", json=rules).status_code == 200
    assert position(client, normal)["position"] == 1  # one normal, then one priority
    assert call_next(client)["id"] == normal["id"] and frail["status"] == "waiting"


def test_a_called_or_held_ticket_has_no_place_and_another_patients_visit_shows_nothing(
    client: TestClient, registration: httpx.Client
) -> None:
    mine, theirs = queued(client, registration), queued(client, registration)
    called = call_next(client, counter="3")
    assert called["id"] == mine["id"]
    place = position(client, mine)
    assert (place["status"], place["counter"], place["position"], place["wait"]) == (
        "called",
        "3",
        None,
        None,
    )
    client.post(f"/tickets/{theirs['id']}/hold")
    assert position(client, theirs)["status"] == "held"

    later = queued(client, registration)
    assert client.post("/queues/internal/suspend", json={"reason": "doctor called away"}).status_code == 200
    paused = position(client, later)
    assert (paused["position"], paused["suspended"], paused["wait"]) == (1, True, None)

    stranger = client.get(
        f"/visits/{theirs['visit']['id']}/queue-positions", headers=acting_for(mine["visit"]["patient_id"])
    )
    assert stranger.status_code == 200 and stranger.json()["positions"] == []


def test_staff_see_every_waiting_band_and_a_newcomers(client: TestClient, registration: httpx.Client) -> None:
    tickets = [queued(client, registration) for _ in range(4)]
    answer = client.get("/queues/internal/estimates").json()
    assert [w["ticket_id"] for w in answer["waiting"]] == [t["id"] for t in tickets]
    assert answer["basis"]["recent_services"] == 0  # nothing timed yet: the prior mean
    assert answer["newcomer"]["high_minutes"] >= answer["waiting"][-1]["wait"]["high_minutes"]


def test_nearly_up_is_told_once_per_ticket_in_the_transaction_that_moved_it(
    client: TestClient, registration: httpx.Client
) -> None:
    a, b, c, d, e = (queued(client, registration) for _ in range(5))
    assert told(client) == [a["id"], b["id"], c["id"]]  # joined within the first three places
    call_next(client)  # a is called: d moves up to third, in the same unit of work
    assert told(client)[-1] == d["id"]
    [event] = [x for x in nearly_up(client) if x["data"]["ticket_id"] == d["id"]]
    assert (event["data"]["position"], event["data"]["ahead"], event["visit_id"]) == (3, 2, d["visit_id"])

    urgent = queued(client, registration)  # joins last; a level II moves it to the front, d back to 4th
    assess(client, urgent["visit"]["id"], "II")
    assert told(client)[-1] == urgent["id"]
    client.post(f"/tickets/{call_next(client)['id']}/finish")  # urgent called: d third again
    client.post(f"/tickets/{b['id']}/hold")  # d second, e third
    client.post(f"/tickets/{b['id']}/release")  # back and forth
    assert told(client) == [a["id"], b["id"], c["id"], d["id"], urgent["id"], e["id"]]
    assert position(client, d)["nearly_up"] is True


def test_a_failed_change_tells_nobody(client: TestClient, registration: httpx.Client) -> None:
    tickets = [queued(client, registration) for _ in range(4)]
    assert client.post("/queues/internal/call-next", json={"counter": "x" * 17}).status_code == 422
    client.post(f"/tickets/{tickets[0]['id']}/finish")  # 409: not called; nothing moved
    assert told(client) == [t["id"] for t in tickets[:3]]


def test_stations_calling_at_once_tell_every_ticket_that_reaches_the_front_exactly_once(
    served_triage: str, registration: httpx.Client
) -> None:
    """Five stations call three patients each at the same moment: whatever order their transactions
    commit in, each of the 15 called and the 3 now in front was told once, and nobody else was."""
    with http_client(served_triage, audience="triage") as client:
        visits = [open_visit(registration)["id"] for _ in range(CALLERS * 3 + 6)]
        tickets = [client.post("/queues/internal/tickets", json={"visit_id": v}).json()["id"] for v in visits]

    def three_calls(client: httpx.Client) -> None:
        for _ in range(3):
            assert client.post("/queues/internal/call-next", json={}).status_code == 200

    run_together(served_triage, [three_calls] * CALLERS)
    with http_client(served_triage, audience="triage") as client:
        events = client.get(
            "/events", headers=feed_headers("triage"), params={"type": "queue.nearly_up", "limit": 100}
        ).json()["events"]
    told = [e["data"]["ticket_id"] for e in events]
    assert sorted(told) == sorted(tickets[: CALLERS * 3 + 3])


def test_a_change_that_brings_nobody_new_to_the_front_tells_nobody_and_orders_nothing(
    client: TestClient, registration: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once everyone waiting was told, a call, a finish or an assessment of a visit in no queue tells
    nobody, and the check at commit computes no queue order for it; the next arrival is told."""
    orders: list[str] = []
    queue_order = service.queue_order

    def counted(
        session: Session, *, department: str, queue_rules: QueueRules, front: int | None = None
    ) -> QueueOrder:
        orders.append(department)
        return queue_order(session, department=department, queue_rules=queue_rules, front=front)

    monkeypatch.setattr(service, "queue_order", counted)
    a, b = (queued(client, registration) for _ in range(2))
    assert told(client) == [a["id"], b["id"]] and orders == ["internal", "internal"]
    assert client.post(f"/tickets/{call_next(client)['id']}/finish").status_code == 200
    assess(client, open_visit(registration)["id"], "IV")
    assert told(client) == [a["id"], b["id"]] and len(orders) == 2
    c = queued(client, registration)
    assert told(client) == [a["id"], b["id"], c["id"]] and len(orders) == 3
