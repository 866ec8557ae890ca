"""Ingestion: the log puts every cause before its effect, whatever the clocks and the read order, takes
each event once across restarts, and follows visits to patients."""

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlmodel import col, delete, select

from kit.auth import TokenSource
from kit.clock import utcnow
from kit.database import Database
from kit.testing import TEST_SECRET, FakeFeed, eventually
from services.events.config import EventsSettings
from services.events.ingest import Backlog, Ingestor, plan
from services.events.models import LogEvent, SourceCursor
from services.events.notifier import LogNotifier
from tests.events.factories import publish, source_event

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=utcnow().tzinfo)
SOURCES = ("registration", "triage", "results", "billing")


def fed(position: int, seconds: float, name: str, **causes: int) -> dict[str, Any]:
    """A feed entry named by `data.name`, at T0 + seconds, after the given feed positions."""
    event = source_event(
        "x.y", occurred_at=T0 + timedelta(seconds=seconds), data={"name": name}, causes=causes
    )
    return {**event, "position": position}


def backlogs(**read: list[dict[str, Any]] | int) -> dict[str, Backlog]:
    """Backlogs in source rank order: a list is what was read (the source read up to its last one),
    an int a source read up to there with nothing waiting."""
    result = {}
    for source in SOURCES:
        events = read.get(source, 0)
        if isinstance(events, int):
            result[source] = Backlog(read_to=events)
        else:
            result[source] = Backlog(read_to=events[-1]["position"] if events else 0, events=list(events))
    return result


def names(taken: list[tuple[str, dict[str, Any]]]) -> list[str]:
    return [event["data"]["name"] for _, event in taken]


def test_an_effect_read_before_its_cause_waits_for_it_not_for_a_clock() -> None:
    """Billing's charge page is read before results' order page; billing's clock is even behind."""
    charge = fed(3, 1.0, "charge.posted", results=7)
    read = backlogs(results=6, billing=[charge])
    assert plan(read) == []  # results has not been read as far as position 7
    read["results"] = Backlog(read_to=7, events=[fed(7, 2.0, "order.placed")])
    assert names(plan(read)) == ["order.placed", "charge.posted"]


def test_a_cause_already_logged_or_read_past_is_met() -> None:
    """`logged_to`: just before the head of the source's backlog, or as far as it was read."""
    read = backlogs(results=9, billing=[fed(3, 1.0, "after-results-8", results=8)])
    assert names(plan(read)) == ["after-results-8"]
    read = backlogs(results=[fed(9, 5.0, "r9")], billing=[fed(3, 1.0, "after-results-8", results=8)])
    assert names(plan(read)) == ["after-results-8", "r9"]  # 8 is in the log: r9 is the first unlogged


def test_causes_chain_across_sources_arriving_in_reverse() -> None:
    read = backlogs(
        registration=[fed(1, 3.0, "c", billing=1)],
        triage=[fed(1, 2.0, "b", results=1)],
        results=[fed(1, 1.0, "a")],
        billing=[fed(1, 0.0, "after-b", triage=1)],
    )
    assert names(plan(read)) == ["a", "b", "after-b", "c"]


def test_events_ready_together_merge_by_occurrence_then_source_rank_then_position() -> None:
    """Catching up after a restart, uncaused events come out in the old time order."""
    read = backlogs(
        registration=[fed(1, 1.0, "r1"), fed(2, 1.0, "r2")],
        results=[fed(7, 0.5, "o7")],
        billing=[fed(9, 1.0, "b9")],
    )
    assert names(plan(read)) == ["o7", "r1", "r2", "b9"]


def test_a_held_back_event_holds_back_its_own_feed_only() -> None:
    """Feed order is kept (even when the source's clock stepped back); other sources go on."""
    read = backlogs(
        triage=[fed(1, 1.0, "t1"), fed(2, 2.0, "t2", billing=5), fed(3, 0.1, "t3")],
        results=[fed(1, 9.0, "r1")],
        billing=4,  # billing is down, or has not been read that far
    )
    assert names(plan(read)) == ["t1", "r1"]


def test_a_cause_in_the_events_own_feed_or_in_an_unread_source_does_not_hold_it_back() -> None:
    read = backlogs(triage=[fed(4, 1.0, "own", triage=3), fed(5, 1.0, "elsewhere", gateway=12)])
    assert names(plan(read)) == ["own", "elsewhere"]


# --- the ingestor against fake feeds over HTTP ---------------------------------------------------------


@pytest.fixture
def run_ingestor(database: Database, settings: EventsSettings) -> Iterator[Any]:
    """Start ingestors (one at a time, like hub restarts); each is stopped when its block ends."""

    @contextmanager
    def running(merge_interval_seconds: float = 0.0) -> Iterator[Ingestor]:
        ingestor = Ingestor(
            database=database,
            feeds=settings.feed_urls(),
            tokens=TokenSource(TEST_SECRET, "service:events", set()),
            notifier=LogNotifier(),
            poll_seconds=0.02,
            wait_seconds=5.0,
            merge_interval_seconds=merge_interval_seconds,
        )
        ingestor.start()
        try:
            yield ingestor
        finally:
            ingestor.stop()

    yield running


def log(database: Database) -> list[LogEvent]:
    with database.session(write=False) as session:
        return list(session.exec(select(LogEvent).order_by(col(LogEvent.position))).all())


def logged_types(database: Database, count: int) -> list[str]:
    rows = eventually(lambda: r if len(r := log(database)) >= count else None, what=f"{count} logged")
    return [row.event_type for row in rows]


def held_back(ingestor: Ingestor, source: str, count: int) -> bool:
    """The ingestor has read `count` events of `source` that it has not logged."""
    return len(ingestor.backlogs.get(source, Backlog()).events) == count


def test_the_hub_logs_a_cause_first_when_it_reads_the_effect_first(
    run_ingestor: Any, feeds: dict[str, FakeFeed], database: Database
) -> None:
    """Billing's charge is served (and read) before results' order exists; billing stamps it earlier."""
    now = utcnow()
    charge = source_event("charge.posted", occurred_at=now - timedelta(seconds=5), causes={"results": 1})
    with run_ingestor() as ingestor:
        publish(feeds, "billing", charge)
        eventually(lambda: held_back(ingestor, "billing", 1), what="the hub to read the charge")
        assert log(database) == []
        publish(feeds, "results", source_event("order.placed", occurred_at=now))
        assert logged_types(database, 2) == ["order.placed", "charge.posted"]


def test_events_read_within_the_merge_interval_are_logged_in_one_transaction(
    run_ingestor: Any, feeds: dict[str, FakeFeed], database: Database
) -> None:
    """The first event is logged at once; two read soon after it wait for the interval and go in
    together, in time order (a transaction's fixed cost is most of the hub's CPU under load)."""
    with run_ingestor(merge_interval_seconds=3.0) as ingestor:
        publish(feeds, "registration", source_event("visit.opened"))
        assert logged_types(database, 1) == ["visit.opened"]
        assert ingestor.transactions == 1
        publish(feeds, "billing", source_event("charge.posted"))
        eventually(lambda: held_back(ingestor, "billing", 1), what="the hub to read the charge")
        publish(feeds, "triage", source_event("visit.triaged"))
        eventually(lambda: held_back(ingestor, "triage", 1), what="the hub to read the triage")
        assert len(log(database)) == 1  # both read, neither logged: the interval is not over
        assert logged_types(database, 3) == ["visit.opened", "charge.posted", "visit.triaged"]
        assert ingestor.transactions == 2


def test_a_source_that_is_down_holds_back_only_what_depends_on_it(
    run_ingestor: Any, feeds: dict[str, FakeFeed], database: Database
) -> None:
    with run_ingestor() as ingestor:
        working = ingestor.feeds["billing"]
        ingestor.feeds["billing"] = "http://127.0.0.1:9"  # discard port: refused
        publish(feeds, "billing", source_event("charge.paid"))  # the cause, unreadable for now
        publish(feeds, "results", source_event("order.released", causes={"billing": 1}))
        publish(feeds, "registration", source_event("visit.opened"))
        assert logged_types(database, 1) == ["visit.opened"]  # not held up by billing being down
        eventually(lambda: held_back(ingestor, "results", 1), what="the release read and held back")
        assert len(log(database)) == 1
        ingestor.feeds["billing"] = working
        assert logged_types(database, 3) == ["visit.opened", "charge.paid", "order.released"]


def test_causal_order_and_exactly_once_hold_across_hub_restarts(
    run_ingestor: Any, feeds: dict[str, FakeFeed], database: Database
) -> None:
    """Stopped while an effect waits for its cause; started again; then the cursors lost altogether."""
    with run_ingestor() as ingestor:
        publish(feeds, "registration", source_event("visit.opened"))
        publish(feeds, "billing", source_event("charge.posted", causes={"results": 1}))
        assert logged_types(database, 1) == ["visit.opened"]
        eventually(lambda: held_back(ingestor, "billing", 1), what="the charge read and held back")
    with run_ingestor():
        publish(feeds, "results", source_event("order.placed"))
        assert logged_types(database, 3) == ["visit.opened", "order.placed", "charge.posted"]
    publish(feeds, "registration", feeds["registration"].events[0])  # the feed serves it twice
    with database.session() as session:  # and a crash lost the cursors: everything is read again
        session.exec(delete(SourceCursor))
    with run_ingestor():

        def cursors() -> dict[str, int] | None:
            with database.session(write=False) as session:
                stored = {c.source: c.position for c in session.exec(select(SourceCursor)).all()}
            return stored if stored == {"registration": 2, "results": 1, "billing": 1} else None

        eventually(cursors, what="every feed read again")
    assert [e.event_type for e in log(database)] == ["visit.opened", "order.placed", "charge.posted"]


def test_visit_events_carry_the_visits_current_patient_and_count_per_visit(
    run_ingestor: Any, feeds: dict[str, FakeFeed], database: Database
) -> None:
    def emit(source: str, event_type: str, **fields: Any) -> None:
        publish(feeds, source, source_event(event_type, **fields))

    emit("registration", "visit.opened", visit_id="v1", patient_id="unknown-1")
    emit("results", "order.placed", visit_id="v1", aggregate=("order", "o1"), causes={"registration": 1})
    merge = {"source_patient_id": "unknown-1", "target_patient_id": "known-2", "visit_ids": ["v1"]}
    emit(
        "registration",
        "patient.merged",
        aggregate=("patient", "known-2"),
        patient_id="known-2",
        data=merge,
        causes={"results": 1},
    )
    emit(
        "triage",
        "ticket.called",
        visit_id="v1",
        patient_id="unknown-1",
        aggregate=("ticket", "t1"),
        causes={"registration": 2},
    )
    with run_ingestor():
        logged_types(database, 4)
    rows = [(e.event_type, e.patient_id, e.visit_sequence) for e in log(database)]
    assert rows == [
        ("visit.opened", "unknown-1", 1),
        ("order.placed", "unknown-1", 2),  # names no patient
        ("patient.merged", "known-2", None),
        ("ticket.called", "known-2", 3),  # after the merge the visit is the surviving patient's
    ]
