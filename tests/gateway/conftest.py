"""Gateway fixtures: the real registration service, stand-in upstreams and the gateway, all over HTTP.

Routing of the shared gateway: registration -> the real service; triage -> an echo upstream that
records what reached it; results -> a slow upstream; billing -> a port nobody listens on.
"""

import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from gateway.app import create_app as create_gateway
from gateway.routes import ADMIN_SCOPE, SCOPES
from kit.testing import HTTP_TIMEOUT_SECONDS, database_url_under_test, make_test_settings, serve, wipe
from services.registration.app import create_app as create_registration
from services.registration.config import RegistrationSettings
from services.registration.models import RegistrationTable
from tests.gateway.factories import CREATED_SCHEMAS, gateway_settings, write_keys_file
from tests.gateway.servers import EchoUpstream, SlowUpstream, closed_port_url

SLOW_SECONDS = 1.0


@pytest.fixture(scope="package", autouse=True)
def _drop_gateway_schemas() -> Iterator[None]:
    """On PostgreSQL every test gateway had a schema of its own; drop them all at the end."""
    yield
    url = database_url_under_test()
    if url and CREATED_SCHEMAS:
        engine = create_engine(url)
        with engine.begin() as conn:
            for schema in CREATED_SCHEMAS:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()
        CREATED_SCHEMAS.clear()


@pytest.fixture(scope="package")
def api_keys() -> dict[str, str]:
    """Client name -> plaintext key."""
    return {name: secrets.token_urlsafe(24) for name in ("his-dev", "reader", "admin")}


@pytest.fixture(scope="package")
def keys_file(tmp_path_factory: pytest.TempPathFactory, api_keys: dict[str, str]) -> Path:
    clients = {
        "his-dev": (api_keys["his-dev"], sorted(SCOPES)),
        "reader": (api_keys["reader"], ["registration:read", "triage:read"]),
        "admin": (api_keys["admin"], [ADMIN_SCOPE]),
    }
    return write_keys_file(tmp_path_factory.mktemp("gateway-keys") / "keys.json", clients)


@pytest.fixture(scope="package")
def registration_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the registration service keeps its files (its SMS outbox: `sms-outbox.jsonl`)."""
    return tmp_path_factory.mktemp("gateway-data")


@pytest.fixture(scope="package")
def registration_url(registration_data_dir: Path) -> Iterator[str]:
    data_dir = registration_data_dir
    settings = make_test_settings(RegistrationSettings, data_dir, database_schema="test_gateway_registration")
    wipe(settings.resolved_database_url, settings.resolved_schema, RegistrationTable.metadata)
    with serve(create_registration(settings)) as url:
        yield url


@pytest.fixture(scope="package")
def echo() -> EchoUpstream:
    return EchoUpstream()


@pytest.fixture(scope="package")
def echo_url(echo: EchoUpstream) -> Iterator[str]:
    with serve(echo) as url:
        yield url


@pytest.fixture(scope="package")
def slow_url() -> Iterator[str]:
    with serve(SlowUpstream(SLOW_SECONDS)) as url:
        yield url


@pytest.fixture(scope="package")
def gateway_url(keys_file: Path, registration_url: str, echo_url: str, slow_url: str) -> Iterator[str]:
    settings = gateway_settings(
        keys_file,
        registration_url=registration_url,
        triage_url=echo_url,
        results_url=slow_url,
        billing_url=closed_port_url(),
        events_url=echo_url,
    )
    with serve(create_gateway(settings)) as url:
        yield url


@pytest.fixture
def client(gateway_url: str, echo: EchoUpstream) -> Iterator[httpx.Client]:
    """An anonymous client of the shared gateway. Its timeout turns a hang into a failure."""
    echo.seen.clear()
    with httpx.Client(base_url=gateway_url, timeout=HTTP_TIMEOUT_SECONDS) as client:
        yield client
