"""Fixtures several test packages share. A package's conftest imports those it uses, which makes them
its own: each package gets its own instance of a package-scoped one (its own registration, say)."""

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from kit.testing import HTTP_TIMEOUT_SECONDS, internal_headers, make_test_settings, serve, wipe
from services.registration.app import create_app as create_registration_app
from services.registration.config import RegistrationSettings
from services.registration.models import RegistrationTable


@pytest.fixture(scope="package")
def registration_settings(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> RegistrationSettings:
    """The settings of a registration of this package's own: its own directory and PostgreSQL schema, so
    another package's tests (which wipe their registration's tables) never pull visits from under it."""
    where = Path(request.node.path)
    package = where.name if where.is_dir() else where.parent.name
    data_dir = tmp_path_factory.mktemp(f"{package}-registration")
    return make_test_settings(RegistrationSettings, data_dir, database_schema=f"test_{package}_registration")


@pytest.fixture(scope="package")
def registration_url(registration_settings: RegistrationSettings) -> Iterator[str]:
    """A real registration service over HTTP, so the package's service calls it as in production."""
    with serve(create_registration_app(registration_settings)) as url:
        yield url


@pytest.fixture
def registration(
    registration_url: str, registration_settings: RegistrationSettings
) -> Iterator[httpx.Client]:
    """A client of the package's registration, calling as the gateway would, on wiped tables."""
    settings = registration_settings
    wipe(settings.resolved_database_url, settings.resolved_schema, RegistrationTable.metadata)
    headers = internal_headers(audience="registration")
    with httpx.Client(base_url=registration_url, headers=headers, timeout=HTTP_TIMEOUT_SECONDS) as client:
        yield client
