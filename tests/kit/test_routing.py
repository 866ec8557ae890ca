"""`kit.routing`: a service's routes are its app's own, and a request tries only its first segment's."""

from typing import Annotated, Any

import fastapi.routing
import pytest
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from starlette.routing import Match
from starlette.types import Scope

from kit.routing import include_flat, install_lean_routes, install_route_index

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


# --- lean routes: a hot read's shape answered without FastAPI's request handler ------------------

solved: list[str] = []


async def gatekeeper(request: Request) -> str:
    """A dependency of the request alone, as `kit.auth.require_scope` and `kit.database.read_access` are."""
    solved.append("gatekeeper")
    if request.headers.get("x-pass") != "yes":
        raise HTTPException(403, "no pass")
    return "checked"


def make_lean_app() -> FastAPI:
    router = APIRouter()

    @router.get("/lean/{thing_id}", dependencies=[Depends(gatekeeper)])
    async def lean(thing_id: str, check: Annotated[str, Depends(gatekeeper)]) -> Response:
        return JSONResponse({"id": thing_id, "check": check})

    @router.get("/with-query/{thing_id}")
    async def with_query(thing_id: str, check: Annotated[str, Depends(gatekeeper)], n: int = 1) -> Response:
        return JSONResponse({"n": n})

    @router.get("/checked-path/{thing_id}")
    async def checked_path(thing_id: Annotated[str, Path(pattern="^[a-z]+$")]) -> Response:
        return JSONResponse({"id": thing_id})

    @router.get("/model/{thing_id}")
    async def model(thing_id: str) -> dict[str, str]:
        return {"id": thing_id}

    @router.get("/plain-def/{thing_id}")
    def plain_def(thing_id: str) -> Response:
        return JSONResponse({"id": thing_id})

    app = FastAPI()
    include_flat(app, router)
    return app


def test_only_a_hot_reads_shape_is_leaned() -> None:
    app = make_lean_app()
    assert install_lean_routes(app) == ["/lean/{thing_id}"]
    assert install_lean_routes(app) == []  # once: a lean route is not leaned again


def test_a_lean_route_answers_as_fastapi_does_without_its_solver(monkeypatch: pytest.MonkeyPatch) -> None:
    full, lean = make_lean_app(), make_lean_app()
    install_lean_routes(lean)
    solve = fastapi.routing.solve_dependencies

    async def counted(*args: Any, **kwargs: Any) -> Any:
        solved.append("solved")
        return await solve(*args, **kwargs)

    monkeypatch.setattr(fastapi.routing, "solve_dependencies", counted)
    answers = []
    for app in (full, lean):
        with TestClient(app) as client:
            solved.clear()
            passed = client.get("/lean/a%20b", headers={"x-pass": "yes"})
            refused = client.get("/lean/a", headers={"x-pass": "no"})
            answers.append(
                (passed.status_code, passed.json(), refused.status_code, refused.json(), solved[:])
            )

    assert (
        answers[0][:4]
        == answers[1][:4]
        == (200, {"id": "a b", "check": "checked"}, 403, {"detail": "no pass"})
    )
    # FastAPI's handler runs its solver, which calls the dependency once though it is named twice; the
    # lean route calls the dependency once, without the solver.
    assert answers[0][4] == ["solved", "gatekeeper"] * 2
    assert answers[1][4] == ["gatekeeper"] * 2


def test_with_dependency_overrides_a_lean_route_is_answered_by_fastapi() -> None:
    app = make_lean_app()
    install_lean_routes(app)

    async def let_in() -> str:
        return "overridden"

    app.dependency_overrides[gatekeeper] = let_in
    with TestClient(app) as client:
        assert client.get("/lean/a").json() == {"id": "a", "check": "overridden"}
