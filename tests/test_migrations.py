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


BILLING_BEFORE_DEPARTMENTS = """
INSERT INTO catalogue_item (code, name_zh, name_en, unit, price_fen, category, active, updated_at)
    VALUES ('110900001', '普通病房床位费', 'Bed', '日', 3000, 'bed', true, '2026-12-01 00:00:00');
INSERT INTO visit_account (visit_id, patient_id, kind, payment_mode, status, opened_at)
    VALUES ('v1', 'p1', 'inpatient', 'prepay', 'open', '2026-12-01 00:00:00');
INSERT INTO billing_stay (visit_id, patient_id, admitted_at) VALUES ('v1', 'p1', '2026-12-01 00:00:00');
INSERT INTO charge (id, visit_id, item_code, item_name, unit, unit_price_fen, quantity, amount_fen, origin,
    charged_at, service_date, reversal_of) VALUES -- a bed-day, its reversal line, a charge by hand
    ('bed', 'v1', '110900001', 'x', 'd', 3000, 1, 3000, 'inpatient_day', '2026-12-01', '2026-12-01', NULL),
    ('undo', 'v1', '110900001', 'x', 'd', 3000, -1, -3000, 'reversal', '2026-12-01', '2026-12-01', 'bed'),
    ('hand', 'v1', '110900001', 'x', 'd', 3000, 1, 3000, 'manual', '2026-12-01', '2026-12-01', NULL);
INSERT INTO inpatient_day (visit_id, kind, service_date, charge_id, item_code, department, posted_at)
    VALUES ('v1', 'bed', '2026-12-01', 'bed', '110900001', 'cardiology', '2026-12-01 00:00:00');
"""


def test_billings_department_migration_gives_posted_days_their_wards_department(tmp_path: Path) -> None:
    """0011: bed-days posted before it (and their reversal lines) name the ward; other lines stay unknown."""
    url = database_url_under_test()
    schema = f"test_migrate_dept_{uuid.uuid4().hex[:6]}" if url else None
    database = Database(url or f"sqlite:///{tmp_path / 'fresh.db'}", schema)
    component = next(c for c in MIGRATED if c.name == "billing")
    assert component.migrations is not None
    try:
        with database.owner() as connection:
            command.upgrade(alembic_config(component.migrations, connection), "0010_tenders")
            for statement in BILLING_BEFORE_DEPARTMENTS.split(";")[:-1]:
                connection.execute(text(statement))
            command.upgrade(alembic_config(component.migrations, connection), "head")
            rows = connection.execute(text("SELECT id, department FROM charge ORDER BY id")).all()
        assert [tuple(row) for row in rows] == [("bed", "cardiology"), ("hand", None), ("undo", "cardiology")]
    finally:
        if schema:
            with database.writer.begin() as connection:
                connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        database.dispose()
