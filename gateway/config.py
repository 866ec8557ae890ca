"""Gateway settings (env prefix `GATEWAY_`): where the services are, the API keys, and how long to wait."""

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, PositiveFloat, model_validator
from pydantic_settings import SettingsConfigDict

from kit.config import ServiceSettings, service_url_setting

UpstreamTransport = Literal["wire", "aiohttp", "httpx-aiohttp", "httpx"]


class GatewaySettings(ServiceSettings):
    """The gateway's own database holds API clients (`gateway.db`, or PG schema `gateway`).

    `api_keys_file` is a bootstrap seed (hashed keys, e.g. the development keys): clients it names that
    the database does not know yet are imported at start-up.
    """

    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore")

    service_name: str = "gateway"
    registration_url: str = service_url_setting("registration")
    triage_url: str = service_url_setting("triage")
    results_url: str = service_url_setting("results")
    billing_url: str = service_url_setting("billing")
    events_url: str = service_url_setting("events")
    api_keys_file: Path | None = None

    # Inactivity timeouts per upstream attempt, each cut to what is left of the call's deadline.
    connect_timeout: float = Field(default=1.0, gt=0)
    read_timeout: float = Field(default=10.0, gt=0)
    write_timeout: float = Field(default=5.0, gt=0)
    pool_timeout: float = Field(default=2.0, gt=0)
    # One deadline over a whole call, retries included (a service trickling bytes never trips the read
    # timeout): by method unless the route table or `route_deadlines` ("POST /visits/{id}/settlement":
    # 10) says otherwise. A stream's deadline covers its head, not its body.
    read_deadline_seconds: float = Field(default=3.0, gt=0)
    write_deadline_seconds: float = Field(default=4.0, gt=0)
    route_deadlines: dict[str, PositiveFloat] = Field(default_factory=dict)
    # Connections per upstream, which also caps the calls in flight to one service (a bulkhead): a
    # service runs at most 40 requests at once in its thread pool, so more only queue there, and with
    # kit's SQLite pool, 48+ concurrent requests deadlock a service (see bench/README.md). Keep-alive
    # shorter than uvicorn's 5 s, so we never reuse a socket the service is about to close.
    pool_size: int = Field(default=32, ge=1)
    keepalive_seconds: float = Field(default=4.0, gt=0)
    readiness_timeout: float = Field(default=2.0, gt=0)
    retry_after_seconds: int = Field(default=5, ge=1)
    max_body_bytes: int = Field(default=1_048_576, ge=1)
    # The forwarder: `wire` (gateway/wire.py); `aiohttp`, `httpx-aiohttp` and `httpx` (gateway/pools.py)
    # exist only so the benchmark can show why the gateway forwards with its own.
    upstream_transport: UpstreamTransport = "wire"

    # --- resilience, streaming and the journey view (gateway/resilience.py, upstreams.py, journey.py) ---
    # Extra attempts for retry-safe requests (GET/HEAD, or with an Idempotency-Key), pausing with
    # full-jitter exponential backoff from `retry_backoff_seconds`, capped; never past the deadline.
    retry_attempts: int = Field(default=2, ge=0, le=5)
    retry_backoff_seconds: float = Field(default=0.05, gt=0)
    retry_backoff_cap_seconds: float = Field(default=0.5, gt=0)
    # A service's circuit opens after this many consecutive failed calls, or `breaker_slow_calls`
    # consecutive slow ones (longer than `breaker_slow_call_share` of their deadline, answered or not);
    # while open, its `/readyz` is probed every `health_interval_seconds` and the circuit re-admits
    # calls once it answers 200.
    breaker_failures: int = Field(default=5, ge=1)
    breaker_slow_calls: int = Field(default=3, ge=1)
    breaker_slow_call_share: float = Field(default=0.8, gt=0, le=1)
    health_interval_seconds: float = Field(default=1.0, gt=0)
    # Streams (SSE) have no overall deadline; the hub sends a heartbeat every 15 s, so a silence this
    # long means the upstream is gone.
    stream_read_timeout: float = Field(default=60.0, gt=0)
    # Each part of a journey view gets this long (within the deadline); a slower part is reported missing.
    journey_part_timeout: float = Field(default=3.0, gt=0)
    wait_target_minutes: int = Field(default=10, ge=1)

    # --- API clients, patient tokens and limits (gateway/api_clients.py, keys.py, patients.py, limits.py) ---
    # How stale the in-memory key cache may get when another process (the CLI, a second gateway)
    # changes clients; changes made through this gateway's own admin API apply at once.
    keys_refresh_seconds: float = Field(default=2.0, gt=0)
    patient_token_seconds: int = Field(default=900, ge=1)
    # How long a visit's patient is remembered when binding an app's request to its patient.
    visit_owner_cache_seconds: float = Field(default=30.0, ge=0)
    # Token buckets: per client (a client's own override in the database wins), and per
    # (client, route) for the routes named in `route_rate_limits` ("POST /patient-sessions": 2.0).
    rate_limit_per_second: float = Field(default=100.0, gt=0)
    rate_burst: int = Field(default=200, ge=1)
    route_rate_limits: dict[str, float] = Field(default_factory=dict)
    max_page_size: int = Field(default=100, ge=1)

    # --- the calling board (gateway/board.py) ---
    # A screen's session cookie lasts this long and is renewed while the screen is in use (its stream
    # reconnects at half-life); the screen shows this many current calls and this many of the next.
    board_session_seconds: int = Field(default=3600, ge=1, le=7 * 24 * 3600)
    board_calls_shown: int = Field(default=4, ge=1, le=20)
    board_next_shown: int = Field(default=5, ge=0, le=50)
    # Streams re-read the board this often even without events (a missed event heals), and send a
    # comment line after this much silence.
    board_refresh_seconds: float = Field(default=30.0, gt=0)
    board_heartbeat_seconds: float = Field(default=15.0, gt=0)
    # Pause before following the event hub again after its stream broke.
    board_feed_retry_seconds: float = Field(default=1.0, gt=0)

    @model_validator(mode="after")
    def _refuse_production_without_keys(self) -> "GatewaySettings":
        # A configured but missing seed file is a deployment mistake; no clients at all is checked at
        # start-up, once the database has been read.
        keys_file = self.api_keys_file
        if self.environment == "production" and keys_file is not None and not keys_file.is_file():
            raise ValueError(f"GATEWAY_API_KEYS_FILE {keys_file} does not exist; production refuses to start")
        return self

    def deadline_for(self, method: str, route_key: str = "", route_seconds: float | None = None) -> float:
        """A call's deadline: `route_deadlines`, else the route table's own, else by method."""
        if route_key in self.route_deadlines:
            return self.route_deadlines[route_key]
        if route_seconds is not None:
            return route_seconds
        return self.read_deadline_seconds if method in ("GET", "HEAD") else self.write_deadline_seconds

    def upstream_urls(self) -> dict[str, str]:
        """Service name -> base URL, for every service the gateway forwards to."""
        return {
            "registration": self.registration_url,
            "triage": self.triage_url,
            "results": self.results_url,
            "billing": self.billing_url,
            "events": self.events_url,
        }


@lru_cache
def get_settings() -> GatewaySettings:
    return GatewaySettings()
