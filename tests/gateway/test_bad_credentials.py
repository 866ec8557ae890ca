"""Bad credentials are 4xx problems with an `instance`, never a 500: any bytes in `Authorization`,
`X-API-Key` (401) or `X-Patient-Token` (403, as every invalid patient token), non-ASCII included, and
validly signed tokens whose claims are missing, mistyped or not JSON at all."""

import secrets
from collections.abc import Iterator

import httpx
import pytest

from gateway.app import create_app as create_gateway
from gateway.patients import TOKEN_PURPOSE as PATIENT_TOKEN_PURPOSE
from gateway.signed import sign
from kit.auth import mint_internal_token
from kit.testing import HTTP_TIMEOUT_SECONDS, TEST_SECRET, serve
from tests.fuzz import BAD_PAYLOADS, assert_client_error, b64, header_values
from tests.gateway.factories import bearer, gateway_settings, write_keys_file

# Forwarded routes and the routes the gateway serves itself (journey, admin, metrics).
PATHS = (
    "/v1/patients/some-id",
    "/v1/queues/internal",
    "/v1/events",
    "/v1/visits/v-1/journey",
    "/v1/admin/clients",
    "/metrics",
)


@pytest.mark.parametrize("name", [b"authorization", b"x-api-key"])
def test_any_bytes_in_the_api_key_headers_are_a_401_problem(client: httpx.Client, name: bytes) -> None:
    for index, value in enumerate(header_values()):
        response = client.get(PATHS[index % len(PATHS)], headers=[(name, value)])
        assert_client_error(response, value)
        assert response.status_code == 401, value


def test_a_gateway_token_minted_for_registration_is_refused_by_it(registration_url: str) -> None:
    """Straight at the service, as an attacker inside the network: any bytes, and another audience."""
    other = mint_internal_token(TEST_SECRET, "his-dev", {"registration:read"}, audience="results")
    with httpx.Client(base_url=registration_url, timeout=HTTP_TIMEOUT_SECONDS) as registration:
        for value in [*header_values(), f"Bearer {other}".encode()]:
            response = registration.get("/patients/some-id", headers=[(b"authorization", value)])
            assert_client_error(response, value)
            assert response.status_code == 401, value


# --- patient tokens: an app's or kiosk's second credential ----------------------------------------


@pytest.fixture(scope="module")
def app_gateway(
    tmp_path_factory: pytest.TempPathFactory, registration_url: str, echo_url: str
) -> Iterator[tuple[httpx.Client, str]]:
    """A gateway with one `app` client; yields the client and the app's key."""
    key = secrets.token_urlsafe(24)
    keys_file = write_keys_file(
        tmp_path_factory.mktemp("app-keys") / "keys.json", {"app": (key, ["registration:read"])}, kind="app"
    )
    settings = gateway_settings(keys_file, registration_url=registration_url, triage_url=echo_url)
    with (
        serve(create_gateway(settings)) as url,
        httpx.Client(base_url=url, timeout=HTTP_TIMEOUT_SECONDS) as client,
    ):
        yield client, key


def signed_patient_token(payload: bytes, secret: str = TEST_SECRET) -> str:
    """A patient token over any payload with a valid signature: what a signing bug or leaked secret makes."""
    text = b64(payload)
    return f"pt1.{text}.{sign(secret, PATIENT_TOKEN_PURPOSE, text)}"


def test_any_bytes_in_the_patient_token_are_a_problem(app_gateway: tuple[httpx.Client, str]) -> None:
    client, key = app_gateway
    for value in header_values():
        headers = [(b"authorization", f"Bearer {key}".encode()), (b"x-patient-token", value)]
        response = client.get("/v1/patients/some-id", headers=headers)
        assert_client_error(response, value)
        assert response.json()["type"].endswith("/patient-token-invalid"), value


@pytest.mark.parametrize("payload", BAD_PAYLOADS)
def test_a_signed_patient_token_with_bad_claims_is_refused(
    app_gateway: tuple[httpx.Client, str], payload: bytes
) -> None:
    client, key = app_gateway
    headers = bearer(key) | {"x-patient-token": signed_patient_token(payload)}
    response = client.get("/v1/patients/some-id", headers=headers)
    assert_client_error(response, payload)
    assert response.json()["type"].endswith("/patient-token-invalid")
