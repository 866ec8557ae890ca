"""Every service's migrations build its schema from empty, and match its models exactly."""

import importlib
import uuid
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import MetaData, text

from kit.database import Database
from kit.migrations import upgrade
from kit.testing import test_database_url
from patientflow.topology import SERVICES


def service_metadata(name: str) -> MetaData:
    models = importlib.import_module(f"services.{name}.models")
    metadata: MetaData = getattr(models, f"{name.capitalize()}Table").metadata
    return metadata


@pytest.mark.parametrize("service", [s.name for s in SERVICES])
def test_migrations_upgrade_from_empty_to_head_and_match_models(service: str, tmp_path: Path) -> None:
    url = test_database_url()
    schema = f"test_migrate_{service}_{uuid.uuid4().hex[:6]}" if url else None
    database = Database(url or f"sqlite:///{tmp_path / 'fresh.db'}", schema)
    component = next(s for s in SERVICES if s.name == service)
    assert component.migrations is not None
    try:
        upgrade(database, component.migrations)
        upgrade(database, component.migrations)  # a second start is a no-op
        with database.writer.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, service_metadata(service)) == []
    finally:
        if schema:
            with database.writer.begin() as connection:
                connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        database.dispose()
