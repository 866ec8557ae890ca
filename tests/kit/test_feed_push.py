"""Feeds that push: a long poll answers as soon as an event commits, a filtered reader never re-scans what it
skipped, and a consumer applies a whole page in one transaction with its cursor kept in memory."""

import logging
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event, text
from sqlmodel import Session, select

import kit.outbox
from kit.app import build_service_app
from kit.auth import TokenSource
from kit.config import ServiceSettings
from kit.database import POSTGRES_OVERFLOW, POSTGRES_POOL, SQLITE_READERS, Database, SessionDep
from kit.errors import install_error_handlers
from kit.feed import FeedConsumer, caught_up
from kit.outbox import MAX_FEED_WAIT, OutboxListener, feed_router, read_page, record_event
from kit.testing import FakeFeed, database_url_under_test, eventually, feed_headers, make_test_settings, serve
from tests.kit.racing import writers_race_a_reader
from tests.kit.sample import ConsumedEvent, FeedCursor, OutboxEvent, Thing, fresh_database

LONG = {"wait": MAX_FEED_WAIT}  # a server that never woke would answer an empty page only after this


def record(database: Database, event_type: str = "thing.made", name: str = "a") -> int:
    with database.session() as session:
        recorded = record_event(
            session, OutboxEvent, event_type=event_type, aggregate_type="thing", aggregate_id=name, payload={}
        )
    assert recorded.position is not None
    return recorded.position


def feed_app(database: Database, tmp_path: Path) -> FastAPI:
    """The kernel's feed over `database`, and a route that records an event in its request session."""
    app = FastAPI()
    app.state.database = database
    app.state.settings = make_test_settings(ServiceSettings, tmp_path)
    install_error_handlers(app)
    app.include_router(feed_router(OutboxEvent))

    @app.post("/things", status_code=201)
    def make(session: SessionDep) -> dict[str, str]:
        record_event(
            session, OutboxEvent, event_type="thing.made", aggregate_type="t", aggregate_id="r", payload={}
        )
        return {}

    return app


@contextmanager
def served_feed(tmp_path: Path, name: str) -> Iterator[tuple[Database, httpx.Client]]:
    database = fresh_database(tmp_path, name)
    try:
        with (
            serve(feed_app(database, tmp_path)) as url,
            httpx.Client(base_url=url, headers=feed_headers("service"), timeout=MAX_FEED_WAIT + 10) as client,
        ):
            yield database, client
    finally:
        database.dispose()


def read(client: httpx.Client, **params: Any) -> dict[str, Any]:
    response = client.get("/events", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.mark.parametrize("committed_by", ["unit_of_work", "request"])
def test_a_long_poll_answers_with_the_event_committed_while_it_waited(
    tmp_path: Path, committed_by: str
) -> None:
    with served_feed(tmp_path, "long_poll") as (database, client), ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(read, client, after=0, **LONG)
        eventually(lambda: database.outbox_commits.waiting, what="the reader to wait")
        if committed_by == "request":
            assert client.post("/things").status_code == 201
        else:
            record(database)
        page = waiting.result()
    assert [e["type"] for e in page["events"]] == ["thing.made"]
    assert page["next_after"] == page["events"][0]["position"]


def test_a_savepoint_released_after_the_event_wakes_no_reader_before_the_commit(tmp_path: Path) -> None:
    """A SAVEPOINT released inside the unit of work (an idempotency key claimed after the event was
    recorded) is not the commit: the waiting reader must wake when the transaction really commits."""
    with served_feed(tmp_path, "savepoint") as (database, client), ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(read, client, after=0, **LONG)
        eventually(lambda: database.outbox_commits.waiting, what="the reader to wait")
        announced = database.outbox_commits.version
        with database.session() as session:
            record_event(
                session,
                OutboxEvent,
                event_type="thing.made",
                aggregate_type="t",
                aggregate_id="s",
                payload={},
            )
            with session.begin_nested():
                session.execute(text("SELECT 1"))
            assert database.outbox_commits.version == announced  # nothing is committed yet
        page = waiting.result()
    assert [e["type"] for e in page["events"]] == ["thing.made"]


def test_waiting_long_polls_hold_no_connection(tmp_path: Path) -> None:
    """More readers wait than the database has connections, and a write and a plain read still go through."""
    readers = max(SQLITE_READERS, POSTGRES_POOL + POSTGRES_OVERFLOW) + 2
    with served_feed(tmp_path, "no_gate") as (database, client), ThreadPoolExecutor(readers) as pool:
        waiting = [pool.submit(read, client, after=0, **LONG) for _ in range(readers)]
        eventually(lambda: database.outbox_commits.waiting == readers, what="every reader to wait")
        assert read(client, after=0) == {"events": [], "next_after": 0}
        position = record(database)
        pages = [w.result() for w in waiting]
    assert all([e["position"] for e in page["events"]] == [position] for page in pages)


def test_a_filtered_reader_resumes_past_the_events_it_skipped(tmp_path: Path) -> None:
    with served_feed(tmp_path, "filtered") as (database, client):
        positions = [record(database, kind, name) for kind, name in zip("xyxy", "abcd", strict=True)]
        both = read(client, after=0, type=["x", "y"])
        only_x = read(client, after=0, type="x")
        first_y = read(client, after=0, type="y", limit=1)
        none = read(client, after=0, type="z")
        later = read(client, after=positions[2], type="x", wait=0)
        bad = [client.get("/events", params={"wait": wait}) for wait in (-1, MAX_FEED_WAIT + 1, "soon")]
    assert [e["position"] for e in both["events"]] == positions
    assert [e["position"] for e in only_x["events"]] == [positions[0], positions[2]]
    assert only_x["next_after"] == positions[3]  # past the skipped y: nothing below the head can still commit
    assert [e["position"] for e in first_y["events"]] == [positions[1]]
    assert first_y["next_after"] == positions[1]  # a full page: more of its type may follow
    assert none == {"events": [], "next_after": positions[3]}
    assert later == {"events": [], "next_after": positions[3]}
    for response in bad:
        assert response.status_code == 400
        assert response.json()["type"].endswith("/invalid-parameter")


def test_a_filtered_long_poll_is_not_woken_to_read_by_commits_of_other_types(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader of `wanted` sleeps through commits of other types: it reads the feed twice (when it came,
    and when its type committed), not once more per commit of its source."""
    pages: list[Any] = []

    def counted(*args: Any, **kwargs: Any) -> Any:
        pages.append(kwargs.get("types"))
        return read_page(*args, **kwargs)

    monkeypatch.setattr(kit.outbox, "read_page", counted)
    with served_feed(tmp_path, "filtered_wake") as (database, client), ThreadPoolExecutor(2) as pool:
        wanted = pool.submit(read, client, after=0, type="wanted", **LONG)
        eventually(lambda: database.outbox_commits.waiting, what="the reader to wait")
        everything = pool.submit(read, client, after=0, **LONG)
        for name in "abc":
            record(database, "other", name)
        assert [e["type"] for e in everything.result()["events"]][:1] == ["other"]  # others were woken
        position = record(database, "wanted", "d")
        page = wanted.result()
    assert [e["position"] for e in page["events"]] == [position]
    assert pages.count(["wanted"]) == 2


def test_a_filtered_reader_sees_every_event_of_its_type_once_while_writers_commit(tmp_path: Path) -> None:
    """`next_after` passes over skipped positions only up to the head: one that could still commit below
    it would be skipped for good."""
    database = fresh_database(tmp_path, "filtered_cursor")
    writers, per_writer = 4, 25
    done = threading.Event()
    seen: list[str] = []

    def write(n: int) -> None:
        for i in range(per_writer):
            record(database, "wanted" if i % 2 else "other", f"{n}-{i}")

    def follow() -> None:
        after = 0
        while True:
            finished = done.is_set()
            with database.session(write=False) as session:
                rows, after = read_page(session, OutboxEvent, after=after, limit=7, types=["wanted"])
            seen.extend(row.event_id for row in rows)
            if finished and not rows:
                return

    writers_race_a_reader(reader=follow, writer=write, writers=writers, done=done)
    with database.session(write=False) as session:
        wanted = session.exec(select(OutboxEvent.event_id).where(OutboxEvent.event_type == "wanted")).all()
    assert len(seen) == len(set(seen)) == len(wanted) == writers * (per_writer // 2)
    database.dispose()


class SinkLedger:
    """What a consumer did to its database: committed write transactions, cursor reads and writes."""

    def __init__(self, database: Database) -> None:
        self.write_commits = self.cursor_reads = self.cursor_writes = 0
        for engine in database.engines:
            event.listen(engine, "before_cursor_execute", self._statement)
            event.listen(engine, "commit", self._commit)

    def _statement(self, conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        sql = " ".join(statement.split()).lower()
        if sql.startswith(("insert", "update", "delete")):
            conn.info["wrote"] = True
        if "feed_cursor" in sql:
            if sql.startswith("select"):
                self.cursor_reads += 1
            else:
                self.cursor_writes += 1

    def _commit(self, conn: Any) -> None:
        if conn.info.pop("wrote", False):
            self.write_commits += 1


def make_things(session: Session, event: dict[str, Any]) -> None:
    session.add(Thing(name=event["data"]["name"]))


def thing_names(database: Database) -> list[str]:
    with database.session(write=False) as session:
        return [t.name for t in session.exec(select(Thing)).all()]


def consumer_of(feed: FakeFeed, database: Database, **overrides: Any) -> FeedConsumer:
    arguments: dict[str, Any] = {
        "source": "source",
        "base_url": feed.url,
        "database": database,
        "cursor_model": FeedCursor,
        "consumed_model": ConsumedEvent,
        "handle": make_things,
        "tokens": TokenSource("s", "service:test", set()),
        "poll_seconds": 0.05,
    }
    return FeedConsumer(**(arguments | overrides))


def publish(feed: FakeFeed, name: str, event_type: str = "thing.made") -> dict[str, Any]:
    return feed.publish(
        {
            "id": str(uuid.uuid4()),
            "type": event_type,
            "occurred_at": "2026-01-01T00:00:00+00:00",
            "data": {"name": name},
        }
    )


@pytest.fixture
def feed() -> Iterator[FakeFeed]:
    fake = FakeFeed()
    with serve(fake.app) as url:
        fake.url = url
        yield fake


def test_a_page_is_applied_in_one_transaction_and_the_cursor_is_read_once(
    tmp_path: Path, feed: FakeFeed
) -> None:
    sink = fresh_database(tmp_path, "one_transaction")
    ledger = SinkLedger(sink)
    first = [publish(feed, f"first-{i}") for i in range(5)]
    consumer = consumer_of(feed, sink)
    consumer.start()
    try:
        eventually(lambda: consumer.cursor() == first[-1]["position"], what="the first page")
        assert (ledger.write_commits, ledger.cursor_writes) == (1, 1)
        for i in range(3):  # three more pages, each one event, each pushed to the waiting consumer
            later = publish(feed, f"later-{i}")
            eventually(lambda: consumer.cursor() == later["position"], what="a later page")  # noqa: B023
    finally:
        consumer.stop()
    assert thing_names(sink) == [f"first-{i}" for i in range(5)] + [f"later-{i}" for i in range(3)]
    assert (ledger.write_commits, ledger.cursor_writes) == (4, 4)
    # Once at start; then only the locked read inside each page's own transaction, never per poll.
    assert ledger.cursor_reads == 1 + 4
    sink.dispose()


def test_a_consumer_asks_only_for_its_types_and_moves_past_the_others(tmp_path: Path, feed: FakeFeed) -> None:
    sink = fresh_database(tmp_path, "types")
    ledger = SinkLedger(sink)
    publish(feed, "wanted-1")
    skipped = [publish(feed, f"other-{i}", event_type="thing.other") for i in range(3)]
    consumer = consumer_of(feed, sink, event_types=frozenset({"thing.made"}), wait_seconds=0)
    consumer.start()
    try:
        eventually(lambda: consumer.cursor() == skipped[-1]["position"], what="the cursor past the others")
    finally:
        consumer.stop()
    assert thing_names(sink) == ["wanted-1"]
    assert ledger.write_commits == 1  # moving past events of other types writes nothing
    sink.dispose()


def test_a_failing_event_is_found_logged_and_retried_never_skipped(
    tmp_path: Path, feed: FakeFeed, caplog: pytest.LogCaptureFixture
) -> None:
    sink = fresh_database(tmp_path, "failing")
    failures = [1, 1]  # the third event fails in the page and alone, then works (a sibling came back)

    def flaky(session: Session, event: dict[str, Any]) -> None:
        if event["data"]["name"] == "c" and failures:
            failures.pop()
            raise RuntimeError("not yet")
        make_things(session, event)

    published = [publish(feed, name) for name in "abcde"]
    consumer = consumer_of(feed, sink, handle=flaky)
    with caplog.at_level(logging.WARNING, logger="patientflow.feed"):
        consumer.start()
        try:
            eventually(lambda: consumer.cursor() == published[-1]["position"], what="the page after a retry")
        finally:
            consumer.stop()
    assert thing_names(sink) == list("abcde")  # each once, in feed order
    [failed] = [r for r in caplog.records if r.exc_info]
    assert published[2]["id"] in failed.getMessage()
    assert f"position {published[2]['position']}" in failed.getMessage()
    sink.dispose()


def test_a_restarted_consumer_resumes_from_its_stored_cursor_and_applies_each_event_once(
    tmp_path: Path, feed: FakeFeed
) -> None:
    sink = fresh_database(tmp_path, "restart")
    before = [publish(feed, f"before-{i}") for i in range(3)]
    first = consumer_of(feed, sink)
    first.start()
    eventually(lambda: first.cursor() == before[-1]["position"], what="the first consumer")
    first.stop()  # a crash or a deploy
    again = feed.publish(before[1])  # redelivered at a new position
    after = publish(feed, "after")
    second = consumer_of(feed, sink)
    second.start()
    try:
        eventually(lambda: second.cursor() == after["position"], what="the restarted consumer")
    finally:
        second.stop()
    assert again["position"] < after["position"]
    assert thing_names(sink) == ["before-0", "before-1", "before-2", "after"]
    sink.dispose()


def test_caught_up_returns_once_the_cursor_reaches_the_head_of_the_consumers_types(
    tmp_path: Path, feed: FakeFeed
) -> None:
    """The consumer is long-polling for its types; the head it must reach is that of its types, so an
    event of another type committed last never makes `caught_up` wait out the long poll."""
    sink = fresh_database(tmp_path, "caught_up")
    consumer = consumer_of(feed, sink, event_types=frozenset({"thing.made"}))
    consumer.start()
    try:
        eventually(lambda: feed.reads, what="the consumer to read")
        wanted = publish(feed, "charge")
        publish(feed, "noise", event_type="thing.other")
        assert caught_up([consumer], within_seconds=MAX_FEED_WAIT / 2) == []
        assert consumer.cursor() >= wanted["position"]
        assert thing_names(sink) == ["charge"]
    finally:
        consumer.stop()
    sink.dispose()


def test_caught_up_names_a_consumer_stuck_behind_a_failing_event(tmp_path: Path, feed: FakeFeed) -> None:
    sink = fresh_database(tmp_path, "stuck")

    def broken(_session: Session, _event: dict[str, Any]) -> None:
        raise RuntimeError("always")

    publish(feed, "never")
    consumer = consumer_of(feed, sink, handle=broken)
    consumer.start()
    try:
        assert caught_up([consumer], within_seconds=0.5) == ["source"]
    finally:
        consumer.stop()
    assert thing_names(sink) == []
    sink.dispose()


class SampleSettings(ServiceSettings):
    service_name: str = "sample"


@pytest.mark.skipif(database_url_under_test() is None, reason="replicas share a PostgreSQL schema")
def test_a_long_poll_on_one_replica_answers_with_an_event_committed_through_another(tmp_path: Path) -> None:
    fresh_database(tmp_path, "replicas").dispose()  # the sample tables in schema test_kit_replicas

    def replica() -> FastAPI:
        settings = make_test_settings(
            SampleSettings, tmp_path, migrate_on_start=False, database_schema="test_kit_replicas"
        )
        return build_service_app(
            settings=settings,
            title="sample",
            description="one replica",
            routers=[],
            outbox_model=OutboxEvent,
            migrations_dir=tmp_path,
        )

    one, other = replica(), replica()
    with serve(one) as url, serve(other), ThreadPoolExecutor(1) as pool:
        listeners: list[OutboxListener] = [one.state.outbox_listener, other.state.outbox_listener]
        eventually(lambda: all(listener.listening for listener in listeners), what="both replicas to listen")
        headers = feed_headers("sample")
        with httpx.Client(base_url=url, headers=headers, timeout=MAX_FEED_WAIT + 10) as client:
            waiting = pool.submit(read, client, after=0, **LONG)
            eventually(lambda: one.state.database.outbox_commits.waiting, what="the reader to wait")
            position = record(other.state.database)
            page = waiting.result()
    assert [e["position"] for e in page["events"]] == [position]
