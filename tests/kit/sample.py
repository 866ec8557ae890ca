"""A minimal service built only from the kernel, to test the kernel's mechanisms on both databases."""

import uuid
from pathlib import Path

from sqlalchemy import text
from sqlmodel import Field, SQLModel

from kit.database import Database
from kit.idempotency import IdempotencyRecordBase
from kit.models import ConsumedEventBase, FeedCursorBase, OutboxEventBase, new_registry
from kit.testing import database_url_under_test


class SampleTable(SQLModel, registry=new_registry()):
    pass


class Thing(SampleTable, table=True):
    id: str = Field(primary_key=True, max_length=36, default_factory=lambda: str(uuid.uuid4()))
    name: str = Field(max_length=50)


class OutboxEvent(OutboxEventBase, SampleTable, table=True):
    __tablename__ = "outbox_event"


class FeedCursor(FeedCursorBase, SampleTable, table=True):
    __tablename__ = "feed_cursor"


class ConsumedEvent(ConsumedEventBase, SampleTable, table=True):
    __tablename__ = "consumed_event"


class IdempotencyRecord(IdempotencyRecordBase, SampleTable, table=True):
    __tablename__ = "idempotency_record"


def fresh_database(tmp_path: Path, name: str) -> Database:
    """An empty database with the sample tables: a SQLite file, or a dropped-and-recreated schema."""
    url = database_url_under_test()
    schema = f"test_kit_{name}" if url else None
    if schema:
        scratch = Database(url or "", "public")
        with scratch.writer.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        scratch.dispose()
    database = Database(url or f"sqlite:///{tmp_path / f'{name}.db'}", schema)
    SampleTable.metadata.create_all(database.writer)
    return database
