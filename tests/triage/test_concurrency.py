"""Several counters and desks at once, over real HTTP against a served triage (SQLite and PostgreSQL),
and the queue surviving a restart of the service."""

import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import httpx

from kit import testing
from kit.testing import HTTP_TIMEOUT_SECONDS, feed_headers, http_client, internal_headers
from services.triage.app import create_app
from services.triage.config import TriageSettings
from services.triage.models import TriageTable
from tests.triage.factories import open_visit

T = TypeVar("T")
CALLERS = 5  # stations calling one queue
TICKETS = 10
ARRIVALS = 50  # patients taking a number at the same moment


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


def act_on(ticket_id: str, action: str) -> Callable[[httpx.Client], httpx.Response]:
    return lambda client: client.post(f"/tickets/{ticket_id}/{action}")


def station_calling_until_empty(station: str) -> Callable[[httpx.Client], list[dict[str, Any]]]:
    """A station calling patients to itself and seeing each one, until nobody waits."""

    def call(client: httpx.Client) -> list[dict[str, Any]]:
        called = []
        while (
            response := client.post("/queues/internal/call-next", json={"counter": station})
        ).status_code == 200:
            ticket = response.json()
            called.append(ticket)
            finished = client.post(f"/tickets/{ticket['id']}/finish")
            assert finished.status_code == 200, finished.text
        assert response.status_code == 404, response.text
        return called

    return call


def test_five_stations_calling_fifty_arrivals_call_every_patient_exactly_once(
    served_triage: str, registration: httpx.Client
) -> None:
    """The Done-when of issue 10: numbers unique and gap-free under 50 concurrent arrivals, then five
    stations calling one queue at once each call a different patient, and every patient is called."""
    stations = [str(n) for n in range(1, CALLERS + 1)]
    with http_client(served_triage, audience="triage") as client:
        for station in stations:
            put = client.put(f"/queues/internal/stations/{station}", json={"label": f"{station}号诊室"})
            assert put.status_code == 200, put.text
    visits = [open_visit(registration) for _ in range(ARRIVALS)]
    arrivals = run_together(served_triage, [enqueue(v["id"]) for v in visits])
    assert [r.status_code for r in arrivals] == [201] * ARRIVALS
    assert sorted(r.json()["number"] for r in arrivals) == list(range(1, ARRIVALS + 1))
    ticket_ids = {r.json()["id"] for r in arrivals}

    per_station = run_together(served_triage, [station_calling_until_empty(s) for s in stations])

    called = Counter(ticket["id"] for calls in per_station for ticket in calls)
    assert set(called) == ticket_ids
    assert set(called.values()) == {1}
    for station, calls in zip(stations, per_station, strict=True):
        assert {ticket["counter"] for ticket in calls} <= {station}
    with http_client(served_triage, audience="triage") as client:
        queue = client.get("/queues/internal").json()
        assert (queue["waiting_count"], queue["called_count"]) == (0, 0)
        feed = client.get(
            "/events", headers=feed_headers("triage"), params={"type": "ticket.called", "limit": 500}
        ).json()["events"]
    assert sorted(e["data"]["ticket_id"] for e in feed) == sorted(ticket_ids)


def test_five_stations_calling_a_mixed_queue_call_it_in_the_rule_engine_s_order(
    served_triage: str, registration: httpx.Client
) -> None:
    """Call-next is the head of `GET …/order`, also with five stations racing: the calls, in commit
    order (the feed's), are exactly the order the route projected, each patient once."""
    stations = [str(n) for n in range(1, CALLERS + 1)]
    rules = {"normal_per_priority": 2, "shortest_work_first": True}
    with http_client(served_triage, audience="triage") as client:
        put = client.put("/queues/internal/settings", json={"kind": "department", "rules": rules})
        assert put.status_code == 200, put.text
        for station in stations:
            client.put(f"/queues/internal/stations/{station}", json={"label": f"{station}号窗口"})
    visits = [open_visit(registration) for _ in range(30)]
    mixes = [
        {},
        {"service_class": "complex"},
        {"priority": "priority"},
        {"priority": "priority", "service_class": "complex"},
    ]

    # The patients arrive one after another (racing arrivals are the 5 x 50 tests' subject): what races
    # here is the five stations' calls.
    with http_client(served_triage, audience="triage") as client:
        arrivals = [
            client.post("/queues/internal/tickets", json={"visit_id": visit["id"]} | mixes[n % len(mixes)])
            for n, visit in enumerate(visits)
        ]
        assert [r.status_code for r in arrivals] == [201] * len(visits)
        projected = [e["ticket_id"] for e in client.get("/queues/internal/order").json()["order"]]
    assert sorted(projected) == sorted(r.json()["id"] for r in arrivals)

    per_station = run_together(served_triage, [station_calling_until_empty(s) for s in stations])

    called = Counter(ticket["id"] for calls in per_station for ticket in calls)
    assert set(called.values()) == {1}
    with http_client(served_triage, audience="triage") as client:
        feed = client.get(
            "/events", headers=feed_headers("triage"), params={"type": "ticket.called", "limit": 500}
        ).json()["events"]
    assert [e["data"]["ticket_id"] for e in feed] == projected


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
    with http_client(served_triage, audience="triage") as client:
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
    with http_client(served_triage, audience="triage") as client:
        [winner] = [r.json() for r in responses if r.status_code == 201]
        assert winner["number"] == 1
        later = client.post("/queues/internal/tickets", json={"visit_id": other["id"]})
        assert later.json()["number"] == 2
        queued = client.get(
            "/events", headers=feed_headers("triage"), params={"type": "ticket.queued"}
        ).json()["events"]
    assert len(queued) == 2


def test_stations_racing_on_one_called_ticket_change_it_once(
    served_triage: str, registration: httpx.Client
) -> None:
    """Skip, no-show, recall, hold and cancel at the same moment on one called ticket: the row lock orders
    them, so each later one sees the state the earlier one left (409 when it no longer applies)."""
    visit = open_visit(registration)
    with http_client(served_triage, audience="triage") as client:
        ticket = client.post("/queues/internal/tickets", json={"visit_id": visit["id"]}).json()
        assert client.post("/queues/internal/call-next", json={}).status_code == 200
    actions = ["skip", "no-show", "finish", "hold", "cancel"]
    responses = run_together(served_triage, [act_on(ticket["id"], action) for action in actions])
    assert {r.status_code for r in responses} <= {200, 409}
    with http_client(served_triage, audience="triage") as client:
        final = client.get(f"/tickets/{ticket['id']}").json()
        events = client.get("/events", headers=feed_headers("triage"), params={"limit": 100}).json()["events"]
    changes = [
        e["type"] for e in events if e["type"] not in ("ticket.queued", "ticket.called", "queue.nearly_up")
    ]
    assert len(changes) == sum(r.status_code == 200 for r in responses)
    # Whatever order won, the last change left the state the ticket has now.
    last = {
        "ticket.skipped": "waiting",
        "ticket.noshow": "noshow",
        "ticket.finished": "finished",
        "ticket.held": "held",
        "ticket.cancelled": "cancelled",
    }
    assert final["status"] == last[changes[-1]]


def queue_state(client: httpx.Client, ticket_ids: list[str]) -> dict[str, Any]:
    """Everything a restart could lose: queues in call order, held tickets, settings, stations, tickets."""
    return {
        "queues": {d: client.get(f"/queues/{d}").json() for d in ("internal", "cashier")},
        "settings": client.get("/queues/internal/settings").json(),
        "tickets": [client.get(f"/tickets/{ticket_id}").json() for ticket_id in ticket_ids],
        "stats": client.get("/queues/internal/stats").json(),
    }


def test_queue_state_is_identical_after_a_restart(
    settings: TriageSettings, registration: httpx.Client
) -> None:
    """Every status a ticket can have, and the places in line skips and transfers set, survive a restart
    of the service: nothing about a queue is kept in memory."""
    testing.wipe(settings.resolved_database_url, settings.resolved_schema, TriageTable.metadata)
    visits = [open_visit(registration) for _ in range(8)]
    headers = internal_headers(audience="triage")
    with (
        testing.serve(create_app(settings)) as url,
        httpx.Client(base_url=url, headers=headers, timeout=HTTP_TIMEOUT_SECONDS) as client,
    ):

        def ok(response: httpx.Response) -> dict[str, Any]:
            assert response.status_code in (200, 201), response.text
            body: dict[str, Any] = response.json()
            return body

        ok(
            client.put(
                "/queues/internal/settings", json={"kind": "room", "skip_requeue_after": 1, "max_skips": 1}
            )
        )
        ok(client.put("/queues/internal/stations/3", json={"label": "3号诊室"}))
        tickets = [ok(client.post("/queues/internal/tickets", json={"visit_id": v["id"]})) for v in visits]
        skipped = ok(client.post("/queues/internal/call-next", json={"counter": "3"}))
        ok(client.post(f"/tickets/{skipped['id']}/skip"))
        recalled = ok(client.post("/queues/internal/call-next", json={"counter": "3"}))
        ok(client.post(f"/tickets/{recalled['id']}/recall"))
        moved = ok(client.post(f"/tickets/{recalled['id']}/transfer", json={"department": "cashier"}))
        ok(client.post(f"/tickets/{tickets[3]['id']}/hold"))
        ok(client.post(f"/tickets/{tickets[4]['id']}/cancel"))
        noshow = ok(client.post("/queues/internal/call-next", json={"counter": "3"}))
        ok(client.post(f"/tickets/{noshow['id']}/no-show"))
        seen = ok(client.post("/queues/internal/call-next", json={"counter": "3"}))
        ok(client.post(f"/tickets/{seen['id']}/finish"))
        ok(client.post("/queues/internal/call-next", json={"counter": "3"}))  # left called
        ids = [t["id"] for t in tickets] + [moved["ticket"]["id"]]
        before = queue_state(client, ids)
        next_in_line = before["queues"]["internal"]["waiting"][0]["id"]
    statuses = Counter(t["status"] for t in before["tickets"])
    assert set(statuses) == {"waiting", "called", "held", "cancelled", "noshow", "finished", "transferred"}

    with (
        testing.serve(create_app(settings)) as url,
        httpx.Client(base_url=url, headers=headers, timeout=HTTP_TIMEOUT_SECONDS) as client,
    ):
        assert queue_state(client, ids) == before
        assert client.post("/queues/internal/call-next", json={"counter": "3"}).json()["id"] == next_in_line
        late = open_visit(registration)
        number = client.post("/queues/internal/tickets", json={"visit_id": late["id"]}).json()["number"]
        assert number == len(visits) + 1  # the day's numbers go on, gap-free


def test_first_writes_of_a_queue_s_settings_and_station_racing_each_other_all_succeed(
    served_triage: str,
) -> None:
    """Ten desks configuring a new queue and its station at once: every write answers, none is a 500."""
    department = "racing-desks"

    def configure(minutes: int) -> Callable[[httpx.Client], httpx.Response]:
        body = {"kind": "window", "window": "cashier", "target_minutes": minutes}
        return lambda client: client.put(f"/queues/{department}/settings", json=body)

    def station(label: str) -> Callable[[httpx.Client], httpx.Response]:
        return lambda client: client.put(f"/queues/{department}/stations/1", json={"label": label})

    answers = run_together(
        served_triage, [configure(m) for m in range(5, 15)] + [station(f"窗口{n}") for n in range(10)]
    )
    assert [a.status_code for a in answers] == [200] * 20, [a.text for a in answers if a.status_code != 200]
    with http_client(served_triage, audience="triage") as client:
        setting = client.get(f"/queues/{department}/settings").json()
    assert setting["target_minutes"] in range(5, 15) and [s["code"] for s in setting["stations"]] == ["1"]
