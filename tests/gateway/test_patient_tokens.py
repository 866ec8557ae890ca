"""Patient tokens: an app or kiosk acting for patient P reaches P's records only, whatever the route kind."""

import json
import re
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from gateway.app import create_app as create_gateway
from gateway.errors import PatientTokenExpired, PatientTokenInvalid
from gateway.keys import hash_key
from gateway.patients import mint_patient_token, verify_patient_token
from gateway.routes import SCOPES, known_scopes
from gateway.sessions import PROOF_SCOPE
from kit.auth import mint_internal_token, verify_internal_token
from kit.testing import HTTP_TIMEOUT_SECONDS, TEST_SECRET, serve
from services.registration.router import PROOF_SCOPE as REGISTRATION_PROOF_SCOPE
from tests.e2e.clients import eventually
from tests.gateway.factories import bearer, gateway_settings, random_id_number
from tests.gateway.servers import EchoUpstream, _answer, _lifespan
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
    names = ("his", "app", "other-app", "kiosk", "other-kiosk", "phone", "guessing-phone")
    keys = {name: secrets.token_urlsafe(24) for name in names}
    kinds = {"his": ("his", sorted(SCOPES)), "app": ("app", READ_SCOPES), "other-app": ("app", READ_SCOPES)}
    kinds["kiosk"] = kinds["other-kiosk"] = ("kiosk", ["results:read"])
    kinds["phone"] = kinds["guessing-phone"] = ("phone", ["results:read"])
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
        with (
            serve(create_gateway(settings)) as url,
            httpx.Client(base_url=url, timeout=HTTP_TIMEOUT_SECONDS) as client,
        ):
            yield client


@pytest.fixture(scope="module")
def people(patient_gateway: httpx.Client, keys: tuple[dict[str, str], Path]) -> dict[str, str]:
    """Patients P and Q, each with a visit (and its slip code) and a phone, registered by the HIS."""
    his = bearer(keys[0]["his"])
    found: dict[str, str] = {}
    for who in ("p", "q"):
        id_number = random_id_number()
        patient = patient_gateway.post(
            "/v1/patients",
            json={"id_number": id_number, "name": "张三", "phone": f"139{secrets.randbelow(10**8):08d}"},
            headers=his,
        ).json()
        visit = patient_gateway.post(
            "/v1/visits",
            json={"patient_id": patient["id"], "kind": "outpatient", "department": "internal"},
            headers=his,
        ).json()
        found[who], found[f"{who}_visit"] = patient["id"], visit["id"]
        found[f"{who}_slip"], found[f"{who}_birth_date"] = visit["slip_code"], patient["birth_date"]
        found[f"{who}_id_number"] = id_number
    return found


def texted_codes(outbox: Path, patient_id: str) -> list[str]:
    """The one-time codes registration's development notifier wrote for the patient, oldest first."""
    if not outbox.exists():
        return []
    lines = [json.loads(line) for line in outbox.read_text(encoding="utf-8").splitlines()]
    return [re.findall(r"\d{6}", line["text"])[0] for line in lines if line["patient_id"] == patient_id]


@pytest.fixture(scope="module")
def outbox(registration_data_dir: Path) -> Path:
    return registration_data_dir / "sms-outbox.jsonl"


def start_session(
    client: httpx.Client, key: str, people: dict[str, str], who: str, *, outbox: Path | None = None
) -> httpx.Response:
    """Open a session as the patient would: with `outbox`, an app's identity number and texted code;
    without, a kiosk's slip code and birth date."""
    if outbox is None:
        body = {"slip_code": people[f"{who}_slip"], "birth_date": people[f"{who}_birth_date"]}
    else:
        sent_before = len(texted_codes(outbox, people[who]))
        challenge = {"id_number": people[f"{who}_id_number"]}
        asked = client.post("/v1/patient-sessions/challenges", json=challenge, headers=bearer(key))
        assert asked.status_code == 202, asked.text
        codes = eventually(  # the text goes out once the code is committed, after the answer
            lambda: texted_codes(outbox, people[who])[sent_before:], what="the texted code"
        )
        body = {"id_number": people[f"{who}_id_number"], "otp": codes[-1]}
    return client.post("/v1/patient-sessions", json=body, headers=bearer(key))


def acting(keys: tuple[dict[str, str], Path], client_name: str, token: str) -> dict[str, str]:
    return bearer(keys[0][client_name]) | {"x-patient-token": token}


@pytest.fixture(scope="module")
def app_for_p(
    patient_gateway: httpx.Client, keys: tuple[dict[str, str], Path], people: dict[str, str], outbox: Path
) -> dict[str, str]:
    response = start_session(patient_gateway, keys[0]["app"], people, "p", outbox=outbox)
    assert response.status_code == 201, response.text
    return acting(keys, "app", response.json()["token"])


def test_a_session_names_the_patient_and_when_it_ends(
    patient_gateway: httpx.Client, keys: tuple[dict[str, str], Path], people: dict[str, str]
) -> None:
    before = datetime.now(UTC)
    response = start_session(patient_gateway, keys[0]["kiosk"], people, "p")
    after = datetime.now(UTC)
    assert response.status_code == 201, response.text
    session = response.json()
    assert session["patient_id"] == people["p"] and session["token"].startswith("pt1.")
    # valid for GATEWAY_PATIENT_TOKEN_SECONDS (900) from when it was issued (whole seconds)
    issued = datetime.fromisoformat(session["expires_at"]) - timedelta(seconds=900)
    assert before - timedelta(seconds=1) <= issued <= after + timedelta(seconds=1)


def test_only_apps_and_kiosks_start_sessions_and_only_with_proof(
    patient_gateway: httpx.Client, keys: tuple[dict[str, str], Path], people: dict[str, str]
) -> None:
    body = assert_problem(start_session(patient_gateway, keys[0]["his"], people, "p"), 403)
    assert body["type"].endswith("/patient-session-forbidden")
    assert_problem(start_session(patient_gateway, "not-a-key", people, "p"), 401)
    app = bearer(keys[0]["app"])
    for bare in ({}, {"patient_id": people["p"]}, {"slip_code": people["p_slip"], "patient_id": people["p"]}):
        assert_problem(patient_gateway.post("/v1/patient-sessions", json=bare, headers=app), 422)
    # a kiosk proves with a slip, an app with a texted code: not the other way round
    slip = {"slip_code": people["p_slip"], "birth_date": people["p_birth_date"]}
    body = assert_problem(patient_gateway.post("/v1/patient-sessions", json=slip, headers=app), 422)
    assert body["type"].endswith("/proof-not-for-client-kind")
    challenge = {"id_number": people["p_id_number"]}
    kiosk = bearer(keys[0]["kiosk"])
    response = patient_gateway.post("/v1/patient-sessions/challenges", json=challenge, headers=kiosk)
    assert_problem(response, 403)


def test_a_wrong_proof_is_refused_without_saying_why(
    patient_gateway: httpx.Client, keys: tuple[dict[str, str], Path], people: dict[str, str]
) -> None:
    kiosk = bearer(keys[0]["other-kiosk"])
    wrong_date = {"slip_code": people["q_slip"], "birth_date": "1900-01-01"}
    no_such_slip = {"slip_code": "AAAAAAAA", "birth_date": people["q_birth_date"]}
    answers = [
        assert_problem(patient_gateway.post("/v1/patient-sessions", json=body, headers=kiosk), 403)
        for body in (wrong_date, no_such_slip)
    ]
    assert answers[0]["type"].endswith("/patient-proof-refused")
    for answer in answers:
        assert people["q_slip"] not in json.dumps(answer) and people["q"] not in json.dumps(answer)
        answer.pop("instance", None)
    assert answers[0] == answers[1]


def test_the_proof_check_is_the_gateways_alone(
    patient_gateway: httpx.Client, keys: tuple[dict[str, str], Path]
) -> None:
    """Registration's proof routes are not in the route table: no client reaches them through the gateway."""
    his = bearer(keys[0]["his"])
    for path in ("/v1/session-proofs", "/v1/session-challenges"):
        assert_problem(patient_gateway.post(path, json={}, headers=his), 404)
    # the scope registration wants for them is one no client key may be given
    assert PROOF_SCOPE == REGISTRATION_PROOF_SCOPE and PROOF_SCOPE not in known_scopes()


def test_an_app_without_a_valid_patient_token_is_refused(
    patient_gateway: httpx.Client, keys: tuple[dict[str, str], Path], people: dict[str, str]
) -> None:
    path = f"/v1/patients/{people['p']}"
    body = assert_problem(patient_gateway.get(path, headers=bearer(keys[0]["app"])), 403)
    assert body["type"].endswith("/patient-token-missing")
    other_session = start_session(patient_gateway, keys[0]["other-kiosk"], people, "p").json()
    borrowed = acting(keys, "kiosk", other_session["token"])  # another client's token
    assert assert_problem(patient_gateway.get(path, headers=borrowed), 403)["type"].endswith(
        "/patient-token-invalid"
    )
    expired, _ = mint_patient_token(TEST_SECRET, client="app", patient=people["p"], lifetime=-1)
    body = assert_problem(patient_gateway.get(path, headers=acting(keys, "app", expired)), 403)
    assert body["type"].endswith("/patient-token-expired")


# (Lists of reports are results' to refuse, so that its audit records it: see
# tests/e2e/test_results_channels_matrix.py.)
@pytest.mark.parametrize("template", ["/v1/patients/{}", "/v1/patients/{}/visits"])
def test_patient_routes_answer_for_the_patient_only(
    patient_gateway: httpx.Client, app_for_p: dict[str, str], people: dict[str, str], template: str
) -> None:
    assert patient_gateway.get(template.format(people["p"]), headers=app_for_p).status_code == 200
    assert_problem(patient_gateway.get(template.format(people["q"]), headers=app_for_p), 404)


@pytest.mark.parametrize("template", ["/v1/visits/{}", "/v1/visits/{}/tickets", "/v1/visits/{}/orders"])
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
    token = start_session(patient_gateway, keys[0]["kiosk"], people, "p").json()["token"]
    kiosk = acting(keys, "kiosk", token)
    assert patient_gateway.get(f"/v1/patients/{people['p']}/reports", headers=kiosk).status_code == 200
    body: dict[str, Any] = assert_problem(
        patient_gateway.get(f"/v1/patients/{people['p']}", headers=kiosk), 403
    )
    assert body["scope"] == "registration:read"


def test_route_limits_still_apply_to_sessions_and_challenges(
    keys: tuple[dict[str, str], Path], registration_url: str, people: dict[str, str]
) -> None:
    limits = {"POST /patient-sessions": 0.01, "POST /patient-sessions/challenges": 0.01}  # one, then 429
    settings = gateway_settings(keys[1], registration_url=registration_url, route_rate_limits=limits)
    with (
        serve(create_gateway(settings)) as url,
        httpx.Client(base_url=url, timeout=HTTP_TIMEOUT_SECONDS) as client,
    ):
        kiosk = bearer(keys[0]["kiosk"])
        slip = {"slip_code": people["p_slip"], "birth_date": people["p_birth_date"]}
        assert client.post("/v1/patient-sessions", json=slip, headers=kiosk).status_code == 201
        assert_problem(client.post("/v1/patient-sessions", json=slip, headers=kiosk), 429)
        app = bearer(keys[0]["app"])
        challenge = {"id_number": people["q_id_number"]}
        assert client.post("/v1/patient-sessions/challenges", json=challenge, headers=app).status_code == 202
        assert_problem(client.post("/v1/patient-sessions/challenges", json=challenge, headers=app), 429)


# --- the phone line (电话查询) and results' printing routes ------------------------------------------


def test_the_phone_line_proves_like_an_app_and_is_bound_to_its_patient(
    patient_gateway: httpx.Client, keys: tuple[dict[str, str], Path], people: dict[str, str], outbox: Path
) -> None:
    phone = bearer(keys[0]["phone"])
    slip = {"slip_code": people["q_slip"], "birth_date": people["q_birth_date"]}
    body = assert_problem(patient_gateway.post("/v1/patient-sessions", json=slip, headers=phone), 422)
    assert body["type"].endswith("/proof-not-for-client-kind")
    response = start_session(patient_gateway, keys[0]["phone"], people, "q", outbox=outbox)
    assert response.status_code == 201, response.text
    acting_for_q = acting(keys, "phone", response.json()["token"])
    assert (
        patient_gateway.get(f"/v1/patients/{people['q']}/released-reports", headers=acting_for_q).json() == []
    )
    # a patient-bound client: no token, no results; and staff-only routes stay closed to it
    body = assert_problem(
        patient_gateway.get(f"/v1/patients/{people['q']}/released-reports", headers=phone), 403
    )
    assert body["type"].endswith("/patient-token-missing")
    assert_problem(patient_gateway.get("/v1/orders", headers=acting_for_q), 403)


@pytest.mark.parametrize(
    ("method", "template"),
    [
        ("GET", "/v1/patients/{patient}/released-reports"),
        ("GET", "/v1/reports/{any}/pdf"),
        ("POST", "/v1/reports/{any}/prints"),
        ("POST", "/v1/visits/{visit}/prints"),
        ("GET", "/v1/prints/{any}/pdf"),
    ],
)
def test_an_expired_session_reads_and_prints_nothing(
    patient_gateway: httpx.Client,
    keys: tuple[dict[str, str], Path],
    people: dict[str, str],
    method: str,
    template: str,
) -> None:
    expired, _ = mint_patient_token(TEST_SECRET, client="kiosk", patient=people["p"], lifetime=-1)
    path = template.format(patient=people["p"], visit=people["p_visit"], any="r-of-" + people["p"])
    response = patient_gateway.request(method, path, headers=acting(keys, "kiosk", expired))
    assert assert_problem(response, 403)["type"].endswith("/patient-token-expired")


def test_five_wrong_codes_on_the_phone_line_lock_it_like_an_app(
    patient_gateway: httpx.Client, keys: tuple[dict[str, str], Path], outbox: Path
) -> None:
    """A caller guessing codes on the phone line is locked out; the right code then opens nothing."""
    his, phone = bearer(keys[0]["his"]), bearer(keys[0]["guessing-phone"])
    id_number = random_id_number()
    body = {"id_number": id_number, "name": "王五", "phone": f"139{secrets.randbelow(10**8):08d}"}
    patient = patient_gateway.post("/v1/patients", json=body, headers=his).json()
    asked = patient_gateway.post(
        "/v1/patient-sessions/challenges", json={"id_number": id_number}, headers=phone
    )
    assert asked.status_code == 202
    code = eventually(lambda: texted_codes(outbox, patient["id"]), what="the texted code")[-1]
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    for _ in range(5):
        refused = patient_gateway.post(
            "/v1/patient-sessions", json={"id_number": id_number, "otp": wrong}, headers=phone
        )
        assert assert_problem(refused, 403)["type"].endswith("/patient-proof-refused")
    right = patient_gateway.post(
        "/v1/patient-sessions", json={"id_number": id_number, "otp": code}, headers=phone
    )
    assert assert_problem(right, 403)["type"].endswith("/patient-proof-refused")
