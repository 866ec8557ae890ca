"""A service's routes, flat on the app and found by their first path segment.

FastAPI 0.165 keeps an included router as one entry of the app's routes and matches through it: a
request tried every route of each router before its own (21 for registration's `GET /visits/{id}`),
and its own router's twice, about a sixth of a trivial read (cProfile). Here each route is added to
the app itself (`include_flat`), and `RouteIndex` tries only the routes whose first path segment can
be the request's, in the app's order, so it picks the route FastAPI's router would. Anything it does
not match in full (404, 405, a trailing-slash redirect) goes to FastAPI's router as before.

A hot read of the simplest shape (`lean_app`) is answered without FastAPI's request handler: its
dependency solver alone costs a fifth of a trivial read's CPU.
"""

import inspect
from collections.abc import Callable, Sequence
from typing import Any, get_type_hints

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, APIRouter
from starlette._utils import get_route_path
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Receive, Scope, Send

Endpoint = Callable[..., Any]


def include_flat(
    app: FastAPI,
    router: APIRouter,
    *,
    wrap: Callable[[Endpoint], Endpoint] = lambda endpoint: endpoint,
    dependencies: Sequence[Any] = (),
) -> None:
    """Each route of `router` added to `app` itself, its endpoint passed through `wrap`, `dependencies`
    run before its own (what `app.include_router(router, dependencies=...)` does, without the included
    router's matching on every request). The router is left as it was. A router holding anything but
    API routes (a nested router, a mount) is included as FastAPI does it."""
    if not all(isinstance(route, APIRoute) for route in router.routes):
        app.include_router(router, dependencies=list(dependencies))
        return
    for route in router.routes:
        assert isinstance(route, APIRoute)
        app.router.add_api_route(
            route.path,
            wrap(route.endpoint),
            response_model=route.response_model,
            status_code=route.status_code,
            tags=list(route.tags),
            dependencies=[*dependencies, *route.dependencies],
            summary=route.summary,
            description=route.description,
            response_description=route.response_description,
            responses=dict(route.responses),
            deprecated=route.deprecated,
            methods=route.methods,
            operation_id=route.operation_id,
            response_model_include=route.response_model_include,
            response_model_exclude=route.response_model_exclude,
            response_model_by_alias=route.response_model_by_alias,
            response_model_exclude_unset=route.response_model_exclude_unset,
            response_model_exclude_defaults=route.response_model_exclude_defaults,
            response_model_exclude_none=route.response_model_exclude_none,
            include_in_schema=route.include_in_schema,
            response_class=route.response_class,
            name=route.name,
            callbacks=route.callbacks,
            openapi_extra=route.openapi_extra,
            generate_unique_id_function=route.generate_unique_id_function,
            strict_content_type=route.strict_content_type,
            max_body_size=route.max_body_size,
            route_class_override=type(route),
        )


def _first_segment(path: str) -> str | None:
    """`visits` for `/visits/{visit_id}`; None when the first segment is a parameter (any segment)."""
    segment = path.removeprefix("/").partition("/")[0]
    return None if "{" in segment else segment


class RouteIndex:
    """Pure ASGI in front of FastAPI's router (`install_route_index`): the request's route among those
    of the same first path segment (and those whose first segment is a parameter), in the app's order.

    The index is rebuilt whenever the number of the app's routes changed (routes are added, not
    replaced, after an app is built). Routes that are not a plain path (an included router) are tried
    for every path, as the router would.
    """

    def __init__(self, router: APIRouter, fallback: ASGIApp) -> None:
        self.router = router
        self.fallback = fallback
        self._indexed = -1
        self._by_segment: dict[str, list[BaseRoute]] = {}
        self._anywhere: list[BaseRoute] = []

    def _reindex(self) -> None:
        routes = list(self.router.routes)
        # By id: Starlette's routes define __eq__ and so are not hashable.
        segments = {
            id(route): _first_segment(path)
            for route in routes
            if isinstance(path := getattr(route, "path", None), str)
        }
        known = {segment for segment in segments.values() if segment is not None}
        self._by_segment = {
            name: [route for route in routes if segments.get(id(route)) in (name, None)] for name in known
        }
        self._anywhere = [route for route in routes if segments.get(id(route)) is None]
        self._indexed = len(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            if len(self.router.routes) != self._indexed:
                self._reindex()
            segment = get_route_path(scope).removeprefix("/").partition("/")[0]
            for route in self._by_segment.get(segment, self._anywhere):
                match, child_scope = route.matches(scope)
                if match is Match.FULL:
                    scope.setdefault("router", self.router)
                    scope.update(child_scope)
                    await route.handle(scope, receive, send)
                    return
        await self.fallback(scope, receive, send)


def install_route_index(app: FastAPI) -> None:
    """Route `app`'s requests through a `RouteIndex` (only when its router has no middleware of its own,
    which the index would skip)."""
    router = app.router
    if router.middleware_stack == router.app:
        router.middleware_stack = RouteIndex(router, router.app)


def lean_app(route: APIRoute) -> ASGIApp | None:
    """`route`'s ASGI app without FastAPI's request handler, for a route of a hot read's shape; None for
    any other.

    The shape: a GET whose `async def` endpoint returns a `Response` it built itself, takes only plain
    `str` path parameters and dependencies that are each an `async` callable of the request alone
    (`kit.database.read_access`, `kit.auth.require_scope`). Then all FastAPI would do is call those
    dependencies with the request and the endpoint with their results and the path's strings, which is
    what this does. The route stays an `APIRoute` (OpenAPI, the route table); with dependency
    overrides set (a test's), FastAPI's handler answers, as always.
    """
    dependant = route.dependant
    if (
        getattr(route.app, "lean", False)
        or route.methods != {"GET"}
        or not _lean_endpoint(dependant, route.endpoint)
    ):
        return None
    # Each dependency called once per request, as FastAPI's cache does for the same callable.
    calls: list[Callable[[Request], Any]] = []
    named: list[tuple[str | None, int]] = []
    for sub in dependant.dependencies:
        call = _request_only(sub)
        if call is None:
            return None
        if not (sub.use_cache and call in calls):
            calls.append(call)
        named.append((sub.name, len(calls) - 1 if not sub.use_cache else calls.index(call)))
    path_names = [param.name for param in dependant.path_params]
    endpoint, full = route.endpoint, route.app

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive, send)
        if request.app.dependency_overrides:
            await full(scope, receive, send)
            return
        solved = [await call(request) for call in calls]
        values = {name: request.path_params[name] for name in path_names}
        values.update((name, solved[index]) for name, index in named if name is not None)
        response: Response = await endpoint(**values)
        await response(scope, receive, send)

    app.lean = True  # type: ignore[attr-defined]
    return app


def _lean_endpoint(dependant: Dependant, endpoint: Endpoint) -> bool:
    """An `async def` endpoint answering a `Response`, with plain `str` path parameters and nothing else
    FastAPI would read from the request."""
    if not inspect.iscoroutinefunction(endpoint):
        return False
    try:
        answer = get_type_hints(inspect.unwrap(endpoint)).get("return")
    except (NameError, TypeError):  # an annotation FastAPI could live with but not resolvable here
        return False
    if not (inspect.isclass(answer) and issubclass(answer, Response)):
        return False
    if any(
        (dependant.query_params, dependant.header_params, dependant.cookie_params, dependant.body_params)
    ) or _takes_more_than_request(dependant, allow_request=False):
        return False
    return all(
        param.field_info.annotation is str and not param.field_info.metadata and param.alias == param.name
        for param in dependant.path_params
    )


def _request_only(sub: Dependant) -> Callable[[Request], Any] | None:
    """The dependency, if it is an `async` callable of the request alone (no parameters of its own, no
    sub-dependencies, not a generator): what `lean_app` may call itself."""
    call = sub.call
    if call is None or sub.dependencies or sub.path_params or sub.query_params or sub.header_params:
        return None
    if sub.cookie_params or sub.body_params or _takes_more_than_request(sub, allow_request=True):
        return None
    if sub.request_param_name is None:
        return None
    run = call if inspect.isfunction(call) else getattr(call, "__call__", None)  # noqa: B004
    if not inspect.iscoroutinefunction(run) or inspect.isasyncgenfunction(run):
        return None
    parameters = list(inspect.signature(call).parameters)
    if parameters != [sub.request_param_name]:
        return None
    return call


def _takes_more_than_request(dependant: Dependant, *, allow_request: bool) -> bool:
    return (
        (dependant.request_param_name is not None and not allow_request)
        or dependant.websocket_param_name is not None
        or dependant.http_connection_param_name is not None
        or dependant.response_param_name is not None
        or dependant.background_tasks_param_name is not None
        or dependant.security_scopes_param_name is not None
    )


def install_lean_routes(app: FastAPI) -> list[str]:
    """Each of `app`'s routes of a hot read's shape answered by its `lean_app`; their paths."""
    leaned = []
    for route in app.router.routes:
        if isinstance(route, APIRoute) and (lean := lean_app(route)) is not None:
            route.app = lean
            leaned.append(route.path)
    return leaned
