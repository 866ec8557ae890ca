"""`kit.routing`: a service's routes are its app's own, and a request tries only its first segment's."""

from typing import Any

from fastapi import APIRouter, Depends, FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from starlette.routing import Match
from starlette.types import Scope

from kit.routing import include_flat, install_route_index

tried: list[str] = []


class CountingRoute(APIRoute):
    """An API route that notes each time the router asks whether it matches."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        tried.append(self.path)
        return super().matches(scope)


def marked(request_tag: str) -> Any:
    async def mark() -> str:
        return request_tag

    return Depends(mark)


def make_app() -> FastAPI:
    router = APIRouter(route_class=CountingRoute, dependencies=[marked("router")])

    @router.get("/visits/{visit_id}")
    async def read_visit(visit_id: str) -> dict[str, str]:
        return {"route": "visit", "id": visit_id}

    @router.get("/visits/today")  # after the parameter route: never reached, as in FastAPI's router
    async def today() -> dict[str, str]:
        return {"route": "today"}

    @router.get("/patients")
    async def patients() -> dict[str, str]:
        return {"route": "patients"}

    @router.post("/{anything}")
    async def anything(anything: str) -> dict[str, str]:
        return {"route": "anything", "what": anything}

    app = FastAPI()
    install_route_index(app)
    include_flat(app, router)
    return app


def test_each_route_of_an_included_router_is_the_apps_own() -> None:
    app = make_app()
    paths = [route.path for route in app.router.routes if isinstance(route, APIRoute)]
    assert paths[-4:] == ["/visits/{visit_id}", "/visits/today", "/patients", "/{anything}"]
    counted = [route for route in app.router.routes if isinstance(route, CountingRoute)]
    assert len(counted) == 4 and all(len(route.dependencies) == 1 for route in counted)  # the router's own


def test_a_request_tries_only_the_routes_its_first_segment_can_match() -> None:
    client = TestClient(make_app())
    tried.clear()
    assert client.get("/patients").json() == {"route": "patients"}
    assert tried == ["/patients"]  # not the two /visits routes before it
    tried.clear()
    assert client.get("/visits/today").json() == {"route": "visit", "id": "today"}  # the first that matches
    assert tried == ["/visits/{visit_id}"]


def test_what_the_index_does_not_match_in_full_is_the_routers_to_answer() -> None:
    client = TestClient(make_app())
    assert client.post("/patients").json() == {"route": "anything", "what": "patients"}  # a parameter segment
    assert client.get("/nowhere").status_code == 405  # only POST /{anything} has the path
    assert client.get("/nowhere/at/all").status_code == 404
    assert client.put("/patients").status_code == 405
