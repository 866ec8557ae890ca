"""`build_service_app`: a start-up that fails half-way leaves no database open behind it."""

from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from kit.app import build_service_app
from kit.config import ServiceSettings
from kit.database import Database
from kit.testing import make_test_settings
from tests.conftest import DatabaseLedger
from tests.kit.sample import OutboxEvent


class SampleSettings(ServiceSettings):
    service_name: str = "sample"


def test_a_failed_start_up_disposes_of_the_database(data_dir: Path, database_ledger: DatabaseLedger) -> None:
    def refuse_to_start(_app: FastAPI, database: Database) -> None:
        database.check()  # the pool now holds an open connection
        raise RuntimeError("the catalogue does not load")

    app = build_service_app(
        settings=make_test_settings(SampleSettings, data_dir, migrate_on_start=False),
        title="sample",
        description="a service that cannot start",
        routers=[],
        outbox_model=OutboxEvent,
        migrations_dir=data_dir,
        on_startup=refuse_to_start,
    )
    opened = len(database_ledger.opened)
    with pytest.raises(RuntimeError, match="catalogue"), TestClient(app):
        pass
    assert database_ledger.undisposed_since(opened) == []
