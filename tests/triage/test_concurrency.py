"""Several counters and desks at once, over real HTTP against a served triage (SQLite and PostgreSQL)."""

import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import httpx

from kit.testing import feed_headers, internal_headers
from tests.triage.factories import open_visit

T = TypeVar("T")
CALLERS = 5
TICKETS = 10


def run_together(base_url: str, jobs: list[Callable[[httpx.Client], T]]) -> list[T]:
    """Run each job on its own thread and HTTP client, all released at the same moment."""
    start = threading.Barrier(len(jobs))

    def run(job: Callable[[httpx.Client], T]) -> T:
        with httpx.Client(
            base_url=base_url, headers=internal_headers(audience="triage"), timeout=60
        ) as client:
            start.wait()
            return job(client)

    with ThreadPoolExecutor(len(jobs)) as pool:
        return list(pool.map(run, jobs))


def enqueue(visit_id: str) -> Callable[[httpx.Client], httpx.Response]:
    return lambda client: client.post("/queues/internal/tickets", json={"visit_id": visit_id})


def call_until_empty(client: httpx.Client) -> list[str]:
    called = []
    while (response := client.post("/queues/internal/call-next", json={})).status_code == 200:
        called.append(response.json()["id"])
    assert response.status_code == 404, response.text
    return called


def test_concurrent_callers_each_call_a_different_ticket(
    served_triage: str, registration: httpx.Client
) -> None:
    visits = [open_visit(registration) for _ in range(TICKETS)]
    responses = run_together(served_triage, [enqueue(v["id"]) for v in visits])
    ticket_ids = {r.json()["id"] for r in responses}

    per_caller = run_together(served_triage, [call_until_empty] * CALLERS)

    called = Counter(ticket_id for calls in per_caller for ticket_id in calls)
    assert set(called) == ticket_ids
    assert set(called.values()) == {1}
    with httpx.Client(base_url=served_triage, headers=internal_headers(audience="triage")) as client:
        assert client.get("/queues/internal").json()["called_count"] == TICKETS
        feed = client.get("/events", headers=feed_headers("triage"), params={"type": "ticket.called"}).json()[
            "events"
        ]
    assert sorted(e["data"]["ticket_id"] for e in feed) == sorted(ticket_ids)


def test_concurrent_enqueues_get_gap_free_distinct_numbers(
    served_triage: str, registration: httpx.Client
) -> None:
    visits = [open_visit(registration) for _ in range(TICKETS)]
    responses = run_together(served_triage, [enqueue(v["id"]) for v in visits])
    assert [r.status_code for r in responses] == [201] * TICKETS
    assert sorted(r.json()["number"] for r in responses) == list(range(1, TICKETS + 1))


def test_a_visit_racing_itself_gets_one_ticket_and_no_number_is_lost(
    served_triage: str, registration: httpx.Client
) -> None:
    visit, other = open_visit(registration), open_visit(registration)
    responses = run_together(served_triage, [enqueue(visit["id"])] * CALLERS)
    assert sorted(r.status_code for r in responses) == [201] + [409] * (CALLERS - 1)
    with httpx.Client(base_url=served_triage, headers=internal_headers(audience="triage")) as client:
        [winner] = [r.json() for r in responses if r.status_code == 201]
        assert winner["number"] == 1
        later = client.post("/queues/internal/tickets", json={"visit_id": other["id"]})
        assert later.json()["number"] == 2
        queued = client.get(
            "/events", headers=feed_headers("triage"), params={"type": "ticket.queued"}
        ).json()["events"]
    assert len(queued) == 2
