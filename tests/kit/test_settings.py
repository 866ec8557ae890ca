"""Settings: a working default for development, a refusal to start production on placeholder secrets."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from kit.config import ServiceSettings


def test_development_defaults_to_a_sqlite_file_per_service(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PATIENTFLOW_DATABASE_URL", raising=False)
    settings = ServiceSettings(service_name="triage", data_dir=Path("/srv/pf"))
    assert settings.resolved_database_url == "sqlite:////srv/pf/triage.db"
    assert settings.resolved_schema is None


def test_postgres_gives_each_service_its_own_schema() -> None:
    settings = ServiceSettings(
        service_name="billing", shared_database_url="postgresql+psycopg://db/pf", schema_prefix="e2e_"
    )
    assert settings.resolved_schema == "e2e_billing"


@pytest.mark.parametrize("secret", ["", "changethis", "dev-internal-secret"])
def test_production_refuses_placeholder_secrets(secret: str) -> None:
    with pytest.raises(ValidationError, match="placeholder"):
        ServiceSettings(environment="production", internal_secret=secret)


def test_production_starts_with_a_real_secret() -> None:
    settings = ServiceSettings(environment="production", internal_secret="x" * 40)
    assert settings.environment == "production"
