"""Wait metrics arithmetic (services/events/waits.py): a visit's intervals from its events, and the
aggregates (count, mean, nearest-rank p90, max, share over the target), without a database."""

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from kit.stats import nearest_rank
from services.events.waits import (
    GroupBy,
    Interval,
    IntervalKind,
    JourneyEvent,
    aggregate,
    summarise,
    ticket_histories,
    visit_intervals,
)

# 08:00 at the hospital (Asia/Shanghai) is 00:00 UTC.
T0 = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def event(event_type: str, minute: float, visit_id: str = "v1", **data: Any) -> JourneyEvent:
    return JourneyEvent(event_type, visit_id, at(minute), data)


def outpatient_morning(visit_id: str = "v1") -> list[JourneyEvent]:
    """Registered 08:00, triaged 08:03, queued 08:04, called 08:16, paid order, report, finished 08:40."""
    return [
        event("visit.opened", 0, visit_id, department="internal"),
        event("visit.triaged", 3, visit_id, level="IV"),
        event("ticket.queued", 4, visit_id, ticket_id="t1", department="internal"),
        event("ticket.called", 16, visit_id, ticket_id="t1", department="internal"),
        event("order.placed", 20, visit_id, order_id="o1", status="awaiting_payment"),
        event("charge.paid", 27, visit_id, order_id="o1", charge_id="c1"),
        event("report.preliminary", 50, visit_id, order_id="o1"),
        event("report.final", 57, visit_id, order_id="o1"),
        event("ticket.finished", 40, visit_id, ticket_id="t1", department="internal"),
    ]


def minutes_by_kind(intervals: list[Interval]) -> dict[IntervalKind, float | None]:
    return {i.kind: i.minutes for i in intervals}


def test_a_visit_gives_each_interval_from_its_events() -> None:
    intervals = visit_intervals("v1", outpatient_morning())
    assert minutes_by_kind(intervals) == {
        IntervalKind.registration_to_triage: 3,
        IntervalKind.registration_to_call: 16,
        IntervalKind.queue_wait: 12,
        IntervalKind.consultation: 24,
        IntervalKind.order_to_payment: 7,
        IntervalKind.payment_to_result: 30,  # the final report, not the preliminary one
        IntervalKind.order_to_result: 37,
    }
    assert {i.department for i in intervals} == {"internal"}
    assert {i.queue for i in intervals if i.kind in (IntervalKind.queue_wait, IntervalKind.consultation)} == {
        "internal"
    }
    assert {i.subject for i in intervals if i.kind is IntervalKind.order_to_result} == {"o1"}


def test_open_waits_have_no_end_and_an_order_released_at_once_has_no_payment_wait() -> None:
    events = [
        event("visit.opened", 0, department="emergency", kind="emergency"),
        event("ticket.queued", 1, ticket_id="t1", department="emergency"),
        event("order.placed", 2, order_id="o1", status="released"),  # green channel: no payment first
    ]
    intervals = visit_intervals("v1", events)
    assert minutes_by_kind(intervals) == {
        IntervalKind.registration_to_triage: None,
        IntervalKind.registration_to_call: None,
        IntervalKind.queue_wait: None,
        IntervalKind.order_to_result: None,
    }


def test_waits_that_can_no_longer_end_are_not_counted_as_open() -> None:
    """An outpatient nobody triages, a cancelled ticket, a no-show after a call, a closed visit."""
    untriaged = [event("visit.opened", 0, department="internal", kind="outpatient")]
    assert visit_intervals("v1", untriaged) == []  # not triaged, never queued: nothing to wait for
    cancelled = [
        *untriaged,
        event("ticket.queued", 1, ticket_id="t1", department="internal"),
        event("ticket.cancelled", 4, ticket_id="t1", cancelled_from="waiting"),
    ]
    assert visit_intervals("v1", cancelled) == []
    no_show = [
        *untriaged,
        event("ticket.queued", 1, ticket_id="t1", department="internal"),
        event("ticket.called", 3, ticket_id="t1"),
        event("ticket.noshow", 9, ticket_id="t1"),
    ]
    assert minutes_by_kind(visit_intervals("v1", no_show)) == {
        IntervalKind.registration_to_call: 3,
        IntervalKind.queue_wait: 2,  # the wait was real; the consultation never happened
    }
    queued_then_closed = [
        event("visit.opened", 0, department="emergency", kind="emergency"),
        event("ticket.queued", 1, ticket_id="t1", department="emergency"),
        event("visit.closed", 60, reason="desk", kind="emergency"),
    ]
    assert minutes_by_kind(visit_intervals("v1", queued_then_closed)) == {IntervalKind.queue_wait: None}


def test_a_skipped_and_recalled_patient_waits_to_the_first_call_and_is_served_from_the_last() -> None:
    events = [
        event("visit.opened", 0, department="internal"),
        event("ticket.queued", 0, ticket_id="t1", department="internal"),
        event("ticket.called", 5, ticket_id="t1"),
        event("ticket.skipped", 7, ticket_id="t1"),
        event("ticket.called", 15, ticket_id="t1"),
        event("ticket.recalled", 17, ticket_id="t1"),
        event("ticket.finished", 25, ticket_id="t1"),
    ]
    found = minutes_by_kind(visit_intervals("v1", events))
    assert found[IntervalKind.queue_wait] == 5
    assert found[IntervalKind.consultation] == 8


def test_a_transfer_after_the_consultation_ends_it_and_the_next_queue_has_its_own_wait() -> None:
    events = [
        event("visit.opened", 0, department="internal"),
        event("ticket.queued", 0, ticket_id="t1", department="internal"),
        event("ticket.called", 10, ticket_id="t1"),
        event("ticket.transferred", 18, ticket_id="t1", to_ticket_id="t2"),
        event("ticket.queued", 18, ticket_id="t2", department="cashier"),
        event("ticket.called", 30, ticket_id="t2"),
    ]
    intervals = visit_intervals("v1", events)
    by_ticket = {(i.kind, i.queue): i.minutes for i in intervals}
    assert by_ticket[(IntervalKind.consultation, "internal")] == 8
    assert by_ticket[(IntervalKind.queue_wait, "cashier")] == 12
    assert minutes_by_kind(intervals)[IntervalKind.registration_to_call] == 10


def test_nearest_rank_p90_is_an_observed_value() -> None:
    assert nearest_rank([float(m) for m in range(1, 11)], 90) == 9  # rank ceil(9) = 9
    assert nearest_rank([float(m) for m in range(1, 12)], 90) == 10  # rank ceil(9.9) = 10
    assert nearest_rank([4.0], 90) == 4


@given(st.lists(st.floats(min_value=0, max_value=600, allow_nan=False), min_size=1, max_size=200))
def test_nearest_rank_p90_is_the_smallest_value_with_90_percent_at_or_below_it(values: list[float]) -> None:
    ordered = sorted(values)
    p90 = nearest_rank(ordered, 90)
    assert p90 in ordered
    assert sum(1 for v in ordered if v <= p90) >= 0.9 * len(ordered)
    assert sum(1 for v in ordered if v < p90) < 0.9 * len(ordered)


def wait(minutes: float | None, *, department: str = "internal", hour_utc: int = 0) -> Interval:
    start = T0 + timedelta(hours=hour_utc)
    end = None if minutes is None else start + timedelta(minutes=minutes)
    return Interval(IntervalKind.queue_wait, "v", "t", department, department, start, end)


def test_summary_counts_finished_waits_and_the_share_strictly_over_the_target() -> None:
    waits = [wait(m) for m in (2, 4, 10, 11, 30)] + [wait(None)]
    figures = summarise(IntervalKind.queue_wait, (), waits, target=10)
    assert (figures.count, figures.open) == (5, 1)
    assert figures.mean_minutes == 11.4
    assert (figures.p90_minutes, figures.max_minutes) == (30, 30)
    assert figures.over_target_share == 0.4  # 11 and 30; exactly 10 is within the target


def test_a_group_with_only_open_waits_has_no_figures_but_counts_them() -> None:
    figures = summarise(IntervalKind.queue_wait, (), [wait(None)], target=10)
    assert (figures.count, figures.open, figures.mean_minutes, figures.p90_minutes) == (0, 1, None, None)


def test_aggregates_group_by_department_and_hospital_hour() -> None:
    waits = [
        wait(5, department="internal", hour_utc=0),  # 08:00 at the hospital
        wait(15, department="internal", hour_utc=0),
        wait(20, department="internal", hour_utc=1),  # 09:00
        wait(3, department="surgery", hour_utc=0),
    ]
    rows = aggregate(waits, group_by=[GroupBy.department, GroupBy.hour], target=10)
    assert [(r.group, r.count, r.mean_minutes, r.over_target_share) for r in rows] == [
        (("internal", 8), 2, 10, 0.5),
        (("internal", 9), 1, 20, 1.0),
        (("surgery", 8), 1, 3, 0.0),
    ]
    [total] = aggregate(waits, group_by=[], target=10)
    assert (total.group, total.count, total.p90_minutes) == ((), 4, 20)


def test_ticket_histories_keep_the_times_a_replay_needs_in_queueing_order() -> None:
    events = [
        *outpatient_morning("v1"),
        event("visit.opened", 1, "v2", department="internal"),
        event("ticket.queued", 2, "v2", ticket_id="t2", department="internal"),
    ]
    first, second = ticket_histories(events)
    assert (first.queue, first.queued_at, first.called_at, first.ended_at) == ("internal", at(2), None, None)
    assert (second.queued_at, second.called_at, second.service_started_at, second.ended_at) == (
        at(4),
        at(16),
        at(16),
        at(40),
    )
