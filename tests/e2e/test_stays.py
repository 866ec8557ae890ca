"""Admission, transfer and discharge (入院、转科、出院), and visits that close, through the gateway with the
real processes: every step on the journey view and at the hub, billing asked to settle (and settled), a
closed visit refused at triage, results and billing, the end-of-day rule, one patient per bed under
concurrency, and bad input answered with problem+json."""

import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import httpx

from kit.clock import HOSPITAL_TZ
from patientflow.supervisor import System
from tests.e2e.clients import (
    Gateway,
    assert_problem,
    eventually,
    hub_events,
    ok,
    register_patient,
    visit_account,
)

CBC = "250101015"  # 血细胞分析, 2000 fen
CBC_FEN = 2000
EMERGENCY_FEE_FEN = 2500  # 急诊诊察费, charged when the visit opens
RACERS = 20


def new_ward(gateway: Gateway, department: str, beds: int = 2, bed_class: str = "general") -> str:
    code = f"w-{uuid.uuid4().hex[:8]}"
    body = {
        "code": code,
        "department": department,
        "name": f"{department} 病区",
        "beds": [{"code": str(n + 1), "bed_class": bed_class} for n in range(beds)],
    }
    ok(gateway.nurse.post("/v1/wards", json=body), 201)
    return code


def open_visit(gateway: Gateway, **overrides: Any) -> dict[str, Any]:
    patient = ok(gateway.nurse.post("/v1/patients", json={"unidentified": True, "alias": "男，约50岁"}), 201)
    body = {"patient_id": patient["id"], "kind": "emergency", "department": "emergency"} | overrides
    return ok(gateway.nurse.post("/v1/visits", json=body), 201)  # type: ignore[no-any-return]


def stages(gateway: Gateway, visit_id: str) -> list[str]:
    return [entry["stage"] for entry in ok(gateway.his.get(f"/v1/visits/{visit_id}/journey"))["timeline"]]


def test_an_emergency_patient_admitted_transferred_and_discharged(gateway: Gateway) -> None:
    """The Done-when figure: every step on the journey view and as events at the hub, the visit closed,
    billing asked to settle — and settled, with the green channel's charges all on the bill."""
    visit = open_visit(gateway, payment_mode="green_channel")
    path = f"/v1/visits/{visit['id']}"
    ok(gateway.nurse.post("/v1/assessments", json={"visit_id": visit["id"], "level": "II"}), 201)
    ok(gateway.doctor.post("/v1/orders", json={"visit_id": visit["id"], "test_code": CBC}), 201)
    icu, cardiology = new_ward(gateway, "icu", bed_class="icu"), new_ward(gateway, "cardiology")

    stay = ok(
        gateway.nurse.post(f"{path}/admission", json={"ward": icu, "bed": "1", "note": "急性心梗"}), 201
    )
    assert (stay["admitted_from"], stay["department"], stay["bed_class"]) == ("emergency", "icu", "icu")
    admitted = ok(gateway.his.get(path))
    assert (admitted["id"], admitted["kind"], admitted["payment_mode"]) == (
        visit["id"],
        "inpatient",
        "green_channel",
    )

    handover = "PCI术后稳定，转心内科，交接用药与监护记录"
    moved = ok(
        gateway.nurse.post(f"{path}/transfers", json={"ward": cardiology, "bed": "2", "note": handover}), 201
    )
    assert (moved["department"], moved["ward"], moved["bed"]) == ("cardiology", cardiology, "2")
    # An order just before discharge: the discharge settlement must have it, green channel or not.
    ok(gateway.doctor.post("/v1/orders", json={"visit_id": visit["id"], "test_code": CBC}), 201)

    discharged = ok(gateway.nurse.post(f"{path}/discharge", json={"note": "好转出院"}))
    assert [m["kind"] for m in discharged["movements"]] == ["admission", "transfer", "discharge"]
    assert discharged["movements"][1]["note"] == handover and discharged["bed"] is None
    closed = ok(gateway.his.get(path))
    assert (closed["status"], closed["close_reason"]) == ("closed", "discharged")
    assert ok(gateway.his.get(f"/v1/wards/{cardiology}"))["free_beds"] == 2

    # Billing was asked (visit.discharged through the feed): the account awaits discharge settlement.
    due = eventually(
        lambda: (a := visit_account(gateway, visit["id"])) and a["awaiting_discharge_settlement"] and a,
        what="billing to mark the account for discharge settlement",
    )
    assert (due["kind"], due["status"]) == ("inpatient", "open")
    settlement = eventually(
        lambda: (r := settle(gateway, visit["id"])).status_code == 201 and r.json(),
        what="the discharge settlement",
    )
    # No charge lost on its way, and the stay's one day (a same-day stay; 算入不算出) billed at the
    # settlement, before any nightly run: by the bed lain in last, cardiology's general bed (3000) and
    # its grade II nursing (1500).
    assert settlement["total_fen"] == EMERGENCY_FEE_FEN + 2 * CBC_FEN + 3000 + 1500
    settled = visit_account(gateway, visit["id"])
    assert settled is not None and (settled["status"], settled["balance_fen"]) == ("settled", 0)
    eventually(
        lambda: ok(gateway.his.get(path))["settled_at"], what="registration to learn of the settlement"
    )

    for event_type in (
        "visit.admitted",
        "visit.transferred",
        "visit.discharged",
        "visit.closed",
        "visit.settled",
    ):
        eventually(lambda t=event_type: hub_events(gateway, t, visit["id"]), what=f"{event_type} at the hub")  # type: ignore[misc]
    [transferred] = hub_events(gateway, "visit.transferred", visit["id"])
    assert (transferred["data"]["from_department"], transferred["data"]["note"]) == ("icu", handover)
    [closing] = hub_events(gateway, "visit.closed", visit["id"])
    assert closing["data"] == {"reason": "discharged", "kind": "inpatient"}

    def settled_journey() -> list[str] | None:
        found = stages(gateway, visit["id"])
        return found if "settled" in found else None

    timeline = eventually(settled_journey, what="the settlement on the journey")
    steps = ("registered", "triaged", "admitted", "transferred", "discharged", "closed", "settled")
    shown = [stage for stage in timeline if stage in steps]
    assert shown == ["registered", "triaged", "admitted", "transferred", "discharged", "closed", "settled"]


def settle(gateway: Gateway, visit_id: str) -> httpx.Response:
    return gateway.cashier.post(
        f"/v1/visits/{visit_id}/settlement",
        json={"method": "insurance"},
        headers={"Idempotency-Key": str(uuid.uuid4())},
    )


def test_a_closed_visit_is_refused_at_triage_results_and_billing(gateway: Gateway) -> None:
    patient = register_patient(gateway.his)
    department = f"dept-{uuid.uuid4().hex[:8]}"
    body = {"patient_id": patient["id"], "kind": "outpatient", "department": department}
    visit = ok(gateway.nurse.post("/v1/visits", json=body), 201)
    earlier = ok(
        gateway.doctor.post("/v1/orders", json={"visit_id": visit["id"], "test_code": CBC}),
        201,
    )

    closed = ok(gateway.nurse.post(f"/v1/visits/{visit['id']}/close"))
    assert (closed["status"], closed["close_reason"]) == ("closed", "desk")

    refusals = {
        "triage assessment": gateway.nurse.post(
            "/v1/assessments", json={"visit_id": visit["id"], "level": "IV"}
        ),
        "triage ticket": gateway.nurse.post(
            f"/v1/queues/{department}/tickets", json={"visit_id": visit["id"]}
        ),
        "results order": gateway.doctor.post("/v1/orders", json={"visit_id": visit["id"], "test_code": CBC}),
        "billing charge": gateway.cashier.post(
            "/v1/charges",
            json={"visit_id": visit["id"], "item_code": "120400006", "quantity": 1},
            headers={"Idempotency-Key": str(uuid.uuid4())},
        ),
    }
    for where, response in refusals.items():
        problem = assert_problem(response, 409)
        assert problem["type"].endswith("/visit-closed"), where
        assert problem["visit_id"] == visit["id"] and visit["id"] in problem["detail"], where
    assert_problem(gateway.nurse.post(f"/v1/visits/{visit['id']}/close"), 409)

    # Work done before closing still lands: the earlier order's charge, and its report once paid.
    charge = eventually(
        lambda: (
            (a := visit_account(gateway, visit["id"]))
            and [c for c in a["charges"] if c["order_id"] == earlier["id"]]
        ),
        what="the earlier order's charge",
    )
    assert len(charge) == 1
    ok(
        gateway.cashier.post(
            "/v1/payments",
            json={"visit_id": visit["id"], "method": "cash"},
            headers={"Idempotency-Key": str(uuid.uuid4())},
        ),
        201,
    )
    eventually(
        lambda: ok(gateway.lab.get(f"/v1/orders/{earlier['id']}"))["status"] == "released",
        what="order released",
    )
    ok(
        gateway.lab.post(
            f"/v1/orders/{earlier['id']}/reports", json={"status": "final", "conclusion": "正常"}
        ),
        201,
    )
    [event] = eventually(
        lambda: hub_events(gateway, "visit.closed", visit["id"]), what="visit.closed at the hub"
    )
    assert event["data"] == {"reason": "desk", "kind": "outpatient"}
    assert "closed" in stages(gateway, visit["id"])


def test_one_patient_per_bed_under_concurrent_admissions(gateway: Gateway) -> None:
    visits = [open_visit(gateway)["id"] for _ in range(RACERS)]
    ward = new_ward(gateway, "icu", beds=1)
    start = threading.Barrier(RACERS)
    key = gateway.system.api_keys["his-dev"]

    def admit(visit_id: str) -> httpx.Response:
        with httpx.Client(
            base_url=gateway.system.url("gateway"), headers={"authorization": f"Bearer {key}"}, timeout=60
        ) as client:
            start.wait()
            return client.post(f"/v1/visits/{visit_id}/admission", json={"ward": ward, "bed": "1"})

    with ThreadPoolExecutor(RACERS) as pool:
        responses = list(pool.map(admit, visits))

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * (RACERS - 1), [
        r.text for r in responses if r.status_code not in (201, 409)
    ]
    for response in responses:
        if response.status_code == 409:
            assert assert_problem(response, 409)["type"].endswith("/bed-occupied")
    [winner] = [v for v, r in zip(visits, responses, strict=True) if r.status_code == 201]
    beds = ok(gateway.his.get(f"/v1/wards/{ward}"))["beds"]
    assert [(b["code"], b["occupied_by_visit_id"]) for b in beds] == [("1", winner)]


def test_bad_input_is_a_problem_and_changes_nothing(gateway: Gateway) -> None:
    visit = open_visit(gateway)
    ward = new_ward(gateway, "icu", beds=1)
    path = f"/v1/visits/{visit['id']}"
    assert_problem(gateway.nurse.post(f"{path}/admission", json={"ward": ward}), 422)
    assert_problem(gateway.nurse.post(f"{path}/admission", json={"ward": ward, "bed": "1", "extra": 1}), 422)
    assert_problem(gateway.nurse.post(f"{path}/admission", json={"ward": ward, "bed": "99"}), 422)
    assert_problem(gateway.nurse.post(f"{path}/admission", json={"ward": "Not A Ward", "bed": "1"}), 422)
    assert_problem(
        gateway.nurse.post(f"/v1/visits/{uuid.uuid4()}/admission", json={"ward": ward, "bed": "1"}), 404
    )
    assert_problem(gateway.nurse.post(f"{path}/transfers", json={"ward": ward, "bed": "1", "note": "x"}), 409)
    assert_problem(gateway.nurse.post(f"{path}/discharge"), 409)
    assert_problem(gateway.nurse.post(f"/v1/visits/{uuid.uuid4()}/close"), 404)
    assert_problem(
        gateway.nurse.post("/v1/wards", json={"code": ward, "department": "icu", "name": "x"}), 409
    )
    assert_problem(
        gateway.nurse.post("/v1/wards", json={"code": "UPPER", "department": "icu", "name": "x"}), 422
    )
    assert_problem(gateway.nurse.post(f"/v1/wards/{ward}/beds", json={"code": "1"}), 409)
    assert_problem(gateway.his.get("/v1/wards/no-such-ward"), 404)
    assert_problem(gateway.his.get(f"{path}/stay"), 404)
    # Scopes: a doctor may not admit, an app acting for a patient may not either.
    assert_problem(gateway.doctor.post(f"{path}/admission", json={"ward": ward, "bed": "1"}), 403)
    assert_problem(gateway.app.post(f"{path}/admission", json={"ward": ward, "bed": "1"}), 403)
    unchanged = ok(gateway.his.get(path))
    assert (unchanged["kind"], unchanged["status"]) == ("emergency", "open")
    assert ok(gateway.his.get(f"/v1/wards/{ward}"))["free_beds"] == 1


@contextmanager
def registration_with(system: System, **env: str) -> Iterator[None]:
    """Registration restarted with these settings for the block, then restarted as it was."""
    saved = {name: system.env.get(name) for name in env}
    system.env.update(env)
    system.stop_service("registration")
    try:
        system.start_service("registration")
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                system.env.pop(name, None)
            else:
                system.env[name] = value
        system.stop_service("registration")
        system.start_service("registration")


def test_the_end_of_day_rule_and_the_admission_window(system: System, gateway: Gateway) -> None:
    """Configured, as a hospital would: the day ends at a given time (here: a second from now) and the
    emergency admission window is (here) all but zero. Prepaid outpatient visits close; a settle-later
    one waits for its settlement; an emergency visit past its window is refused admission with a reason."""
    patient = register_patient(gateway.his)
    outpatient = {"patient_id": patient["id"], "kind": "outpatient", "department": "internal"}
    prepaid = ok(gateway.nurse.post("/v1/visits", json=outpatient), 201)
    later = ok(gateway.nurse.post("/v1/visits", json=outpatient | {"payment_mode": "settle_later"}), 201)
    emergency = open_visit(gateway, payment_mode="settle_later")
    ward = new_ward(gateway, "icu", beds=1)
    day_ends = (datetime.now(HOSPITAL_TZ) + timedelta(seconds=1)).time().replace(microsecond=0)

    with registration_with(
        system,
        REGISTRATION_END_OF_DAY=day_ends.isoformat(),
        REGISTRATION_VISIT_CLOSE_CHECK_SECONDS="0.2",
        REGISTRATION_EMERGENCY_ADMISSION_HOURS="1e-9",
    ):
        closed = eventually(
            lambda: (v := ok(gateway.his.get(f"/v1/visits/{prepaid['id']}")))["status"] == "closed" and v,
            what="the end-of-day rule to close the prepaid visit",
        )
        assert closed["close_reason"] == "end-of-day"
        refused = assert_problem(
            gateway.nurse.post(f"/v1/visits/{emergency['id']}/admission", json={"ward": ward, "bed": "1"}),
            409,
        )
        assert refused["type"].endswith("/admission-window-passed") and "hours" in refused["detail"]
        [event] = eventually(lambda: hub_events(gateway, "visit.closed", prepaid["id"]), what="visit.closed")
        assert event["data"] == {"reason": "end-of-day", "kind": "outpatient"}

    assert ok(gateway.his.get(f"/v1/visits/{later['id']}"))["status"] == "open"  # closes at its settlement
    assert ok(gateway.his.get(f"/v1/visits/{emergency['id']}"))["status"] == "open"


def test_an_admission_retried_with_its_key_admits_once(gateway: Gateway) -> None:
    visit = open_visit(gateway)
    ward = new_ward(gateway, "icu", beds=2)
    key = {"Idempotency-Key": str(uuid.uuid4())}
    answers = [
        gateway.nurse.post(
            f"/v1/visits/{visit['id']}/admission", json={"ward": ward, "bed": "1"}, headers=key
        )
        for _ in range(5)
    ]
    assert [a.status_code for a in answers] == [201] * 5
    assert all(a.json() == answers[0].json() for a in answers)
    assert [a.headers.get("idempotent-replayed") for a in answers[1:]] == ["true"] * 4
    [admitted] = eventually(lambda: hub_events(gateway, "visit.admitted", visit["id"]), what="visit.admitted")
    assert admitted["data"]["bed"] == "1"
    assert ok(gateway.his.get(f"/v1/wards/{ward}"))["free_beds"] == 1
