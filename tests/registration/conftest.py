from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from kit.testing import make_test_settings, service_client
from services.registration.app import create_app
from services.registration.config import RegistrationSettings
from services.registration.models import RegistrationTable


@pytest.fixture
def client(data_dir: Path) -> Iterator[TestClient]:
    app = create_app(make_test_settings(RegistrationSettings, data_dir))
    with service_client(app, RegistrationTable.metadata) as client:
        yield client
