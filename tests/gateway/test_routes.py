"""The route table as data: complete, unambiguous, and matched by whole path patterns."""

import re

import pytest

from gateway.routes import API_PREFIX, ROUTES, SERVICES, GatewayRoute, RouteTable

TABLE = RouteTable()


def example_path(route: GatewayRoute) -> str:
    return re.sub(r"\{[a-z_]+\}", "x-1", route.path)


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.path}")
def test_every_route_matches_itself_and_only_itself(route: GatewayRoute) -> None:
    assert TABLE.match(route.method, example_path(route)) == route


def test_routes_are_unique_service_local_and_well_formed() -> None:
    assert len({(r.method, r.path) for r in ROUTES}) == len(ROUTES)
    for route in ROUTES:
        assert route.path.startswith("/") and not route.path.startswith(API_PREFIX)
        assert route.service in SERVICES
        assert re.fullmatch(r"[a-z]+:(read|write|subscribe|ack)", route.scope), route.scope
        assert route.public_path == API_PREFIX + route.path


@pytest.mark.parametrize(
    ("method", "path", "service"),
    [
        ("GET", "/visits/v1", "registration"),
        ("GET", "/visits/v1/assessments", "triage"),
        ("GET", "/visits/v1/orders", "results"),
        ("GET", "/visits/v1/reports", "results"),
        ("GET", "/visits/v1/account", "billing"),
        ("GET", "/visits/v1/daily-bill", "billing"),
        ("POST", "/visits/v1/settlement", "billing"),
        ("POST", "/visits", "registration"),
        ("GET", "/patients/p1/visits", "registration"),
        ("GET", "/patients/p1/reports", "results"),
    ],
)
def test_visit_and_patient_paths_go_to_their_owner(method: str, path: str, service: str) -> None:
    route = TABLE.match(method, path)
    assert route is not None and route.service == service


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/visits"),  # prefix of a known route
        ("GET", "/visits/v1/"),  # trailing slash
        ("GET", "/visits/v1/orders/extra"),
        ("GET", "/visits//orders"),  # empty segment
        ("GET", "/visits/../audit/result-access"),
        ("GET", "/orders/.."),
        ("GET", "/orders/."),
        ("DELETE", "/visits/v1"),
        ("GET", "/events/1"),  # the public `/events` is the hub's log, never a service's own feed
        ("GET", "/healthz"),
        ("GET", "/visits/v1/with-name"),  # registration's read for sibling services: the full name
    ],
)
def test_anything_else_is_denied(method: str, path: str) -> None:
    assert TABLE.match(method, path) is None


def test_public_events_paths_are_the_hubs_log_and_schemas() -> None:
    log, stream = TABLE.match("GET", "/events"), TABLE.match("GET", "/events/stream")
    schema = TABLE.match("GET", "/event-schemas/visit.opened")
    assert log is not None and log.service == "events" and not log.stream
    assert log.upstream_target("/events?after=3") == "/log?after=3"
    assert stream is not None and stream.stream and stream.upstream_target("/events/stream") == "/log/stream"
    assert (
        schema is not None
        and schema.upstream_target("/event-schemas/visit.opened") == "/schemas/visit.opened"
    )


def test_allowed_methods_for_a_known_path() -> None:
    assert TABLE.allowed_methods("/orders") == ["GET", "POST"]
    assert TABLE.allowed_methods("/nope") == []
