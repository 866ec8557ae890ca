"""A service's runtime role on PostgreSQL (kit.database, kit.migrations.grant_runtime_role): created once
however many databases migrate at the same moment, acting on its schema as granted and no further."""

import threading
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from kit.database import Database
from kit.migrations import runtime_grants
from kit.testing import database_url_under_test

URL = database_url_under_test()
pytestmark = pytest.mark.skipif(URL is None, reason="roles are PostgreSQL's")


def migrate(database: Database, role: str, released: threading.Barrier) -> None:
    """What a service's migration does: create tables, then grant the role (`grant_runtime_role`)."""
    assert database.schema is not None
    with database.owner() as connection:
        connection.execute(text("CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY)"))
        connection.execute(text("CREATE TABLE ledger (id serial PRIMARY KEY, note text)"))
        connection.execute(text("CREATE TABLE tally (id int PRIMARY KEY, n int)"))
        released.wait(timeout=30)
        for statement in runtime_grants(role, database.schema, {"ledger": ()}):
            connection.execute(text(statement))


@pytest.fixture
def role() -> Iterator[str]:
    """A role new to the cluster (every migration racing below finds it missing); dropped afterwards."""
    name = f"test_race_{uuid.uuid4().hex[:8]}"
    yield name
    scratch = Database(URL or "", "public")
    with scratch.writer.begin() as connection:
        if connection.execute(text(f"SELECT 1 FROM pg_roles WHERE rolname = '{name}'")).first():
            connection.execute(text(f"DROP OWNED BY {name}"))
            connection.execute(text(f"DROP ROLE {name}"))
    scratch.dispose()


def test_migrations_racing_to_create_the_role_all_succeed_and_each_schema_is_granted(role: str) -> None:
    schemas = [f"test_kit_{role}_{n}" for n in range(3)]
    owners = [Database(URL or "", schema) for schema in schemas]
    released = threading.Barrier(len(owners))
    failures: list[BaseException] = []

    def run(database: Database) -> None:
        try:
            migrate(database, role, released)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(database,)) for database in owners]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert failures == []
        for schema in schemas:
            runtime = Database(URL or "", schema, runtime_role=role)
            try:
                with runtime.session() as session:
                    session.execute(text("INSERT INTO ledger (note) VALUES ('kept')"))
                    session.execute(text("INSERT INTO tally VALUES (1, 1)"))
                    session.execute(text("UPDATE tally SET n = 2"))
                    session.execute(text("DELETE FROM tally"))
                for statement in (
                    "UPDATE ledger SET note = 'changed'",
                    "DELETE FROM ledger",
                    "TRUNCATE tally",
                ):
                    with pytest.raises(DBAPIError, match="permission denied"), runtime.session() as session:
                        session.execute(text(statement))
                with runtime.session() as session:
                    assert session.execute(text("SELECT note FROM ledger")).scalars().all() == ["kept"]
            finally:
                runtime.dispose()
    finally:
        for database in owners:
            with database.owner() as connection:
                connection.execute(text(f'DROP SCHEMA "{database.schema}" CASCADE'))
            database.dispose()


def test_a_table_a_later_migration_creates_is_the_runtime_roles_to_use_too(role: str) -> None:
    owner = Database(URL or "", f"test_kit_{role}_later")
    try:
        migrate(owner, role, threading.Barrier(1))
        with owner.owner() as connection:
            connection.execute(text("CREATE TABLE later (id int PRIMARY KEY)"))
        runtime = Database(URL or "", owner.schema, runtime_role=role)
        try:
            with runtime.session() as session:
                session.execute(text("INSERT INTO later VALUES (1)"))
                session.execute(text("DELETE FROM later"))
        finally:
            runtime.dispose()
    finally:
        with owner.owner() as connection:
            connection.execute(text(f'DROP SCHEMA "{owner.schema}" CASCADE'))
        owner.dispose()
