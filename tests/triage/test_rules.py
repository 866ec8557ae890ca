"""The rule engine (services/triage/rules.py): orders, reasons, and the properties no configuration breaks."""

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from kit import testing
from patientflow.simulate import Arrival, Lane, simulate
from services.triage.app import create_app
from services.triage.config import TriageSettings
from services.triage.models import TriageTable
from services.triage.rules import (
    AppointmentMode,
    PriorityKind,
    QueueRules,
    QueueState,
    WaitCondition,
    Waiting,
    advance,
    next_in_queue,
    order_queue,
    station_full,
)
from services.triage.schemas import QueuePriority, TriageLevel
from services.triage.service import rank_of
from tests.triage.conftest import FrozenClock
from tests.triage.factories import assess, call_next, open_visit, take_ticket

START = datetime(2026, 11, 27, 0, 0, tzinfo=UTC)  # 08:00 in Beijing


def at(minute: float) -> datetime:
    return START + timedelta(minutes=minute)


def ticket(number: int, minute: float, **fields: object) -> Waiting:
    return Waiting(key=f"t{number}", number=number, arrived_at=at(minute), **fields)  # type: ignore[arg-type]


def keys(placed: list) -> list[str]:  # type: ignore[type-arg]
    return [p.ticket.key for p in placed]


def test_default_rules_call_green_channel_then_priority_then_everyone_first_come() -> None:
    queue = [
        ticket(1, 0),
        ticket(2, 1, priority=PriorityKind.priority),
        ticket(3, 2, level="IV"),
        ticket(4, 3, level="III"),
        ticket(5, 4, level="II"),
        ticket(6, 5, level="I"),
    ]
    placed = order_queue(queue, rules=QueueRules(), now=at(10))
    assert keys(placed) == ["t6", "t5", "t2", "t4", "t1", "t3"]
    assert placed[0].reason == "level I, arrived 08:05, green channel: ahead of everyone"
    assert placed[1].reason == "level II, arrived 08:04, green channel: ahead of everyone"
    assert placed[2].reason == "priority, arrived 08:01, ahead of normal patients"
    assert placed[4].reason == "arrived 08:00"
    assert [p.position for p in placed] == [1, 2, 3, 4, 5, 6]


level_or_none = st.sampled_from([None, "II", "III", "IV"])
queues = st.lists(
    st.builds(
        lambda n, minute, level, flagged: (n, minute, level, flagged),
        st.integers(1, 10_000),
        st.integers(0, 240),
        level_or_none,
        st.booleans(),
    ),
    max_size=25,
    unique_by=lambda row: row[0],
)


@given(queues)
def test_default_rules_are_todays_call_order(rows: list[tuple[int, int, str | None, bool]]) -> None:
    """The defaults keep the integer rank's order (rank, then arrival, then number), level I aside."""
    queue = [
        ticket(n, m, level=level, priority=PriorityKind.priority if flagged else None)
        for n, m, level, flagged in rows
    ]

    def today(t: Waiting) -> tuple[int, datetime, int]:
        level = TriageLevel(t.level) if t.level else None
        priority = QueuePriority.priority if t.priority else QueuePriority.normal
        return (rank_of(level=level, priority=priority), t.arrived_at, t.number)

    assert keys(order_queue(queue, rules=QueueRules(), now=at(300))) == [
        t.key for t in sorted(queue, key=today)
    ]


wait_condition = st.builds(
    lambda minutes, service_class, tier, promote: WaitCondition(
        minutes=minutes,
        service_class=service_class,
        tier=tier,
        action="priority" if promote and tier != "priority" else "first",
    ),
    st.integers(1, 90),
    st.none() | st.sampled_from(["simple", "complex"]),
    st.none() | st.sampled_from(["priority", "normal"]),
    st.booleans(),
)
rules_strategy = st.builds(
    QueueRules,
    wait_conditions=st.lists(wait_condition, max_size=3).map(tuple),
    green_channel_levels=st.sampled_from([("I",), ("I", "II")]),
    priority_levels=st.sampled_from([(), ("III",), ("III", "IV")]),
    priority_ranks=st.dictionaries(st.sampled_from(list(PriorityKind)), st.integers(0, 3)),
    normal_per_priority=st.none() | st.integers(1, 4),
    appointments=st.sampled_from(list(AppointmentMode)),
    late_every=st.none() | st.integers(1, 4),
    ageing_minutes=st.none() | st.integers(1, 90),
    shortest_work_first=st.booleans(),
)
any_ticket = st.builds(
    lambda n, minute, level, priority, booked, service_class, skip: ticket(
        n,
        minute,
        level=level,
        priority=priority,
        appointment_at=at(booked) if booked is not None else None,
        service_class=service_class,
        # A skipped ticket: skipped at minute s, sitting out c calls (k so far), or until minute m.
        **(
            {}
            if skip is None
            else {
                "skipped_at": at(minute + skip[0]),
                "recall_after_calls": skip[1],
                "calls_since_skip": skip[2],
                "recall_at": at(minute + skip[0] + skip[3]) if skip[3] is not None else None,
            }
        ),
    ),
    st.integers(1, 10_000),
    st.integers(0, 240),
    st.sampled_from([None, "I", "II", "III", "IV"]),
    st.none() | st.sampled_from(list(PriorityKind)),
    st.none() | st.integers(-60, 300),
    st.none() | st.sampled_from(["simple", "complex"]),
    st.none()
    | st.tuples(st.integers(0, 60), st.integers(0, 5), st.integers(0, 5), st.none() | st.integers(1, 30)),
)


@given(
    rules_strategy,
    st.lists(any_ticket, min_size=1, max_size=20, unique_by=lambda t: t.number),
    st.integers(0, 5),
    st.integers(0, 5),
)
def test_a_level_one_is_always_next(
    rules: QueueRules, queue: list[Waiting], normal_since: int, on_time_since: int
) -> None:
    state = QueueState(normal_since_priority=normal_since, on_time_since_late=on_time_since)
    placed = order_queue(queue, rules=rules, now=at(400), state=state)
    assert sorted(keys(placed)) == sorted(t.key for t in queue)  # everyone, once
    if any(t.level == "I" for t in queue):
        assert placed[0].ticket.level == "I"
        assert "level I" in placed[0].reason
    # Call-next takes `next_in_queue`; the order route shows `order_queue`: the same first, same reason.
    head = next_in_queue(queue, rules=rules, now=at(400), state=state)
    assert head is not None and (head.ticket, head.reason) == (placed[0].ticket, placed[0].reason)
    # The nearly-up check projects only the front: the same first places, for the same reasons.
    for limit in (1, 3):
        assert order_queue(queue, rules=rules, now=at(400), state=state, limit=limit) == placed[:limit]


def test_no_configuration_takes_level_one_out_of_the_green_channel() -> None:
    with pytest.raises(ValidationError):
        QueueRules(green_channel_levels=("II",))
    with pytest.raises(ValidationError):
        QueueRules(priority_levels=("V",))


arrivals_strategy = st.lists(
    st.tuples(
        st.integers(0, 120),  # arrival minute
        st.integers(1, 15),  # service minutes
        st.sampled_from([None, "III", "IV"]),
        st.booleans(),  # legal priority
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(rules_strategy, arrivals_strategy, st.integers(1, 3), st.integers(5, 60))
def test_with_ageing_nobody_is_overtaken_past_the_bound(
    rules: QueueRules, rows: list[tuple[int, int, str | None, bool]], counters: int, bound: int
) -> None:
    """Once a patient has waited the bound, only earlier arrivals are called before them; so the wait is
    at most the bound, one service under way, and the work of those who came earlier: no starvation,
    whatever arrives (the green channel aside, which this arrival mix leaves out)."""
    rules = rules.model_copy(update={"ageing_minutes": bound})
    arrivals = [
        Arrival(
            number=i + 1,
            minute=minute,
            service_minutes=service,
            service_class="simple" if service <= 5 else "complex",
            level=level,
            priority=PriorityKind.elderly if flagged else None,
        )
        for i, (minute, service, level, flagged) in enumerate(rows)
    ]
    served = simulate(arrivals, rules=rules, lanes=[Lane(counters)]).served
    longest = max(a.service_minutes for a in arrivals)
    for patient in served:
        place = (patient.arrival.minute, patient.arrival.number)
        earlier = [s for s in served if (s.arrival.minute, s.arrival.number) < place]
        for other in served:
            if patient.arrival.minute + bound <= other.start < patient.start:
                assert other in earlier, (patient, other)
        earlier_work = sum(s.arrival.service_minutes for s in earlier)
        assert patient.wait <= bound + longest + earlier_work


def test_ageing_stops_a_stream_of_priority_patients_starving_a_normal_one() -> None:
    # One counter, 5-minute services, a priority patient arriving every 5 minutes all morning.
    normal = Arrival(number=1, minute=0.5, service_minutes=5)
    stream = [Arrival(i + 2, i * 5.0, 5, priority=PriorityKind.elderly) for i in range(40)]

    def wait_of_normal(rules: QueueRules) -> float:
        served = simulate([normal, *stream], rules=rules, lanes=[Lane(1)]).served
        return next(s.wait for s in served if s.arrival.number == 1)

    assert wait_of_normal(QueueRules()) > 190  # starved until the stream ends
    assert wait_of_normal(QueueRules(ageing_minutes=30)) <= 30 + 5


def test_ageing_reason_says_how_long_and_the_bound() -> None:
    queue = [ticket(1, 0), ticket(2, 50, priority=PriorityKind.elderly)]
    placed = order_queue(queue, rules=QueueRules(ageing_minutes=45), now=at(52))
    assert keys(placed) == ["t1", "t2"]
    assert (
        placed[0].reason == "arrived 08:00, waited 52 min, past the 45-minute bound: ahead of later arrivals"
    )


def test_legal_priority_ranks_order_the_priority_tier() -> None:
    rules = QueueRules(
        priority_ranks={PriorityKind.military: 0, PriorityKind.pregnant: 1, PriorityKind.elderly: 2}
    )
    queue = [
        ticket(1, 0, priority=PriorityKind.elderly),
        ticket(2, 1, priority=PriorityKind.pregnant),
        ticket(3, 2, priority=PriorityKind.military),
        ticket(4, 3, level="III"),
    ]
    placed = order_queue(queue, rules=rules, now=at(5))
    assert keys(placed) == ["t3", "t4", "t2", "t1"]  # level III counts as rank 0
    assert placed[0].reason == "priority (military), rank 0, arrived 08:02"


def test_ratio_calls_two_normal_patients_per_priority_patient() -> None:
    rules = QueueRules(normal_per_priority=2)
    queue = [ticket(i, i, priority=PriorityKind.elderly) for i in (1, 2)] + [
        ticket(i, i) for i in (3, 4, 5, 6)
    ]
    placed = order_queue(queue, rules=rules, now=at(10))
    assert keys(placed) == ["t3", "t4", "t1", "t5", "t6", "t2"]
    assert placed[1].reason == "arrived 08:04, normal turn (2 of 2 normal : 1 priority)"
    assert placed[2].reason == "priority (elderly), arrived 08:01, priority turn after 2 normal calls"
    # Where the day's earlier calls left off counts: two normal calls already made, a priority is due.
    resumed = order_queue(queue, rules=rules, now=at(10), state=QueueState(normal_since_priority=2))
    assert keys(resumed)[0] == "t1"


def test_appointments_first_by_booked_time_and_late_arrivals_every_n() -> None:
    rules = QueueRules(appointments=AppointmentMode.first, late_minutes=15, late_every=2)
    queue = [
        ticket(1, 0),  # walk-in at 08:00
        ticket(2, 5, appointment_at=at(30)),  # booked 08:30, came early (within the window)
        ticket(3, 6, appointment_at=at(10)),  # booked 08:10, on time
        ticket(4, 1, appointment_at=at(-40)),  # booked 07:20, 41 minutes late
        ticket(5, 2),  # walk-in
        ticket(6, 3, appointment_at=at(120)),  # booked 10:00, 117 minutes early: a walk-in for now
    ]
    placed = order_queue(queue, rules=rules, now=at(20))
    assert keys(placed) == ["t3", "t2", "t4", "t1", "t5", "t6"]
    assert placed[5].reason == "appointment 10:00 (early), arrived 08:03"
    assert placed[0].reason == "appointment 08:10 (on-time), arrived 08:06, ahead of walk-ins"
    assert (
        placed[2].reason == "appointment 07:20 (late), arrived 08:01, late, inserted after 2 on-time patients"
    )
    booked_time = order_queue(queue, rules=QueueRules(appointments=AppointmentMode.booked_time), now=at(20))
    assert keys(booked_time) == ["t1", "t4", "t5", "t6", "t3", "t2"]  # as if arrived at 08:10 and 08:30


def test_shortest_expected_work_first() -> None:
    rules = QueueRules(shortest_work_first=True)
    queue = [ticket(1, 0, service_class="complex"), ticket(2, 1, service_class="simple")]
    placed = order_queue(queue, rules=rules, now=at(2))
    assert keys(placed) == ["t2", "t1"]
    assert placed[0].reason == "arrived 08:01, simple (~3 min), shorter work first"
    assert keys(order_queue(queue, rules=QueueRules(), now=at(2))) == ["t1", "t2"]


# --- The live queue's order route


@pytest.fixture
def ratio_client(data_dir: Path, registration_url: str, registration: httpx.Client) -> Iterator[TestClient]:
    """Triage with the internal queue configured 1 normal : 1 priority."""
    config = testing.make_test_settings(
        TriageSettings,
        data_dir,
        registration_url=registration_url,
        queue_rules={"internal": QueueRules(normal_per_priority=1)},
    )
    with testing.service_client(create_app(config), TriageTable.metadata) as client:
        yield client


def test_order_route_answers_the_order_and_reasons(
    client: TestClient, registration: httpx.Client, clock: FrozenClock
) -> None:
    visits = [open_visit(registration) for _ in range(3)]
    normal = take_ticket(client, visits[0]["id"])
    clock.advance(minutes=12)
    elderly = take_ticket(client, visits[1]["id"], priority="priority")
    clock.advance(minutes=1)
    assess(client, visits[2]["id"], "II")
    urgent = take_ticket(client, visits[2]["id"])
    body = client.get("/queues/internal/order").json()
    assert body["department"] == "internal" and body["rules"] == QueueRules().model_dump(mode="json")
    assert [(e["position"], e["ticket_id"]) for e in body["order"]] == [
        (1, urgent["id"]),
        (2, elderly["id"]),
        (3, normal["id"]),
    ]
    assert body["order"][0]["reason"] == "level II, arrived 08:13, green channel: ahead of everyone"
    assert body["order"][0]["display_number"] == urgent["display_number"]
    assert body["order"][1]["reason"] == "priority, arrived 08:12, ahead of normal patients"
    # Default rules are today's order: call-next takes the first of the answer.
    assert call_next(client)["id"] == urgent["id"]
    assert [e["ticket_id"] for e in client.get("/queues/internal/order").json()["order"]] == [
        elderly["id"],
        normal["id"],
    ]
    assert client.get("/queues/empty-one/order").json()["order"] == []


def test_order_route_follows_the_queues_configuration_and_the_days_calls(
    ratio_client: TestClient, registration: httpx.Client, clock: FrozenClock
) -> None:
    visits = [open_visit(registration) for _ in range(4)]
    first = take_ticket(ratio_client, visits[0]["id"])
    second = take_ticket(ratio_client, visits[1]["id"])
    elderly = take_ticket(ratio_client, visits[2]["id"], priority="priority")
    order = ratio_client.get("/queues/internal/order").json()["order"]
    assert [e["ticket_id"] for e in order] == [first["id"], elderly["id"], second["id"]]
    assert order[0]["reason"] == "arrived 08:00, normal turn (1 of 1 normal : 1 priority)"
    called = call_next(ratio_client)  # call-next takes the order's first, for the same reason
    assert (called["id"], called["reason"]) == (first["id"], order[0]["reason"])
    # That call was a normal call, so the priority patient's turn comes next.
    order = ratio_client.get("/queues/internal/order").json()["order"]
    assert [e["ticket_id"] for e in order] == [elderly["id"], second["id"]]
    assert order[0]["reason"] == "priority, arrived 08:00, priority turn after 1 normal call"
    assert call_next(ratio_client)["id"] == elderly["id"]
    assert call_next(ratio_client)["id"] == second["id"]
    assert ratio_client.get("/queues/BAD!/order").status_code == 400


def test_queue_rules_come_from_the_environment_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIAGE_QUEUE_RULES", '{"internal": {"normal_per_priority": 2, "ageing_minutes": 60}}')
    configured = TriageSettings()
    assert configured.rules_for("internal") == QueueRules(normal_per_priority=2, ageing_minutes=60)
    assert configured.rules_for("surgery") == QueueRules()
    monkeypatch.setenv("TRIAGE_QUEUE_RULES", '{"internal": {"green_channel_levels": ["II"]}}')
    with pytest.raises(ValidationError):
        TriageSettings()


# --- Wait conditions, skip recall interval, cap per station


def test_a_wait_condition_calls_the_longest_waiting_of_its_patients_first() -> None:
    rules = QueueRules(wait_conditions=(WaitCondition(service_class="complex", minutes=30),))
    queue = [
        ticket(1, 0, priority=PriorityKind.elderly),
        ticket(2, 5, service_class="complex"),
        ticket(3, 10, service_class="complex"),
        ticket(4, 1),
    ]
    assert keys(order_queue(queue, rules=rules, now=at(34))) == ["t1", "t4", "t2", "t3"]  # 29 min: not yet
    placed = order_queue(queue, rules=rules, now=at(40))
    assert keys(placed) == ["t2", "t3", "t1", "t4"]  # both past 30 by the time each is called
    assert placed[0].reason == (
        "arrived 08:05, waited 35 min, the longest of the complex patients, past the 30-minute condition: "
        "called first"
    )
    level_two = ticket(5, 39, level="II")
    assert keys(order_queue([*queue, level_two], rules=rules, now=at(40)))[0] == "t5"  # green still first


def test_a_wait_condition_can_promote_normal_patients_to_the_priority_tier() -> None:
    condition = WaitCondition(tier="normal", minutes=20, action="priority")
    rules = QueueRules(wait_conditions=(condition,))
    queue = [ticket(1, 0), ticket(2, 5, priority=PriorityKind.elderly), ticket(3, 15)]
    placed = order_queue(queue, rules=rules, now=at(21))
    assert keys(placed) == ["t1", "t2", "t3"]  # t1 waited 21 min: in the priority tier, and earlier
    assert placed[0].reason == (
        "arrived 08:00, waited 21 min, past the 20-minute condition: promoted to priority, "
        "ahead of normal patients"
    )
    assert keys(order_queue(queue, rules=QueueRules(), now=at(21))) == ["t2", "t1", "t3"]
    with pytest.raises(ValidationError):
        WaitCondition(tier="priority", minutes=5, action="priority")
    with pytest.raises(ValidationError):
        QueueRules(wait_conditions=(WaitCondition(service_class="x-ray", minutes=5),))


def test_a_skipped_ticket_sits_out_its_calls_in_the_projection_or_until_its_minute() -> None:
    skipped = ticket(1, 0, skipped_at=at(10), recall_after_calls=2)
    queue = [skipped, ticket(2, 1), ticket(3, 2), ticket(4, 3)]
    placed = order_queue(queue, rules=QueueRules(), now=at(11))
    assert keys(placed) == ["t2", "t3", "t1", "t4"]
    assert placed[2].reason == "arrived 08:00, skipped at 08:10, back in line after 2 calls"
    # One call made since the skip: one more to sit out.
    halfway = order_queue([replace(skipped, calls_since_skip=1), *queue[1:]], rules=QueueRules(), now=at(11))
    assert keys(halfway) == ["t2", "t1", "t3", "t4"]
    # Back at a minute: then at its old place, first.
    timed = replace(skipped, recall_at=at(15))
    assert keys(order_queue([timed, *queue[1:]], rules=QueueRules(), now=at(15)))[0] == "t1"
    alone = order_queue([skipped], rules=QueueRules(), now=at(11))
    assert (
        alone[0].reason == "arrived 08:00, skipped at 08:10, sits out 2 calls (0 so far), nobody else waiting"
    )
    # The green channel never sits out.
    urgent = ticket(5, 0, level="I", skipped_at=at(10), recall_after_calls=3)
    assert keys(order_queue([*queue[1:], urgent], rules=QueueRules(), now=at(11)))[0] == "t5"


def test_a_station_at_its_cap_says_why() -> None:
    assert station_full(station="3", called_there=1, cap=2) is None
    assert station_full(station="3", called_there=5, cap=None) is None
    assert station_full(station="3", called_there=2, cap=2) == (
        "station 3 has 2 patients called and not yet seen (cap 2): finish, skip or hold one first"
    )


@given(rules_strategy, st.lists(any_ticket, min_size=1, max_size=15, unique_by=lambda t: t.number))
def test_the_projected_order_is_what_successive_calls_take(rules: QueueRules, queue: list[Waiting]) -> None:
    """`GET …/order` at one instant is the sequence call-next would take if nobody else arrived."""
    now = at(300)
    projected = [p.ticket.key for p in order_queue(queue, rules=rules, now=now)]
    pool, state, calls = list(queue), QueueState(), []
    while pool:
        head = next_in_queue(pool, rules=rules, now=now, state=state)
        assert head is not None
        calls.append(head.ticket.key)
        state = advance(state, head.ticket, rules, now=now)
        pool = [
            replace(t, calls_since_skip=t.calls_since_skip + 1) if t.skipped_at else t
            for t in pool
            if t.key != head.ticket.key
        ]
    assert calls == projected
