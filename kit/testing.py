"""Test helpers shared by every service's tests: settings on the test database, clean tables, credentials.

`PATIENTFLOW_TEST_DATABASE_URL` selects the server (unset: SQLite files in a temporary directory).
On PostgreSQL each service gets its own `test_<service>` schema.
"""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import MetaData, delete

from kit.auth import mint_internal_token
from kit.config import ServiceSettings
from kit.database import Database

TEST_SECRET = "test-internal-secret-not-for-production"
S = TypeVar("S", bound=ServiceSettings)


def test_database_url() -> str | None:
    return os.environ.get("PATIENTFLOW_TEST_DATABASE_URL") or None


def make_test_settings(settings_cls: type[S], data_dir: Path, **overrides: Any) -> S:
    """Settings for one service on the test database, with the test secret and no env leakage."""
    url = test_database_url()
    name = settings_cls.model_fields["service_name"].default
    values: dict[str, Any] = {
        "environment": "test",
        "data_dir": data_dir,
        "internal_secret": TEST_SECRET,
        "database_url": url or f"sqlite:///{data_dir / f'{name}.db'}",
        "database_schema": f"test_{name}" if url else None,
        "feed_poll_seconds": 0.05,
    }
    values.update(overrides)
    return settings_cls.model_validate(values)


def wipe(database_url: str, schema: str | None, metadata: MetaData) -> None:
    """Delete every row of a service's tables (children first), keeping the migrated schema."""
    database = Database(database_url, schema)
    try:
        with database.session() as session:
            for table in reversed(metadata.sorted_tables):
                session.execute(delete(table))
    except Exception:  # tables do not exist yet: the first start migrates them
        pass
    finally:
        database.dispose()


def internal_headers(subject: str = "test-client", scopes: set[str] | None = None) -> dict[str, str]:
    """Headers a service accepts, as if the gateway had forwarded the call."""
    token = mint_internal_token(TEST_SECRET, subject, scopes or set())
    return {"authorization": f"Bearer {token}"}


@contextmanager
def service_client(app: FastAPI, metadata: MetaData) -> Iterator[TestClient]:
    """A started app (lifespan run, migrations applied) on wiped tables, calling as the gateway would."""
    settings: ServiceSettings = app.state.settings
    wipe(settings.resolved_database_url, settings.resolved_schema, metadata)
    with TestClient(app, headers=internal_headers(), raise_server_exceptions=False) as client:
        yield client
