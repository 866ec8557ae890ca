"""Wait statistics against the 10-minute target ("three longs, one short", 三长一短)."""

from datetime import timedelta

import httpx
from fastapi.testclient import TestClient

from tests.triage.conftest import FrozenClock
from tests.triage.factories import call_next, open_visit, take_ticket


def test_stats_measure_waits_of_the_hospital_day(
    client: TestClient, registration: httpx.Client, clock: FrozenClock
) -> None:
    morning = clock.now  # 08:00 in Beijing on 2026-11-27
    # A ticket taken at 23:59 on the 26th and called after midnight belongs to the 26th.
    clock.set(morning - timedelta(hours=8, minutes=1))
    take_ticket(client, open_visit(registration)["id"])
    clock.advance(minutes=4)
    call_next(client)

    clock.set(morning)
    for _ in range(6):
        take_ticket(client, open_visit(registration)["id"])
    take_ticket(client, open_visit(registration)["id"], department="surgery")
    for minutes in (2, 5, 9, 15, 30):  # five called, one left waiting
        clock.set(morning + timedelta(minutes=minutes))
        call_next(client)
    client.post(f"/tickets/{call_next(client, 'surgery')['id']}/finish")

    stats = client.get("/queues/internal/stats").json()
    assert stats == {
        "department": "internal",
        "date": "2026-11-27",
        "target_minutes": 10,
        "tickets": 6,
        "called": 5,
        "waiting": 1,
        "wait_minutes": {"p50": 9.0, "p90": 30.0, "max": 30.0},
        "within_target_share": 0.6,
    }
    previous = client.get("/queues/internal/stats", params={"date": "2026-11-26"}).json()
    assert (previous["tickets"], previous["called"], previous["waiting"]) == (1, 1, 0)
    assert previous["wait_minutes"] == {"p50": 4.0, "p90": 4.0, "max": 4.0}
    assert previous["within_target_share"] == 1.0


def test_finished_tickets_still_count_as_called(
    client: TestClient, registration: httpx.Client, clock: FrozenClock
) -> None:
    take_ticket(client, open_visit(registration)["id"])
    clock.advance(minutes=12, seconds=30)
    client.post(f"/tickets/{call_next(client)['id']}/finish")
    stats = client.get("/queues/internal/stats", params={"date": "2026-11-27"}).json()
    assert (stats["called"], stats["wait_minutes"]["max"], stats["within_target_share"]) == (1, 12.5, 0.0)


def test_a_day_without_calls_has_no_wait_figures(client: TestClient, registration: httpx.Client) -> None:
    take_ticket(client, open_visit(registration)["id"])
    stats = client.get("/queues/internal/stats").json()
    assert (stats["tickets"], stats["called"], stats["waiting"]) == (1, 0, 1)
    assert stats["wait_minutes"] == {"p50": None, "p90": None, "max": None}
    assert stats["within_target_share"] is None


def test_malformed_date_is_400(client: TestClient) -> None:
    response = client.get("/queues/internal/stats", params={"date": "27/11/2026"})
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
