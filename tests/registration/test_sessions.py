"""Patient-session proofs: slip codes, one-time codes, the lockout per patient and per device, the audit."""

import json
import re
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from kit.clock import utcnow
from kit.testing import internal_headers
from services.registration import proofs
from services.registration.models import SessionLock
from tests.registration.factories import VALID_ID_NUMBERS, create_patient, create_visit


def gateway_headers() -> dict[str, str]:
    """Minted per use: a token minted at import would expire during a long run (5 minutes)."""
    return internal_headers("service:gateway", {"registration:patient-proof"}, audience="registration")


BIRTH_DATE = "1949-12-31"  # of VALID_ID_NUMBERS[0]
PHONE = "13800138000"


def check(client: TestClient, device: str, **proof: Any) -> dict[str, Any]:
    method = "slip" if "slip_code" in proof else "otp"
    body = {"client": device, "proof": {"method": method, **proof}}
    response = client.post("/session-proofs", json=body, headers=gateway_headers())
    assert response.status_code == 200, response.text
    verdict: dict[str, Any] = response.json()
    return verdict


def attempts(http: TestClient, **params: str) -> list[dict[str, Any]]:
    response = http.get("/audit/session-attempts", params=params)
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()
    return found


def sent_codes(client: TestClient, patient_id: str) -> list[str]:
    """The codes the development notifier wrote to its outbox file for this patient."""
    outbox = client.app.state.settings.resolved_notifier_file  # type: ignore[attr-defined]
    if not outbox.exists():
        return []
    lines = [json.loads(line) for line in outbox.read_text(encoding="utf-8").splitlines()]
    return [re.findall(r"\d{6}", m["text"])[0] for m in lines if m["patient_id"] == patient_id]


@pytest.fixture
def visit(client: TestClient) -> dict[str, Any]:
    patient = create_patient(client, id_number=VALID_ID_NUMBERS[0], phone=PHONE)
    return create_visit(client, patient["id"])


def test_a_visit_opens_with_a_random_slip_code_shown_once(client: TestClient, visit: dict[str, Any]) -> None:
    code = visit["slip_code"]
    assert len(code) == 8 and set(code) <= set(proofs.SLIP_ALPHABET)
    assert "slip_code" not in client.get(f"/visits/{visit['id']}").json()
    other = create_visit(client, visit["patient_id"])
    assert other["slip_code"] != code
    codes = {proofs.new_slip_code() for _ in range(1000)}
    assert len(codes) == 1000  # random, never a sequence


def test_slip_code_with_birth_date_or_phone_digits_names_the_patient(
    client: TestClient, visit: dict[str, Any]
) -> None:
    code, patient = visit["slip_code"], visit["patient_id"]
    assert check(client, "kiosk-1", slip_code=code, birth_date=BIRTH_DATE) == {
        "verified": True,
        "patient_id": patient,
    }
    spaced = f"{code[:4].lower()}-{code[4:]}"  # as typed from the slip
    assert check(client, "kiosk-1", slip_code=spaced, phone_last4="8000")["patient_id"] == patient
    refused = {"verified": False, "patient_id": None}
    assert check(client, "kiosk-1", slip_code=code, birth_date="1949-12-30") == refused
    assert check(client, "kiosk-1", slip_code=code, phone_last4="0000") == refused
    assert check(client, "kiosk-1", slip_code="ABCDEFGH", birth_date=BIRTH_DATE) == refused


def test_five_wrong_factors_lock_the_patient_even_against_the_right_one(
    client: TestClient, visit: dict[str, Any]
) -> None:
    code, patient = visit["slip_code"], visit["patient_id"]
    for device in ("k1", "k2", "k3", "k4", "k5"):  # one wrong try from each of five devices
        assert not check(client, device, slip_code=code, birth_date="2000-01-01")["verified"]
    assert not check(client, "k6", slip_code=code, birth_date=BIRTH_DATE)["verified"]
    outcomes = [a["outcome"] for a in reversed(attempts(client, patient_id=patient))]
    assert outcomes == ["wrong-factor"] * 5 + ["locked"]
    # another patient on the same device is not affected
    other = create_visit(client, create_patient(client, id_number=VALID_ID_NUMBERS[1])["id"])
    assert check(client, "k6", slip_code=other["slip_code"], birth_date="1880-01-01")["verified"]


def test_five_wrong_tries_lock_the_device_not_the_patients_it_tried(
    client: TestClient, visit: dict[str, Any]
) -> None:
    for guess in ("AAAAAAAA", "BBBBBBBB", "CCCCCCCC", "DDDDDDDD", "EEEEEEEE"):
        assert not check(client, "guesser", slip_code=guess, birth_date=BIRTH_DATE)["verified"]
    right = {"slip_code": visit["slip_code"], "birth_date": BIRTH_DATE}
    assert not check(client, "guesser", **right)["verified"]
    assert check(client, "honest-kiosk", **right)["verified"]
    outcomes = [a["outcome"] for a in reversed(attempts(client, client="guesser"))]
    assert outcomes == ["unknown"] * 5 + ["locked"]


def test_a_good_proof_does_not_clear_the_devices_count() -> None:
    now = utcnow()
    lock = SessionLock(key="client:k")
    for _ in range(4):
        proofs.count_failure(lock, now, max_failures=5, lock_seconds=60)
    assert not proofs.is_locked(lock, now)
    proofs.count_failure(lock, now, max_failures=5, lock_seconds=60)
    assert proofs.is_locked(lock, now + timedelta(seconds=59))
    assert not proofs.is_locked(lock, now + timedelta(seconds=61))  # the lock ends by itself
    # failures older than the lock period are forgotten
    proofs.count_failure(lock, now, max_failures=5, lock_seconds=60)
    proofs.count_failure(lock, now + timedelta(seconds=120), max_failures=5, lock_seconds=60)
    assert lock.failures == 1


def test_an_expired_or_reissued_slip_is_refused(client: TestClient, visit: dict[str, Any]) -> None:
    right = {"slip_code": visit["slip_code"], "birth_date": BIRTH_DATE}
    response = client.post(f"/visits/{visit['id']}/slip", json={"valid_seconds": 60})
    assert response.status_code == 201, response.text
    reissued = response.json()
    assert reissued["slip_code"] != visit["slip_code"]
    assert not check(client, "k", **right)["verified"]  # the lost slip no longer works
    assert check(client, "k", slip_code=reissued["slip_code"], birth_date=BIRTH_DATE)["verified"]
    database = client.app.state.database  # type: ignore[attr-defined]
    settings = client.app.state.settings  # type: ignore[attr-defined]
    with database.session() as session:
        later = utcnow() + timedelta(seconds=61)
        found = proofs.check_slip(
            session,
            client="k",
            slip_code=reissued["slip_code"],
            birth_date=None,
            phone_last4="8000",
            settings=settings,
            now=later,
        )
    assert found is None
    assert [a["outcome"] for a in attempts(client, client="k")][:1] == ["expired"]
    assert client.post("/visits/nope/slip").status_code == 404


def test_an_app_proves_with_the_texted_code_once(client: TestClient, visit: dict[str, Any]) -> None:
    patient = visit["patient_id"]
    response = client.post(
        "/session-challenges",
        json={"client": "app-1", "id_number": VALID_ID_NUMBERS[0]},
        headers=gateway_headers(),
    )
    assert response.status_code == 202
    (code,) = sent_codes(client, patient)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    assert not check(client, "app-1", id_number=VALID_ID_NUMBERS[0], otp=wrong)["verified"]
    assert check(client, "app-1", id_number=VALID_ID_NUMBERS[0].lower(), otp=code)["patient_id"] == patient
    assert not check(client, "app-1", id_number=VALID_ID_NUMBERS[0], otp=code)["verified"]  # spent
    outbox = client.app.state.settings.resolved_notifier_file  # type: ignore[attr-defined]
    assert PHONE not in outbox.read_text(encoding="utf-8")  # the dev outbox masks the phone


def test_a_new_code_replaces_the_old_one(client: TestClient, visit: dict[str, Any]) -> None:
    body = {"client": "app-1", "id_number": VALID_ID_NUMBERS[0]}
    for _ in range(2):
        assert client.post("/session-challenges", json=body, headers=gateway_headers()).status_code == 202
    first, second = sent_codes(client, visit["patient_id"])
    if first != second:
        assert not check(client, "app-1", id_number=VALID_ID_NUMBERS[0], otp=first)["verified"]
    assert check(client, "app-1", id_number=VALID_ID_NUMBERS[0], otp=second)["verified"]


def test_challenges_answer_alike_and_send_nothing_without_a_patient_or_phone(client: TestClient) -> None:
    no_phone = create_patient(client, id_number=VALID_ID_NUMBERS[2])
    answers = [
        client.post(
            "/session-challenges", json={"client": "app-1", "id_number": number}, headers=gateway_headers()
        )
        for number in (VALID_ID_NUMBERS[3], VALID_ID_NUMBERS[2], "not-a-number")
    ]
    assert {(a.status_code, a.text) for a in answers} == {(202, '{"status":"accepted"}')}
    assert sent_codes(client, no_phone["id"]) == []
    outcomes = [a["outcome"] for a in attempts(client, client="app-1")]
    assert outcomes == ["unknown", "no-phone", "unknown"]


def test_the_audit_never_holds_a_code_or_identity_number(client: TestClient, visit: dict[str, Any]) -> None:
    check(client, "k", slip_code=visit["slip_code"], birth_date=BIRTH_DATE)
    check(client, "app-1", id_number=VALID_ID_NUMBERS[0], otp="123456")
    trail = json.dumps(attempts(client))
    assert visit["slip_code"] not in trail and VALID_ID_NUMBERS[0] not in trail and "123456" not in trail
    assert len({a["presented"] for a in attempts(client)}) == 2


def test_only_the_gateway_checks_proofs(client: TestClient, visit: dict[str, Any]) -> None:
    body = {
        "client": "k",
        "proof": {"method": "slip", "slip_code": visit["slip_code"], "birth_date": BIRTH_DATE},
    }
    assert client.post("/session-proofs", json=body).status_code == 403  # a client's forwarded call
    as_service = internal_headers("service:billing", audience="registration")
    assert client.post("/session-proofs", json=body, headers=as_service).status_code == 403
    challenge = {"client": "k", "id_number": VALID_ID_NUMBERS[0]}
    assert client.post("/session-challenges", json=challenge).status_code == 403
    assert attempts(client) == []


@pytest.mark.parametrize(
    "proof",
    [
        {"method": "slip", "slip_code": "ABCDEFGH"},  # no second factor
        {"method": "slip", "slip_code": "ABCDEFGH", "birth_date": BIRTH_DATE, "phone_last4": "8000"},
        {"method": "otp", "id_number": VALID_ID_NUMBERS[0], "otp": "12345"},
        {"method": "otp", "patient_id": "p-1"},
    ],
)
def test_malformed_proofs_are_422(client: TestClient, proof: dict[str, Any]) -> None:
    response = client.post("/session-proofs", json={"client": "k", "proof": proof}, headers=gateway_headers())
    assert response.status_code == 422


def test_birth_date_is_taken_at_registration_when_no_identity_number_gives_it(client: TestClient) -> None:
    body = {"unidentified": True, "alias": "男，约40岁", "birth_date": "1986-05-01"}
    assert client.post("/patients", json=body).json()["birth_date"] == "1986-05-01"
    mismatch = {"id_number": VALID_ID_NUMBERS[0], "name": "张三", "birth_date": "1950-01-01"}
    response = client.post("/patients", json=mismatch)
    assert response.status_code == 422 and response.json()["type"].endswith("/birth-date-mismatch")
