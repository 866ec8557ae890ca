"""The gateway's own metrics (upstream attempts, errors, slow calls; circuit states) and `GET /metrics`.

Requests are labelled by their public route template (`/v1/visits/{id}`), which the proxy leaves in
the scope under `ROUTE_KEY` once it has matched the route table.
"""

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import REGISTRY, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Scope

from gateway.routes import METRICS_SCOPE
from kit.errors import ProblemError
from kit.metrics import metrics_response

ROUTE_KEY = "gateway.route"  # scope key: the matched `GatewayRoute` (None when nothing matched)
# 0 closed (traffic flows), 1 half-open (probing), 2 open (refusing): alert on > 0.
CIRCUIT_VALUES = {"closed": 0, "half-open": 1, "half_open": 1, "open": 2}

UPSTREAM_ERRORS = Counter(
    "patientflow_upstream_errors",
    "Upstream calls that got no usable answer, by upstream and problem kind.",
    ("upstream", "kind"),
)

UPSTREAM_ATTEMPTS = Counter(
    "patientflow_upstream_attempts",
    "Requests sent to an upstream, retries included (a call makes one or more).",
    ("upstream",),
)
UPSTREAM_SLOW_CALLS = Counter(
    "patientflow_upstream_slow_calls",
    "Upstream calls slower than the breaker's share of their deadline, answered or not.",
    ("upstream",),
)

CircuitStates = Callable[[], Mapping[str, Any]]
Authenticate = Callable[[Request], Any]


def count_upstream_error(upstream: str, problem: ProblemError) -> None:
    """Count one failed upstream call under the problem's slug (`upstream-timeout`, ...)."""
    UPSTREAM_ERRORS.labels(upstream, problem.slug).inc()


_ATTEMPTS_BY_UPSTREAM: dict[str, Any] = {}  # each upstream's child, skipping the locked label lookup


def count_upstream_attempt(upstream: str) -> None:
    """Count one request sent (once per attempt: on every forwarded call's path)."""
    child = _ATTEMPTS_BY_UPSTREAM.get(upstream)
    if child is None:
        child = _ATTEMPTS_BY_UPSTREAM[upstream] = UPSTREAM_ATTEMPTS.labels(upstream)
    child.inc()


def count_slow_call(upstream: str) -> None:
    UPSTREAM_SLOW_CALLS.labels(upstream).inc()


def gateway_route_template(scope: Scope) -> str | None:
    """The public template of the route the proxy matched."""
    route = scope.get(ROUTE_KEY)
    return route.public_path if route is not None else None  # type: ignore[no-any-return]


def circuit_value(state: Any) -> float:
    """A breaker's state as the gauge's number; accepts the name or the number itself."""
    if isinstance(state, int | float):
        return float(state)
    name = getattr(state, "value", state)
    return float(CIRCUIT_VALUES.get(str(name).lower(), 2))


class CircuitStateCollector(Collector):
    """`patientflow_circuit_state{upstream}`, read from the running gateway at scrape time.

    Registered once per process; each gateway app points it at its own upstreams (the last one wins,
    which only matters in tests that build several gateways in one process).
    """

    def __init__(self) -> None:
        self.upstreams: object = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "patientflow_circuit_state",
            "Circuit breaker per upstream: 0 closed, 1 half-open, 2 open.",
            labels=["upstream"],
        )
        states: CircuitStates | None = getattr(self.upstreams, "circuit_states", None)
        for upstream, state in (states() if callable(states) else {}).items():
            family.add_metric([upstream], circuit_value(state))
        yield family


CIRCUITS = CircuitStateCollector()
REGISTRY.register(CIRCUITS)


def watch_circuits(upstreams: object) -> None:
    """Report this gateway's breakers, read through `upstreams.circuit_states()` at each scrape."""
    CIRCUITS.upstreams = upstreams


def metrics_endpoint(authenticate: Authenticate) -> Callable[[Request], Any]:
    """`GET /metrics` on the public port: an API key with `metrics:read`, unlike the services' open one."""

    async def read_metrics(request: Request) -> Response:
        caller = await authenticate(request)
        caller.require(METRICS_SCOPE)
        return metrics_response()

    return read_metrics
