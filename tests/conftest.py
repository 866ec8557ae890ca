"""Fixtures shared by the whole suite."""

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One directory for the session's SQLite files (each test wipes the tables it uses)."""
    return tmp_path_factory.mktemp("data")
