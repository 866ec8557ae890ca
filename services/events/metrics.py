"""The hub's Prometheus gauges (default registry; /metrics exposes them)."""

from datetime import datetime

from prometheus_client import Gauge

from kit.clock import utcnow

WEBHOOK_BACKLOG = Gauge("patientflow_webhook_backlog", "Webhook deliveries not yet delivered (pending)")
INGEST_LAG = Gauge(
    "patientflow_events_ingest_lag_seconds",
    "Age of the oldest event the services hold that the hub's log does not yet (0 when caught up)",
)


def observe_ingest_lag(waiting_since: datetime | None) -> None:
    INGEST_LAG.set(0 if waiting_since is None else max(0.0, (utcnow() - waiting_since).total_seconds()))


def observe_backlog(pending: int) -> None:
    WEBHOOK_BACKLOG.set(pending)
