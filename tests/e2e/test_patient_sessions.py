"""Opening a patient session takes proof the patient holds, through the real gateway and registration.

Lock tests use kiosks and apps of their own (created through the admin API), so the development
clients that other tests share are never locked.
"""

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.e2e.clients import (
    Gateway,
    assert_problem,
    emergency_visit,
    eventually,
    new_slip,
    ok,
    one_time_code,
    random_id_number,
    register_patient,
)

CBC = "250101015"  # 血细胞分析 (complete blood count)
REPORT = {
    "status": "final",
    "conclusion": "正常",
    "observations": [{"code": "WBC", "name": "白细胞", "value": "6"}],
    "verified_by": "李技师",  # verified (审核): a report reaches patients only so
}
SESSIONS = "/v1/patient-sessions"


def patient_with_visit(gateway: Gateway, *, report: bool = False) -> dict[str, Any]:
    """A registered patient (with phone) and a green-channel visit, its slip code as printed; a report."""
    patient = register_patient(gateway.his)
    visit = emergency_visit(gateway.his, patient["id"])
    found = {**patient, "visit": visit["id"], "slip_code": visit["slip_code"]}
    if report:
        order = ok(gateway.doctor.post("/v1/orders", json={"visit_id": visit["id"], "test_code": CBC}), 201)
        found["report"] = ok(gateway.lab.post(f"/v1/orders/{order['id']}/reports", json=REPORT), 201)["id"]
    return found


@pytest.fixture
def devices(gateway: Gateway) -> Iterator[dict[str, httpx.Client]]:
    """Two kiosks and an app of this test's own: `kiosk_a`, `kiosk_b`, `app`."""
    clients = {}
    for name, kind in (("kiosk_a", "kiosk"), ("kiosk_b", "kiosk"), ("app", "app")):
        scopes = ["results:read"] if kind == "kiosk" else ["registration:read", "results:read"]
        body = {"name": f"{kind}-{uuid.uuid4().hex[:8]}", "kind": kind, "scopes": scopes}
        key = ok(gateway.admin.post("/v1/admin/clients", json=body), 201)["key"]
        clients[name] = httpx.Client(
            base_url=gateway.admin.base_url, headers={"authorization": f"Bearer {key}"}, timeout=30
        )
    yield clients
    for client in clients.values():
        client.close()


def refused(response: httpx.Response) -> dict[str, Any]:
    """The one refusal, without its request-specific `instance`."""
    body = assert_problem(response, 403)
    assert body["type"].endswith("/patient-proof-refused"), body
    return {key: value for key, value in body.items() if key != "instance"}


def slip(patient: dict[str, Any], birth_date: str | None = None) -> dict[str, str]:
    return {"slip_code": patient["slip_code"], "birth_date": birth_date or patient["birth_date"]}


def outcomes(gateway: Gateway, **params: str) -> list[str]:
    """The audit trail's outcomes, oldest first (read by the administrator)."""
    trail = ok(gateway.admin.get("/v1/audit/session-attempts", params=params))
    return [attempt["outcome"] for attempt in reversed(trail)]


def test_a_kiosk_with_the_slip_and_birth_date_prints_that_patients_results_only(gateway: Gateway) -> None:
    p, q = patient_with_visit(gateway, report=True), patient_with_visit(gateway, report=True)
    session = ok(gateway.kiosk.post(SESSIONS, json=slip(p)), 201)
    assert session["patient_id"] == p["id"]
    headers = {"x-patient-token": session["token"]}
    reports = ok(gateway.kiosk.get(f"/v1/patients/{p['id']}/reports", headers=headers))
    assert [r["id"] for r in reports] == [p["report"]]
    # another patient's list is empty, as an id that does not exist (results audits the refusal)
    assert ok(gateway.kiosk.get(f"/v1/patients/{q['id']}/reports", headers=headers)) == []
    assert_problem(gateway.kiosk.get(f"/v1/reports/{q['report']}", headers=headers), 404)
    # the phone's last four digits are the other second factor
    by_phone = {"slip_code": p["slip_code"], "phone_last4": p["phone"][-4:]}
    assert ok(gateway.kiosk.post(SESSIONS, json=by_phone), 201)["patient_id"] == p["id"]


def test_a_bare_patient_id_opens_nothing(gateway: Gateway) -> None:
    p = patient_with_visit(gateway)
    for client in (gateway.kiosk, gateway.app):
        body = assert_problem(client.post(SESSIONS, json={"patient_id": p["id"]}), 422)
        assert p["id"] not in str(body)


def test_five_wrong_birth_dates_lock_patient_and_device_alike(
    gateway: Gateway, devices: dict[str, httpx.Client]
) -> None:
    kiosk_a, kiosk_b = devices["kiosk_a"], devices["kiosk_b"]
    p, q = patient_with_visit(gateway), patient_with_visit(gateway)
    unknown = refused(kiosk_b.post(SESSIONS, json={"slip_code": "AAAA2222", "birth_date": "1970-01-01"}))
    wrong = [refused(kiosk_a.post(SESSIONS, json=slip(p, "1900-01-01"))) for _ in range(5)]
    locked_right_factor = refused(kiosk_a.post(SESSIONS, json=slip(p)))
    assert wrong == [unknown] * 5 and locked_right_factor == unknown
    # P is locked on every device; kiosk A is locked for every patient
    assert refused(kiosk_b.post(SESSIONS, json=slip(p))) == unknown
    assert refused(kiosk_a.post(SESSIONS, json=slip(q))) == unknown
    # ... while kiosk B still serves Q
    assert ok(kiosk_b.post(SESSIONS, json=slip(q)), 201)["patient_id"] == q["id"]
    assert outcomes(gateway, patient_id=p["id"]) == ["wrong-factor"] * 5 + ["locked", "locked"]
    assert outcomes(gateway, patient_id=q["id"]) == ["locked", "ok"]


def test_a_device_locked_by_guessing_slips_does_not_lock_the_patients(
    gateway: Gateway, devices: dict[str, httpx.Client]
) -> None:
    kiosk_a, kiosk_b = devices["kiosk_a"], devices["kiosk_b"]
    p = patient_with_visit(gateway)
    guesses = [f"GUESS{n}AB" for n in range(2, 7)]
    answers = [
        refused(kiosk_a.post(SESSIONS, json={"slip_code": g, "birth_date": p["birth_date"]})) for g in guesses
    ]
    assert refused(kiosk_a.post(SESSIONS, json=slip(p))) == answers[0]
    assert ok(kiosk_b.post(SESSIONS, json=slip(p)), 201)["patient_id"] == p["id"]


def test_an_app_opens_a_session_with_the_texted_code_once(
    gateway: Gateway, devices: dict[str, httpx.Client]
) -> None:
    app = devices["app"]
    p = patient_with_visit(gateway)
    code = one_time_code(gateway, app, p["id_number"], p["id"])
    body = {"id_number": p["id_number"], "otp": code}
    session = ok(app.post(SESSIONS, json=body), 201)
    assert session["patient_id"] == p["id"]
    visit = ok(app.get(f"/v1/visits/{p['visit']}", headers={"x-patient-token": session["token"]}))
    assert visit["patient_id"] == p["id"]
    again = app.post(SESSIONS, json=body)  # the same code a second time
    assert refused(again) == refused(app.post(SESSIONS, json={"id_number": p["id_number"], "otp": "000000"}))
    # a spent code is as good as none: both refusals are "expired" in the audit
    assert outcomes(gateway, patient_id=p["id"]) == ["sent", "ok", "expired", "expired"]


def test_asking_for_a_code_answers_alike_for_anyone(
    gateway: Gateway, devices: dict[str, httpx.Client]
) -> None:
    app = devices["app"]
    p = patient_with_visit(gateway)
    answers = [
        app.post(f"{SESSIONS}/challenges", json={"id_number": number})
        for number in (p["id_number"], random_id_number())  # registered, and (almost surely) not
    ]
    assert [(a.status_code, a.json()) for a in answers] == [(202, answers[0].json())] * 2
    for answer in answers:
        assert p["id_number"] not in answer.text and p["phone"] not in answer.text
    assert outcomes(gateway, patient_id=p["id"]) == ["sent"]


def test_an_expired_slip_is_refused_like_any_other_wrong_proof(
    gateway: Gateway, devices: dict[str, httpx.Client]
) -> None:
    kiosk_b = devices["kiosk_b"]
    p = patient_with_visit(gateway)
    short = ok(gateway.his.post(f"/v1/visits/{p['visit']}/slip", json={"valid_seconds": 1}), 201)
    body = {"slip_code": short["slip_code"], "birth_date": p["birth_date"]}
    answer = eventually(
        lambda: r if (r := kiosk_b.post(SESSIONS, json=body)).status_code == 403 else None,
        what="the slip to expire",
    )
    unknown = kiosk_b.post(SESSIONS, json={"slip_code": "ZZZZ9999", "birth_date": p["birth_date"]})
    assert refused(answer) == refused(unknown)
    assert outcomes(gateway, patient_id=p["id"])[-1] == "expired"
    # the slip printed when the visit opened was replaced by the reissue, so it is refused too
    assert refused(kiosk_b.post(SESSIONS, json=slip(p))) == refused(unknown)
    fresh = {"slip_code": new_slip(gateway, p["id"]), "birth_date": p["birth_date"]}
    assert ok(kiosk_b.post(SESSIONS, json=fresh), 201)["patient_id"] == p["id"]


def test_no_code_identity_number_or_phone_in_the_audit_or_the_logs(
    gateway: Gateway, devices: dict[str, httpx.Client]
) -> None:
    p = patient_with_visit(gateway)
    ok(devices["kiosk_b"].post(SESSIONS, json=slip(p)), 201)
    refused(devices["kiosk_b"].post(SESSIONS, json={"slip_code": p["slip_code"], "phone_last4": "0000"}))
    code = one_time_code(gateway, devices["app"], p["id_number"], p["id"])
    ok(devices["app"].post(SESSIONS, json={"id_number": p["id_number"], "otp": code}), 201)
    trail = gateway.admin.get("/v1/audit/session-attempts", params={"patient_id": p["id"]})
    assert [a["outcome"] for a in reversed(ok(trail))] == ["ok", "wrong-factor", "sent", "ok"]
    logs = "\n".join(
        path.read_text(errors="replace") for path in (gateway.system.data_dir / "logs").glob("*")
    )
    for secret in (p["slip_code"], p["id_number"], p["phone"]):
        assert secret not in trail.text and secret not in logs
    assert_problem(gateway.kiosk.get("/v1/audit/session-attempts"), 403)


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b'["slip_code"]', "application/json"),
        (b'"AAAA2222"', "application/json"),
        (b"7", "application/json"),
        (b"null", "application/json"),
        (b'{"slip_code": "AAAA2222", "birth_date": "1970-01-01"}', "text/plain"),
    ],
)
def test_a_body_that_is_not_an_object_is_422_not_500(
    gateway: Gateway, content: bytes, content_type: str
) -> None:
    for client in (gateway.kiosk, gateway.app):
        answer = client.post(SESSIONS, content=content, headers={"content-type": content_type})
        assert_problem(answer, 422)


def test_one_code_sent_at_once_from_many_requests_opens_one_session(
    gateway: Gateway, devices: dict[str, httpx.Client]
) -> None:
    app = devices["app"]
    p = patient_with_visit(gateway)
    body = {"id_number": p["id_number"], "otp": one_time_code(gateway, app, p["id_number"], p["id"])}
    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(lambda _: app.post(SESSIONS, json=body), range(6)))
    assert sorted(a.status_code for a in answers) == [201] + [403] * 5
    assert outcomes(gateway, patient_id=p["id"]).count("ok") == 1
