"""Every component's migrations (each service's, the gateway's) build its schema from empty, match its
models exactly, and undo cleanly."""

import importlib
import uuid
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import MetaData, inspect, text

from kit.database import Database
from kit.migrations import alembic_config, upgrade
from kit.testing import database_url_under_test
from patientflow.topology import COMPONENTS, Component

MIGRATED = [c for c in COMPONENTS if c.migrations is not None]


def component_metadata(component: Component) -> MetaData:
    """The metadata of `<package>.models.<Name>Table`, the package being the one holding the app."""
    package = component.app.partition(":")[0].removesuffix(".app")
    models = importlib.import_module(f"{package}.models")
    metadata: MetaData = getattr(models, f"{component.name.capitalize()}Table").metadata
    return metadata


@pytest.mark.parametrize("service", [c.name for c in MIGRATED])
def test_migrations_upgrade_from_empty_to_head_and_match_models(service: str, tmp_path: Path) -> None:
    url = database_url_under_test()
    schema = f"test_migrate_{service}_{uuid.uuid4().hex[:6]}" if url else None
    database = Database(url or f"sqlite:///{tmp_path / 'fresh.db'}", schema)
    component = next(c for c in MIGRATED if c.name == service)
    assert component.migrations is not None
    try:
        upgrade(database, component.migrations)
        upgrade(database, component.migrations)  # a second start is a no-op
        with database.writer.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, component_metadata(component)) == []
        with database.writer.begin() as connection:  # and the way back works too
            command.downgrade(alembic_config(component.migrations, connection), "base")
            assert set(inspect(connection).get_table_names()) <= {"alembic_version"}
        upgrade(database, component.migrations)
    finally:
        if schema:
            with database.writer.begin() as connection:
                connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        database.dispose()
