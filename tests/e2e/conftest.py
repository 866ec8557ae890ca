"""The six processes (four services, the event hub, the gateway) run for real, talked to over HTTP."""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from kit.testing import database_url_under_test
from patientflow.supervisor import System, free_port
from patientflow.topology import COMPONENTS
from tests.e2e.clients import Gateway
from tests.events.receiver import WebhookReceiver, served_receiver

E2E_SCHEMA_PREFIX = "e2e_"


# What every system under test runs with: feeds polled often, development keys, and no end-of-day
# close by the real clock (a run crossing the hospital's midnight would close other tests' visits).
BASE_ENV = {
    "PATIENTFLOW_FEED_POLL_SECONDS": "0.1",
    "PATIENTFLOW_ENVIRONMENT": "development",
    "REGISTRATION_VISIT_CLOSE_CHECK_SECONDS": "0",
}
# A hospital that hands out reports only once they are paid.
PAYING_ENV = BASE_ENV | {"RESULTS_RELEASE_REQUIRES_PAYMENT": "true"}


def _drop_schemas(url: str, schema_prefix: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        for component in COMPONENTS:  # the services and the gateway's own clients table
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema_prefix}{component.name}" CASCADE'))
    engine.dispose()


@contextmanager
def running_system(data_dir: Path, env: dict[str, str], *, schema_prefix: str) -> Iterator[System]:
    """The six processes with `env`; on PostgreSQL in schemas of their own (`schema_prefix`), dropped
    first, so a system of one test module never meets another's rows."""
    url = database_url_under_test()
    if url:
        _drop_schemas(url, schema_prefix)
        env = env | {"PATIENTFLOW_DATABASE_URL": url, "PATIENTFLOW_SCHEMA_PREFIX": schema_prefix}
    ports = {c.name: free_port() for c in COMPONENTS}
    with System(data_dir, env=env, ports=ports) as running:
        yield running


@contextmanager
def running_gateway(data_dir: Path, env: dict[str, str], *, schema_prefix: str) -> Iterator[Gateway]:
    """A system of a test module's own (`running_system`) and the gateway's clients on it."""
    with running_system(data_dir, env, schema_prefix=schema_prefix) as running, Gateway(running) as clients:
        yield clients


@pytest.fixture(scope="session")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    env = BASE_ENV | {
        # Appointments (tests/e2e/test_appointments.py): holds lapse in 2 s, a booking is a no-show 90
        # minutes after its slot (past the 30-minute late check-in window), swept every 0.2 s.
        "REGISTRATION_HOLD_SECONDS": "2",
        "REGISTRATION_NOSHOW_GRACE_MINUTES": "90",
        "REGISTRATION_APPOINTMENT_SWEEP_SECONDS": "0.2",
        # tests/e2e/test_stays.py turns the end-of-day close on for its own rule.
        # The re-triage timer (tests/e2e/test_triage_assessment.py) looks for overdue patients often.
        "TRIAGE_OVERDUE_CHECK_SECONDS": "0.2",
        # Orders past their turnaround target (tests/e2e/test_turnaround.py) are announced soon after.
        "RESULTS_OVERDUE_CHECK_SECONDS": "0.2",
    }
    with running_system(tmp_path_factory.mktemp("system"), env, schema_prefix=E2E_SCHEMA_PREFIX) as running:
        yield running


@pytest.fixture(scope="session")
def gateway(system: System) -> Iterator[Gateway]:
    with Gateway(system) as clients:
        yield clients


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    """A real webhook receiver on a local port, verifying every signature it gets (`/hook`)."""
    with served_receiver() as receiver:
        yield receiver
