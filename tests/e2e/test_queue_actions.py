"""Queue actions through the real gateway: a patient's round trip consultation → payment → lab → back to the
doctor keeping priority, recall, skip (过号), hold, no-show and cancel, wrong transitions answered 409
problem+json, and the queues identical after triage restarts."""

from typing import Any

from patientflow.supervisor import System
from tests.e2e.clients import Gateway, assert_problem, ok, register_patient, unique_department


def queued(gateway: Gateway, department: str, **ticket: Any) -> dict[str, Any]:
    """A new outpatient's ticket in `department`."""
    patient = register_patient(gateway.his, name="李四")
    body = {"patient_id": patient["id"], "kind": "outpatient", "department": department}
    visit = ok(gateway.his.post("/v1/visits", json=body), 201)
    request = {"visit_id": visit["id"]} | ticket
    created: dict[str, Any] = ok(gateway.nurse.post(f"/v1/queues/{department}/tickets", json=request), 201)
    return created


def waiting(gateway: Gateway, department: str) -> list[str]:
    return [t["id"] for t in ok(gateway.nurse.get(f"/v1/queues/{department}"))["waiting"]]


def test_a_round_trip_keeps_the_patients_priority_and_arrival(gateway: Gateway) -> None:
    consult, cashier, lab = (unique_department() for _ in range(3))
    ok(gateway.nurse.put(f"/v1/queues/{cashier}/settings", json={"kind": "window", "window": "cashier"}))
    ok(gateway.nurse.put(f"/v1/queues/{cashier}/stations/1", json={"label": "1号收费窗口"}))
    frail = queued(gateway, consult, priority="priority")
    ahead_at_cashier = queued(gateway, cashier)
    after_at_lab = queued(gateway, lab)
    ok(gateway.doctor.post(f"/v1/queues/{consult}/call-next", json={"counter": "3"}))

    to_cashier = ok(gateway.doctor.post(f"/v1/tickets/{frail['id']}/transfer", json={"department": cashier}))
    at_cashier = to_cashier["ticket"]
    assert (at_cashier["priority"], at_cashier["lined_up_at"]) == ("priority", frail["enqueued_at"])
    assert waiting(gateway, cashier) == [at_cashier["id"], ahead_at_cashier["id"]]
    unknown = assert_problem(
        gateway.nurse.post(f"/v1/queues/{cashier}/call-next", json={"counter": "9"}), 422
    )
    assert unknown["type"].endswith("/unknown-station")
    ok(gateway.nurse.post(f"/v1/queues/{cashier}/call-next", json={"counter": "1"}))

    at_lab = ok(gateway.nurse.post(f"/v1/tickets/{at_cashier['id']}/transfer", json={"department": lab}))[
        "ticket"
    ]
    assert waiting(gateway, lab) == [at_lab["id"], after_at_lab["id"]]
    ok(gateway.nurse.post(f"/v1/queues/{lab}/call-next", json={}))
    back = ok(gateway.nurse.post(f"/v1/tickets/{at_lab['id']}/transfer", json={"department": consult}))[
        "ticket"
    ]
    assert (back["department"], back["status"], back["lined_up_at"]) == (
        consult,
        "waiting",
        frail["enqueued_at"],
    )
    trail = ok(gateway.nurse.get(f"/v1/visits/{frail['visit_id']}/tickets"))
    assert [t["status"] for t in trail] == ["transferred", "transferred", "transferred", "waiting"]


def test_recall_skip_hold_no_show_and_cancel_through_the_gateway(gateway: Gateway) -> None:
    department = unique_department()
    ok(gateway.nurse.put(f"/v1/queues/{department}/settings", json={"kind": "room", "skip_requeue_after": 1}))
    first, second, third = (queued(gateway, department) for _ in range(3))
    assert ok(gateway.doctor.post(f"/v1/queues/{department}/call-next", json={}))["id"] == first["id"]
    assert ok(gateway.doctor.post(f"/v1/tickets/{first['id']}/recall", json={}))["recalls"] == 1
    ok(gateway.doctor.post(f"/v1/tickets/{first['id']}/skip"))
    assert waiting(gateway, department) == [second["id"], first["id"], third["id"]]

    ok(gateway.doctor.post(f"/v1/tickets/{second['id']}/hold"))
    assert waiting(gateway, department) == [third["id"], first["id"]]  # first still sits out one call
    assert ok(gateway.doctor.post(f"/v1/queues/{department}/call-next", json={}))["id"] == third["id"]
    back = ok(gateway.doctor.post(f"/v1/queues/{department}/call-next", json={}))
    assert back["id"] == first["id"]
    assert back["reason"].endswith("back in line after 1 call")
    assert ok(gateway.doctor.post(f"/v1/tickets/{first['id']}/no-show"))["status"] == "noshow"
    ok(gateway.doctor.post(f"/v1/tickets/{second['id']}/release"))
    assert waiting(gateway, department) == [second["id"]]
    assert ok(gateway.nurse.post(f"/v1/tickets/{third['id']}/cancel"))["status"] == "cancelled"

    wrong = assert_problem(gateway.doctor.post(f"/v1/tickets/{third['id']}/recall"), 409)
    assert wrong["type"].endswith("/ticket-not-called")
    assert (
        assert_problem(gateway.doctor.post(f"/v1/tickets/{first['id']}/release"), 409)["ticket_status"]
        == "noshow"
    )
    assert_problem(gateway.cashier.post(f"/v1/tickets/{second['id']}/cancel"), 403)
    assert ok(gateway.nurse.get(f"/v1/tickets/{second['id']}"))["status"] == "waiting"


def test_queues_are_identical_after_triage_restarts(system: System, gateway: Gateway) -> None:
    department = unique_department()
    ok(gateway.nurse.put(f"/v1/queues/{department}/settings", json={"kind": "room", "max_skips": 0}))
    tickets = [queued(gateway, department) for _ in range(4)]
    ok(gateway.doctor.post(f"/v1/queues/{department}/call-next", json={}))
    ok(gateway.doctor.post(f"/v1/tickets/{tickets[0]['id']}/skip"))  # max_skips 0: a no-show at once
    ok(gateway.doctor.post(f"/v1/tickets/{tickets[2]['id']}/hold"))
    ok(gateway.doctor.post(f"/v1/queues/{department}/call-next", json={}))

    def state() -> dict[str, Any]:
        return {
            "queue": ok(gateway.nurse.get(f"/v1/queues/{department}")),
            "settings": ok(gateway.nurse.get(f"/v1/queues/{department}/settings")),
            "tickets": [ok(gateway.nurse.get(f"/v1/tickets/{t['id']}")) for t in tickets],
        }

    before = state()
    assert [t["status"] for t in before["tickets"]] == ["noshow", "called", "held", "waiting"]
    system.stop_service("triage")
    system.start_service("triage")
    assert state() == before
    assert ok(gateway.doctor.post(f"/v1/queues/{department}/call-next", json={}))["id"] == tickets[3]["id"]
