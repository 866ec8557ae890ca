"""Each source event is in the log at most once, whatever reads it twice: the table refuses a second row
for an event id, a batch naming an event twice or one logged before logs it once, and two hubs logging
the same event at the same moment (a restart overlapping the old process, two ingest loops) log it once,
neither failing."""

import threading
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from kit.clock import utcnow
from kit.database import Database
from kit.testing import database_url_under_test, eventually
from services.events import service
from services.events.models import LogEvent, SourceCursor
from tests.events.factories import source_event


def fed(position: int, **fields: Any) -> dict[str, Any]:
    return {**source_event("queue.nearly_up", **fields), "position": position}


def logged(database: Database) -> list[tuple[str, str, int]]:
    with database.session(write=False) as session:
        rows = session.exec(select(LogEvent).order_by(col(LogEvent.position))).all()
        return [(row.source, row.event_id, row.source_position) for row in rows]


def cursors(database: Database) -> dict[str, int]:
    with database.session(write=False) as session:
        return {row.source: row.position for row in session.exec(select(SourceCursor)).all()}


def test_the_log_table_refuses_a_second_row_for_an_event_id(database: Database) -> None:
    """At rest: the migrated table's unique event id, whatever source or position the copy claims."""
    event = fed(1, patient_id="p1")
    with database.session() as session:
        service.log_batch(session, [("triage", event)], cursors={})
    copy = LogEvent(
        event_id=event["id"],
        event_type=event["type"],
        source="billing",
        source_position=7,
        aggregate_type="queue",
        aggregate_id="dept-1",
        sequence=1,
        occurred_at=utcnow(),
    )
    with pytest.raises(IntegrityError), database.session() as session:
        session.add(copy)
        session.flush()
    assert logged(database) == [("triage", event["id"], 1)]


def test_an_event_named_twice_in_a_batch_or_logged_before_is_logged_once(database: Database) -> None:
    first, second = fed(1, patient_id="p1"), fed(2, patient_id="p1")
    with database.session() as session:
        done = service.log_batch(session, [("triage", first), ("triage", first)], cursors={"triage": 1})
    assert done.events == 1
    # Read again after a lost cursor move, and served again at a new position: skipped, cursor moved on.
    again = [("triage", first), ("triage", {**first, "position": 3}), ("triage", second)]
    with database.session() as session:
        done = service.log_batch(session, again, cursors={"triage": 3})
    assert done.events == 1
    assert logged(database) == [("triage", first["id"], 1), ("triage", second["id"], 2)]
    assert cursors(database) == {"triage": 3}


def _in_thread(work: Callable[[], object]) -> tuple[threading.Thread, list[object]]:
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(work())
        except Exception as exc:  # the test reads it: a failed batch is what must not happen
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


@pytest.mark.skipif(
    not database_url_under_test(),
    reason="PostgreSQL only: on SQLite the one writer connection runs whole write transactions in turn",
)
def test_two_hubs_logging_the_same_event_at_once_log_it_once_and_neither_fails(database: Database) -> None:
    """Hub A has logged the event and not committed yet when hub B logs it too: B waits for A's
    transaction (the log lock), then finds the event there and logs nothing, moving its cursor only."""
    event = fed(1, patient_id="p1")
    a_logged, a_may_commit = threading.Event(), threading.Event()

    def hub_a() -> service.Logged:
        with database.session() as session:
            done = service.log_batch(session, [("triage", event)], cursors={"triage": 1})
            a_logged.set()
            a_may_commit.wait(30)
            return done

    def waiting_for_the_lock() -> bool:
        query = text(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        with database.session(write=False) as session:
            return bool(session.execute(query).scalar_one())

    a, a_outcome = _in_thread(hub_a)
    assert a_logged.wait(30)
    b, b_outcome = _in_thread(lambda: _log_as_hub_b(database, event))
    try:
        eventually(waiting_for_the_lock, what="hub B waiting for hub A's transaction")
    finally:
        a_may_commit.set()
        a.join(30)
        b.join(30)
    assert [o.events if isinstance(o, service.Logged) else o for o in a_outcome + b_outcome] == [1, 0]
    assert logged(database) == [("triage", event["id"], 1)]
    assert cursors(database) == {"triage": 1}


def _log_as_hub_b(database: Database, event: dict[str, Any]) -> service.Logged:
    with database.session() as session:
        return service.log_batch(session, [("triage", event)], cursors={"triage": 1})
