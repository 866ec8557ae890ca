"""Every service route checks a scope itself, the same one the gateway's route table checks for it.

The gateway and the services decide independently (defence in depth), so the two lists must agree:
a route the gateway lets through with `results:read` is one results itself serves only for `results:read`.
"""

import re
from typing import Any

import pytest
from fastapi import APIRouter
from fastapi.routing import APIRoute

from gateway.routes import ROUTES, GatewayRoute
from kit.app import require_guards
from kit.auth import SERVICE_ONLY, ScopeCheck, require_scope, route_guards
from kit.testing import TEST_SCOPES
from services.billing.catalogue_router import router as billing_catalogue_router
from services.billing.deposits_router import router as billing_deposits_router
from services.billing.router import router as billing_router
from services.events.router import router as events_router
from services.registration.router import router as registration_router
from services.registration.statistics_router import router as registration_statistics_router
from services.registration.stays_router import router as registration_stays_router
from services.results.router import router as results_router
from services.results.turnaround_router import router as results_turnaround_router
from services.triage.positions_router import router as triage_positions_router
from services.triage.router import router as triage_router

# The routers each service's app is built from (kit's own health, metrics and feed routes aside).
ROUTERS: dict[str, tuple[APIRouter, ...]] = {
    "registration": (registration_router, registration_stays_router, registration_statistics_router),
    "triage": (triage_router, triage_positions_router),
    "results": (results_router, results_turnaround_router),
    "billing": (billing_router, billing_catalogue_router, billing_deposits_router),
    "events": (events_router,),
}


def routes_of(name: str) -> list[Any]:
    return [route for router in ROUTERS[name] for route in router.routes]


def _template(path: str) -> str:
    return re.sub(r"\{[a-z_]+\}", "{}", path)


def service_routes(name: str) -> dict[tuple[str, str], set[str]]:
    """(method, service-local path template) -> the scopes the route checks."""
    found = {}
    for route in routes_of(name):
        if isinstance(route, APIRoute):
            for method in route.methods or ():
                found[(method, _template(route.path))] = route_guards(route.dependant)
    return found


@pytest.mark.parametrize("name", sorted(ROUTERS))
def test_every_route_of_a_service_checks_a_scope(name: str) -> None:
    unguarded = [route for route, scopes in service_routes(name).items() if not scopes]
    assert unguarded == []


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.path}")
def test_the_service_checks_the_scope_the_gateway_checks(route: GatewayRoute) -> None:
    local = route.upstream_target(route.path)
    scopes = service_routes(route.service).get((route.method, _template(local)))
    assert scopes == {route.scope}, f"{route.service} {route.method} {local}"


def test_internal_routes_outside_the_gateway_table_are_for_services_or_scoped() -> None:
    public = {(r.service, r.method, _template(r.upstream_target(r.path))) for r in ROUTES}
    for name in ROUTERS:
        for (method, path), scopes in service_routes(name).items():
            if (name, method, path) not in public:
                assert scopes and (scopes == {SERVICE_ONLY} or scopes <= TEST_SCOPES), (name, method, path)


def scope_checks(dependant: Any) -> list[ScopeCheck]:
    found = [sub.call for sub in dependant.dependencies if isinstance(sub.call, ScopeCheck)]
    return found + [check for sub in dependant.dependencies for check in scope_checks(sub)]


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.path}")
def test_only_routes_the_gateway_binds_to_a_patient_admit_patient_bound_callers(route: GatewayRoute) -> None:
    local = _template(route.upstream_target(route.path))
    [api_route] = [
        r
        for r in routes_of(route.service)
        if isinstance(r, APIRoute) and route.method in (r.methods or ()) and _template(r.path) == local
    ]
    [check] = scope_checks(api_route.dependant)
    assert check.patients == (route.owner is not None)


def test_test_credentials_hold_every_scope_a_route_checks() -> None:
    assert {route.scope for route in ROUTES} <= TEST_SCOPES


def test_a_router_with_a_route_that_checks_no_scope_is_refused_at_build_time() -> None:
    router = APIRouter()

    @router.get("/guarded", dependencies=[require_scope("results:read")])
    def guarded() -> None: ...

    require_guards(router)

    @router.get("/forgotten")
    def forgotten() -> None: ...

    with pytest.raises(ValueError, match="/forgotten"):
        require_guards(router)
