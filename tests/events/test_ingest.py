"""Ingestion: the log is causal across sources, takes each event once, and follows visits to patients."""

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlmodel import col, delete, select

from kit.auth import TokenSource
from kit.clock import utcnow
from kit.database import Database
from kit.testing import TEST_SECRET, FakeFeed
from services.events.config import EventsSettings
from services.events.ingest import Ingestor, plan_cycle
from services.events.models import LogEvent, SourceCursor
from services.events.notifier import LogNotifier
from tests.events.factories import publish, source_event

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=utcnow().tzinfo)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def fed(position: int, seconds: float, name: str) -> dict[str, Any]:
    """A feed entry named by `data.name`, at T0 + seconds."""
    return {**source_event("x.y", occurred_at=at(seconds), data={"name": name}), "position": position}


def names(cycle_taken: list[tuple[str, dict[str, Any]]]) -> list[str]:
    return [event["data"]["name"] for _, event in cycle_taken]


def test_merge_orders_by_occurrence_not_by_source() -> None:
    """Results' `order.released` (an effect) is read before billing's `charge.paid` (its cause)."""
    pages = {
        "registration": [],
        "triage": [],
        "results": [fed(7, 2.0, "order.released")],
        "billing": [fed(3, 1.0, "charge.paid")],
    }
    cycle = plan_cycle(pages, cutoff=at(5), page_size=500)
    assert names(cycle.taken) == ["charge.paid", "order.released"]
    assert cycle.cursors == {"results": 7, "billing": 3}


def test_same_instant_ties_follow_source_order_then_position() -> None:
    pages = {
        "registration": [fed(1, 1.0, "r1"), fed(2, 1.0, "r2")],
        "triage": [],
        "results": [],
        "billing": [fed(9, 1.0, "b")],
    }
    assert names(plan_cycle(pages, cutoff=at(5), page_size=500).taken) == ["r1", "r2", "b"]


def test_a_later_event_holds_back_the_rest_of_its_feed() -> None:
    """Only the prefix up to the cutoff is taken, even if a later entry of the feed is older."""
    pages = {"registration": [fed(1, 1.0, "a"), fed(2, 9.0, "late"), fed(3, 2.0, "behind")], "triage": []}
    cycle = plan_cycle(pages, cutoff=at(5), page_size=500)
    assert names(cycle.taken) == ["a"]
    assert cycle.cursors == {"registration": 1}
    assert cycle.waiting_since == at(9)


def test_a_full_page_lowers_the_cutoff_for_every_source() -> None:
    """Unread entries of a truncated feed may be causes of anything after its newest read event."""
    pages = {
        "registration": [fed(1, 1.0, "r1"), fed(2, 2.0, "r2")],  # full: more may wait
        "billing": [fed(1, 1.5, "b1"), fed(2, 3.0, "b2")],
    }
    cycle = plan_cycle(pages, cutoff=at(5), page_size=2)
    assert names(cycle.taken) == ["r1", "b1", "r2"]
    assert cycle.truncated


@pytest.fixture
def ingestor(database: Database, settings: EventsSettings) -> Iterator[tuple[Ingestor, list[datetime]]]:
    """An ingestor driven cycle by cycle, on a clock the test sets (`clock[0]`)."""
    clock = [utcnow()]
    ingestor = Ingestor(
        database=database,
        feeds=settings.feed_urls(),
        tokens=TokenSource(TEST_SECRET, "service:events", set()),
        notifier=LogNotifier(),
        margin_seconds=0.2,
        poll_seconds=0.05,
        clock=lambda: clock[0],
    )
    yield ingestor, clock


def log(database: Database) -> list[LogEvent]:
    with database.session(write=False) as session:
        return list(session.exec(select(LogEvent).order_by(col(LogEvent.position))).all())


def test_a_held_back_event_is_taken_in_the_next_cycle(
    ingestor: tuple[Ingestor, list[datetime]], feeds: dict[str, FakeFeed], database: Database
) -> None:
    worker, clock = ingestor
    now = clock[0]
    publish(feeds, "registration", source_event("visit.opened", occurred_at=now - timedelta(seconds=1)))
    fresh = publish(feeds, "triage", source_event("visit.triaged", occurred_at=now - timedelta(seconds=0.1)))
    with httpx.Client() as client:
        worker.run_cycle(client)
        assert [e.event_type for e in log(database)] == ["visit.opened"]  # within the margin: waits
        clock[0] = now + timedelta(seconds=1)
        worker.run_cycle(client)
    assert [e.event_id for e in log(database)][-1] == fresh["id"]


def test_a_source_that_cannot_be_read_stops_the_whole_cycle(
    ingestor: tuple[Ingestor, list[datetime]], feeds: dict[str, FakeFeed], database: Database
) -> None:
    """Logging the others without it could log an effect before its cause in the missing source."""
    worker, clock = ingestor
    publish(feeds, "registration", source_event("visit.opened", occurred_at=clock[0] - timedelta(seconds=5)))
    working = worker.feeds["billing"]
    worker.feeds["billing"] = "http://127.0.0.1:9"  # discard port: refused
    with httpx.Client() as client:
        with pytest.raises(httpx.ConnectError):
            worker.run_cycle(client)
        assert log(database) == []
        worker.feeds["billing"] = working
        worker.run_cycle(client)
    assert [e.event_type for e in log(database)] == ["visit.opened"]


def test_redelivered_and_re_read_events_are_logged_once(
    ingestor: tuple[Ingestor, list[datetime]], feeds: dict[str, FakeFeed], database: Database
) -> None:
    worker, clock = ingestor
    event = source_event("patient.registered", aggregate=("patient", "p1"), patient_id="p1")
    event["occurred_at"] = (clock[0] - timedelta(seconds=5)).isoformat()
    publish(feeds, "registration", event)
    publish(feeds, "registration", event)  # the feed serves it twice (at-least-once)
    with httpx.Client() as client:
        worker.run_cycle(client)
        with database.session() as session:  # a crash lost the cursors: read everything again
            session.exec(delete(SourceCursor))
        worker.run_cycle(client)
    assert [e.event_id for e in log(database)] == [event["id"]]
    with database.session(write=False) as session:
        assert session.get(SourceCursor, "registration").position == 2  # type: ignore[union-attr]


def test_visit_events_carry_the_visits_current_patient_and_count_per_visit(
    ingestor: tuple[Ingestor, list[datetime]], feeds: dict[str, FakeFeed], database: Database
) -> None:
    worker, clock = ingestor
    past = clock[0] - timedelta(seconds=10)

    def emit(source: str, event_type: str, **fields: Any) -> None:
        nonlocal past
        past += timedelta(milliseconds=10)
        publish(feeds, source, source_event(event_type, occurred_at=past, **fields))

    emit("registration", "visit.opened", visit_id="v1", patient_id="unknown-1")
    emit("results", "order.placed", visit_id="v1", aggregate=("order", "o1"))  # names no patient
    merge = {"source_patient_id": "unknown-1", "target_patient_id": "known-2", "visit_ids": ["v1"]}
    emit("registration", "patient.merged", aggregate=("patient", "known-2"), patient_id="known-2", data=merge)
    emit("triage", "ticket.called", visit_id="v1", patient_id="unknown-1", aggregate=("ticket", "t1"))
    with httpx.Client() as client:
        worker.run_cycle(client)
    rows = [(e.event_type, e.patient_id, e.visit_sequence) for e in log(database)]
    assert rows == [
        ("visit.opened", "unknown-1", 1),
        ("order.placed", "unknown-1", 2),
        ("patient.merged", "known-2", None),
        ("ticket.called", "known-2", 3),  # after the merge the visit is the surviving patient's
    ]
