"""HTTP clients for end-to-end tests: one per development API key, all pointed at the gateway."""

import json
import random
import re
import uuid
from http.cookiejar import CookieJar, DefaultCookiePolicy
from types import TracebackType
from typing import Any, TypeVar

import httpx

from kit.testing import eventually
from patientflow.supervisor import System

T = TypeVar("T")
WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def random_id_number() -> str:
    """A valid, random 18-digit resident identity number (GB 11643 check character computed)."""
    body = f"110105{random.randint(1950, 2005)}{random.randint(1, 12):02d}{random.randint(1, 28):02d}"
    body += f"{random.randint(0, 999):03d}"
    return body + "10X98765432"[sum(int(d) * w for d, w in zip(body, WEIGHTS, strict=True)) % 11]


def unique_department() -> str:
    """A department of one's own, so tests sharing the system never call each other's patients."""
    return f"dept-{uuid.uuid4().hex[:8]}"


def no_cookies() -> CookieJar:
    """A cookie jar that keeps nothing it is sent."""
    return CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))


class Gateway:
    """`gateway.his`, `gateway.doctor`, ...: an httpx client per development client, plus `anonymous`."""

    def __init__(self, system: System) -> None:
        self.system = system
        base = system.url("gateway")
        timeout = httpx.Timeout(30.0)
        # API clients keep no cookies: a board session one test opened must not change what later
        # tests see (the board screen's own tests hold their cookie explicitly).
        self.clients = {
            name.removesuffix("-dev"): httpx.Client(
                base_url=base,
                headers={"authorization": f"Bearer {key}"},
                timeout=timeout,
                cookies=no_cookies(),
            )
            for name, key in system.api_keys.items()
        }
        self.anonymous = httpx.Client(base_url=base, timeout=timeout, cookies=no_cookies())

    def __getattr__(self, name: str) -> httpx.Client:
        try:
            return self.clients[name]
        except KeyError:
            raise AttributeError(name) from None

    def __enter__(self) -> "Gateway":
        return self

    def __exit__(
        self, _type: type[BaseException] | None, _exc: BaseException | None, _tb: TracebackType | None
    ) -> None:
        for client in [*self.clients.values(), self.anonymous]:
            client.close()


def ok(response: httpx.Response, status: int = 200) -> Any:
    """The JSON body, after checking the status (the body is shown when it is wrong)."""
    assert response.status_code == status, f"{response.status_code}: {response.text}"
    return response.json()


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """Check an RFC 9457 problem+json answer with the given status."""
    assert response.status_code == status, f"{response.status_code}: {response.text}"
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert {"type", "title", "status", "detail"} <= body.keys()
    assert body["status"] == status
    return body


def register_patient(client: httpx.Client, name: str = "张三") -> dict[str, Any]:
    """An identified patient with a fresh random identity number and phone: the answer, plus the
    `id_number` and `phone` as typed (the service never answers them back)."""
    body = {"id_number": random_id_number(), "name": name, "phone": f"139{random.randrange(10**8):08d}"}
    patient = ok(client.post("/v1/patients", json=body), 201)
    return {**patient, "id_number": body["id_number"], "phone": body["phone"]}


def texted_codes(system: System, patient_id: str) -> list[str]:
    """One-time codes registration's development notifier wrote for the patient (`sms-outbox.jsonl`)."""
    outbox = system.data_dir / "sms-outbox.jsonl"
    if not outbox.exists():
        return []
    lines = [json.loads(line) for line in outbox.read_text(encoding="utf-8").splitlines() if line]
    return [re.findall(r"\d{6}", m["text"])[0] for m in lines if m["patient_id"] == patient_id]


def one_time_code(gateway: Gateway, app: httpx.Client, id_number: str, patient_id: str) -> str:
    """Ask for a code as an app and read it from the SMS outbox, as the patient would on their phone."""
    sent_before = len(texted_codes(gateway.system, patient_id))
    ok(app.post("/v1/patient-sessions/challenges", json={"id_number": id_number}), 202)
    codes = eventually(
        lambda: texted_codes(gateway.system, patient_id)[sent_before:], what="the one-time code's SMS"
    )
    return codes[-1]


def new_slip(gateway: Gateway, patient_id: str) -> str:
    """A fresh slip code for the patient's latest visit, as registration staff reprint it."""
    visits = ok(gateway.his.get(f"/v1/patients/{patient_id}/visits"))
    return str(ok(gateway.his.post(f"/v1/visits/{visits[-1]['id']}/slip"), 201)["slip_code"])


def patient_session(
    gateway: Gateway, patient: dict[str, Any], client: str = "app", device: httpx.Client | None = None
) -> dict[str, Any]:
    """A patient session opened as the patient would: an `app` with the identity number and the texted
    code, a `kiosk` with a fresh slip of the latest visit and the birth date. `patient` is as
    `register_patient` answers it; `device` stands in for the development client of that kind."""
    device = device or gateway.clients[client]
    if client == "kiosk":
        body = {"slip_code": new_slip(gateway, patient["id"]), "birth_date": patient["birth_date"]}
    else:
        code = one_time_code(gateway, device, patient["id_number"], patient["id"])
        body = {"id_number": patient["id_number"], "otp": code}
    session: dict[str, Any] = ok(device.post("/v1/patient-sessions", json=body), 201)
    assert session["patient_id"] == patient["id"]
    return session


def emergency_visit(
    client: httpx.Client,
    patient_id: str,
    *,
    department: str | None = None,
    payment_mode: str = "green_channel",
) -> dict[str, Any]:
    """An emergency visit, green-channel unless told (orders released at once, nobody has paid), in
    `department` or one of its own (`unique_department`)."""
    body = {
        "patient_id": patient_id,
        "kind": "emergency",
        "department": department or unique_department(),
        "payment_mode": payment_mode,
    }
    visit: dict[str, Any] = ok(client.post("/v1/visits", json=body), 201)
    return visit


def visit_account(gateway: Gateway, visit_id: str) -> dict[str, Any] | None:
    """Billing's account of the visit, or None while there is none to show yet: 404 until billing has
    read the visit's opening from registration's feed, 503 while the gateway's breaker still holds a
    restarted billing off. The probe for `eventually`, which an `ok(...)` failing on those is not."""
    response = gateway.cashier.get(f"/v1/visits/{visit_id}/account")
    if response.status_code in (404, 503):
        return None
    return ok(response)  # type: ignore[no-any-return]


def charges_of_visit(gateway: Gateway, visit_id: str, *, at_least: int) -> list[dict[str, Any]]:
    """The visit's charges once billing shows at least `at_least` of them."""

    def probe() -> list[dict[str, Any]] | None:
        charges = (visit_account(gateway, visit_id) or {"charges": []})["charges"]
        return charges if len(charges) >= at_least else None

    return eventually(probe, what=f"{at_least} charge(s) on visit {visit_id}")


def hub_events(gateway: Gateway, event_type: str, visit_id: str) -> list[dict[str, Any]]:
    """The hub's events of one type about one visit (paged from the start of its log)."""
    found: list[dict[str, Any]] = []
    after = 0
    while True:
        params: dict[str, str | int] = {"type": event_type, "after": after, "limit": 100}
        page = ok(gateway.his.get("/v1/events", params=params))
        if not page["events"]:
            return found
        found += [event for event in page["events"] if event["visit_id"] == visit_id]
        after = page["next_after"]


def insured_visit(gateway: Gateway, alias: str, payment_mode: str = "settle_later") -> dict[str, Any]:
    """An unidentified employee-insured patient's outpatient visit (`alias`: 男，约50岁), settle-later
    unless told otherwise, once billing has opened its account."""
    body = {"unidentified": True, "alias": alias, "insurance_scheme": "employee"}
    patient = ok(gateway.nurse.post("/v1/patients", json=body), 201)
    visit_body = {
        "patient_id": patient["id"],
        "kind": "outpatient",
        "department": "internal",
        "payment_mode": payment_mode,
    }
    visit: dict[str, Any] = ok(gateway.nurse.post("/v1/visits", json=visit_body), 201)
    eventually(lambda: visit_account(gateway, visit["id"]), what="the visit's account")
    return visit


def queued_visit(
    gateway: Gateway, department: str, *, name: str | None, complaint: str, note: str
) -> dict[str, Any]:
    """A patient (identified when `name` is given, else an unidentified 车祸伤者) with a visit assessed
    level III with clinical text (`complaint`, `note`), holding a ticket in `department`."""
    if name is None:
        patient = ok(gateway.his.post("/v1/patients", json={"unidentified": True, "alias": "车祸伤者"}), 201)
    else:
        patient = register_patient(gateway.his, name=name)
    visit = ok(
        gateway.his.post(
            "/v1/visits", json={"patient_id": patient["id"], "kind": "outpatient", "department": department}
        ),
        201,
    )
    assessment = {"visit_id": visit["id"], "level": "III", "chief_complaint": complaint, "note": note}
    ok(gateway.nurse.post("/v1/assessments", json=assessment), 201)
    ticket = ok(gateway.nurse.post(f"/v1/queues/{department}/tickets", json={"visit_id": visit["id"]}), 201)
    return {"patient": patient, "visit": visit, "ticket": ticket}
