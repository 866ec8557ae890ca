"""All of the gateway's SQL: the API clients table, and opening (and migrating) the database."""

from collections.abc import Sequence
from pathlib import Path

from sqlmodel import Session, col, select

from gateway.models import ApiClientRow
from kit.config import ServiceSettings
from kit.database import Database
from kit.migrations import upgrade

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def open_database(settings: ServiceSettings) -> Database:
    """The gateway's database, migrated to the newest revision."""
    database = Database(settings.resolved_database_url, settings.resolved_schema)
    if settings.migrate_on_start:
        try:
            upgrade(database, MIGRATIONS_DIR)
        except BaseException:
            database.dispose()
            raise
    return database


def list_api_clients(session: Session) -> Sequence[ApiClientRow]:
    return session.exec(select(ApiClientRow).order_by(col(ApiClientRow.name))).all()


def find_api_client(session: Session, *, name: str) -> ApiClientRow | None:
    return session.exec(select(ApiClientRow).where(ApiClientRow.name == name)).first()


def api_client_exists(session: Session, *, name: str) -> bool:
    return session.exec(select(ApiClientRow.id).where(ApiClientRow.name == name)).first() is not None


def save_api_client(session: Session, row: ApiClientRow) -> None:
    """Add or update a row, flushed so its id and defaults are set (the request's unit of work commits)."""
    session.add(row)
    session.flush()
