"""The gateway over real HTTP: authentication, scopes, forwarding, and every way an upstream can fail."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from gateway.app import create_app as create_gateway
from kit.auth import verify_internal_token
from kit.errors import PROBLEM_MEDIA_TYPE
from kit.testing import HTTP_TIMEOUT_SECONDS, TEST_SECRET, ServedApp, internal_headers, serve
from tests.gateway.factories import bearer, gateway_settings, random_id_number
from tests.gateway.servers import BrokenUpstream, EchoUpstream


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE
    body = response.json()
    assert body["status"] == status
    return body


def register(client: httpx.Client, key: str) -> dict[str, Any]:
    body = {"id_number": random_id_number(), "name": "张三"}
    response = client.post("/v1/patients", json=body, headers=bearer(key))
    assert response.status_code == 201, response.text
    return response.json()


# --- authentication and authorisation -------------------------------------------------------------


def test_missing_key_is_401_with_challenge(client: httpx.Client, echo: EchoUpstream) -> None:
    response = client.get("/v1/queues/internal")
    body = assert_problem(response, 401)
    assert response.headers["www-authenticate"] == "Bearer"
    assert body["type"].endswith("/api-key-missing")
    assert echo.seen == []


def test_unknown_key_is_401(client: httpx.Client, echo: EchoUpstream) -> None:
    response = client.get("/v1/queues/internal", headers=bearer("not-a-key"))
    body = assert_problem(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert body["type"].endswith("/api-key-invalid")
    assert echo.seen == []


def test_non_bearer_scheme_is_401(client: httpx.Client, api_keys: dict[str, str]) -> None:
    response = client.get("/v1/queues/internal", headers={"authorization": f"Basic {api_keys['his-dev']}"})
    assert_problem(response, 401)


def test_x_api_key_header_is_accepted(client: httpx.Client, api_keys: dict[str, str]) -> None:
    response = client.get("/v1/queues/internal", headers={"x-api-key": api_keys["reader"]})
    assert response.status_code == 200


def test_key_without_the_scope_is_403_and_upstream_untouched(
    client: httpx.Client, api_keys: dict[str, str], echo: EchoUpstream
) -> None:
    response = client.post("/v1/queues/internal/tickets", json={}, headers=bearer(api_keys["reader"]))
    body = assert_problem(response, 403)
    assert body["scope"] == "triage:write"
    assert "triage:write" in body["detail"]
    assert echo.seen == []


def test_unknown_route_is_404(client: httpx.Client, api_keys: dict[str, str], echo: EchoUpstream) -> None:
    for path in ("/v1/admin", "/v1/events/1", "/v1/queues/a/b/c", "/v1/visits/x/../../nothing", "/v1/"):
        body = assert_problem(client.get(path, headers=bearer(api_keys["his-dev"])), 404)
        assert body["type"].endswith("/route-not-found")
    assert echo.seen == []


def test_a_percent_encoded_prefix_never_reaches_another_upstream_route(
    client: httpx.Client, api_keys: dict[str, str], echo: EchoUpstream
) -> None:
    # Decoded, `/v1/%65vents` is `/v1/events` (the hub's `/log`); the hub would decode the raw
    # `/%65vents` to its own `/events`, which the gateway never checked.
    for path in ("/v1/%65vents", "/v1/%65vents/stream", "/v1/event%2Dschemas"):
        body = assert_problem(client.get(path, headers=bearer(api_keys["his-dev"])), 404)
        assert body["type"].endswith("/route-not-found")
    assert echo.seen == []


def test_wrong_method_on_a_known_path_is_405(client: httpx.Client, api_keys: dict[str, str]) -> None:
    response = client.delete("/v1/tickets/abc", headers=bearer(api_keys["his-dev"]))
    assert_problem(response, 405)
    assert response.headers["allow"] == "GET"


# --- forwarding ----------------------------------------------------------------------------------


def test_registration_accepts_the_forwarded_call(client: httpx.Client, api_keys: dict[str, str]) -> None:
    patient = register(client, api_keys["his-dev"])
    response = client.get(f"/v1/patients/{patient['id']}", headers=bearer(api_keys["reader"]))
    assert response.status_code == 200
    assert response.json()["id"] == patient["id"]


def test_created_resource_location_stays_under_v1(client: httpx.Client, api_keys: dict[str, str]) -> None:
    patient = register(client, api_keys["his-dev"])
    response = client.post(
        "/v1/visits",
        json={"patient_id": patient["id"], "kind": "outpatient", "department": "internal"},
        headers=bearer(api_keys["his-dev"]),
    )
    assert response.status_code == 201
    assert response.headers["location"] == f"/v1/visits/{response.json()['id']}"


def test_service_local_location_gets_the_v1_prefix(client: httpx.Client, api_keys: dict[str, str]) -> None:
    response = client.get("/v1/queues/moved", headers=bearer(api_keys["reader"]))
    assert response.status_code == 201
    assert response.headers["location"] == "/v1/tickets/abc"
    assert response.headers["etag"] == '"1"'
    assert response.headers["content-length"] == str(len(response.content))


def test_an_answer_without_a_body_is_relayed_without_one(
    client: httpx.Client, api_keys: dict[str, str]
) -> None:
    response = client.get("/v1/queues/nothing", headers=bearer(api_keys["reader"]))
    assert response.status_code == 204
    assert response.content == b""
    assert "content-length" not in response.headers
    assert response.headers["etag"] == '"2"'


def test_headers_allow_list_and_internal_token(
    client: httpx.Client, api_keys: dict[str, str], echo: EchoUpstream
) -> None:
    headers = bearer(api_keys["his-dev"]) | {
        "cookie": "session=abc",
        "x-forwarded-for": "10.0.0.9",
        "x-api-key": "leak",
        "idempotency-key": "k-1",
        "if-match": '"3"',
        "accept": "application/json",
    }
    response = client.post("/v1/queues/internal/call-next?counter=3", json={"a": 1}, headers=headers)
    assert response.status_code == 200
    (seen,) = echo.seen
    assert (seen.method, seen.path, seen.query) == ("POST", "/queues/internal/call-next", "counter=3")
    assert seen.body == b'{"a":1}'
    assert {"cookie", "x-api-key"}.isdisjoint(seen.headers)
    # The client's own X-Forwarded-For stops here: the service gets the one address the gateway trusts
    # (uvicorn resolves it from trusted proxies only), for its audit.
    assert "," not in seen.headers["x-forwarded-for"]
    assert seen.headers["idempotency-key"] == "k-1"
    assert seen.headers["if-match"] == '"3"'
    assert seen.headers["accept"] == "application/json"
    assert seen.headers["content-type"] == "application/json"
    scheme, token = seen.headers["authorization"].split(" ")
    caller = verify_internal_token(TEST_SECRET, token, audience="triage")
    assert scheme == "Bearer"
    assert caller.subject == "his-dev"
    assert "triage:write" in caller.scopes


def test_a_body_sent_without_content_type_reaches_the_service_without_one(
    client: httpx.Client, api_keys: dict[str, str], echo: EchoUpstream
) -> None:
    """The service then reads it as JSON, as it would straight; the forwarder labels nothing itself."""
    response = client.post(
        "/v1/queues/internal/call-next", content=b'{"a":1}', headers=bearer(api_keys["his-dev"])
    )
    assert response.status_code == 200
    (seen,) = echo.seen
    assert seen.body == b'{"a":1}' and "content-type" not in seen.headers


def test_request_id_is_propagated(client: httpx.Client, api_keys: dict[str, str], echo: EchoUpstream) -> None:
    response = client.get(
        "/v1/queues/internal", headers=bearer(api_keys["reader"]) | {"x-request-id": "rid-42"}
    )
    assert response.headers.get_list("x-request-id") == ["rid-42"]
    assert echo.seen[0].headers["x-request-id"] == "rid-42"


def test_request_id_is_minted_when_absent_or_malformed(
    client: httpx.Client, api_keys: dict[str, str], echo: EchoUpstream
) -> None:
    response = client.get(
        "/v1/queues/internal", headers=bearer(api_keys["reader"]) | {"x-request-id": "no spaces"}
    )
    minted = response.headers["x-request-id"]
    assert minted != "no spaces"
    assert echo.seen[0].headers["x-request-id"] == minted


def test_oversized_body_is_413(client: httpx.Client, api_keys: dict[str, str], echo: EchoUpstream) -> None:
    response = client.post("/v1/assessments", content=b"x" * 1_100_000, headers=bearer(api_keys["his-dev"]))
    assert_problem(response, 413)
    assert echo.seen == []


def test_oversized_chunked_body_is_413(
    client: httpx.Client, api_keys: dict[str, str], echo: EchoUpstream
) -> None:
    """No Content-Length to refuse up front: the gateway counts as it reads and stops at the cap."""

    def chunks() -> Iterator[bytes]:
        for _ in range(20):
            yield b"x" * 64_000

    response = client.post("/v1/assessments", content=chunks(), headers=bearer(api_keys["his-dev"]))
    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert_problem(response, 413)
    assert echo.seen == []


# --- upstream answers and failures ---------------------------------------------------------------


def test_malformed_json_is_the_services_own_422(client: httpx.Client, api_keys: dict[str, str]) -> None:
    headers = bearer(api_keys["his-dev"]) | {"content-type": "application/json"}
    response = client.post("/v1/patients", content=b'{"id_number": ', headers=headers)
    body = assert_problem(response, 422)
    assert body["type"].endswith("/validation-error")


def test_upstream_problem_passes_through_unchanged(
    client: httpx.Client, api_keys: dict[str, str], registration_url: str
) -> None:
    request_id = {"x-request-id": "same-request"}
    via_gateway = client.get("/v1/patients/no-such-patient", headers=bearer(api_keys["reader"]) | request_id)
    direct = httpx.get(
        f"{registration_url}/patients/no-such-patient",
        headers=internal_headers(audience="registration") | request_id,
    )
    assert_problem(via_gateway, 404)
    assert via_gateway.content == direct.content


def test_upstream_problem_keeps_its_extensions_not_its_other_headers(
    client: httpx.Client, api_keys: dict[str, str]
) -> None:
    response = client.get("/v1/queues/problem", headers=bearer(api_keys["reader"]))
    body = assert_problem(response, 409)
    assert body["queue"] == "problem"
    assert "x-internal-note" not in response.headers


def test_upstream_non_problem_500_is_502(client: httpx.Client, api_keys: dict[str, str]) -> None:
    body = assert_problem(client.get("/v1/queues/crash", headers=bearer(api_keys["reader"])), 502)
    assert body["service"] == "triage"


def test_upstream_refusing_connections_is_502(client: httpx.Client, api_keys: dict[str, str]) -> None:
    # (After `breaker_failures` such calls the circuit opens: tests/gateway/test_resilience_http.py.)
    response = client.get("/v1/catalogue", headers=bearer(api_keys["his-dev"]))
    body = assert_problem(response, 502)
    assert body["type"].endswith("/upstream-unreachable")
    assert body["service"] == "billing"
    assert "x-request-id" in response.headers


def test_upstream_stopped_mid_life_is_502_without_hanging(keys_file: Path, api_keys: dict[str, str]) -> None:
    upstream = ServedApp(EchoUpstream()).start()
    try:
        settings = gateway_settings(keys_file, triage_url=upstream.url)
        with (
            serve(create_gateway(settings)) as gateway_url,
            httpx.Client(base_url=gateway_url, timeout=HTTP_TIMEOUT_SECONDS) as client,
        ):
            headers = bearer(api_keys["reader"])
            assert (
                client.get("/v1/queues/internal", headers=headers).status_code == 200
            )  # a pooled connection
            upstream.stop()
            # The client's timeout turns a hanging gateway into a failure, without timing assertions.
            for _ in range(3):  # fewer than `breaker_failures`: the circuit stays closed
                response = client.get("/v1/queues/internal", headers=headers)
                body = assert_problem(response, 502)
                assert body["service"] == "triage"
    finally:
        upstream.stop()


@pytest.fixture(scope="module")
def impatient_gateway(keys_file: Path, slow_url: str) -> Iterator[str]:
    """A gateway whose waits are far shorter than the slow upstream's answers."""
    settings = gateway_settings(keys_file, results_url=slow_url, read_timeout=0.2, read_deadline_seconds=0.5)
    with serve(create_gateway(settings)) as url:
        yield url


def test_upstream_slower_than_read_timeout_is_504(impatient_gateway: str, api_keys: dict[str, str]) -> None:
    response = httpx.get(f"{impatient_gateway}/v1/tests", headers=bearer(api_keys["his-dev"]), timeout=3)
    body = assert_problem(response, 504)
    assert body["service"] == "results"
    assert "retry-after" not in response.headers


def test_trickling_upstream_hits_the_overall_deadline(
    impatient_gateway: str, api_keys: dict[str, str]
) -> None:
    # Bytes arrive every 50 ms, so the read timeout never fires; only the deadline bounds the call.
    response = httpx.get(f"{impatient_gateway}/v1/orders", headers=bearer(api_keys["his-dev"]), timeout=3)
    assert_problem(response, 504)


# --- health ----------------------------------------------------------------------------------------


def test_healthz_answers_while_services_are_down(client: httpx.Client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "service": "gateway"}


def test_readyz_names_the_services_that_do_not_answer(client: httpx.Client) -> None:
    response = client.get("/readyz")
    body = assert_problem(response, 503)
    assert body["upstreams"] == {
        "registration": "ready",
        "triage": "ready",
        "results": "ready",
        "billing": "unreachable",
        "events": "ready",
    }
    assert "retry-after" in response.headers


def test_readyz_is_200_when_every_service_answers(
    keys_file: Path, registration_url: str, echo_url: str
) -> None:
    settings = gateway_settings(
        keys_file,
        registration_url=registration_url,
        triage_url=echo_url,
        results_url=echo_url,
        billing_url=echo_url,
        events_url=echo_url,
    )
    with serve(create_gateway(settings)) as url:
        response = httpx.get(f"{url}/readyz", timeout=5)
    assert response.status_code == 200
    assert set(response.json()["upstreams"].values()) == {"ready"}


@pytest.mark.parametrize(
    ("behaviour", "slug"), [("reset", "upstream-unreachable"), ("garbage", "bad-gateway")]
)
def test_upstream_reset_and_garbage_are_502(
    keys_file: Path, api_keys: dict[str, str], behaviour: str, slug: str
) -> None:
    with BrokenUpstream(behaviour) as upstream:
        settings = gateway_settings(keys_file, triage_url=upstream.url)
        with serve(create_gateway(settings)) as url:
            response = httpx.get(f"{url}/v1/queues/internal", headers=bearer(api_keys["reader"]), timeout=3)
    body = assert_problem(response, 502)
    assert body["type"].endswith(slug)
    assert body["service"] == "triage"


def test_an_unexpected_error_forwarding_a_table_route_is_a_500_problem_with_one_request_id(
    keys_file: Path, api_keys: dict[str, str], registration_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The route table's requests skip FastAPI's stack (`gateway.app.GatewayApp`): its server-error
    handler still renders the crash, outside the request-id layer, so the id is sent once."""

    async def crash(*_args: object) -> None:
        raise RuntimeError("forwarding broke")

    app = create_gateway(gateway_settings(keys_file, registration_url=registration_url))
    with TestClient(app, raise_server_exceptions=False) as client:
        monkeypatch.setattr(app.state.proxy, "forward", crash)
        headers = bearer(api_keys["his-dev"]) | {"x-request-id": "req-crash-1"}
        response = client.get("/v1/patients/p-1", headers=headers)
    assert_problem(response, 500)
    assert response.json()["instance"] == "urn:request:req-crash-1"
    assert response.headers.get_list("x-request-id") == ["req-crash-1"]
