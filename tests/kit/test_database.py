"""The database layer: SQLite set up for safety, concurrent writers never see 'database is locked'."""

import threading
from pathlib import Path

import pytest
from sqlalchemy import func
from sqlmodel import select

from kit.database import Database
from tests.kit.sample import Thing, fresh_database


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
