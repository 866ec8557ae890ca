"""The event catalogue is the contract with subscribers: every type a service can emit has a versioned
JSON schema (`services/events/catalogue/<type>.v<N>.json`), and the events the services really emit
validate against them.

Emitted types are found in the source, not listed here: every call of `kit.outbox.record_event` (or of a
service helper that forwards its `event_type` parameter to it) must name its type as a literal, so a new
type without a schema fails this test rather than reaching subscribers undocumented.
"""

import ast
import json
import socket
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError

from kit import testing
from kit.clock import HOSPITAL_TZ, hospital_date
from kit.outbox import EVENT_VERSION
from kit.testing import eventually
from services.billing.app import create_app as create_billing_app
from services.billing.config import BillingSettings
from services.billing.models import BillingTable
from services.registration.app import create_app as create_registration_app
from services.registration.config import RegistrationSettings
from services.registration.models import RegistrationTable
from services.results.app import create_app as create_results_app
from services.results.config import ResultsSettings
from services.results.models import ResultsTable
from services.triage.app import create_app as create_triage_app
from services.triage.config import TriageSettings
from services.triage.models import TriageTable
from tests.registration.factories import VALID_ID_NUMBERS

ROOT = Path(__file__).resolve().parents[1]
SERVICES_DIR = ROOT / "services"
CATALOGUE_DIR = SERVICES_DIR / "events" / "catalogue"
SOURCES = ("registration", "triage", "results", "billing")


# --- the types the code can emit ----------------------------------------------------------------------


def _literal_types(node: ast.expr, where: str) -> set[str]:
    """The event types an `event_type` argument can take: a literal, or a choice between literals."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value}
    if isinstance(node, ast.IfExp):
        return _literal_types(node.body, where) | _literal_types(node.orelse, where)
    if isinstance(node, ast.Name) and node.id == "event_type":
        return set()  # a helper forwarding its own parameter; its callers pass the literals
    raise AssertionError(f"{where}: name the event type as a literal so its schema can be checked")


def _emitters(tree: ast.Module) -> dict[str, int | None]:
    """Functions that emit: `record_event` (keyword-only `event_type`) and local helpers taking one."""
    emitters: dict[str, int | None] = {"record_event": None}
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef):
            positional = [a.arg for a in node.args.posonlyargs + node.args.args]
            if "event_type" in positional:
                emitters[node.name] = positional.index("event_type")
            elif any(a.arg == "event_type" for a in node.args.kwonlyargs):
                emitters[node.name] = None
    return emitters


def emitted_event_types() -> dict[str, str]:
    """Every event type named at an emitting call in `services/`, with where it is emitted.

    The emitting helpers are gathered from every module first: one module may define a helper
    (billing's `accounts.record`) that others call.
    """
    trees = {
        path: ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for path in sorted(SERVICES_DIR.rglob("*.py"))
    }
    emitters: dict[str, int | None] = {}
    for tree in trees.values():
        emitters |= _emitters(tree)
    found: dict[str, str] = {}
    for path, tree in trees.items():
        for call in ast.walk(tree):
            if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Name):
                continue
            if call.func.id not in emitters:
                continue
            where = f"{path.relative_to(ROOT)}:{call.lineno}"
            index = emitters[call.func.id]
            argument = next((k.value for k in call.keywords if k.arg == "event_type"), None)
            if argument is None and index is not None and index < len(call.args):
                argument = call.args[index]
            assert argument is not None, f"{where}: an emitting call without an event type"
            for event_type in _literal_types(argument, where):
                found.setdefault(event_type, where)
    return found


def catalogue() -> dict[str, dict[str, Any]]:
    """The schema files by event type (their current version)."""
    schemas = {}
    for path in sorted(CATALOGUE_DIR.glob(f"*.v{EVENT_VERSION}.json")):
        schemas[path.name.removesuffix(f".v{EVENT_VERSION}.json")] = json.loads(path.read_text("utf-8"))
    return schemas


def _is_rfc3339(instance: object) -> bool:
    """`date-time` as RFC 3339 needs: date, `T`, time and an offset (jsonschema's own check needs an extra
    package we do not install)."""
    if not isinstance(instance, str):
        return True
    try:
        moment = datetime.fromisoformat(instance)
    except ValueError:
        return False
    return "T" in instance.upper() and moment.tzinfo is not None


FORMATS = FormatChecker()
FORMATS.checks("date-time")(_is_rfc3339)


def validator(event_type: str) -> Draft202012Validator:
    return Draft202012Validator(catalogue()[event_type], format_checker=FORMATS)


def test_the_scan_sees_the_emitting_helpers() -> None:
    """Guards the scan itself: types emitted through each service's helper are found."""
    found = emitted_event_types()
    for event_type in ("patient.merged", "visit.triaged", "ticket.called", "report.final", "charge.paid"):
        assert event_type in found
    assert len(found) >= 18


def test_every_event_type_a_service_can_emit_has_a_schema() -> None:
    missing = {t: where for t, where in emitted_event_types().items() if t not in catalogue()}
    assert missing == {}, f"no schema in {CATALOGUE_DIR.relative_to(ROOT)} for: {missing}"


def test_every_schema_belongs_to_a_type_some_service_emits() -> None:
    stale = set(catalogue()) - set(emitted_event_types())
    assert stale == set(), f"schemas for types nothing emits: {sorted(stale)}"


@pytest.mark.parametrize("event_type", sorted(catalogue()))
def test_each_schema_is_valid_2020_12_and_names_its_type_and_version(event_type: str) -> None:
    schema = catalogue()[event_type]
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == f"urn:patientflow:event:{event_type}:v{EVENT_VERSION}"
    assert schema["properties"]["type"] == {"const": event_type}
    assert schema["properties"]["version"] == {"const": EVENT_VERSION}
    assert schema["properties"]["source"]["const"] in SOURCES
    assert set(schema["required"]) >= {"id", "type", "version", "occurred_at", "sequence", "data"}
    assert schema["properties"]["causes"]["items"]["required"] == ["source", "position"]
    data = schema["properties"]["data"]
    assert data["additionalProperties"] is False
    assert set(data["required"]) == set(data["properties"])


# --- the events the services really emit --------------------------------------------------------------


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, httpx.Client]]:
    """The four services for real, each reading the others' feeds, on their own clean tables.

    Their sockets are bound first: results reads billing's feed and billing reads results'."""
    sockets = {name: socket.socket(socket.AF_INET, socket.SOCK_STREAM) for name in SOURCES}
    for sock in sockets.values():
        sock.bind(("127.0.0.1", 0))
    url = {name: f"http://127.0.0.1:{sock.getsockname()[1]}" for name, sock in sockets.items()}
    data_dir = tmp_path_factory.mktemp("event-schemas")
    pg = testing.database_url_under_test() is not None

    def settings(cls: type[testing.S], name: str, **urls: object) -> testing.S:
        schema = {"database_schema": f"test_schemas_{name}"} if pg else {}
        return testing.make_test_settings(cls, data_dir, **schema, **urls)

    apps = {
        "registration": (
            create_registration_app(
                settings(
                    RegistrationSettings,
                    "registration",
                    billing_url=url["billing"],
                    triage_url=url["triage"],
                    # The sweep marks a booking whose slot has passed a no-show at once.
                    appointment_sweep_seconds=0.05,
                    noshow_grace_minutes=0,
                )
            ),
            RegistrationTable,
        ),
        "triage": (
            create_triage_app(
                # The re-triage timer flags the waiting level-I patient (limit 0 minutes) at once.
                settings(
                    TriageSettings, "triage", registration_url=url["registration"], overdue_check_seconds=0.05
                )
            ),
            TriageTable,
        ),
        "results": (
            create_results_app(
                settings(
                    ResultsSettings,
                    "results",
                    registration_url=url["registration"],
                    billing_url=url["billing"],
                    # An unacknowledged critical value is escalated at once.
                    critical_escalation_minutes=0,
                    critical_check_seconds=0.05,
                    # An emergency chest X-ray is due at once: its order is overdue straight away.
                    tat_item_minutes={"210102015": {"emergency": 0}},
                    overdue_check_seconds=0.05,
                )
            ),
            ResultsTable,
        ),
        "billing": (
            create_billing_app(
                settings(
                    BillingSettings,
                    "billing",
                    registration_url=url["registration"],
                    results_url=url["results"],
                    # A settle-later visit's fee (2000 fen) fits, a blood count (2000) more does not.
                    settle_later_credit_limit_fen=3000,
                )
            ),
            BillingTable,
        ),
    }
    with ExitStack() as stack:
        for name, (app, table) in apps.items():
            s = app.state.settings
            testing.wipe(s.resolved_database_url, s.resolved_schema, table.metadata)
            stack.enter_context(testing.serve(app, sockets[name]))
        clients = {
            name: stack.enter_context(
                # A sibling service (to read the feed) holding every scope (to drive the journeys).
                httpx.Client(
                    base_url=url[name],
                    headers=testing.internal_headers("service:test", audience=name),
                    timeout=30,
                )
            )
            for name in SOURCES
        }
        yield clients


def _ok(response: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


def _feed(client: httpx.Client) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    after = 0
    while page := _ok(client.get("/events", params={"after": after, "limit": 500}))["events"]:
        events.extend(page)
        after = page[-1]["position"]
    return events


@pytest.fixture(scope="module")
def emitted(system: dict[str, httpx.Client]) -> list[dict[str, Any]]:
    """Both foundation journeys and the new events, driven through the services' APIs; every feed read."""
    registration, triage, results, billing = (system[name] for name in SOURCES)
    identified = _ok(
        registration.post("/patients", json={"id_number": VALID_ID_NUMBERS[0], "name": "张三"}), 201
    )
    unknown = _ok(registration.post("/patients", json={"unidentified": True, "alias": "男，约40岁"}), 201)
    outpatient = _ok(
        registration.post(
            "/visits", json={"patient_id": identified["id"], "kind": "outpatient", "department": "internal"}
        ),
        201,
    )
    emergency = _ok(
        registration.post(
            "/visits",
            json={
                "patient_id": unknown["id"],
                "kind": "emergency",
                "department": "emergency",
                "payment_mode": "green_channel",
            },
        ),
        201,
    )

    # Triage: a level-I emergency, a queue suspended and resumed, a patient called and seen.
    # Re-assessed from vital signs at level I (a level change), left waiting: overdue at once.
    _ok(triage.post("/assessments", json={"visit_id": emergency["id"], "level": "II"}), 201)
    _ok(triage.post("/assessments", json={"visit_id": emergency["id"], "vitals": {"heart_rate": 190}}), 201)
    _ok(triage.post("/queues/emergency/tickets", json={"visit_id": emergency["id"]}), 201)
    eventually(
        lambda: any(e["type"] == "triage.overdue" for e in _feed(triage)),
        what="the re-triage timer to flag the waiting level-I patient",
    )
    # A prepaying emergency visit triaged at level II: registration puts it on the green channel.
    prepaid = _ok(
        registration.post(
            "/visits", json={"patient_id": identified["id"], "kind": "emergency", "department": "emergency"}
        ),
        201,
    )
    _ok(triage.post("/assessments", json={"visit_id": prepaid["id"], "level": "II"}), 201)
    eventually(
        lambda: any(e["type"] == "visit.green_channel" for e in _feed(registration)),
        what="registration to switch the level-II visit to the green channel",
    )
    ticket = _ok(triage.post("/queues/internal/tickets", json={"visit_id": outpatient["id"]}), 201)
    _ok(triage.post("/queues/internal/suspend", json={"reason": "专家停诊"}))
    _ok(triage.post("/queues/internal/resume"))
    _ok(triage.post("/queues/internal/call-next", json={"counter": "3"}))
    _ok(triage.post(f"/tickets/{ticket['id']}/finish"))
    # Queue actions: recalled, skipped, held and released, transferred on keeping priority, a no-show there,
    # and a ticket cancelled.
    urgent_ticket = _ok(triage.post("/queues/emergency/call-next", json={}))
    _ok(triage.post(f"/tickets/{urgent_ticket['id']}/recall", json={}))
    _ok(triage.post(f"/tickets/{urgent_ticket['id']}/skip"))
    _ok(triage.post(f"/tickets/{urgent_ticket['id']}/hold"))
    _ok(triage.post(f"/tickets/{urgent_ticket['id']}/release"))
    moved = _ok(triage.post(f"/tickets/{urgent_ticket['id']}/transfer", json={"department": "cashier"}))
    _ok(triage.post("/queues/cashier/call-next", json={}))
    _ok(triage.post(f"/tickets/{moved['ticket']['id']}/no-show"))
    withdrawn = _ok(triage.post("/queues/pharmacy/tickets", json={"visit_id": outpatient["id"]}), 201)
    _ok(triage.post(f"/tickets/{withdrawn['id']}/cancel"))

    # Results: a green-channel order reported critical at once; a prepaid order waits for the cashier.
    urgent = _ok(results.post("/orders", json={"visit_id": emergency["id"], "test_code": "250101015"}), 201)
    report = {"status": "preliminary", "conclusion": "血钾6.8", "critical": True, "critical_note": "已通知"}
    _ok(results.post(f"/orders/{urgent['id']}/reports", json=report), 201)
    final = {"status": "final", "conclusion": "高钾血症", "verified_by": "李技师"}
    urgent_report = _ok(results.post(f"/orders/{urgent['id']}/reports", json=final), 201)
    _ok(results.post(f"/reports/{urgent_report['id']}/prints", json={}), 201)  # printed at the desk
    # Nobody acknowledges the critical value in time (escalated), then a clinician does.
    eventually(
        lambda: any(e["type"] == "critical.escalated" for e in _feed(results)),
        what="the escalation loop to escalate the unacknowledged critical value",
    )
    pending = results.get("/critical-values")
    assert pending.status_code == 200, pending.text
    [critical_value] = pending.json()
    ack = {"acknowledged_by": "王医生"}
    _ok(results.post(f"/critical-values/{critical_value['id']}/acknowledgement", json=ack))
    # The final report, read once, is corrected: its reader is told.
    _ok(results.get(f"/reports/{urgent_report['id']}"))
    correction = final | {"status": "corrected", "conclusion": "高钾血症（复核）", "reason": "复核"}
    _ok(results.post(f"/reports/{urgent_report['id']}/amendments", json=correction))
    # An emergency X-ray nobody reports in time (its target is 0 here): the lab is told it is overdue.
    xray = {"visit_id": emergency["id"], "test_code": "210102015"}
    _ok(results.post("/orders", json=xray), 201)
    eventually(
        lambda: any(e["type"] == "order.overdue" for e in _feed(results)),
        what="the overdue check to announce the unreported X-ray",
    )
    prepaid = _ok(results.post("/orders", json={"visit_id": outpatient["id"], "test_code": "250101015"}), 201)
    # A settle-later order past the credit limit waits for payment (order.held); billing holds its
    # charge too (charge.held).
    on_credit = _ok(registration.post("/patients", json={"unidentified": True, "alias": "女，约30岁"}), 201)
    on_credit_visit = {"patient_id": on_credit["id"], "kind": "outpatient", "payment_mode": "settle_later"}
    settle_later = _ok(registration.post("/visits", json=on_credit_visit | {"department": "internal"}), 201)
    eventually(
        lambda: billing.get(f"/visits/{settle_later['id']}/account").status_code == 200,
        what="billing to open the settle-later account",
    )
    over_limit = {"visit_id": settle_later["id"], "test_code": "250101015"}
    held_order = _ok(results.post("/orders", json=over_limit), 201)
    assert held_order["hold_reason"] == "credit_limit"
    eventually(
        lambda: any(e["type"] == "charge.held" for e in _feed(billing)),
        what="billing to hold the charge past the credit limit",
    )
    # The patient will not have it: the cashier reverses its charge and results cancels the order.
    held_charge = next(
        c for c in _ok(billing.get(f"/visits/{settle_later['id']}/account"))["charges"] if c["order_id"]
    )
    not_wanted = {"reason": "患者放弃", "operator": "收费员"}
    keyed_reversal = {"idempotency-key": str(uuid.uuid4())}
    _ok(billing.post(f"/charges/{held_charge['id']}/reversal", json=not_wanted, headers=keyed_reversal), 201)
    eventually(
        lambda: _ok(results.get(f"/orders/{held_order['id']}"))["status"] == "cancelled",
        what="results to cancel the order whose charge was reversed",
    )

    # Billing: pay the outpatient's fee and order (which releases the order), then settle both visits.
    eventually(
        lambda: len(_ok(billing.get(f"/visits/{outpatient['id']}/account"))["charges"]) >= 2,
        what="billing to charge the outpatient's fee and order",
    )
    eventually(
        lambda: len(_ok(billing.get(f"/visits/{emergency['id']}/account"))["charges"]) >= 2,
        what="billing to charge the emergency's fee and order",
    )
    # A charge a rule refuses (a ward bed for an outpatient: charge.refused), one corrected by a
    # reversal line (charge.reversed).
    ward_bed = {"visit_id": outpatient["id"], "item_code": "110900001", "quantity": 1}
    assert (
        billing.post("/charges", json=ward_bed, headers={"idempotency-key": str(uuid.uuid4())}).status_code
        == 409
    )
    infusion = {"visit_id": outpatient["id"], "item_code": "120400006", "quantity": 1}
    wrong = _ok(billing.post("/charges", json=infusion, headers={"idempotency-key": str(uuid.uuid4())}), 201)
    correction = {"reason": "录入错误", "operator": "收费员 王五"}
    reversal = billing.post(
        f"/charges/{wrong['id']}/reversal", json=correction, headers={"idempotency-key": str(uuid.uuid4())}
    )
    _ok(reversal, 201)
    pay = {"visit_id": outpatient["id"], "method": "wechat"}
    _ok(billing.post("/payments", json=pay, headers={"idempotency-key": str(uuid.uuid4())}), 201)
    eventually(
        lambda: _ok(results.get(f"/orders/{prepaid['id']}"))["status"] == "released",
        what="results to release the paid order",
    )
    # The emergency patient is admitted before its (mid-stay) settlement, so the visit stays open to the
    # late order below; the outpatient's settlement closes its visit (`visit.closed`).
    ward = {"code": "icu-1", "department": "icu", "name": "重症监护", "beds": [{"code": "1"}, {"code": "2"}]}
    _ok(registration.post("/wards", json=ward), 201)
    _ok(registration.post(f"/visits/{emergency['id']}/admission", json={"ward": "icu-1", "bed": "1"}), 201)
    # Billing: a deposit below its alert line (`deposit.low_balance`), tonight's bed-day, the daily bill.
    eventually(
        lambda: _ok(billing.get(f"/visits/{emergency['id']}/account"))["kind"] == "inpatient",
        what="billing to read the admission",
    )
    deposit = {"amount_fen": 1000, "method": "card", "low_balance_threshold_fen": 100_000}
    keyed = {"idempotency-key": str(uuid.uuid4())}
    _ok(billing.post(f"/visits/{emergency['id']}/deposits", json=deposit, headers=keyed), 201)
    today = {"date": hospital_date(datetime.now(UTC)).isoformat()}
    _ok(billing.post("/inpatient-days/runs", json=today))
    _ok(billing.post("/daily-bills/runs", json=today))
    for visit, method in ((outpatient, "cash"), (emergency, "insurance")):
        settle = billing.post(
            f"/visits/{visit['id']}/settlement",
            json={"method": method},
            headers={"idempotency-key": str(uuid.uuid4())},
        )
        _ok(settle, 201)
    # An order read after its visit was settled: the supplementary bill (补费).
    # It repeats the blood count reported above (互认): the reason is required, and raised.
    late = {"visit_id": emergency["id"], "test_code": "250101015", "duplicate_reason": "emergency"}
    _ok(results.post("/orders", json=late), 201)
    eventually(
        lambda: _ok(billing.get(f"/visits/{emergency['id']}/account"))["supplementary_due_fen"],
        what="billing to put the late order on the supplementary bill",
    )
    transfer = {"ward": "icu-1", "bed": "2", "note": "换床"}
    _ok(registration.post(f"/visits/{emergency['id']}/transfers", json=transfer), 201)
    _ok(registration.post(f"/visits/{emergency['id']}/discharge", json={"note": "好转出院"}))
    eventually(
        lambda: _ok(registration.get(f"/visits/{outpatient['id']}"))["status"] == "closed",
        what="registration to close the settled outpatient visit",
    )

    # Appointments: a hold given up, a booking never checked in (no-show), a walk-in checked in at once.
    _ok(registration.post("/departments", json={"code": "cardiology", "name": "心内科", "floor": "3F"}), 201)
    doctor = {"name": "李医生", "title": "chief", "department": "cardiology"}
    doctor_id = _ok(registration.post("/doctors", json=doctor), 201)["id"]
    now = datetime.now(UTC)
    clinic = {
        "department": "cardiology",
        "doctor_id": doctor_id,
        "date": now.date().isoformat(),
        "period": "full_day",
        "starts_at": (now - timedelta(hours=2)).isoformat(),
        "ends_at": (now + timedelta(hours=2)).isoformat(),
        "quota": 8,
        "slot_minutes": 30,
    }
    clinic_id = _ok(registration.post("/clinic-sessions", json=clinic), 201)["id"]
    booking = {"clinic_session_id": clinic_id, "patient_id": identified["id"], "channel": "app", "hold": True}
    held = _ok(registration.post("/appointments", json=booking), 201)
    _ok(registration.post(f"/appointments/{held['id']}/cancel", json={"reason": "patient"}))
    noshow = booking | {"patient_id": unknown["id"], "channel": "phone", "hold": False}
    missed = _ok(registration.post("/appointments", json=noshow), 201)
    eventually(
        lambda: _ok(registration.get(f"/appointments/{missed['id']}"))["status"] == "noshow",
        what="the sweep to mark the missed booking a no-show",
    )
    walk_in = booking | {"channel": "onsite", "hold": False, "check_in": True}
    arrived = _ok(registration.post("/appointments", json=walk_in), 201)
    eventually(
        lambda: billing.get(f"/visits/{arrived['visit_id']}/account").status_code == 200,
        what="billing to charge the walk-in's consultation fee",
    )
    walk_in_key = {"idempotency-key": str(uuid.uuid4())}
    cash = {"method": "cash"}
    _ok(billing.post(f"/visits/{arrived['visit_id']}/settlement", json=cash, headers=walk_in_key), 201)
    eventually(
        lambda: _ok(registration.get(f"/appointments/{arrived['id']}"))["status"] == "fulfilled",
        what="registration to fulfil the appointment of the settled visit",
    )

    # Disruptions: a paid booking of tomorrow's clinic; the clinic suspended, resumed, moved, then
    # cancelled (billing refunds the fee); the patient accepts the offer of the doctor's next clinic.
    # At 10:00 hospital time, so a move of half an hour stays on the clinic's day.
    tomorrow = datetime.combine(hospital_date(now) + timedelta(days=1), time(10), HOSPITAL_TZ)
    disrupted, next_clinic = (
        _ok(
            registration.post(
                "/clinic-sessions",
                json=clinic
                | {
                    "date": hospital_date(tomorrow + timedelta(days=days)).isoformat(),
                    "starts_at": (tomorrow + timedelta(days=days)).isoformat(),
                    "ends_at": (tomorrow + timedelta(days=days, hours=2)).isoformat(),
                },
            ),
            201,
        )["id"]
        for days in (0, 1)
    )
    booked = _ok(registration.post("/appointments", json=noshow | {"clinic_session_id": disrupted}), 201)
    paid = billing.post(
        f"/booking-fees/{booked['id']}/payments",
        json={"method": "wechat"},
        headers={"idempotency-key": str(uuid.uuid4())},
    )
    _ok(paid, 201)
    reason = {"category": "doctor", "reason": "专家临时停诊"}
    for action in ({"action": "suspend"}, {"action": "resume"}):
        _ok(registration.post(f"/clinic-sessions/{disrupted}/disruptions", json=reason | action), 201)
    cancelled = registration.post(
        f"/clinic-sessions/{disrupted}/disruptions", json=reason | {"action": "cancel"}
    )
    offer_id = _ok(cancelled, 201)["affected"][0]["offer"]["id"]
    _ok(registration.post(f"/rebooking-offers/{offer_id}/accept"), 201)
    moved = {"action": "change", "starts_at": (tomorrow + timedelta(days=1, minutes=30)).isoformat()}
    _ok(registration.post(f"/clinic-sessions/{next_clinic}/disruptions", json=reason | moved), 201)
    eventually(
        lambda: _ok(billing.get(f"/booking-fees/{booked['id']}"))["status"] == "refunded",
        what="billing to refund the cancelled booking's fee",
    )

    # Registration: the patient changes scheme; the unidentified emergency patient turns out to be them.
    _ok(registration.patch(f"/patients/{identified['id']}", json={"insurance_scheme": "employee"}))
    _ok(registration.post(f"/patients/{identified['id']}/merge", json={"source_patient_id": unknown["id"]}))
    return [event for name in SOURCES for event in _feed(system[name])]


def test_the_run_emits_every_catalogued_type(emitted: list[dict[str, Any]]) -> None:
    """So every schema below is checked against a real event, not only against itself."""
    assert {e["type"] for e in emitted} == set(catalogue())


def test_every_emitted_event_validates_against_its_schema(emitted: list[dict[str, Any]]) -> None:
    failures = []
    for event in emitted:
        assert event["type"] in catalogue(), f"no schema for {event['type']}"
        failures += [
            f"{event['type']}: {error.message}" for error in validator(event["type"]).iter_errors(event)
        ]
    assert failures == []


def test_events_carry_the_catalogue_version_and_their_source(emitted: list[dict[str, Any]]) -> None:
    for event in emitted:
        assert event["version"] == EVENT_VERSION
        assert event["source"] == catalogue()[event["type"]]["properties"]["source"]["const"]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda e: e["data"].update(note="血钾6.8"), "Additional properties are not allowed"),
        (lambda e: e["data"].pop("report_id"), "'report_id' is a required property"),
        (lambda e: e.update(version=2), "1 was expected"),
        (lambda e: e.update(patient_id="张三"), "is not a 'uuid'"),
        (lambda e: e.update(occurred_at="yesterday"), "is not a 'date-time'"),
        (lambda e: e.update(occurred_at="2026-11-27T08:00:00"), "is not a 'date-time'"),  # no offset
        (lambda e: e.pop("sequence"), "'sequence' is a required property"),
        (lambda e: e.update(causes=[{"source": "results"}]), "'position' is a required property"),
    ],
)
def test_schemas_refuse_an_event_that_breaks_the_contract(
    emitted: list[dict[str, Any]], change: Any, expected: str
) -> None:
    event = json.loads(json.dumps(next(e for e in emitted if e["type"] == "report.critical")))
    validator("report.critical").validate(event)
    change(event)
    with pytest.raises(ValidationError, match=expected):
        validator("report.critical").validate(event)
