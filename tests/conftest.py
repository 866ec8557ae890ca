"""Fixtures shared by the whole suite."""

import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event

from kit import causes
from kit.database import Database


def _checked_out(engine: Engine) -> int:
    """Connections of the engine's pool in use now (QueuePool and its kin count them)."""
    count: int = getattr(engine.pool, "checkedout", lambda: 0)()
    return count


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One directory for the session's SQLite files (each test wipes the tables it uses)."""
    return tmp_path_factory.mktemp("data")


class DatabaseLedger:
    """Every `Database` the tests open: each must be disposed, with no connection still checked out.

    A pooled connection that outlives its engine's `dispose()` (never disposed, or checked out while it
    ran and returned to the discarded pool afterwards) is closed only by the garbage collector, whose
    `ResourceWarning` then fails whichever test happens to be running (CI once lost a PostgreSQL run so).
    The ledger names the test or fixture that opened it instead.
    """

    def __init__(self) -> None:
        self.opened: list[tuple[Database, str]] = []
        self.disposed: set[int] = set()
        self.problems: list[str] = []

    def open(self, database: Database) -> None:
        self.opened.append((database, "".join(traceback.format_stack(limit=8)[:-2])))

    def disposing(self, database: Database) -> None:
        busy = {_checked_out(database.writer), _checked_out(database.reader)} - {0}
        if busy:
            self.problems.append(f"{database.url}: disposed with {max(busy)} connection(s) checked out")

    def disposed_now(self, database: Database) -> None:
        if id(database) not in self.disposed:
            self.disposed.add(id(database))
            for engine in database.engines:
                event.listen(engine, "connect", lambda *_: self.reopened(database))

    def reopened(self, database: Database) -> None:
        """A disposed engine opens a fresh pool on its next use, and nothing will close that one."""
        where = "".join(traceback.format_stack(limit=12)[:-2])
        self.problems.append(f"{database.url}: used after dispose, at\n{where}")

    def undisposed_since(self, mark: int) -> list[str]:
        return [
            f"{database.url} opened at\n{where}"
            for database, where in self.opened[mark:]
            if id(database) not in self.disposed
        ]


@pytest.fixture(scope="session", autouse=True)
def database_ledger() -> Iterator[DatabaseLedger]:
    ledger = DatabaseLedger()
    init, dispose = Database.__init__, Database.dispose

    def tracked_init(self: Database, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        ledger.open(self)

    def tracked_dispose(self: Database) -> None:
        ledger.disposing(self)
        dispose(self)
        ledger.disposed_now(self)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Database, "__init__", tracked_init)
        patch.setattr(Database, "dispose", tracked_dispose)
        yield ledger
    leaked = ledger.undisposed_since(0) + ledger.problems
    assert not leaked, "databases not disposed cleanly:\n" + "\n".join(leaked)


@pytest.fixture(autouse=True)
def _databases_disposed(database_ledger: DatabaseLedger) -> Iterator[None]:
    """A database a test (or its function-scoped fixtures) opened is disposed, cleanly, by its end."""
    mark, problems = len(database_ledger.opened), len(database_ledger.problems)
    yield
    leaked = database_ledger.undisposed_since(mark) + database_ledger.problems[problems:]
    assert not leaked, "databases not disposed cleanly:\n" + "\n".join(leaked)


@pytest.fixture(autouse=True)
def _no_causes_carried_over() -> Iterator[None]:
    """Causes a test's sibling calls noted in the main thread's context end with the test (kit.causes)."""
    with causes.fresh():
        yield
