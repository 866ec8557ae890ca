"""The route table: every public route, the service that owns it and the scope it needs.

Public paths are `/v1` + the service-local path. The table is data, so tests can generate a
role × route matrix from it; anything not in it is refused (deny by default).
"""

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Literal

# How a request for an app or kiosk acting for one patient is tied to that patient (see gateway/patients.py):
# "patient" - the path `{id}` is the patient; "visit" - the path `{id}` is one of the patient's visits;
# "response" - the answer's `patient_id` must be the patient; "public" - no patient data at all;
# "filtered" - the service filters by the forwarded patient claim itself (the event hub);
# "body" - the JSON body's `patient_id` must be the patient (a booking); "appointment" - the path `{id}`
# is one of the patient's appointments (asked of registration before forwarding).
# None: the route cannot be bound to one patient, so patient-bound clients never reach it.
Owner = Literal["patient", "visit", "response", "public", "filtered", "body", "appointment"]

API_PREFIX = "/v1"
# One path segment, but never `.` or `..`: an HTTP client may normalise those away and reach a
# route other than the one whose scope we checked.
_SEGMENT = r"(?!\.\.?(?:/|$))[^/]+"
_PLACEHOLDER = re.compile(r"\{[a-z_]+\}")


@dataclass(frozen=True, slots=True)
class GatewayRoute:
    """One forwarded route: `method path` on `service`, allowed to callers holding `scope`.

    `path` is the public path without `/v1`; `upstream` is the service-local path prefix when it differs
    (e.g. `/events` is the hub's `/log`); `stream` routes are relayed as they arrive, never buffered.
    `idempotency_key`: the service answers a repeated `Idempotency-Key` with the first result, so a
    keyed request may be re-sent; elsewhere the header changes nothing and only GETs are retried.
    `deadline_seconds` bounds a call with its retries (a stream's until its head); None: by method, from
    the settings (`GatewaySettings.deadline_for`). A `holds` route may hold its answer for the `wait=`
    seconds a call asks (up to `kit.params.MAX_HOLD_SECONDS`), which the gateway adds to the deadline.
    """

    method: str
    path: str  # public template without the prefix, e.g. "/visits/{id}/orders"
    service: str
    scope: str
    upstream: tuple[str, str] | None = None  # (public prefix, service-local prefix)
    stream: bool = False
    owner: Owner | None = None
    idempotency_key: bool = False
    deadline_seconds: float | None = None
    holds: bool = False

    @property
    def public_path(self) -> str:
        return API_PREFIX + self.path

    @property
    def key(self) -> str:
        """`METHOD /path`, as settings name routes (rate limits, deadlines)."""
        return f"{self.method} {self.path}"

    def pattern(self) -> str:
        """A regex for the path (no anchors, no capturing groups)."""
        literals = _PLACEHOLDER.split(self.path)
        return _SEGMENT.join(re.escape(literal) for literal in literals)

    def upstream_target(self, target: str) -> str:
        """The service-local target (path and query) for a public one."""
        if self.upstream is None:
            return target
        public, local = self.upstream
        return local + target[len(public) :] if target.startswith(public) else target


def _routes(service: str, *rows: tuple[str, str, str]) -> list[GatewayRoute]:
    return [GatewayRoute(method, path, service, scope) for method, path, scope in rows]


ROUTES: tuple[GatewayRoute, ...] = (
    *_routes(
        "registration",
        ("POST", "/patients", "registration:write"),
        ("GET", "/patients", "registration:read"),  # search: staff only (no patient binding)
        ("GET", "/patients/{id}", "registration:read"),
        ("PATCH", "/patients/{id}", "registration:write"),
        ("POST", "/patients/{id}/merge", "registration:write"),
        ("GET", "/patients/{id}/visits", "registration:read"),
        ("POST", "/visits", "registration:write"),
        ("GET", "/visits/{id}", "registration:read"),
        ("POST", "/visits/{id}/slip", "registration:write"),
        # Inpatient stays (入院、转科、出院), the ward and bed catalogue, and visits that close.
        ("POST", "/wards", "registration:write"),
        ("GET", "/wards", "registration:read"),
        ("GET", "/wards/{code}", "registration:read"),
        ("POST", "/wards/{code}/beds", "registration:write"),
        ("POST", "/visits/{id}/admission", "registration:write"),
        ("POST", "/visits/{id}/transfers", "registration:write"),
        ("POST", "/visits/{id}/discharge", "registration:write"),
        ("GET", "/visits/{id}/stay", "registration:read"),
        ("POST", "/visits/{id}/close", "registration:write"),
        ("GET", "/audit/session-attempts", "audit:read"),
        ("GET", "/statistics/appointments", "stats:read"),
        ("GET", "/statistics/stays", "stats:read"),
        ("GET", "/departments", "directory:read"),
        ("POST", "/departments", "schedules:write"),
        ("GET", "/doctors", "directory:read"),
        ("GET", "/doctors/{id}", "directory:read"),
        ("POST", "/doctors", "schedules:write"),
        ("GET", "/schedule-templates", "directory:read"),
        ("POST", "/schedule-templates", "schedules:write"),
        ("POST", "/schedule-templates/{id}/exceptions", "schedules:write"),
        ("POST", "/clinic-sessions/generate", "schedules:write"),
        ("POST", "/clinic-sessions", "schedules:write"),
        ("GET", "/clinic-sessions", "directory:read"),
        ("GET", "/clinic-sessions/{id}", "directory:read"),
        ("GET", "/clinic-sessions/{id}/slots", "directory:read"),
        ("POST", "/appointments", "appointments:write"),
        ("GET", "/appointments", "registration:read"),
        ("GET", "/appointments/{id}", "registration:read"),
        ("POST", "/appointments/{id}/confirm", "appointments:write"),
        ("POST", "/appointments/{id}/cancel", "appointments:write"),
        ("POST", "/appointments/{id}/check-in", "checkin:write"),
        ("POST", "/clinic-sessions/{id}/disruptions", "schedules:write"),
        ("GET", "/clinic-sessions/{id}/disruptions", "registration:read"),
        ("GET", "/rebooking-offers/{id}", "registration:read"),
        ("POST", "/rebooking-offers/{id}/accept", "appointments:write"),
        ("POST", "/rebooking-offers/{id}/decline", "appointments:write"),
    ),
    *_routes(
        "triage",
        ("POST", "/assessments", "triage:write"),
        ("GET", "/visits/{id}/assessments", "triage:read"),
        ("POST", "/queues/{department}/tickets", "triage:write"),
        ("POST", "/queues/{department}/call-next", "triage:write"),
        ("POST", "/tickets/{id}/finish", "triage:write"),
        ("GET", "/tickets/{id}", "triage:read"),
        ("GET", "/queues/{department}", "triage:read"),
        ("GET", "/queues/{department}/stats", "triage:read"),
        ("GET", "/queues/{department}/order", "triage:read"),  # who is next and why (rules.py)
        ("GET", "/queues/{department}/board", "board:read"),  # the waiting-room screen: no ids, names masked
        ("GET", "/visits/{id}/tickets", "triage:read"),
        ("POST", "/queues/{department}/suspend", "triage:write"),
        ("POST", "/queues/{department}/resume", "triage:write"),
        # Queue actions (issue 10)
        ("GET", "/queues/{department}/settings", "triage:read"),
        ("PUT", "/queues/{department}/settings", "triage:write"),
        ("PUT", "/queues/{department}/stations/{code}", "triage:write"),
        ("POST", "/tickets/{id}/recall", "triage:write"),
        ("POST", "/tickets/{id}/skip", "triage:write"),
        ("POST", "/tickets/{id}/hold", "triage:write"),
        ("POST", "/tickets/{id}/release", "triage:write"),
        ("POST", "/tickets/{id}/no-show", "triage:write"),
        ("POST", "/tickets/{id}/cancel", "triage:write"),
        ("POST", "/tickets/{id}/transfer", "triage:write"),
        # A patient's place and wait band (positions.py), and staff's view of a queue's estimates
        ("GET", "/visits/{id}/queue-positions", "triage:read"),
        ("GET", "/queues/{department}/estimates", "triage:read"),
        ("PUT", "/tickets/{id}/service-class", "triage:write"),  # simple or complex work (rules.py)
    ),
    *_routes(
        "results",
        ("GET", "/tests", "results:read"),
        ("POST", "/orders", "orders:write"),
        ("GET", "/orders", "results:read"),
        # Turnaround (staff only): before `/orders/{id}`, which would otherwise take `overdue` as an id.
        ("GET", "/orders/overdue", "results:read"),
        ("GET", "/orders/{id}", "results:read"),
        ("GET", "/visits/{id}/orders", "results:read"),
        ("POST", "/orders/{id}/reports", "results:write"),
        ("GET", "/visits/{id}/reports", "results:read"),
        ("GET", "/patients/{id}/reports", "results:read"),
        ("GET", "/reports/{id}", "results:read"),
        ("GET", "/audit/result-access", "audit:read"),
        # Report lifecycle, LIS intake and critical values (issue 11)
        ("POST", "/lis/reports", "results:write"),
        ("POST", "/reports/{id}/verification", "results:write"),
        ("POST", "/reports/{id}/amendments", "results:write"),
        ("POST", "/reports/{id}/cancellation", "results:write"),
        ("POST", "/reports/{id}/withhold", "orders:write"),
        ("POST", "/reports/{id}/unwithhold", "orders:write"),
        ("GET", "/critical-values", "results:read"),
        ("POST", "/critical-values/{id}/acknowledgement", "critical:ack"),
        # Kiosk printing and patient reading (自助打印): released reports, PDFs, print records.
        ("GET", "/patients/{id}/released-reports", "results:read"),
        ("GET", "/reports/{id}/pdf", "results:read"),
        ("POST", "/reports/{id}/prints", "results:read"),
        ("POST", "/visits/{id}/prints", "results:read"),
        ("GET", "/prints/{id}/pdf", "results:read"),
        # Mutual recognition (互认): recognised results before ordering, results from other hospitals.
        ("GET", "/patients/{id}/recognised-results", "results:read"),
        ("POST", "/external-results", "results:write"),
        ("GET", "/recognition/duplicates", "results:read"),
        # Turnaround: the lab's collection and receipt times, TAT figures (staff only).
        ("POST", "/orders/{id}/collection", "results:write"),
        ("POST", "/orders/{id}/receipt", "results:write"),
        ("GET", "/turnaround", "results:read"),
    ),
    *_routes(
        "billing",
        ("GET", "/catalogue", "billing:read"),
        ("GET", "/catalogue/{code}", "billing:read"),
        ("POST", "/charges", "billing:write"),
        ("POST", "/payments", "billing:write"),
        ("POST", "/visits/{id}/settlement", "billing:write"),
        ("GET", "/visits/{id}/account", "billing:read"),
        ("GET", "/visits/{id}/daily-bill", "billing:read"),
        ("GET", "/rejected-charges", "billing:read"),
        ("GET", "/booking-fees/{id}", "billing:read"),
        ("POST", "/booking-fees/{id}/payments", "billing:write"),
        ("POST", "/charges/{id}/reversal", "billing:write"),
        ("POST", "/catalogue-versions", "catalogue:write"),
        ("GET", "/catalogue-versions", "billing:read"),
        ("GET", "/catalogue-versions/{id}", "billing:read"),
        ("POST", "/charge-rule-versions", "catalogue:write"),
        ("GET", "/charge-rule-versions", "billing:read"),
        ("GET", "/charge-rule-versions/{id}", "billing:read"),
        ("GET", "/charge-rules", "billing:read"),
        # Deposits, receipts, standing, inpatient days, the daily bill (billing/deposits_router.py).
        ("POST", "/visits/{id}/deposits", "billing:write"),
        ("GET", "/visits/{id}/deposits", "billing:read"),
        ("POST", "/visits/{id}/deposit-refunds", "billing:write"),
        ("GET", "/visits/{id}/receipts", "billing:read"),
        ("GET", "/visits/{id}/standing", "billing:read"),
        ("PUT", "/visits/{id}/relief", "billing:write"),
        ("GET", "/green-channel/follow-ups", "billing:read"),
        ("POST", "/inpatient-days/runs", "billing:write"),
        ("POST", "/daily-bills/runs", "billing:write"),
        ("GET", "/visits/{id}/daily-bill/pdf", "billing:read"),
        ("POST", "/visits/{id}/daily-bill/acknowledgements", "billing:write"),
        ("GET", "/daily-bills/acknowledgements", "billing:read"),
        # Settlement with insurance: invoices and the day's reconciliation (billing/router.py).
        ("GET", "/visits/{id}/invoices", "billing:read"),
        ("GET", "/reconciliation", "billing:read"),
        # Refunds back over the tenders that paid (billing/service/tenders.py).
        ("POST", "/visits/{id}/refunds", "billing:write"),
    ),
    # The event hub: public `/events` is its `/log`, `/event-schemas` its `/schemas`.
    GatewayRoute("GET", "/events", "events", "events:read", upstream=("/events", "/log")),
    GatewayRoute("GET", "/events/stream", "events", "events:read", upstream=("/events", "/log"), stream=True),
    GatewayRoute("GET", "/event-schemas", "events", "events:read", upstream=("/event-schemas", "/schemas")),
    GatewayRoute(
        "GET", "/event-schemas/{type}", "events", "events:read", upstream=("/event-schemas", "/schemas")
    ),
    *_routes(
        "events",
        ("POST", "/subscriptions", "events:subscribe"),
        ("GET", "/subscriptions", "events:subscribe"),
        ("GET", "/subscriptions/{id}", "events:subscribe"),
        ("DELETE", "/subscriptions/{id}", "events:subscribe"),
        ("GET", "/subscriptions/{id}/deliveries", "events:subscribe"),
        ("POST", "/subscriptions/{id}/replay", "events:subscribe"),
        # Wait metrics (三长一短), computed from the log; staff and the operations board only.
        ("GET", "/wait-metrics", "metrics:read"),
        ("GET", "/wait-metrics/tickets", "metrics:read"),
        ("GET", "/wait-metrics/visits/{id}", "metrics:read"),
    ),
)

# Routes an app or kiosk acting for a patient may use, and how each is bound to that patient.
PATIENT_BINDING: dict[tuple[str, str], Owner] = {
    ("GET", "/patients/{id}"): "patient",
    ("GET", "/patients/{id}/visits"): "patient",
    ("GET", "/visits/{id}"): "visit",
    ("GET", "/visits/{id}/stay"): "visit",
    ("GET", "/visits/{id}/assessments"): "visit",
    ("GET", "/visits/{id}/tickets"): "visit",
    ("GET", "/visits/{id}/queue-positions"): "visit",
    ("GET", "/visits/{id}/orders"): "visit",
    ("GET", "/visits/{id}/account"): "visit",
    ("GET", "/visits/{id}/daily-bill"): "visit",
    ("GET", "/visits/{id}/daily-bill/pdf"): "visit",
    # The patient acknowledges their own daily bill (知情确认); billing re-checks the patient too.
    ("POST", "/visits/{id}/daily-bill/acknowledgements"): "visit",
    ("GET", "/visits/{id}/deposits"): "visit",
    ("GET", "/visits/{id}/receipts"): "visit",
    ("GET", "/visits/{id}/invoices"): "visit",
    ("GET", "/visits/{id}/standing"): "visit",
    ("GET", "/visits/{id}/journey"): "visit",
    ("GET", "/tickets/{id}"): "response",
    ("GET", "/orders/{id}"): "response",
    ("GET", "/reports/{id}"): "response",
    # Results checks the patient claim itself on these, so a refusal reaches its audit (an app's PDF,
    # a kiosk's print, a list); a report of another patient is its 404, another patient's list or
    # visit an empty list, exactly as an id that does not exist.
    ("GET", "/patients/{id}/reports"): "filtered",
    ("GET", "/visits/{id}/reports"): "filtered",
    ("GET", "/patients/{id}/released-reports"): "filtered",
    ("GET", "/reports/{id}/pdf"): "filtered",
    ("POST", "/reports/{id}/prints"): "filtered",
    ("POST", "/visits/{id}/prints"): "filtered",
    ("GET", "/prints/{id}/pdf"): "filtered",
    # A disrupted patient's app decides its own offers; registration re-checks the patient first.
    ("GET", "/rebooking-offers/{id}"): "response",
    ("POST", "/rebooking-offers/{id}/accept"): "response",
    ("POST", "/rebooking-offers/{id}/decline"): "response",
    # An app pays its own patient's booking fee; billing re-checks the patient before taking money.
    ("GET", "/booking-fees/{id}"): "response",
    ("POST", "/booking-fees/{id}/payments"): "response",
    ("GET", "/queues/{department}/stats"): "public",
    ("GET", "/departments"): "public",
    ("GET", "/doctors"): "public",
    ("GET", "/doctors/{id}"): "public",
    ("GET", "/schedule-templates"): "public",
    ("GET", "/clinic-sessions"): "public",
    ("GET", "/clinic-sessions/{id}"): "public",
    ("GET", "/clinic-sessions/{id}/slots"): "public",
    ("POST", "/appointments"): "body",
    ("GET", "/appointments"): "filtered",
    ("GET", "/appointments/{id}"): "response",
    ("POST", "/appointments/{id}/confirm"): "appointment",
    ("POST", "/appointments/{id}/cancel"): "appointment",
    ("POST", "/appointments/{id}/check-in"): "appointment",
    ("GET", "/tests"): "public",
    ("GET", "/catalogue"): "public",
    ("GET", "/catalogue/{code}"): "public",
    ("GET", "/event-schemas"): "public",
    ("GET", "/event-schemas/{type}"): "public",
    ("GET", "/events"): "filtered",
    ("GET", "/events/stream"): "filtered",
    ("POST", "/subscriptions"): "filtered",
    ("GET", "/subscriptions"): "filtered",
    ("GET", "/subscriptions/{id}"): "filtered",
    ("DELETE", "/subscriptions/{id}"): "filtered",
    ("GET", "/subscriptions/{id}/deliveries"): "filtered",
    ("POST", "/subscriptions/{id}/replay"): "filtered",
}
# Routes whose service honours `Idempotency-Key` (kit.idempotency): the only writes ever re-sent.
HONOURS_IDEMPOTENCY_KEY = frozenset(
    {
        ("POST", "/orders"),
        ("POST", "/charges"),
        ("POST", "/payments"),
        ("POST", "/visits/{id}/settlement"),
        ("POST", "/appointments"),
        ("POST", "/booking-fees/{id}/payments"),
        ("POST", "/charges/{id}/reversal"),
        ("POST", "/visits/{id}/deposits"),
        ("POST", "/visits/{id}/deposit-refunds"),
        ("POST", "/visits/{id}/refunds"),
        ("POST", "/clinic-sessions/{id}/disruptions"),
        ("POST", "/rebooking-offers/{id}/accept"),
        ("POST", "/visits/{id}/admission"),
        ("POST", "/visits/{id}/transfers"),
        ("POST", "/visits/{id}/discharge"),
        ("POST", "/visits/{id}/close"),
        ("POST", "/reports/{id}/prints"),
        ("POST", "/visits/{id}/prints"),
    }
)
# Routes that need longer than their method's deadline: settlement waits (bounded) for the visit's
# charges still on their way through the feeds; wait metrics over many days read every journey event of
# them (≈ 0.35 s of CPU per 3000 journeys: bench/wait_metrics.py), and a slow call counts against the
# hub's breaker, which would cut its event routes off too (10 s: the upstream read timeout's too).
# The nightly job and the daily-bill batch, run by hand, post or issue for every inpatient at once.
ROUTE_DEADLINES: dict[tuple[str, str], float] = {
    ("POST", "/visits/{id}/settlement"): 10.0,
    ("GET", "/wait-metrics"): 10.0,
    ("GET", "/wait-metrics/tickets"): 10.0,
    ("POST", "/inpatient-days/runs"): 60.0,
    ("POST", "/daily-bills/runs"): 60.0,
    # A PDF is ~0.1-0.3 s of CPU in results; a hall of kiosks printing at once queues for it.
    ("GET", "/reports/{id}/pdf"): 20.0,
    ("GET", "/prints/{id}/pdf"): 20.0,
    ("GET", "/visits/{id}/daily-bill/pdf"): 20.0,
}
# Reads that may hold their answer until it changes (`wait=`): a lab screen waiting for payment.
HOLDING_ROUTES = frozenset({("GET", "/orders/{id}")})
ROUTES = tuple(
    replace(
        route,
        holds=(route.method, route.path) in HOLDING_ROUTES,
        owner=PATIENT_BINDING.get((route.method, route.path), route.owner),
        idempotency_key=(route.method, route.path) in HONOURS_IDEMPOTENCY_KEY,
        deadline_seconds=ROUTE_DEADLINES.get((route.method, route.path), route.deadline_seconds),
    )
    for route in ROUTES
)

SERVICES: tuple[str, ...] = ("registration", "triage", "results", "billing", "events")
SCOPES: frozenset[str] = frozenset(route.scope for route in ROUTES)
ADMIN_SCOPE = "admin:clients"
METRICS_SCOPE = "metrics:read"
# Scopes for what the gateway serves itself, beside those of the forwarded routes.
GATEWAY_SCOPES: frozenset[str] = frozenset({ADMIN_SCOPE, METRICS_SCOPE})


def known_scopes() -> frozenset[str]:
    """Every scope a key may usefully hold (route scopes are read at call time: the table may grow)."""
    return SCOPES | GATEWAY_SCOPES


class RouteTable:
    """Matches `(method, service-local path)` to a route with one compiled regex per method."""

    def __init__(self, routes: Iterable[GatewayRoute] = ROUTES) -> None:
        self.routes = tuple(routes)
        by_method: dict[str, list[GatewayRoute]] = {}
        for route in self.routes:
            by_method.setdefault(route.method, []).append(route)
        # Alternation of one group per route: `lastindex` names the route that matched.
        self._by_method = {
            method: (re.compile("|".join(f"({r.pattern()})" for r in group)), group)
            for method, group in by_method.items()
        }

    def match(self, method: str, path: str) -> GatewayRoute | None:
        """The route for this method and service-local path, or None."""
        entry = self._by_method.get(method)
        if entry is None:
            return None
        pattern, group = entry
        found = pattern.fullmatch(path)
        return group[found.lastindex - 1] if found and found.lastindex else None

    def allowed_methods(self, path: str) -> list[str]:
        """Methods the table has for this path (for a 405's `Allow`); empty when the path is unknown."""
        return sorted(method for method in self._by_method if self.match(method, path))
