"""Alembic, the same way in every service: `env.py` calls `run_migrations`, start-up calls `upgrade`."""

from pathlib import Path
from typing import Any, Literal

from alembic import command, context
from alembic.config import Config
from sqlalchemy import Connection, MetaData
from sqlalchemy.types import TypeDecorator

from kit.database import Database


def alembic_config(migrations_dir: Path, connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir))
    config.attributes["connection"] = connection
    return config


def upgrade(database: Database, migrations_dir: Path) -> None:
    """Bring a service's database to the newest revision (idempotent; runs at every start)."""
    with database.writer.begin() as connection:
        command.upgrade(alembic_config(migrations_dir, connection), "head")


def run_migrations(metadata: MetaData) -> None:
    """Body of every service's `env.py`: migrate the connection start-up handed over."""
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("Run migrations through kit.migrations.upgrade (patientflow migrate).")
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=True,  # SQLite can only ALTER by copying the table
        compare_type=True,
        render_item=_render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


def _render_item(kind: str, obj: Any, autogen_context: Any) -> str | Literal[False]:
    """Write kernel column types as their plain SQLAlchemy equivalents, so revisions import nothing extra."""
    if kind == "type" and isinstance(obj, TypeDecorator):
        return f"sa.{obj.impl!r}"
    return False


def make_revision(database: Database, migrations_dir: Path, message: str) -> None:
    """Autogenerate the next revision from the models (a developer command, never run at start)."""
    upgrade(database, migrations_dir)
    with database.writer.begin() as connection:
        config = alembic_config(migrations_dir, connection)
        command.revision(config, message=message, autogenerate=True, rev_id=_next_rev_id(migrations_dir))


def _next_rev_id(migrations_dir: Path) -> str:
    existing = [p.name[:4] for p in (migrations_dir / "versions").glob("[0-9][0-9][0-9][0-9]_*.py")]
    return f"{max(map(int, existing), default=0) + 1:04d}"
