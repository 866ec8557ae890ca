"""Event hub settings (env prefix `EVENTS_`)."""

from functools import lru_cache
from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from kit.config import ServiceSettings, service_url_setting
from services.events.destinations import RESOLVE_TIMEOUT_SECONDS, DestinationPolicy

THREE_DAYS = 3 * 24 * 3600.0


class EventsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="EVENTS_", extra="ignore")

    service_name: str = "events"
    # The feeds the hub reads, in the order that breaks ties between events of the same instant.
    registration_url: str = service_url_setting("registration")
    triage_url: str = service_url_setting("triage")
    results_url: str = service_url_setting("results")
    billing_url: str = service_url_setting("billing")

    # The hub long-polls each feed this long (the feed answers as soon as an event commits), and asks
    # again after `ingest_poll_seconds` when a feed answers an empty page at once (one that predates
    # `wait`); also the first wait after a feed failed (services/events/ingest.py).
    ingest_wait_seconds: float = Field(default=20.0, gt=0, le=25)
    ingest_poll_seconds: float = Field(default=0.1, gt=0)
    ingest_page_size: int = Field(default=500, ge=1, le=500)
    # At most one log transaction per this interval (0: none): what the readers bring meanwhile goes
    # into the next one. A transaction's fixed cost, its fsync above all, is most of the hub's CPU per
    # journey at about one event each; 10 ms cut the hub's CPU per journey to 0.85x of the session's
    # start, against 0.91x without, but doubled commit -> SSE p99 on a loaded 2-core machine (a woken
    # timer waits for a core), so it is off unless a busier hub wants the trade (bench/README.md).
    ingest_merge_interval_seconds: float = Field(default=0.0, ge=0, le=1)

    # Wait metrics count the share of waits longer than this (三长一短: no window wait over 10 minutes).
    wait_target_minutes: int = Field(default=10, ge=1, le=24 * 60)

    stream_heartbeat_seconds: float = Field(default=15.0, gt=0)

    webhook_retry_base_seconds: float = Field(default=1.0, gt=0)
    webhook_retry_cap_seconds: float = Field(default=600.0, gt=0)
    webhook_retry_window_seconds: float = Field(default=THREE_DAYS, gt=0)
    webhook_timeout_seconds: float = Field(default=10.0, gt=0)
    webhook_concurrency: int = Field(default=8, ge=1)
    webhook_batch_size: int = Field(default=64, ge=1)
    # Hosts a production hub may still deliver to on loopback (comma-separated); link-local and
    # unspecified addresses are refused whatever this says (services/events/destinations.py).
    webhook_allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # How long a subscription request or a delivery waits for the receiver's host name to resolve.
    webhook_resolve_timeout_seconds: float = Field(default=RESOLVE_TIMEOUT_SECONDS, gt=0, le=30)

    # JetStream publishing is on only when a URL is set.
    nats_url: str | None = None
    nats_stream: str = "PATIENTFLOW"
    nats_subject_prefix: str = "patientflow.events"

    @field_validator("webhook_allowed_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [host.strip() for host in value.split(",") if host.strip()]
        return value

    def webhook_destinations(self) -> DestinationPolicy:
        return DestinationPolicy.of(
            environment=self.environment,
            allowed_hosts=self.webhook_allowed_hosts,
            resolve_timeout_seconds=self.webhook_resolve_timeout_seconds,
        )

    def feed_urls(self) -> dict[str, str]:
        """Source name → feed base URL, in tie-break order."""
        return {
            "registration": self.registration_url,
            "triage": self.triage_url,
            "results": self.results_url,
            "billing": self.billing_url,
        }


@lru_cache
def get_settings() -> EventsSettings:
    return EventsSettings()
