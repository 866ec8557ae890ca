"""The public API's one OpenAPI document, assembled from the services' own documents.

Each service describes its routes in its own `/openapi.json`. The gateway keeps only the operations in
its route table, at their public `/v1` paths (with the route table's parameter names, and the
service-local prefix mapped back where a route's `upstream` differs), renames each service's
components (`Registration_PatientCreate`) so equal names never clash, documents errors as
problem+json, marks each operation with the scope it needs (`x-required-scope`), and makes sure
every request body and every 2xx answer carries an example.

A service that is down when the document is first asked for does not hide its routes: they are listed
from the route table with a note, and the gateway asks the service again after `RETRY_SECONDS`. A
complete document is cached for the life of the process (the services' schemas change only with a
deployment, which restarts the gateway too).
"""

import asyncio
import copy
import logging
import re
import time
from collections.abc import Iterator, Mapping
from typing import Any

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import JSONResponse

from gateway.examples import schema_example
from gateway.routes import API_PREFIX, METRICS_SCOPE, PATIENT_BINDING, GatewayRoute, RouteTable
from kit.auth import TokenSource, service_subject
from kit.docs import install_docs
from kit.errors import INVALID_PARAMETER, PROBLEM_BASE, PROBLEM_MEDIA_TYPE

logger = logging.getLogger("patientflow.gateway")
Document = dict[str, Any]

RETRY_SECONDS = 10.0
# A service builds its document on the first ask (registration's, the largest, took over 3 s on a loaded
# host); a docs page can wait that long, and the next rebuild comes only after RETRY_SECONDS.
FETCH_TIMEOUT_SECONDS = 6.0
SCHEMA_REF = "#/components/schemas/"
OWN_PREFIX = "Gateway"
OPEN_PATHS = frozenset({"/healthz", "/readyz"})  # the only operations without an API key
METHODS = ("get", "put", "post", "delete", "options", "head", "patch")
_PLACEHOLDER = re.compile(r"\{([^}]+)\}")
# Problems the gateway itself may answer on any /v1 route, on top of the service's own.
GATEWAY_PROBLEMS = {
    "401": ("Authentication required", "api-key-missing", "Send `Authorization: Bearer <api key>`."),
    "403": ("Forbidden", "scope-missing", "This call needs the scope 'registration:write'."),
    "429": ("Too many requests", "rate-limited", "Too many requests; retry after the Retry-After delay."),
    "502": ("Bad gateway", "bad-gateway", "The registration service sent an invalid response."),
    "503": ("Service unavailable", "upstream-unavailable", "The registration service is unavailable."),
    "504": ("Gateway timeout", "upstream-timeout", "The registration service did not answer in time."),
}
SERVICE_PROBLEM_SLUGS = {
    "400": "bad-request",
    "402": "payment-required",
    "404": "not-found",
    "409": "conflict",
    "413": "payload-too-large",
    "422": "validation-error",
}
SLUGS_BY_TITLE = {INVALID_PARAMETER: "invalid-parameter"}  # a 400 FastAPI's validation answers, not a route's
PROBLEM_SCHEMA: Document = {
    "type": "object",
    "title": "Problem",
    "description": "An RFC 9457 problem: `type` names the error, `instance` the request (for support).",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "format": "uri"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string", "examples": ["urn:request:4bf92f3577b34da6"]},
    },
    "additionalProperties": True,
}
SSE_EXAMPLE = 'id: 42\nevent: visit.opened\ndata: {"id": "3fa85f64-5717-4562-b3fc-2c963f66afa6"}\n\n'
METRICS_OPERATION: Document = {
    "tags": ["gateway"],
    "summary": "Prometheus metrics",
    "description": "The gateway's metrics in Prometheus' text format (needs `metrics:read`).",
    "operationId": "gateway_metrics",
    "x-required-scope": METRICS_SCOPE,
    "responses": {
        "200": {
            "description": "Metrics",
            "content": {
                "text/plain": {"schema": {"type": "string"}, "example": "patientflow_http_requests_total 1"}
            },
        }
    },
}
DESCRIPTION = """The public patientflow API. Every `/v1` call needs `Authorization: Bearer <api key>`; each
operation names the scope its key must grant in `x-required-scope`. App and kiosk clients acting for a
patient also send `X-Patient-Token` (from `POST /v1/patient-sessions`) and reach only that patient's
records: `x-patient-binding` says how a route is tied to that patient (no binding: apps and kiosks
may not call it), `x-client-kinds` names the only kinds a route serves. Errors are RFC 9457
problem+json; `instance` carries the request id (`X-Request-ID`)."""


def normalized(path: str) -> str:
    """A path with its parameter names erased, to match templates that name them differently."""
    return _PLACEHOLDER.sub("{}", path)


def _walk_refs(node: Any) -> Iterator[dict[str, Any]]:
    """Every mapping holding a `$ref`, anywhere below `node`."""
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node
        for value in node.values():
            yield from _walk_refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk_refs(value)


class _Components:
    """The merged `components.schemas`: copies each referenced schema under its service's prefix."""

    def __init__(self) -> None:
        self.schemas: dict[str, Any] = {"Problem": PROBLEM_SCHEMA}

    def adopt(self, node: Any, prefix: str, source: Mapping[str, Any]) -> Any:
        """A copy of `node` whose `$ref`s point at prefixed components, copied in as needed."""
        node = copy.deepcopy(node)
        for holder in _walk_refs(node):
            ref: str = holder["$ref"]
            if not ref.startswith(SCHEMA_REF):
                continue
            name = ref[len(SCHEMA_REF) :]
            if name not in source:
                continue  # ours already (Problem)
            renamed = f"{prefix}_{name}"
            holder["$ref"] = SCHEMA_REF + renamed
            if renamed not in self.schemas:
                self.schemas[renamed] = {}  # reserve first: schemas may refer to themselves
                self.schemas[renamed] = self.adopt(source[name], prefix, source)
        return node

    def resolve(self, ref: str) -> Mapping[str, Any]:
        schema: Mapping[str, Any] = self.schemas.get(ref.removeprefix(SCHEMA_REF), {})
        return schema


def _find_operation(document: Document | None, route: GatewayRoute) -> tuple[str, Document] | None:
    """The service's (local path, operation) for a route, matching parameter names loosely."""
    if not document:
        return None
    local = normalized(route.upstream_target(route.path))
    for path, operations in document.get("paths", {}).items():
        if normalized(path) == local and route.method.lower() in operations:
            return path, operations[route.method.lower()]
    return None


def _rename_path_parameters(operation: Document, local_path: str, public_path: str) -> None:
    """Parameters named as in the public template (`visit_id` → `id`), position by position."""
    renames = dict(zip(_PLACEHOLDER.findall(local_path), _PLACEHOLDER.findall(public_path), strict=False))
    for parameter in operation.get("parameters", []):
        if parameter.get("in") == "path" and parameter.get("name") in renames:
            parameter["name"] = renames[parameter["name"]]


def _stub_operation(route: GatewayRoute) -> Document:
    """A placeholder for a route whose service could not be asked: listed, with a note saying why."""
    operation: Document = {
        "summary": f"{route.method} {route.public_path}",
        "description": f"The {route.service} service did not answer when this document was built; "
        "its full description appears once it does.",
        "operationId": re.sub(r"[^a-z0-9]+", "_", f"{route.service} {route.method} {route.path}".lower()),
        "x-upstream-unavailable": True,
        "parameters": [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in _PLACEHOLDER.findall(route.path)
        ],
        "responses": {"200": {"description": "Success", "content": {"application/json": {"schema": {}}}}},
    }
    if operation["parameters"]:
        operation["responses"]["400"] = {"description": INVALID_PARAMETER}
    if route.method in ("POST", "PUT", "PATCH"):
        operation["requestBody"] = {"content": {"application/json": {"schema": {"type": "object"}}}}
    return operation


def _problem_response(status: str, description: str | None = None) -> Document:
    slug = SLUGS_BY_TITLE.get(description or "") or SERVICE_PROBLEM_SLUGS.get(status, "error")
    title, slug, detail = GATEWAY_PROBLEMS.get(status, (description or "Error", slug, description or ""))
    example = {
        "type": PROBLEM_BASE + slug,
        "title": title,
        "status": int(status) if status.isdigit() else 500,
        "detail": detail,
        "instance": "urn:request:4bf92f3577b34da6",
    }
    schema = {"$ref": SCHEMA_REF + "Problem"}
    return {
        "description": description or title,
        "content": {PROBLEM_MEDIA_TYPE: {"schema": schema, "example": example}},
    }


def _document_errors(operation: Document, *, behind_gateway: bool) -> None:
    """Every error answer is problem+json (FastAPI's own 422 model is not what our services send)."""
    responses = operation.setdefault("responses", {})
    for status in [s for s in responses if not s.startswith("2")]:
        responses[status] = _problem_response(status, responses[status].get("description"))
    if behind_gateway:
        for status in GATEWAY_PROBLEMS:
            responses.setdefault(status, _problem_response(status))


def _add_examples(operation: Document, components: _Components) -> None:
    """An example on the request body and every 2xx answer: the service's own, else synthesized."""
    media: list[tuple[Document, bool]] = []
    for content in (operation.get("requestBody") or {}).get("content", {}).values():
        media.append((content, True))
    for status, response in operation.get("responses", {}).items():
        if status.startswith("2"):
            media += [(content, False) for content in response.get("content", {}).values()]
    for content, request in media:
        if "example" in content or "examples" in content:
            continue
        schema = content.get("schema") or {}
        content["example"] = schema_example(schema, components.resolve, request=request)
    for status, response in operation.get("responses", {}).items():
        stream = response.get("content", {}).get("text/event-stream")
        if status.startswith("2") and stream is not None and not stream.get("example"):
            stream["example"] = SSE_EXAMPLE


def _describe_access(operation: Document, method: str, path: str) -> None:
    """The patient binding of a route the gateway serves itself.

    Its scope (`x-required-scope`) or client kinds (`x-client-kinds`) the route declares itself, in
    its `openapi_extra`.
    """
    local = normalized(path).removeprefix(API_PREFIX)
    binding = next(
        (b for (m, p), b in PATIENT_BINDING.items() if m == method.upper() and normalized(p) == local), None
    )
    if binding:
        operation["x-patient-binding"] = binding


def _operations(paths: Mapping[str, Any]) -> Iterator[tuple[str, str, Document]]:
    for path, operations in paths.items():
        for method, operation in operations.items():
            if method in METHODS:
                yield path, method, operation


def build_document(
    *, own: Document, services: Mapping[str, Document | None], table: RouteTable, version: str = "0.1.0"
) -> Document:
    """The public document from the gateway's own and the services' documents (None: service down)."""
    components = _Components()
    paths: dict[str, dict[str, Document]] = {}
    own_schemas = own.get("components", {}).get("schemas", {})
    for path, method, operation in _operations(own.get("paths", {})):
        operation = copy.deepcopy(operation)
        _document_errors(operation, behind_gateway=path not in OPEN_PATHS)  # first: drops FastAPI's 422 model
        adopted = components.adopt(operation, OWN_PREFIX, own_schemas)
        if path in OPEN_PATHS:
            adopted["security"] = []
        else:
            _describe_access(adopted, method, path)
        paths.setdefault(path, {})[method] = adopted
    paths["/metrics"] = {"get": copy.deepcopy(METRICS_OPERATION)}
    _document_errors(paths["/metrics"]["get"], behind_gateway=True)

    for route in table.routes:
        document = services.get(route.service)
        found = _find_operation(document, route)
        if found is None:
            operation = _stub_operation(route)
        else:
            local_path, source = found
            operation = copy.deepcopy(source)
            _document_errors(operation, behind_gateway=True)
            assert document is not None  # found implies a document
            schemas = document.get("components", {}).get("schemas", {})
            operation = components.adopt(operation, route.service.capitalize(), schemas)
            _rename_path_parameters(operation, local_path, route.path)
            operation["operationId"] = f"{route.service}_{source.get('operationId', route.path)}"
        operation["tags"] = [route.service]
        operation["x-required-scope"] = route.scope
        if route.owner:
            operation["x-patient-binding"] = route.owner
        _document_errors(operation, behind_gateway=True)
        paths.setdefault(route.public_path, {})[route.method.lower()] = operation

    for _path, _method, operation in _operations(paths):
        _add_examples(operation, components)
    return {
        "openapi": "3.1.0",
        "info": {"title": "patientflow API", "version": version, "description": DESCRIPTION},
        "servers": [{"url": "/"}],
        "security": [{"bearerAuth": []}],
        "paths": paths,
        "components": {
            "schemas": components.schemas,
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "description": "Your API key."},
                "patientToken": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-Patient-Token",
                    "description": "For app and kiosk clients: the patient the call acts for.",
                },
            },
        },
    }


class OpenApiDocument:
    """The cached public document; fetches the services' documents at first use."""

    def __init__(self, app: FastAPI, upstreams: Any, table: RouteTable, tokens: TokenSource) -> None:
        self.app, self.upstreams, self.table, self.tokens = app, upstreams, table, tokens
        self._document: Document | None = None
        self._complete = False
        self._rebuild_at = 0.0
        self._lock = asyncio.Lock()

    async def get(self) -> Document:
        if self._document is not None and (self._complete or time.monotonic() < self._rebuild_at):
            return self._document
        async with self._lock:  # one build at a time; the others wait for it
            if self._document is None or not (self._complete or time.monotonic() < self._rebuild_at):
                await self._build()
        assert self._document is not None
        return self._document

    async def _build(self) -> None:
        names = sorted({route.service for route in self.table.routes})
        fetched = await asyncio.gather(*(self._fetch(name) for name in names))
        services = dict(zip(names, fetched, strict=True))
        own = self.app.openapi()  # kit.errors documents its 400s and 422s
        self._document = build_document(
            own=own, services=services, table=self.table, version=self.app.version
        )
        self._complete = all(document is not None for document in fetched)
        self._rebuild_at = time.monotonic() + RETRY_SECONDS

    async def _fetch(self, service: str) -> Document | None:
        if service not in self.upstreams.pools:
            return None
        headers = [(b"authorization", self.tokens.header(service).encode("latin-1"))]
        try:
            async with asyncio.timeout(FETCH_TIMEOUT_SECONDS):
                response = await self.upstreams.get(service, "/openapi.json", headers=headers)
            if response.status_code != 200:
                raise ValueError(f"status {response.status_code}")
            document = response.json()
        except Exception as exc:  # down, slow, or not a document: list its routes from the table for now
            logger.warning("OpenAPI of %s unavailable: %s", service, type(exc).__name__)
            return None
        valid = isinstance(document, dict) and isinstance(document.get("paths"), dict)
        return document if valid else None


def install_openapi(app: FastAPI, upstreams: Any, table: RouteTable, secret: str) -> None:
    """Serve the aggregated `/openapi.json` and Swagger UI at `/docs` (create the app with both off)."""
    document = OpenApiDocument(app, upstreams, table, TokenSource(secret, service_subject("gateway"), set()))

    async def openapi_json(_request: Request) -> JSONResponse:
        return JSONResponse(await document.get())

    app.add_route("/openapi.json", openapi_json, methods=["GET"], include_in_schema=False)
    install_docs(app, openapi_url="/openapi.json")
