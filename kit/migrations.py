"""Alembic, the same way in every service: `env.py` calls `run_migrations`, start-up calls `upgrade`.

Migrations run as the schema's owner (`Database.owner`). Two helpers keep rows from being rewritten:
`make_append_only` (triggers refusing UPDATE and DELETE on any connection but the test wipe's, SQLite and
PostgreSQL alike) and, on PostgreSQL, `grant_runtime_role`, which lets the service's own role only
select and insert on such tables, a privilege no setting on the connection can get round.
"""

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from alembic import command, context, op
from alembic.config import Config
from sqlalchemy import Connection, MetaData, text
from sqlalchemy.types import TypeDecorator

from kit.config import runtime_role_name
from kit.database import WIPE_FUNCTION, WIPE_SETTING, Database

RUNTIME_ROLE = "runtime_role"
"""Alembic config attribute: the runtime role the service was configured with (None: its default)."""
DML = "SELECT, INSERT, UPDATE, DELETE"


def alembic_config(
    migrations_dir: Path, connection: Connection | None = None, *, runtime_role: str | None = None
) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir))
    config.attributes["connection"] = connection
    config.attributes[RUNTIME_ROLE] = runtime_role
    return config


def upgrade(database: Database, migrations_dir: Path) -> None:
    """Bring a service's database to the newest revision (idempotent; runs at every start), as the owner."""
    with database.owner() as connection:
        config = alembic_config(migrations_dir, connection, runtime_role=database.runtime_role)
        command.upgrade(config, "head")


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
    with database.owner() as connection:
        config = alembic_config(migrations_dir, connection, runtime_role=database.runtime_role)
        command.revision(config, message=message, autogenerate=True, rev_id=_next_rev_id(migrations_dir))


def _next_rev_id(migrations_dir: Path) -> str:
    existing = [p.name[:4] for p in (migrations_dir / "versions").glob("[0-9][0-9][0-9][0-9]_*.py")]
    return f"{max(map(int, existing), default=0) + 1:04d}"


def create_append_only_function(name: str, message: str, *parameters: str) -> None:
    """PostgreSQL (nothing on SQLite): the trigger function `make_append_only` names, raising `message`
    (RAISE's format; each `%` filled from `parameters`, e.g. `TG_TABLE_NAME`) as insufficient_privilege,
    except for a DELETE on a connection that declared itself the test wipe."""
    if _dialect() != "postgresql":
        return
    arguments = ", ".join([f"'{message}'", *parameters])
    # USING on a line of its own after parameters: the layout migrations wrote before this helper.
    using = "\n        USING" if parameters else " USING"
    op.execute(f"""
CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('{WIPE_SETTING}', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION {arguments}{using} ERRCODE = 'insufficient_privilege';
END
$$
""")


def drop_append_only_function(name: str) -> None:
    if _dialect() == "postgresql":
        op.execute(f"DROP FUNCTION {name}()")


def make_append_only(table: str, *, function: str, message: str, row_trigger: str) -> None:
    """Triggers refusing UPDATE and DELETE of `table`'s rows (and TRUNCATE on PostgreSQL, through
    `function`; SQLite raises `message`); only the test wipe's DELETE passes (kit.database). On
    PostgreSQL also keep the runtime role to appending (`grant_runtime_role(append_only=...)`)."""
    if _dialect() == "postgresql":
        op.execute(
            f"CREATE TRIGGER {row_trigger} BEFORE UPDATE OR DELETE ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION {function}()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {function}()"
        )
    else:
        op.execute(
            f"CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table} "
            f"BEGIN SELECT RAISE(ABORT, '{message}'); END"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table} "
            f"WHEN {WIPE_FUNCTION}() IS NOT 1 BEGIN SELECT RAISE(ABORT, '{message}'); END"
        )


def undo_append_only(table: str, *, row_trigger: str) -> None:
    """Drop the triggers `make_append_only` created."""
    if _dialect() == "postgresql":
        op.execute(f"DROP TRIGGER {table}_no_truncate ON {table}")
        op.execute(f"DROP TRIGGER {row_trigger} ON {table}")
    else:
        op.execute(f"DROP TRIGGER {table}_no_delete")
        op.execute(f"DROP TRIGGER {table}_no_update")


def grant_runtime_role(service: str, *, append_only: Mapping[str, Sequence[str]] = {}) -> None:
    """PostgreSQL (nothing on SQLite): the service's runtime role (kit.database), created unless it
    exists and made one the migrating role may act as, gets USAGE on this schema and SELECT, INSERT,
    UPDATE and DELETE on its tables (also on those later migrations create, by default privileges),
    sequences to go with them; on each `append_only` table only SELECT and INSERT, plus UPDATE of the
    columns named. No TRUNCATE, nothing on `alembic_version`, and the role itself can log in nowhere.

    Roles are cluster-wide and databases on one server migrate concurrently: creating the role and
    the membership tolerate another migration doing the same at the same moment. Every grant is on
    this schema's objects only. Idempotent: a later migration may call it again."""
    if _dialect() != "postgresql":
        return
    for statement in runtime_grants(_runtime_role(service), _current_schema(), append_only):
        op.execute(statement)


def runtime_grants(role: str, schema: str, append_only: Mapping[str, Sequence[str]] = {}) -> list[str]:
    """The statements of `grant_runtime_role`, in order, for `role` on `schema`'s objects."""
    schema = f'"{schema}"'
    grants = [
        *_role_statements(role),
        f"GRANT USAGE ON SCHEMA {schema} TO {role}",
        f"GRANT {DML} ON ALL TABLES IN SCHEMA {schema} TO {role}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {role}",
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT {DML} ON TABLES TO {role}",
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT USAGE, SELECT ON SEQUENCES TO {role}",
        f"REVOKE ALL ON alembic_version FROM {role}",
    ]
    for table, updatable in append_only.items():
        grants += [f"REVOKE ALL ON {table} FROM {role}", f"GRANT SELECT, INSERT ON {table} TO {role}"]
        if updatable:
            grants.append(f"GRANT UPDATE ({', '.join(updatable)}) ON {table} TO {role}")
    return grants


def revoke_runtime_role(service: str) -> None:
    """Undo `grant_runtime_role` in this schema. The role stays: other schemas and databases use it."""
    if _dialect() != "postgresql":
        return
    role, schema = _runtime_role(service), f'"{_current_schema()}"'
    op.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} REVOKE ALL ON SEQUENCES FROM {role}")
    op.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} REVOKE ALL ON TABLES FROM {role}")
    op.execute(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA {schema} FROM {role}")
    op.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA {schema} FROM {role}")
    op.execute(f"REVOKE USAGE ON SCHEMA {schema} FROM {role}")


def _role_statements(role: str) -> Iterator[str]:
    yield f"""
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN
        CREATE ROLE {role} NOLOGIN;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;  -- another database's migration created it meanwhile
END
$$"""
    # The service connects as the owner's login and acts as the role: the login must be a member
    # (a superuser is one of every role already).
    yield f"""
DO $$
BEGIN
    IF NOT pg_has_role(current_user, '{role}', 'MEMBER') THEN
        GRANT {role} TO CURRENT_USER;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END
$$"""


def _runtime_role(service: str) -> str:
    config = op.get_context().config
    configured = config.attributes.get(RUNTIME_ROLE) if config is not None else None
    return configured or runtime_role_name(service)


def _current_schema() -> str:
    return str(op.get_bind().execute(text("SELECT current_schema()")).scalar_one())


def _dialect() -> str:
    return op.get_bind().dialect.name
