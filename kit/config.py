"""Settings shared by every service; each service subclasses with its own env prefix."""

from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, StringConstraints, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from starlette.requests import Request

# A PostgreSQL role name as kit writes it into SQL and connection options: a plain lower-case identifier.
RoleName = Annotated[str, StringConstraints(pattern=r"^[a-z_][a-z0-9_]{0,62}$")]
PLACEHOLDER_SECRETS = {"", "changethis", "change-me", "secret", "dev-internal-secret"}
DEV_INTERNAL_SECRET = "dev-internal-secret"


class ServiceSettings(BaseSettings):
    """What every service needs: where its database is and how to trust its callers.

    `PATIENTFLOW_*` variables are shared by all services; a service's own prefix
    (e.g. `REGISTRATION_DATABASE_URL`) overrides them for that service alone.
    """

    model_config = SettingsConfigDict(extra="ignore", validate_by_name=True, validate_by_alias=True)

    service_name: str = "service"
    environment: Literal["development", "test", "production"] = Field(
        default="development", validation_alias="PATIENTFLOW_ENVIRONMENT"
    )
    data_dir: Path = Field(default=Path("data"), validation_alias="PATIENTFLOW_DATA_DIR")
    database_url: str | None = None
    shared_database_url: str | None = Field(default=None, validation_alias="PATIENTFLOW_DATABASE_URL")
    database_schema: str | None = None
    # PostgreSQL: the role the service's own connections act as, which its migrations create and grant
    # (kit.database, kit.migrations.grant_runtime_role); None: they act as the URL's login.
    database_runtime_role: RoleName | None = None
    # Where migrations connect, when the service's own login is not the schema's owner (default: the same).
    migration_database_url: str | None = None
    schema_prefix: str = Field(default="", validation_alias="PATIENTFLOW_SCHEMA_PREFIX")
    internal_secret: str = Field(default=DEV_INTERNAL_SECRET, validation_alias="PATIENTFLOW_INTERNAL_SECRET")
    migrate_on_start: bool = True
    feed_poll_seconds: float = Field(default=0.3, validation_alias="PATIENTFLOW_FEED_POLL_SECONDS")
    # Logs go to stderr, or to `<log_dir>/<service>.log` (rotated) when a log directory is set.
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", validation_alias="PATIENTFLOW_LOG_LEVEL"
    )
    log_dir: Path | None = Field(default=None, validation_alias="PATIENTFLOW_LOG_DIR")
    log_max_bytes: int = Field(default=10_000_000, ge=10_000, validation_alias="PATIENTFLOW_LOG_MAX_BYTES")
    log_backups: int = Field(default=3, ge=1, validation_alias="PATIENTFLOW_LOG_BACKUPS")

    @model_validator(mode="after")
    def _refuse_placeholder_secrets(self) -> "ServiceSettings":
        if self.environment == "production" and self.internal_secret in PLACEHOLDER_SECRETS:
            raise ValueError(
                "PATIENTFLOW_INTERNAL_SECRET is missing or a placeholder; production refuses to start"
            )
        return self

    @cached_property
    def resolved_database_url(self) -> str:
        """This service's own URL, else the shared server URL, else a SQLite file in data_dir."""
        if self.database_url:
            return self.database_url
        if self.shared_database_url:
            return self.shared_database_url
        return f"sqlite:///{self.data_dir.resolve() / f'{self.service_name}.db'}"

    @cached_property
    def resolved_runtime_role(self) -> str | None:
        """The runtime role on PostgreSQL; SQLite has no roles."""
        return None if self.resolved_schema is None else self.database_runtime_role

    @property
    def log_file(self) -> Path | None:
        return self.log_dir / f"{self.service_name}.log" if self.log_dir else None

    @cached_property
    def resolved_schema(self) -> str | None:
        """On PostgreSQL each service keeps its tables in its own schema."""
        if self.resolved_database_url.startswith("sqlite"):
            return None
        return self.database_schema or f"{self.schema_prefix}{self.service_name}"


def runtime_role_name(service: str) -> str:
    """A service's runtime role unless configured otherwise; roles are cluster-wide, so every database
    and schema the service migrates on one server grants the same role (on its own objects only)."""
    return f"patientflow_{service}"


def service_url_setting(name: str) -> str:
    """Default base URL of a sibling service on localhost (ports as `patientflow up` assigns them)."""
    return f"http://127.0.0.1:{SERVICE_PORTS[name]}"


SERVICE_PORTS = {
    "gateway": 8000,
    "registration": 8001,
    "triage": 8002,
    "results": 8003,
    "billing": 8004,
    "events": 8005,
}


async def app_settings(request: Request) -> ServiceSettings:
    """Dependency: the settings the running app was created with (tests pass their own)."""
    settings: ServiceSettings = request.app.state.settings
    return settings
