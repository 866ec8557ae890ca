"""Role × route: every operation of the gateway's OpenAPI, called by every development client.

The matrix is generated from the served document at test time, so a route added anywhere is covered
at once. Expectations come from `patientflow/devkeys.py` (each client's kind and scopes) and the
document's `x-required-scope`, `x-client-kinds` and `x-patient-binding`. Any 2xx a client should not
get fails the suite; so does a refusal (401/403) of a call its scopes allow. One test collects every
mismatch, so a failure lists the whole matrix's problems at once.
"""

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from gateway.models import PATIENT_BOUND_KINDS
from gateway.routes import API_PREFIX, RouteTable
from kit.clock import hospital_date
from patientflow.devkeys import DEV_CLIENTS
from tests.e2e.clients import (
    Gateway,
    emergency_visit,
    eventually,
    ok,
    patient_session,
    register_patient,
    unique_department,
)
from tests.gateway.test_openapi import media_with_examples, refs
from tests.gateway.test_openapi import operations as all_operations

Document = dict[str, Any]
METHODS = ("get", "put", "post", "delete", "patch")
REFUSED = (401, 403)
PATIENT_BOUND = (
    "patient",
    "visit",
    "response",
    "body",
    "appointment",
)  # bindings that must keep another patient's records out
CLOSED_PORT_URL = "http://127.0.0.1:9/access-matrix"  # webhooks created here never leave the machine
CBC = "250101015"  # 血细胞分析 (complete blood count)
REPORT = {
    "status": "final",
    "conclusion": "正常",
    "observations": [{"code": "WBC", "name": "白细胞", "value": "6.1"}],
    "verified_by": "李技师",  # verified (审核): a report reaches patients only so
}


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    params: dict[str, Any]
    body: Any

    def send(self, client: httpx.Client, headers: dict[str, str] | None = None) -> httpx.Response:
        """The answer; an event stream is closed once its status is known (it would never end)."""
        with client.stream(
            self.method,
            self.path,
            params=self.params,
            json=self.body,
            headers={"Idempotency-Key": str(uuid.uuid4()), **(headers or {})},
        ) as response:
            if not response.headers.get("content-type", "").startswith("text/event-stream"):
                response.read()
        return response


@dataclass(frozen=True)
class Ids:
    """Real records to fill paths and bodies with: a patient with a visit, in a department of its own.

    The other patient ("theirs") also has a ticket, an order and a final report, so the routes bound to
    the patient in their response answer with a real record of theirs, not a 404 for a random id.
    """

    patient_id: str
    visit_id: str
    department: str
    ticket_id: str | None = None
    order_id: str | None = None
    report_id: str | None = None
    appointment_id: str | None = None
    accept_offer_id: str | None = None  # two rebooking offers: one for staff to accept, one to decline
    decline_offer_id: str | None = None
    patient: dict[str, Any] | None = None  # as registered: what a patient-session proof needs


def operations(document: Document) -> Iterator[tuple[str, str, Document]]:
    for path, items in document["paths"].items():
        for method, operation in items.items():
            if method in METHODS and operation.get("security") != []:
                yield path, method, operation


def path_value(path: str, name: str, ids: Ids) -> str:
    record = {
        "/v1/tickets/{id}": ids.ticket_id,
        "/v1/orders/{id}": ids.order_id,
        "/v1/reports/{id}": ids.report_id,
        "/v1/booking-fees/{id}": ids.appointment_id,
        "/v1/booking-fees/{id}/payments": ids.appointment_id,
        "/v1/rebooking-offers/{id}": ids.accept_offer_id,
        "/v1/rebooking-offers/{id}/accept": ids.accept_offer_id,
        "/v1/rebooking-offers/{id}/decline": ids.decline_offer_id,
    }.get(path)
    if record:
        return record
    if path.startswith("/v1/appointments/") and ids.appointment_id:
        return ids.appointment_id
    if name == "department":
        return ids.department
    if name == "code":
        return "110200001"  # an outpatient fee in the catalogue
    if name == "type":
        return "visit.opened"
    if name == "name":
        return f"matrix-{uuid.uuid4().hex[:8]}"  # no such client: admin calls must not touch real ones
    if path.startswith("/v1/patients/"):
        return ids.patient_id
    if path.startswith("/v1/visits/"):
        return ids.visit_id
    return str(uuid.uuid4())


def with_ids(body: Any, ids: Ids) -> Any:
    """The example body, pointed at real records (and at no real webhook receiver)."""
    if isinstance(body, dict):
        replaced = {key: with_ids(value, ids) for key, value in body.items()}
        for key, value in (
            ("patient_id", ids.patient_id),
            ("visit_id", ids.visit_id),
            ("url", CLOSED_PORT_URL),
        ):
            if key in replaced:
                replaced[key] = value
        return replaced
    if isinstance(body, list):
        return [with_ids(value, ids) for value in body]
    return body


def call_for(path: str, method: str, operation: Document, ids: Ids) -> Call:
    concrete = re.sub(r"\{([^}]+)\}", lambda m: path_value(path, m.group(1), ids), path)
    params = {
        p["name"]: p.get("example", p.get("schema", {}).get("examples", ["1"])[0])
        for p in operation.get("parameters", [])
        if p["in"] == "query" and p.get("required")
    }
    content = (operation.get("requestBody") or {}).get("content", {}).get("application/json")
    body = with_ids(content["example"], ids) if content else None
    return Call(method.upper(), concrete, params, body)


def allowed(operation: Document, kind: str, scopes: list[str]) -> bool:
    """May this client, without a patient token, get an answer from the operation?"""
    if operation.get("x-board-session"):
        return False  # a board screen's session cookie opens it, never a key (tests/e2e/test_board_screen.py)
    kinds = operation.get("x-client-kinds")
    if kinds is not None:
        return kind in kinds
    if kind in PATIENT_BOUND_KINDS:
        return False  # an app or kiosk acts for a patient, or not at all
    return operation.get("x-required-scope") in scopes


def check(failures: list[str], who: str, call: Call, response: httpx.Response, *, may: bool) -> None:
    status = response.status_code
    if may and status == 403 and "/patient-proof-refused" in response.text:
        return  # the route served the client: the example's slip code is nobody's
    if not may and status not in REFUSED:
        failures.append(f"{who}: {call.method} {call.path} answered {status}, expected 401/403")
    elif may and status in REFUSED:
        failures.append(
            f"{who}: {call.method} {call.path} refused ({status}) though allowed: {response.text}"
        )
    elif status == 429:
        failures.append(f"{who}: {call.method} {call.path} rate-limited; the matrix needs a higher limit")


def setup_ids(gateway: Gateway) -> tuple[Ids, Ids]:
    """Two patients with a visit each: the first is the one apps act for in the patient pass.

    The second also gets a ticket in their department's queue, an order (on a green-channel
    emergency visit, so it is released at once) with a final report, and an appointment.
    """
    found = []
    for _ in range(2):
        patient = register_patient(gateway.his)
        department = unique_department()
        visit = ok(
            gateway.his.post(
                "/v1/visits",
                json={"patient_id": patient["id"], "kind": "outpatient", "department": department},
            ),
            201,
        )
        found.append(Ids(patient["id"], visit["id"], department, patient=patient))
    mine, theirs = found
    queue = f"/v1/queues/{theirs.department}/tickets"
    ticket = ok(gateway.nurse.post(queue, json={"visit_id": theirs.visit_id}), 201)
    urgent = emergency_visit(gateway.his, theirs.patient_id, department=theirs.department)
    order = ok(gateway.doctor.post("/v1/orders", json={"visit_id": urgent["id"], "test_code": CBC}), 201)
    assert order["status"] == "released", order
    report = ok(gateway.lab.post(f"/v1/orders/{order['id']}/reports", json=REPORT), 201)
    appointment = book_appointment(gateway, theirs)
    eventually(
        lambda: gateway.cashier.get(f"/v1/booking-fees/{appointment['id']}").is_success,
        what="billing to read the booking's fee",
    )
    accept, decline = rebooking_offers(gateway, theirs)
    return mine, replace(
        theirs,
        ticket_id=ticket["id"],
        order_id=order["id"],
        report_id=report["id"],
        appointment_id=appointment["id"],
        accept_offer_id=accept,
        decline_offer_id=decline,
    )


def rebooking_offers(gateway: Gateway, ids: Ids) -> tuple[str, str]:
    """Two of the patient's bookings with another doctor of their department, both sessions cancelled:
    two rebooking offers, each of the doctor's first session, which has room."""
    doctor = {"name": "王医生", "title": "attending", "department": ids.department}
    doctor_id = ok(gateway.admin.post("/v1/doctors", json=doctor), 201)["id"]
    sessions = []
    for days in (2, 3, 4):  # the first is the one offered
        starts_at = datetime.now(UTC).replace(microsecond=0) + timedelta(days=days)
        clinic = {
            "department": ids.department,
            "doctor_id": doctor_id,
            "date": hospital_date(starts_at).isoformat(),
            "period": "morning",
            "starts_at": starts_at.isoformat(),
            "ends_at": (starts_at + timedelta(hours=1)).isoformat(),
            "quota": 4,
        }
        sessions.append(ok(gateway.his.post("/v1/clinic-sessions", json=clinic), 201)["id"])
    offers = []
    for session_id in sessions[1:]:
        body = {"clinic_session_id": session_id, "patient_id": ids.patient_id, "channel": "phone"}
        ok(gateway.his.post("/v1/appointments", json=body), 201)
        cancel = {"action": "cancel", "category": "doctor", "reason": "停诊"}
        disrupted = ok(gateway.his.post(f"/v1/clinic-sessions/{session_id}/disruptions", json=cancel), 201)
        offer = disrupted["affected"][0]["offer"]
        assert offer["clinic_session_id"] == sessions[0], offer
        offers.append(offer["id"])
    return offers[0], offers[1]


def book_appointment(gateway: Gateway, ids: Ids) -> dict[str, Any]:
    """A booking for the patient in a session of their own department, tomorrow."""
    ok(gateway.admin.post("/v1/departments", json={"code": ids.department, "name": "矩阵科"}), 201)
    doctor = {"name": "李医生", "title": "chief", "department": ids.department}
    doctor_id = ok(gateway.admin.post("/v1/doctors", json=doctor), 201)["id"]
    starts_at = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    clinic = {
        "department": ids.department,
        "doctor_id": doctor_id,
        "date": starts_at.date().isoformat(),
        "period": "morning",
        "starts_at": starts_at.isoformat(),
        "ends_at": (starts_at + timedelta(hours=1)).isoformat(),
        "quota": 4,
    }
    session = ok(gateway.his.post("/v1/clinic-sessions", json=clinic), 201)
    body = {"clinic_session_id": session["id"], "patient_id": ids.patient_id, "channel": "phone"}
    booked: dict[str, Any] = ok(gateway.his.post("/v1/appointments", json=body), 201)
    return booked


def staff_with(scope: str | None) -> str:
    """A development client that acts for no patient and holds `scope`."""
    return next(
        name
        for name, (kind, scopes) in DEV_CLIENTS.items()
        if kind not in PATIENT_BOUND_KINDS and scope in scopes
    )


def test_every_client_reaches_exactly_what_its_scopes_allow(gateway: Gateway) -> None:
    document = ok(gateway.anonymous.get("/openapi.json"))
    mine, theirs = setup_ids(gateway)
    failures: list[str] = []
    calls = [(call_for(p, m, op, mine), op) for p, m, op in operations(document)]
    assert len(calls) >= 40, "the document lists too few operations to be the gateway's"
    for call, operation in calls:
        check(failures, "anonymous", call, call.send(gateway.anonymous), may=False)
        for name, (kind, scopes) in DEV_CLIENTS.items():
            client = gateway.clients[name.removesuffix("-dev")]
            check(failures, name, call, call.send(client), may=allowed(operation, kind, scopes))

    # An app acting for its patient: routes not bound to a patient stay closed, and bound routes never
    # answer 2xx for another patient's records.
    assert mine.patient is not None
    sessions = {
        name: patient_session(gateway, mine.patient, name.removesuffix("-dev"))
        for name, (kind, _) in DEV_CLIENTS.items()
        if kind in PATIENT_BOUND_KINDS
    }
    for path, method, operation in operations(document):
        call = call_for(path, method, operation, theirs)
        binding = operation.get("x-patient-binding")
        if binding == "response":  # the record must be real, or a 404 would prove nothing
            staff = staff_with(operation.get("x-required-scope"))
            response = call.send(gateway.clients[staff.removesuffix("-dev")])
            if not response.is_success:
                failures.append(
                    f"{staff}: {call.method} {call.path} answered {response.status_code}, expected 2xx "
                    "(the patient pass needs a real record of the other patient here)"
                )
        for name, session in sessions.items():
            kind, scopes = DEV_CLIENTS[name]
            response = call.send(
                gateway.clients[name.removesuffix("-dev")], {"X-Patient-Token": session["token"]}
            )
            who = f"{name} for patient {mine.patient_id}"
            if binding is None or operation.get("x-required-scope") not in scopes:
                if operation.get("x-client-kinds") is None:
                    check(failures, who, call, response, may=False)
            elif binding in PATIENT_BOUND and response.is_success:
                failures.append(
                    f"{who}: {call.method} {call.path} gave another patient's record ({response.status_code})"
                )
    assert not failures, f"{len(failures)} access-matrix failures:\n" + "\n".join(failures)


def test_the_served_document_lists_every_route_once_with_examples_and_resolving_refs(
    gateway: Gateway,
) -> None:
    """The document the matrix is built from is complete: all five services answered the gateway."""
    document = ok(gateway.anonymous.get("/openapi.json"))
    public = {(p, m) for p, m, _ in all_operations(document) if p.startswith(API_PREFIX + "/")}
    assert {(route.public_path, route.method.lower()) for route in RouteTable().routes} <= public
    operation_ids = [operation["operationId"] for _, _, operation in all_operations(document)]
    assert len(operation_ids) == len(set(operation_ids))
    schemas = document["components"]["schemas"]
    for path, method, operation in all_operations(document):
        assert "x-upstream-unavailable" not in operation, f"{method} {path}"
        for where, media in media_with_examples(operation):
            assert "example" in media, f"{method} {path} {where}"
    assert all(ref.split("/")[-1] in schemas for ref in refs(document))
    assert gateway.anonymous.get("/docs").status_code == 200
