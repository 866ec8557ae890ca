"""The aggregated OpenAPI document: every public route once, examples everywhere, every $ref resolving."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator

from gateway.app import create_app as create_gateway
from gateway.openapi import build_document
from gateway.routes import API_PREFIX, RouteTable
from kit.testing import HTTP_TIMEOUT_SECONDS, make_test_settings
from services.billing.app import create_app as create_billing
from services.billing.config import BillingSettings
from services.events.app import create_app as create_events
from services.events.config import EventsSettings
from services.registration.app import create_app as create_registration
from services.registration.config import RegistrationSettings
from services.results.app import create_app as create_results
from services.results.config import ResultsSettings
from services.triage.app import create_app as create_triage
from services.triage.config import TriageSettings
from tests.gateway.factories import gateway_settings

Document = dict[str, Any]
METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


def service_documents(data_dir: Path) -> dict[str, Document]:
    """Each service's own document, as its `/openapi.json` serves it (no database needed)."""
    return {
        "registration": create_registration(make_test_settings(RegistrationSettings, data_dir)).openapi(),
        "triage": create_triage(make_test_settings(TriageSettings, data_dir)).openapi(),
        "results": create_results(make_test_settings(ResultsSettings, data_dir)).openapi(),
        "billing": create_billing(make_test_settings(BillingSettings, data_dir)).openapi(),
        "events": create_events(make_test_settings(EventsSettings, data_dir)).openapi(),
    }


def operations(document: Document) -> Iterator[tuple[str, str, Document]]:
    for path, items in document["paths"].items():
        for method, operation in items.items():
            if method in METHODS:
                yield path, method, operation


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for value in node.values():
            yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def media_with_examples(operation: Document) -> Iterator[tuple[str, Document]]:
    """(where, media object) for the request body and every 2xx answer."""
    for media_type, media in (operation.get("requestBody") or {}).get("content", {}).items():
        yield f"request {media_type}", media
    for status, response in operation["responses"].items():
        if status.startswith("2"):
            for media_type, media in response.get("content", {}).items():
                yield f"{status} {media_type}", media


@pytest.fixture(scope="module")
def table() -> RouteTable:
    return RouteTable()


def gateway_own_document() -> Document:
    """The gateway's own routes (admin, patient sessions, journey), as FastAPI describes them."""
    return create_gateway(gateway_settings(None)).openapi()


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory, table: RouteTable) -> Document:
    services: dict[str, Document | None] = dict(service_documents(tmp_path_factory.mktemp("openapi")))
    return build_document(own=gateway_own_document(), services=services, table=table)


def test_every_route_of_the_route_table_appears_once_at_its_public_path(
    document: Document, table: RouteTable
) -> None:
    public = {(path, method) for path, method, _ in operations(document) if path.startswith(API_PREFIX + "/")}
    expected = {(route.public_path, route.method.lower()) for route in table.routes}
    assert expected <= public
    own = gateway_own_document()["paths"]
    assert all(method in own.get(path, {}) for path, method in public - expected)  # the gateway's own
    for route in table.routes:
        operation = document["paths"][route.public_path][route.method.lower()]
        assert operation["x-required-scope"] == route.scope
        assert "x-upstream-unavailable" not in operation, route  # every service document was given


def test_keyed_retries_only_where_the_service_honours_idempotency_keys(
    document: Document, table: RouteTable
) -> None:
    """The gateway re-sends a keyed write only where the service's own operation takes the header."""
    for route in table.routes:
        operation = document["paths"][route.public_path][route.method.lower()]
        headers = {p["name"].lower() for p in operation.get("parameters", []) if p["in"] == "header"}
        assert route.idempotency_key == ("idempotency-key" in headers), f"{route.method} {route.path}"


def test_the_gateway_s_own_routes_say_who_may_call_them(document: Document) -> None:
    assert document["paths"]["/v1/admin/clients"]["get"]["x-required-scope"] == "admin:clients"
    assert (
        document["paths"]["/v1/visits/{visit_id}/journey"]["get"]["x-required-scope"] == "registration:read"
    )
    assert document["paths"]["/v1/visits/{visit_id}/journey"]["get"]["x-patient-binding"] == "visit"
    assert document["paths"]["/v1/patient-sessions"]["post"]["x-client-kinds"] == ["app", "kiosk", "phone"]
    for path, method, operation in operations(document):
        if path.startswith(API_PREFIX + "/") and "x-client-kinds" not in operation:
            assert operation.get("x-required-scope"), f"{method.upper()} {path} names no scope"


def test_path_parameters_are_named_as_in_the_public_path(document: Document) -> None:
    for path, method, operation in operations(document):
        declared = sorted(p["name"] for p in operation.get("parameters", []) if p["in"] == "path")
        in_template = sorted(name.strip("{}") for name in path.split("/") if name.startswith("{"))
        assert declared == in_template, f"{method.upper()} {path}"


def test_every_ref_resolves_and_components_carry_their_service_prefix(document: Document) -> None:
    schemas = document["components"]["schemas"]
    for ref in set(refs(document)):
        assert ref.startswith("#/components/schemas/") and ref.split("/")[-1] in schemas, ref
    assert "Registration_PatientCreate" in schemas and "Billing_PaymentCreate" in schemas
    assert "HTTPValidationError" not in str(schemas)  # errors are problem+json, not FastAPI's 422 model


def test_every_operation_has_request_and_success_examples_that_validate(document: Document) -> None:
    for path, method, operation in operations(document):
        assert any(status.startswith("2") for status in operation["responses"]), f"{method} {path}"
        for where, media in media_with_examples(operation):
            assert "example" in media, f"{method.upper()} {path}: no example for {where}"
            schema = media.get("schema")
            if schema and "json" in where:
                validator = Draft202012Validator({**schema, "components": document["components"]})
                errors = [e.message for e in validator.iter_errors(media["example"])]
                assert not errors, f"{method.upper()} {path} {where}: {errors}"
        if method in ("post", "put", "patch") and operation.get("requestBody"):
            assert operation["requestBody"]["content"], f"{method} {path}"


def test_service_declared_examples_win_over_synthesized_ones(document: Document) -> None:
    body = document["paths"]["/v1/patients"]["post"]["requestBody"]
    example = body["content"]["application/json"]["example"]
    assert example["name"] == "张三" and example["id_number"] == "11010519491231002X"


def test_errors_are_problem_json_with_the_gateway_s_own_failures(document: Document) -> None:
    for path, method, operation in operations(document):
        if operation.get("security") == []:
            continue  # health routes
        for status in ("401", "403", "503", "504"):
            assert "application/problem+json" in operation["responses"][status]["content"], f"{method} {path}"
    assert document["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert document["security"] == [{"bearerAuth": []}]


def test_a_service_that_is_down_still_has_its_routes_listed(tmp_path: Path, table: RouteTable) -> None:
    services: dict[str, Document | None] = dict(service_documents(tmp_path))
    services["billing"] = None
    degraded = build_document(own={"paths": {}}, services=services, table=table)
    billing = [r for r in table.routes if r.service == "billing"]
    for route in billing:
        operation = degraded["paths"][route.public_path][route.method.lower()]
        assert operation["x-upstream-unavailable"] is True and "billing" in operation["description"]
        assert operation["x-required-scope"] == route.scope
    assert "x-upstream-unavailable" not in degraded["paths"]["/v1/patients"]["post"]


def test_the_gateway_serves_the_document_and_swagger_ui(gateway_url: str) -> None:
    """The shared test gateway: registration is real, billing is down, the others are stand-ins."""
    with httpx.Client(base_url=gateway_url, timeout=HTTP_TIMEOUT_SECONDS) as client:
        document = client.get("/openapi.json").json()
        docs = client.get("/docs")
    assert docs.status_code == 200 and "/openapi.json" in docs.text
    register = document["paths"]["/v1/patients"]["post"]
    assert register["operationId"].startswith("registration_") and "x-upstream-unavailable" not in register
    assert document["paths"]["/v1/charges"]["post"]["x-upstream-unavailable"] is True
    assert document["paths"]["/metrics"]["get"]["x-required-scope"] == "metrics:read"
    assert document["paths"]["/healthz"]["get"]["security"] == []


def test_a_bad_parameter_is_documented_as_400_and_422_only_where_there_is_a_body(document: Document) -> None:
    """As `kit.errors` answers: 400 `invalid-parameter` for a query/path/header value, 422 for a body."""
    events = document["paths"]["/v1/events"]["get"]
    assert "after" in {p["name"] for p in events["parameters"] if p["in"] == "query"}
    invalid = events["responses"]["400"]["content"]["application/problem+json"]
    assert invalid["example"]["type"].endswith("/invalid-parameter")
    for path, method, operation in operations(document):
        if any(p["in"] in ("query", "path", "header") for p in operation.get("parameters", [])):
            assert "400" in operation["responses"], f"{method.upper()} {path}"
        if "requestBody" not in operation:
            assert "422" not in operation["responses"], f"{method.upper()} {path}"


def test_a_service_s_own_document_lists_problems_not_fastapi_s_422_model(tmp_path: Path) -> None:
    triage = service_documents(tmp_path)["triage"]
    assert "HTTPValidationError" not in str(triage)
    stats = triage["paths"]["/queues/{department}/stats"]["get"]["responses"]
    assert "422" not in stats and "application/problem+json" in stats["400"]["content"]
    tickets = triage["paths"]["/queues/{department}/tickets"]["post"]["responses"]
    assert "application/problem+json" in tickets["422"]["content"]
