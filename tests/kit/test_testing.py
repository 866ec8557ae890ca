"""The per-test clean database: `kit.testing.wipe` empties a service's tables or fails loudly, naming why."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from kit.database import Database
from kit.testing import wipe
from tests.kit.sample import SampleTable, Thing, fresh_database


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    database = fresh_database(tmp_path, "wipe")
    with database.session() as session:
        session.add(Thing(name="left by the last test"))
    yield database
    database.dispose()


def wipe_sample(database: Database) -> None:
    wipe(database.url, database.schema, SampleTable.metadata)


def things(database: Database) -> int:
    with database.session() as session:
        return session.execute(select(func.count()).select_from(Thing)).scalar_one()


def run(database: Database, *statements: str) -> None:
    with database.writer.begin() as conn:
        for statement in statements:
            conn.execute(text(statement))


def test_wipe_empties_every_table(database: Database) -> None:
    wipe_sample(database)
    assert things(database) == 0


def test_a_schema_not_yet_migrated_is_nothing_to_wipe(tmp_path: Path) -> None:
    database = fresh_database(tmp_path, "unmigrated")
    SampleTable.metadata.drop_all(database.writer)
    try:
        wipe_sample(database)  # the service's first start will create the tables
    finally:
        database.dispose()


def test_rows_a_trigger_keeps_fail_the_wipe(database: Database) -> None:
    if database.is_sqlite:
        run(database, "CREATE TRIGGER keep BEFORE DELETE ON thing BEGIN SELECT RAISE(IGNORE); END")
    else:  # a BEFORE row trigger returning NULL skips the delete without an error
        run(
            database,
            "CREATE FUNCTION keep() RETURNS trigger AS $$ BEGIN RETURN NULL; END $$ LANGUAGE plpgsql",
            "CREATE TRIGGER keep BEFORE DELETE ON thing FOR EACH ROW EXECUTE FUNCTION keep()",
        )
    with pytest.raises(AssertionError, match=r"rows survived the delete: \{'thing': 1\}"):
        wipe_sample(database)


def test_a_refused_delete_fails_the_wipe_naming_the_table(database: Database) -> None:
    if database.is_sqlite:
        run(database, "CREATE TRIGGER refuse BEFORE DELETE ON thing BEGIN SELECT RAISE(ABORT, 'kept'); END")
    else:
        run(
            database,
            "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'kept'; END $$ "
            "LANGUAGE plpgsql",
            "CREATE TRIGGER refuse BEFORE DELETE ON thing FOR EACH ROW EXECUTE FUNCTION refuse()",
        )
    with pytest.raises(AssertionError, match=r"deleting from thing failed: .*kept"):
        wipe_sample(database)
    assert things(database) == 1


def test_a_table_the_models_do_not_declare_fails_the_wipe(database: Database) -> None:
    # Its foreign key would hold the row in `thing`, and its own rows would leak into the next test.
    run(database, "CREATE TABLE note (id INTEGER PRIMARY KEY, thing_id VARCHAR(36) REFERENCES thing (id))")
    with pytest.raises(AssertionError, match=r"tables the models do not declare: \['note'\]"):
        wipe_sample(database)
