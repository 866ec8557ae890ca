"""Triage's migrations build, from empty, exactly the tables its models declare."""

from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from kit import testing
from kit.database import Database
from kit.migrations import alembic_config, upgrade
from services.triage.models import TriageTable

MIGRATIONS = Path(__file__).resolve().parents[2] / "services" / "triage" / "migrations"
SCRATCH_SCHEMA = "test_triage_migrations"


def empty_database(tmp_path: Path) -> Database:
    url = testing.test_database_url()
    if url is None:
        return Database(f"sqlite:///{tmp_path / 'migrations.db'}")
    database = Database(url, SCRATCH_SCHEMA)
    with database.writer.begin() as connection:
        connection.execute(text(f'DROP SCHEMA "{SCRATCH_SCHEMA}" CASCADE'))
        connection.execute(text(f'CREATE SCHEMA "{SCRATCH_SCHEMA}"'))
    return database


def test_upgrade_from_empty_matches_models_and_downgrades_cleanly(tmp_path: Path) -> None:
    database = empty_database(tmp_path)
    try:
        upgrade(database, MIGRATIONS)
        with database.writer.connect() as connection:
            assert compare_metadata(MigrationContext.configure(connection), TriageTable.metadata) == []
        with database.writer.begin() as connection:
            command.downgrade(alembic_config(MIGRATIONS, connection), "base")
        upgrade(database, MIGRATIONS)
    finally:
        database.dispose()
