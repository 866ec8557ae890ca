"""Bad tokens and bad numbers are 4xx problems with an `instance`, never a 500, through the real gateway
and at every service: raw header bytes (non-ASCII included) in `Authorization`, `X-API-Key` and
`X-Patient-Token`, and every integer query parameter of the public API (read from the aggregated
OpenAPI document) given numbers past BIGINT or no number at all: 400, as any bad parameter. The event
stream answers a cursor past BIGINT with a problem, and keeps streaming for everyone else."""

import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx

from kit.auth import mint_internal_token
from kit.testing import HTTP_TIMEOUT_SECONDS
from tests.e2e.clients import Gateway, assert_problem, eventually, ok, register_patient
from tests.events.sse import sse_messages
from tests.fuzz import BAD_INTEGERS, assert_bad_parameter, assert_client_error, header_values

SERVICES = ("registration", "triage", "results", "billing", "events")
_PLACEHOLDER = re.compile(r"\{[^}]+\}")


def send(client: httpx.Client, method: str, url: str, **kwargs: Any) -> httpx.Response:
    """The answer, read whole unless it is an event stream that opened (then closed unread).

    This client sends every bad number of every route as fast as it can, past the gateway's per-client
    limit (100/s): a 429 is then the gateway's answer about the rate, not about the number, so the
    request is sent again after the `Retry-After` the gateway gave, as a well-behaved client would."""
    for _ in range(5):
        with client.stream(method, url, **kwargs) as response:
            if not response.headers.get("content-type", "").startswith("text/event-stream"):
                response.read()
        if response.status_code != 429:
            return response
        time.sleep(float(response.headers.get("retry-after", "1")))
    return response


def integer_query_parameters(document: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(method, path with ids filled in, parameter) for every integer query parameter of the API."""
    for template, item in document["paths"].items():
        for method, operation in item.items():
            for parameter in operation.get("parameters", []):
                schema = parameter.get("schema", {})
                types = {schema.get("type"), *(s.get("type") for s in schema.get("anyOf", []))}
                if parameter["in"] == "query" and "integer" in types:
                    path = _PLACEHOLDER.sub(str(uuid.uuid4()), template)
                    yield method.upper(), path, parameter["name"]


def test_every_integer_query_parameter_refuses_bad_numbers_with_a_problem(gateway: Gateway) -> None:
    document = ok(gateway.anonymous.get("/openapi.json"))
    parameters = list(integer_query_parameters(document))
    assert ("GET", "/v1/events", "after") in parameters and (
        "GET",
        "/v1/events/stream",
        "after",
    ) in parameters
    assert {name for _, _, name in parameters} >= {"after", "limit"}
    for method, path, name in parameters:
        for value in BAD_INTEGERS:
            response = send(gateway.admin, method, path, params={name: value})
            assert response.status_code < 500, (method, path, name, value, response.text)
            if response.status_code == 404 and path not in document["paths"]:
                assert_client_error(response, (path, name, value))  # the made-up id may be looked up first
            elif response.status_code >= 400:
                assert_bad_parameter(response, (path, name, value))
    past_bigint = gateway.admin.get("/v1/events", params={"after": "9223372036854775808"})
    assert_bad_parameter(past_bigint)
    assert past_bigint.json()["type"].endswith("/invalid-parameter")


def test_any_bytes_in_credentials_are_a_problem_at_the_gateway(gateway: Gateway) -> None:
    key = gateway.system.api_keys["app-dev"].encode()
    for value in header_values():
        for name in (b"authorization", b"x-api-key"):
            response = gateway.anonymous.get("/v1/tests", headers=[(name, value)])
            assert_client_error(response, (name, value))
            assert response.status_code == 401
        patient_bound = [(b"authorization", b"Bearer " + key), (b"x-patient-token", value)]
        response = gateway.anonymous.get("/v1/tests", headers=patient_bound)
        assert_client_error(response, (b"x-patient-token", value))


def test_any_bytes_in_internal_credentials_are_a_401_at_every_service(gateway: Gateway) -> None:
    for service in SERVICES:
        with httpx.Client(base_url=gateway.system.url(service), timeout=HTTP_TIMEOUT_SECONDS) as client:
            for value in header_values(count=20):
                response = client.get("/events", headers=[(b"authorization", value)])
                assert_client_error(response, (service, value))
                assert response.status_code == 401


def test_the_event_stream_refuses_a_cursor_past_bigint_and_keeps_streaming(gateway: Gateway) -> None:
    register_patient(gateway.his)  # something to stream
    refused = send(gateway.his, "GET", "/v1/events/stream", params={"after": "9223372036854775808"})
    assert_bad_parameter(refused)
    resume = send(gateway.his, "GET", "/v1/events/stream", headers={"last-event-id": "9223372036854775808"})
    assert_problem(resume, 400)

    def first_event() -> dict[str, Any] | None:
        with gateway.his.stream("GET", "/v1/events/stream", params={"after": 0}) as stream:
            assert stream.status_code == 200
            for message in sse_messages(stream.iter_lines()):
                if message.id is not None:
                    return message.json()
        return None

    assert eventually(first_event, what="an event on the stream")["position"] >= 1


def test_every_services_own_feed_refuses_bad_cursors_with_a_problem(gateway: Gateway) -> None:
    """The feeds siblings read (`/events` of each service, the hub's `/log`) take the same bounded cursor."""
    secret = gateway.system.env["PATIENTFLOW_INTERNAL_SECRET"]
    for service in SERVICES:
        path = "/log" if service == "events" else "/events"
        token = mint_internal_token(secret, "service:e2e", {"events:read"}, audience=service)
        with httpx.Client(base_url=gateway.system.url(service), timeout=HTTP_TIMEOUT_SECONDS) as client:
            for name in ("after", "limit"):
                for value in BAD_INTEGERS:
                    response = client.get(
                        path, params={name: value}, headers={"authorization": f"Bearer {token}"}
                    )
                    assert response.status_code < 500, (service, name, value, response.text)
                    if response.status_code >= 400:
                        assert_bad_parameter(response, (service, name, value))
