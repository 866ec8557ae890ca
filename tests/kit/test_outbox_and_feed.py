"""The outbox and the feed: readers never miss an event, consumers apply each one once."""

import threading
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import event as sa_event
from sqlalchemy import text
from sqlmodel import Session, col, select

from kit.auth import TokenSource
from kit.causes import Cause, caused_by
from kit.config import ServiceSettings
from kit.errors import install_error_handlers
from kit.feed import FeedConsumer, caught_up
from kit.outbox import event_to_json, feed_router, record_event
from kit.testing import feed_headers, internal_headers, make_test_settings
from tests.kit.racing import writers_race_a_reader
from tests.kit.sample import ConsumedEvent, FeedCursor, OutboxEvent, Thing, fresh_database


def test_event_commits_or_vanishes_with_its_change(tmp_path: Path) -> None:
    database = fresh_database(tmp_path, "atomic")
    try:
        with database.session() as session:
            session.add(Thing(name="kept"))
            record_event(
                session,
                OutboxEvent,
                event_type="thing.made",
                aggregate_type="thing",
                aggregate_id="a",
                payload={},
            )
            raise RuntimeError("the change fails")
    except RuntimeError:
        pass
    with database.session(write=False) as session:
        assert session.exec(select(OutboxEvent)).all() == []
        assert session.exec(select(Thing)).all() == []
    database.dispose()


def test_per_aggregate_sequence_counts_up(tmp_path: Path) -> None:
    database = fresh_database(tmp_path, "sequence")
    for aggregate in ("a", "b", "a", "a"):
        with database.session() as session:
            record_event(
                session, OutboxEvent, event_type="x", aggregate_type="t", aggregate_id=aggregate, payload={}
            )
    with database.session(write=False) as session:
        rows = session.exec(select(OutboxEvent).order_by(col(OutboxEvent.position))).all()
    assert [(r.aggregate_id, r.sequence) for r in rows] == [("a", 1), ("b", 1), ("a", 2), ("a", 3)]
    database.dispose()


def test_a_reader_following_the_cursor_sees_every_concurrent_event_exactly_once(tmp_path: Path) -> None:
    """Positions must become visible in order, or a reader that moved past a gap would skip an event."""
    database = fresh_database(tmp_path, "cursor")
    writers, per_writer = 6, 30
    done = threading.Event()
    seen: list[str] = []

    def write(n: int) -> None:
        for i in range(per_writer):
            with database.session() as session:
                record_event(
                    session,
                    OutboxEvent,
                    event_type="x",
                    aggregate_type="t",
                    aggregate_id=f"{n}-{i}",
                    payload={},
                )

    def read() -> None:
        after = 0
        while True:
            finished = done.is_set()
            with database.session(write=False) as session:
                rows = session.exec(
                    select(OutboxEvent)
                    .where(col(OutboxEvent.position) > after)
                    .order_by(col(OutboxEvent.position))
                ).all()
            for row in rows:
                seen.append(row.event_id)
                after = row.position or after
            if finished and not rows:
                return

    writers_race_a_reader(reader=read, writer=write, writers=writers, done=done)
    assert len(seen) == len(set(seen)) == writers * per_writer
    database.dispose()


def test_consumer_applies_a_redelivered_event_once(tmp_path: Path) -> None:
    source = fresh_database(tmp_path, "source")
    sink = fresh_database(tmp_path, "sink")
    with source.session() as session:
        event = record_event(
            session,
            OutboxEvent,
            event_type="thing.made",
            aggregate_type="thing",
            aggregate_id="a",
            payload={"name": "made-once"},
        )
    wire = event_to_json(event, "source")

    def handle(session: Session, event: dict[str, Any]) -> None:
        session.add(Thing(name=event["data"]["name"]))

    consumer = FeedConsumer(
        source="source",
        base_url="http://127.0.0.1:9",
        database=sink,
        cursor_model=FeedCursor,
        consumed_model=ConsumedEvent,
        handle=handle,
        tokens=TokenSource("s", "service:test", set()),
    )
    consumer.apply_page([wire], wire["position"])
    consumer.apply_page([wire], wire["position"])  # again, e.g. after a crash before the cursor moved
    with sink.session() as session:  # and even with the cursor moved back, the record stops it
        session.get(FeedCursor, "source").position = 0  # type: ignore[union-attr]
    consumer.apply_page([wire], wire["position"])
    with sink.session(write=False) as session:
        assert [t.name for t in session.exec(select(Thing)).all()] == ["made-once"]
    assert consumer.cursor() == wire["position"]
    source.dispose()
    sink.dispose()


class _Reader:
    """A stand-in consumer for `caught_up`: its source's head, and the position its cursor will reach."""

    def __init__(self, source: str, head: int, reaches: int, now: list[float]) -> None:
        self.source, self.head, self.reaches, self.now, self.woken = source, head, reaches, now, 0

    def source_head(self, *, timeout_seconds: float) -> int:
        assert 0 < timeout_seconds <= 1.0  # within what the caller allowed
        return self.head

    def wait_until(self, position: int, *, timeout: float) -> bool:
        if self.reaches >= position:
            return True
        self.now[0] += timeout  # waited it out
        return False

    def wake(self) -> None:
        self.woken += 1


def test_caught_up_waits_for_every_source_head_and_names_the_late_ones() -> None:
    now = [0.0]

    def clock() -> float:
        return now[0]

    fast = _Reader("registration", head=7, reaches=7, now=now)
    slow = _Reader("results", head=4, reaches=1, now=now)
    assert caught_up([fast], within_seconds=1.0, clock=clock) == []  # type: ignore[list-item]
    assert fast.woken == 1  # a consumer backing off reads again at once
    assert now[0] < 1.0
    behind = caught_up([slow, fast], within_seconds=1.0, clock=clock)  # type: ignore[list-item]
    assert behind == ["results"]


def test_feed_head_is_the_last_committed_position(tmp_path: Path) -> None:
    database = fresh_database(tmp_path, "head")
    app = FastAPI()
    app.state.database = database
    app.state.settings = make_test_settings(ServiceSettings, tmp_path)
    install_error_handlers(app)
    app.include_router(feed_router(OutboxEvent))
    with TestClient(app, headers=feed_headers("service")) as client:
        assert client.get("/events/head").json() == {"position": 0}
        with database.session() as session:
            for name in ("a", "b"):
                record_event(
                    session, OutboxEvent, event_type="x", aggregate_type="t", aggregate_id=name, payload={}
                )
        last = client.get("/events", params={"after": 0}).json()["events"][-1]["position"]
        assert client.get("/events/head").json() == {"position": last}
        refused = client.get("/events/head", headers=internal_headers("his-dev", audience="service"))
        assert refused.status_code == 403  # sibling services only, like the feed itself
    database.dispose()


def test_an_event_recorded_in_a_rolled_back_savepoint_vanishes_with_it(tmp_path: Path) -> None:
    database = fresh_database(tmp_path, "savepoint")

    def made(session: Session, aggregate_id: str) -> None:
        record_event(
            session, OutboxEvent, event_type="x", aggregate_type="t", aggregate_id=aggregate_id, payload={}
        )

    with database.session() as session:
        made(session, "kept")
        try:
            with session.begin_nested():
                made(session, "undone")
                raise RuntimeError("the savepoint rolls back")
        except RuntimeError:
            pass
        with session.begin_nested():
            made(session, "released")
    with database.session() as session:
        made(session, "closed-uncommitted")
        session.close()  # neither committed nor rolled back explicitly: nothing may leak
        session.commit()
    with database.session(write=False) as session:
        rows = session.exec(select(OutboxEvent).order_by(col(OutboxEvent.position))).all()
    assert [r.aggregate_id for r in rows] == ["kept", "released"]
    database.dispose()


def test_overlapping_writers_of_one_aggregate_commit_in_order_and_a_pager_misses_nothing(
    tmp_path: Path,
) -> None:
    """Writers' business parts overlap (all of them hold their uncommitted rows at the barrier, which the
    old lock-at-the-first-event scheme made impossible); only their commits are serialised. A reader
    paging by position meanwhile sees every committed event once, in order, and the shared aggregate's
    sequence counts 1, 2, 3, … in position order. On SQLite the one writer connection serialises whole
    transactions, so there the writers take turns and the same invariants are checked."""
    database = fresh_database(tmp_path, "overlap")
    writers, rounds = (1, 24) if database.is_sqlite else (4, 6)
    all_inside = threading.Barrier(writers, timeout=20)
    done = threading.Event()
    seen: list[OutboxEvent] = []
    committed: list[str] = []

    def write(n: int) -> None:
        for i in range(rounds):
            with database.session() as session:
                session.add(Thing(name=f"{n}-{i}"))
                session.flush()  # this writer's own row, written and locked, not yet committed
                for aggregate_id in ("shared", f"own-{n}"):
                    event = record_event(
                        session,
                        OutboxEvent,
                        event_type="x",
                        aggregate_type="t",
                        aggregate_id=aggregate_id,
                        payload={},
                    )
                    committed.append(event.event_id)
                all_inside.wait()  # every writer is inside its transaction at once
                all_inside.wait()  # ... before any of them commits

    def read() -> None:
        after = 0
        while True:
            finished = done.is_set()
            with database.session(write=False) as session:
                page = session.exec(
                    select(OutboxEvent)
                    .where(col(OutboxEvent.position) > after)
                    .order_by(col(OutboxEvent.position))
                    .limit(3)
                ).all()
            seen.extend(page)
            after = page[-1].position or after if page else after
            if finished and not page:
                return

    writers_race_a_reader(reader=read, writer=write, writers=writers, done=done)
    assert not all_inside.broken
    assert sorted(e.event_id for e in seen) == sorted(committed)  # each committed event exactly once
    positions = [e.position or 0 for e in seen]
    assert positions == sorted(positions)
    shared = [e.sequence for e in seen if e.aggregate_id == "shared"]
    assert shared == list(range(1, writers * rounds + 1))
    for n in range(writers):
        assert [e.sequence for e in seen if e.aggregate_id == f"own-{n}"] == list(range(1, rounds + 1))
    database.dispose()


def test_an_event_carries_the_causes_of_its_unit_of_work(tmp_path: Path) -> None:
    """What the hub merges by: the feed positions read before the write, `[]` when none."""
    database = fresh_database(tmp_path, "causes")
    with database.session() as session:
        with caused_by(Cause("results", 42), Cause("billing", 7)):
            effect = record_event(
                session, OutboxEvent, event_type="x", aggregate_type="t", aggregate_id="a", payload={}
            )
        uncaused = record_event(
            session, OutboxEvent, event_type="x", aggregate_type="t", aggregate_id="a", payload={}
        )
    with database.session(write=False) as session:
        rows = {r.event_id: event_to_json(r, "sample") for r in session.exec(select(OutboxEvent)).all()}
    assert rows[effect.event_id]["causes"] == [
        {"source": "billing", "position": 7},
        {"source": "results", "position": 42},
    ]
    assert rows[uncaused.event_id]["causes"] == []
    assert event_to_json(uncaused, "sample")["position"] == rows[uncaused.event_id]["position"]
    database.dispose()


def test_no_statement_of_a_writer_waits_on_it_while_it_holds_the_outbox_lock(tmp_path: Path) -> None:
    """On PostgreSQL the outbox lock is taken in the one round trip that inserts a writer's events and
    commits, so the writer's Python never runs while it holds the lock: a writer slow between its round
    trips (under load, its thread waiting for the GIL) holds no other writer's events back. Here the
    writer stalls after each statement it sends while holding the lock, and another writer commits
    meanwhile. On SQLite the one writer connection serialises whole transactions by design."""
    database = fresh_database(tmp_path, "slow_commit")
    if database.is_sqlite:
        database.dispose()
        pytest.skip("SQLite serialises whole write transactions on its one writer connection")
    at_commit, release, other_committed = threading.Event(), threading.Event(), threading.Event()
    stalls: list[str] = []
    watcher = database.writer.connect()  # asks the server what the slow writer holds

    def slow_writer() -> None:
        with database.session() as session:
            record_event(
                session, OutboxEvent, event_type="x", aggregate_type="t", aggregate_id="slow", payload={}
            )
            session.add(Thing(name="slow"))
            driver_connection = session.connection().connection.driver_connection
            assert driver_connection is not None
            backend = driver_connection.info.backend_pid
            sa_event.listen(session, "before_commit", lambda _: at_commit.set())

            @sa_event.listens_for(session.connection(), "after_cursor_execute")
            def stall_while_locked(_c: object, _k: object, statement: str, *_: object) -> None:
                holds = watcher.execute(
                    text("SELECT count(*) FROM pg_locks WHERE pid = :pid AND locktype = 'advisory'"),
                    {"pid": backend},
                ).scalar_one()
                if holds:
                    stalls.append(statement)
                    at_commit.set()
                    release.wait(timeout=30)

    def other_writer() -> None:
        with database.session() as session:
            record_event(
                session, OutboxEvent, event_type="x", aggregate_type="t", aggregate_id="other", payload={}
            )
        other_committed.set()

    slow = threading.Thread(target=slow_writer)
    slow.start()
    assert at_commit.wait(timeout=30)
    other = threading.Thread(target=other_writer)
    other.start()
    try:
        assert other_committed.wait(timeout=20), f"held back by a writer stalled under the lock: {stalls}"
    finally:
        release.set()
        slow.join()
        other.join()
        watcher.close()
    assert stalls == []
    with database.session(write=False) as session:
        rows = session.exec(select(OutboxEvent).order_by(col(OutboxEvent.position))).all()
    assert sorted((r.aggregate_id, r.sequence) for r in rows) == [("other", 1), ("slow", 1)]
    database.dispose()
