"""A service's routes, flat on the app and found by their first path segment.

FastAPI 0.165 keeps an included router as one entry of the app's routes and matches through it: a
request tried every route of each router before its own (21 for registration's `GET /visits/{id}`),
and its own router's twice, about a sixth of a trivial read (cProfile). Here each route is added to
the app itself (`include_flat`), and `RouteIndex` tries only the routes whose first path segment can
be the request's, in the app's order, so it picks the route FastAPI's router would. Anything it does
not match in full (404, 405, a trailing-slash redirect) goes to FastAPI's router as before.
"""

from collections.abc import Callable, Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute, APIRouter
from starlette._utils import get_route_path
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
