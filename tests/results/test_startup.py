"""Start-up: migrations build exactly the models' schema, and the test catalogue seed is an upsert."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlmodel import select

from kit import testing
from kit.database import Database
from kit.migrations import upgrade
from services.results import service
from services.results.models import OrderableTest, ResultsTable

MIGRATIONS = Path(service.__file__).parent / "migrations"
SCRATCH_SCHEMA = "test_results_migrations"


@pytest.fixture
def empty_database(tmp_path: Path) -> Iterator[Database]:
    """A database with no results tables yet (its own file, or its own schema on PostgreSQL)."""
    url = testing.database_url_under_test()
    database = Database(url or f"sqlite:///{tmp_path / 'empty.db'}", SCRATCH_SCHEMA if url else None)
    if url:
        with database.writer.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{SCRATCH_SCHEMA}" CASCADE'))
            conn.execute(text(f'CREATE SCHEMA "{SCRATCH_SCHEMA}"'))
    try:
        yield database
    finally:
        if url:
            with database.writer.begin() as conn:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{SCRATCH_SCHEMA}" CASCADE'))
        database.dispose()


def test_migrations_upgrade_from_empty_to_exactly_the_models(empty_database: Database) -> None:
    upgrade(empty_database, MIGRATIONS)
    upgrade(empty_database, MIGRATIONS)  # every start runs it again
    with empty_database.writer.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), ResultsTable.metadata) == []


def test_seed_upsert_restores_the_catalogue_without_duplicates(client: TestClient) -> None:
    database: Database = client.app.state.database  # type: ignore[attr-defined]
    with database.session() as session:
        cbc = session.get(OrderableTest, "250101015")
        assert cbc is not None
        cbc.name_en = "edited by hand"
        session.add(cbc)
    with database.session() as session:
        service.load_orderable_tests(session)
    with database.session(write=False) as session:
        tests = session.exec(select(OrderableTest)).all()
    assert len(tests) == 13
    assert next(t for t in tests if t.code == "250101015").name_en == "complete blood count"
