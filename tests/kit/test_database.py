"""The database layer: SQLite set up for safety, concurrent writers never see 'database is locked'."""

import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, func, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool
from sqlmodel import select

import kit.database
from kit.database import Database
from kit.outbox import record_event
from tests.kit.sample import OutboxEvent, Thing, fresh_database


def test_sqlite_connections_run_with_safe_pragmas(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'pragmas.db'}")  # SQLite even on the PostgreSQL run
    assert database.pragmas() == {
        "journal_mode": "wal",
        "synchronous": "2",
        "foreign_keys": "1",
        "busy_timeout": "30000",
    }
    database.dispose()


def test_concurrent_writers_all_commit(tmp_path: Path) -> None:
    database = fresh_database(tmp_path, "writers")
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(25):
                with database.session() as session:
                    session.add(Thing(name=f"{n}-{i}"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with database.session(write=False) as session:
        assert session.exec(select(func.count()).select_from(Thing)).one() == 200
    database.dispose()


def test_a_failed_unit_of_work_leaves_nothing_behind(tmp_path: Path) -> None:
    database = fresh_database(tmp_path, "rollback")
    with pytest.raises(RuntimeError), database.session() as session:
        session.add(Thing(name="half-done"))
        session.flush()
        raise RuntimeError("boom")
    with database.session(write=False) as session:
        assert session.exec(select(Thing)).all() == []
    database.dispose()


def postgres_database(tmp_path: Path, name: str) -> Database:
    database = fresh_database(tmp_path, name)
    if database.is_sqlite:
        database.dispose()
        pytest.skip("PostgreSQL's round trips and pooled server connections")
    return database


def test_a_read_on_postgresql_opens_no_transaction_and_a_write_one(tmp_path: Path) -> None:
    """A read runs in autocommit, so it costs no BEGIN and no ROLLBACK round trip: each of its statements
    is a transaction of its own (at READ COMMITTED each takes its own snapshot in a transaction too)."""
    database = postgres_database(tmp_path, "autocommit_reads")
    two_statements = [text("SELECT txid_current()"), text("SELECT txid_current()")]
    with database.session(write=False) as session:
        read_ids = [session.execute(statement).scalar_one() for statement in two_statements]
    with database.session() as session:
        write_ids = [session.execute(statement).scalar_one() for statement in two_statements]
    assert read_ids[0] != read_ids[1]
    assert write_ids[0] == write_ids[1]
    database.dispose()


def test_an_outbox_event_in_a_read_session_is_refused_not_lost(tmp_path: Path) -> None:
    """A read session never commits, so an event recorded in one would never reach the feed."""
    database = postgres_database(tmp_path, "read_event")
    with pytest.raises(RuntimeError, match="read session"), database.session(write=False) as session:
        record_event(session, OutboxEvent, event_type="x", aggregate_type="t", aggregate_id="a", payload={})
    with database.session(write=False) as session:
        assert session.exec(select(OutboxEvent)).all() == []
    database.dispose()


def test_a_pooled_connection_the_server_dropped_while_idle_is_replaced_before_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database restart or an idle timeout ends a connection the pool still holds: the first request
    after the pause gets a fresh one, not an error."""
    database = postgres_database(tmp_path, "idle_ping")
    with database.session(write=False) as session:
        dropped = session.execute(text("SELECT pg_backend_pid()")).scalar_one()
    server_side = create_engine(database.url, poolclass=NullPool)  # the pool's one connection is idle
    with server_side.connect() as admin:
        assert admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": dropped}).scalar_one()
    server_side.dispose()
    monkeypatch.setattr(kit.database, "PING_IDLE_SECONDS", 0.0)  # every pooled connection has sat idle
    with database.session(write=False) as session:
        assert session.exec(select(Thing)).all() == []
        assert session.execute(text("SELECT pg_backend_pid()")).scalar_one() != dropped
    database.dispose()


def test_a_services_connections_say_which_service_they_serve(tmp_path: Path) -> None:
    """An operator reading `pg_stat_activity` (a lock queue, a long transaction) sees the service."""
    database = postgres_database(tmp_path, "named")
    with database.session(write=False) as session:
        name = session.execute(
            text("SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()")
        )
        assert name.scalar_one() == "patientflow-test_kit_named"
    database.dispose()


def test_a_read_session_refuses_to_write_and_writes_nothing(tmp_path: Path) -> None:
    """On PostgreSQL a read runs in autocommit: a row written there would commit alone, whatever fails
    after it; on SQLite it would bypass the one writer's queue. Either way it is refused."""
    database = fresh_database(tmp_path, "read_writes")
    with pytest.raises(RuntimeError, match="read session"), database.session(write=False) as session:
        session.add(Thing(name="in a read"))
        session.flush()
    with database.session(write=False) as session:
        assert session.exec(select(Thing)).all() == []  # reading is fine
    database.dispose()


def prepared_here(session: Any) -> tuple[int, int]:
    """(this connection's backend, how many statements it holds prepared)."""
    return session.execute(text("SELECT pg_backend_pid(), count(*) FROM pg_prepared_statements")).one()


def test_a_statement_is_prepared_from_its_second_run_and_stays_prepared_past_the_idle_ping(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server parses a service's statements once per pooled connection, not on most executions:
    psycopg prepares on the second run (`prepare_threshold`), and the idle ping ends its transaction by
    COMMIT, as a ROLLBACK would drop every prepared statement of the connection."""
    database = postgres_database(tmp_path, "prepared")
    with database.session(write=False) as session:
        backend, before = prepared_here(session)
        for _ in range(2):
            session.exec(select(Thing).where(Thing.name == "x")).all()
        assert prepared_here(session)[1] > before  # prepared at its second run
        prepared = prepared_here(session)[1]
    monkeypatch.setattr(kit.database, "PING_IDLE_SECONDS", 0.0)  # the next check-out pings
    with database.session(write=False) as session:
        assert prepared_here(session) == (backend, prepared)  # the same connection, nothing dropped
    database.dispose()


def test_a_connection_whose_prepared_plan_went_stale_is_dropped_not_kept_failing(tmp_path: Path) -> None:
    """Another connection's DDL that changes a prepared statement's result columns (a migration while
    replicas serve) fails that statement on every later run there: the connection is dropped as a lost
    one is (`kit.errors` answers such a request 503) and the next read gets a fresh one."""
    database = postgres_database(tmp_path, "stale_plan")
    with database.session() as session:
        session.add(Thing(name="first"))
    read = select(Thing.name)
    with database.session(write=False) as session:
        backend = prepared_here(session)[0]
        for _ in range(2):
            assert session.exec(read).all() == ["first"]
    other = create_engine(database.url, poolclass=NullPool)
    with other.begin() as admin:
        admin.execute(text(f'ALTER TABLE "{database.schema}".thing ALTER COLUMN name TYPE text'))
    other.dispose()

    with pytest.raises(DBAPIError) as failed, database.session(write=False) as session:
        session.exec(read).all()
    with database.session(write=False) as session:
        assert session.exec(read).all() == ["first"]
        assert prepared_here(session)[0] != backend

    assert failed.value.connection_invalidated
    database.dispose()
