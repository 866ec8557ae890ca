"""Patient tokens: an app or kiosk acting for patient P reaches P's records only, whatever the route kind."""

import json
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from gateway.app import create_app as create_gateway
from gateway.keys import hash_key
from gateway.patients import (
    PatientTokenExpired,
    PatientTokenInvalid,
    mint_patient_token,
    verify_patient_token,
)
from gateway.routes import SCOPES
from kit.auth import mint_internal_token, verify_internal_token
from kit.testing import TEST_SECRET
from tests.gateway.factories import bearer, gateway_settings, random_id_number
from tests.gateway.servers import EchoUpstream, _answer, _lifespan, serve
from tests.gateway.test_proxy import assert_problem

READ_SCOPES = ["registration:read", "triage:read", "results:read", "billing:read"]


# --- the token itself -----------------------------------------------------------------------------


def test_a_token_names_its_patient_for_its_own_client_only() -> None:
    token, expires = mint_patient_token(TEST_SECRET, client="app-a", patient="p-1", lifetime=60, now=1000)
    assert expires == 1060
    assert verify_patient_token(TEST_SECRET, token, client="app-a", now=1059) == "p-1"
    with pytest.raises(PatientTokenInvalid):
        verify_patient_token(TEST_SECRET, token, client="app-b", now=1001)
    with pytest.raises(PatientTokenExpired):
        verify_patient_token(TEST_SECRET, token, client="app-a", now=1060)


def test_forged_or_foreign_tokens_are_refused() -> None:
    token, _ = mint_patient_token(TEST_SECRET, client="app-a", patient="p-1", lifetime=60)
    prefix, _payload, signature = token.split(".")
    other_payload, _ = mint_patient_token(TEST_SECRET, client="app-a", patient="p-2", lifetime=60)
    forged = [
        f"{prefix}.{other_payload.split('.')[1]}.{signature}",  # another patient under this signature
        mint_patient_token("another-secret", client="app-a", patient="p-1", lifetime=60)[0],
        mint_internal_token(
            TEST_SECRET, "app-a", set(), audience="triage", patient="p-1"
        ),  # an internal token is no patient token
        "pt1.garbage",
        "",
    ]
    for candidate in forged:
        with pytest.raises(PatientTokenInvalid):
            verify_patient_token(TEST_SECRET, candidate, client="app-a")


# --- through the gateway --------------------------------------------------------------------------


class OwnedRecords:
    """A stand-in results service: `/reports/<id>` and `/orders/<id>` belong to the patient after `of-`."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        path: str = scope["path"]
        if path == "/readyz":
            await _answer(send, 200, {"status": "ready"})
        elif path.startswith(("/reports/", "/orders/")) and "of-" in path:
            await _answer(send, 200, {"id": path.rsplit("/", 1)[1], "patient_id": path.split("of-", 1)[1]})
        elif path.startswith("/reports/"):
            await _answer(send, 200, {"id": "r-without-patient"})
        else:
            await _answer(send, 200, [])


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, str], Path]:
    keys = {name: secrets.token_urlsafe(24) for name in ("his", "app", "other-app", "kiosk")}
    kinds = {"his": ("his", sorted(SCOPES)), "app": ("app", READ_SCOPES), "other-app": ("app", READ_SCOPES)}
    kinds["kiosk"] = ("kiosk", ["results:read"])
    entries = [
        {"client": name, "kind": kind, "sha256": hash_key(keys[name]), "scopes": scopes}
        for name, (kind, scopes) in kinds.items()
    ]
    path = tmp_path_factory.mktemp("patient-keys") / "keys.json"
    path.write_text(json.dumps({"keys": entries}))
    return keys, path


@pytest.fixture(scope="module")
def patient_gateway(
    keys: tuple[dict[str, str], Path], registration_url: str, echo_url: str
) -> Iterator[httpx.Client]:
    with serve(OwnedRecords()) as results_url:
        settings = gateway_settings(
            keys[1], registration_url=registration_url, triage_url=echo_url, results_url=results_url
        )
        with serve(create_gateway(settings)) as url, httpx.Client(base_url=url, timeout=5) as client:
            yield client


@pytest.fixture(scope="module")
def people(patient_gateway: httpx.Client, keys: tuple[dict[str, str], Path]) -> dict[str, str]:
    """Patients P and Q, each with a visit, registered by the HIS."""
    his = bearer(keys[0]["his"])
    found: dict[str, str] = {}
    for who in ("p", "q"):
        patient = patient_gateway.post(
            "/v1/patients", json={"id_number": random_id_number(), "name": "张三"}, headers=his
        ).json()
        visit = patient_gateway.post(
            "/v1/visits",
            json={"patient_id": patient["id"], "kind": "outpatient", "department": "internal"},
            headers=his,
        ).json()
        found[who], found[f"{who}_visit"] = patient["id"], visit["id"]
    return found


def start_session(client: httpx.Client, key: str, patient_id: str) -> httpx.Response:
    return client.post("/v1/patient-sessions", json={"patient_id": patient_id}, headers=bearer(key))


def acting(keys: tuple[dict[str, str], Path], client_name: str, token: str) -> dict[str, str]:
    return bearer(keys[0][client_name]) | {"x-patient-token": token}


@pytest.fixture(scope="module")
def app_for_p(
    patient_gateway: httpx.Client, keys: tuple[dict[str, str], Path], people: dict[str, str]
) -> dict[str, str]:
    response = start_session(patient_gateway, keys[0]["app"], people["p"])
    assert response.status_code == 201, response.text
    return acting(keys, "app", response.json()["token"])


def test_a_session_names_the_patient_and_when_it_ends(
    patient_gateway: httpx.Client, keys: tuple[dict[str, str], Path], people: dict[str, str]
) -> None:
    before = datetime.now(UTC)
    response = start_session(patient_gateway, keys[0]["kiosk"], people["p"])
    after = datetime.now(UTC)
    assert response.status_code == 201, response.text
    session = response.json()
    assert session["patient_id"] == people["p"] and session["token"].startswith("pt1.")
    # valid for GATEWAY_PATIENT_TOKEN_SECONDS (900) from when it was issued (whole seconds)
    issued = datetime.fromisoformat(session["expires_at"]) - timedelta(seconds=900)
    assert before - timedelta(seconds=1) <= issued <= after + timedelta(seconds=1)


def test_only_apps_and_kiosks_start_sessions_and_only_for_real_patients(
    patient_gateway: httpx.Client, keys: tuple[dict[str, str], Path], people: dict[str, str]
) -> None:
    body = assert_problem(start_session(patient_gateway, keys[0]["his"], people["p"]), 403)
    assert body["type"].endswith("/patient-session-forbidden")
    assert_problem(start_session(patient_gateway, keys[0]["app"], "no-such-patient"), 404)
    assert_problem(start_session(patient_gateway, "not-a-key", people["p"]), 401)
    response = patient_gateway.post("/v1/patient-sessions", json={}, headers=bearer(keys[0]["app"]))
    assert_problem(response, 422)


def test_an_app_without_a_valid_patient_token_is_refused(
    patient_gateway: httpx.Client, keys: tuple[dict[str, str], Path], people: dict[str, str]
) -> None:
    path = f"/v1/patients/{people['p']}"
    body = assert_problem(patient_gateway.get(path, headers=bearer(keys[0]["app"])), 403)
    assert body["type"].endswith("/patient-token-missing")
    other_session = start_session(patient_gateway, keys[0]["other-app"], people["p"]).json()
    borrowed = acting(keys, "app", other_session["token"])  # another client's token
    assert assert_problem(patient_gateway.get(path, headers=borrowed), 403)["type"].endswith(
        "/patient-token-invalid"
    )
    expired, _ = mint_patient_token(TEST_SECRET, client="app", patient=people["p"], lifetime=-1)
    body = assert_problem(patient_gateway.get(path, headers=acting(keys, "app", expired)), 403)
    assert body["type"].endswith("/patient-token-expired")


@pytest.mark.parametrize("template", ["/v1/patients/{}", "/v1/patients/{}/visits", "/v1/patients/{}/reports"])
def test_patient_routes_answer_for_the_patient_only(
    patient_gateway: httpx.Client, app_for_p: dict[str, str], people: dict[str, str], template: str
) -> None:
    assert patient_gateway.get(template.format(people["p"]), headers=app_for_p).status_code == 200
    assert_problem(patient_gateway.get(template.format(people["q"]), headers=app_for_p), 404)


@pytest.mark.parametrize("template", ["/v1/visits/{}", "/v1/visits/{}/tickets", "/v1/visits/{}/reports"])
def test_visit_routes_are_checked_against_registration(
    patient_gateway: httpx.Client, app_for_p: dict[str, str], people: dict[str, str], template: str
) -> None:
    assert patient_gateway.get(template.format(people["p_visit"]), headers=app_for_p).status_code == 200
    assert_problem(patient_gateway.get(template.format(people["q_visit"]), headers=app_for_p), 404)
    assert_problem(patient_gateway.get(template.format("no-such-visit"), headers=app_for_p), 404)


def test_forwarded_calls_carry_the_patient(
    patient_gateway: httpx.Client, app_for_p: dict[str, str], people: dict[str, str], echo: EchoUpstream
) -> None:
    echo.seen.clear()
    assert (
        patient_gateway.get(f"/v1/visits/{people['p_visit']}/tickets", headers=app_for_p).status_code == 200
    )
    (seen,) = echo.seen
    caller = verify_internal_token(TEST_SECRET, seen.headers["authorization"].split()[1], audience="triage")
    assert (caller.subject, caller.patient) == ("app", people["p"])


@pytest.mark.parametrize("kind", ["reports", "orders"])
def test_response_bound_routes_hide_other_patients_records(
    patient_gateway: httpx.Client, app_for_p: dict[str, str], people: dict[str, str], kind: str
) -> None:
    own = patient_gateway.get(f"/v1/{kind}/r-of-{people['p']}", headers=app_for_p)
    assert own.status_code == 200 and own.json()["patient_id"] == people["p"]
    body = assert_problem(patient_gateway.get(f"/v1/{kind}/r-of-{people['q']}", headers=app_for_p), 404)
    assert people["q"] not in json.dumps(body)
    if kind == "reports":  # a record that names no patient cannot be shown to a patient-bound client
        assert_problem(patient_gateway.get("/v1/reports/anonymous", headers=app_for_p), 404)


def test_public_routes_pass_and_unbindable_ones_are_403(
    patient_gateway: httpx.Client, app_for_p: dict[str, str]
) -> None:
    assert patient_gateway.get("/v1/queues/internal/stats", headers=app_for_p).status_code == 200
    assert patient_gateway.get("/v1/tests", headers=app_for_p).status_code == 200
    for path in ("/v1/queues/internal", "/v1/orders"):
        body = assert_problem(patient_gateway.get(path, headers=app_for_p), 403)
        assert body["type"].endswith("/patient-route-forbidden")


def test_the_scopes_still_apply_to_a_patient_bound_client(
    patient_gateway: httpx.Client, keys: tuple[dict[str, str], Path], people: dict[str, str]
) -> None:
    token = start_session(patient_gateway, keys[0]["kiosk"], people["p"]).json()["token"]
    kiosk = acting(keys, "kiosk", token)
    assert patient_gateway.get(f"/v1/patients/{people['p']}/reports", headers=kiosk).status_code == 200
    body: dict[str, Any] = assert_problem(
        patient_gateway.get(f"/v1/patients/{people['p']}", headers=kiosk), 403
    )
    assert body["scope"] == "registration:read"
