"""Gateway settings (env prefix `GATEWAY_`): where the services are, the API keys, and how long to wait."""

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from kit.config import ServiceSettings, service_url_setting

UpstreamTransport = Literal["aiohttp", "httpx"]


class GatewaySettings(ServiceSettings):
    """The gateway has no database; it inherits the shared environment, data dir and internal secret."""

    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore")

    service_name: str = "gateway"
    registration_url: str = service_url_setting("registration")
    triage_url: str = service_url_setting("triage")
    results_url: str = service_url_setting("results")
    billing_url: str = service_url_setting("billing")
    api_keys_file: Path | None = None

    # Inactivity timeouts per upstream call, plus one deadline over the whole call (a service trickling
    # bytes never trips the read timeout).
    connect_timeout: float = Field(default=1.0, gt=0)
    read_timeout: float = Field(default=10.0, gt=0)
    write_timeout: float = Field(default=5.0, gt=0)
    pool_timeout: float = Field(default=2.0, gt=0)
    deadline_seconds: float = Field(default=15.0, gt=0)
    # Connections per upstream, which also caps the calls in flight to one service (a bulkhead): a
    # service runs at most 40 requests at once in its thread pool, so more only queue there, and with
    # kit's SQLite pool, 48+ concurrent requests deadlock a service (see bench/README.md). Keep-alive
    # shorter than uvicorn's 5 s, so we never reuse a socket the service is about to close.
    pool_size: int = Field(default=32, ge=1)
    keepalive_seconds: float = Field(default=4.0, gt=0)
    readiness_timeout: float = Field(default=2.0, gt=0)
    retry_after_seconds: int = Field(default=5, ge=1)
    max_body_bytes: int = Field(default=1_048_576, ge=1)
    # `httpx` (httpcore's pool) exists only so the benchmark can show why we use `aiohttp`.
    upstream_transport: UpstreamTransport = "aiohttp"

    @model_validator(mode="after")
    def _refuse_production_without_keys(self) -> "GatewaySettings":
        keys_file = self.api_keys_file
        if self.environment == "production" and (keys_file is None or not keys_file.is_file()):
            raise ValueError("GATEWAY_API_KEYS_FILE is missing; production refuses to start without API keys")
        return self

    def upstream_urls(self) -> dict[str, str]:
        """Service name -> base URL, for every service the gateway forwards to."""
        return {
            "registration": self.registration_url,
            "triage": self.triage_url,
            "results": self.results_url,
            "billing": self.billing_url,
        }


@lru_cache
def get_settings() -> GatewaySettings:
    return GatewaySettings()
