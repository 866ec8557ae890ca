"""Turnaround with real processes: an emergency order collected, received and reported through the
gateway, its TAT figures, the journey judging it against its 2-hour target, and an order past due on
the lab's overdue list with one `order.overdue` on the hub."""

from datetime import timedelta
from typing import Any

from sqlalchemy import create_engine
from sqlmodel import Session

from kit.testing import database_url_under_test
from services.results.models import LabOrder
from tests.e2e.clients import Gateway, assert_problem, emergency_visit, eventually, ok, register_patient
from tests.e2e.conftest import E2E_SCHEMA_PREFIX

CBC = "250101015"  # 血细胞分析 (complete blood count)
REPORT = {"status": "final", "conclusion": "正常", "observations": [], "verified_by": "李技师"}


def emergency_order(gateway: Gateway) -> tuple[dict[str, Any], dict[str, Any]]:
    patient = register_patient(gateway.his)
    visit = emergency_visit(gateway.his, patient["id"], department="emergency")
    order = ok(gateway.doctor.post("/v1/orders", json={"visit_id": visit["id"], "test_code": CBC}), 201)
    return visit, order


def backdate(gateway: Gateway, order_id: str, *, minutes: int) -> None:
    """The order was placed `minutes` ago (due time with it), written into results' own database."""
    url = database_url_under_test()
    engine = create_engine(url or f"sqlite:///{gateway.system.data_dir / 'results.db'}")
    schemas = {None: f"{E2E_SCHEMA_PREFIX}results"} if url else {}
    shift = timedelta(minutes=minutes)
    with Session(engine.execution_options(schema_translate_map=schemas)) as session:
        order = session.get(LabOrder, order_id)
        assert order is not None and order.due_at is not None
        order.ordered_at, order.due_at = order.ordered_at - shift, order.due_at - shift
        session.add(order)
        session.commit()
    engine.dispose()


def test_an_emergency_order_from_collection_to_report_and_its_figures(gateway: Gateway) -> None:
    visit, order = emergency_order(gateway)
    assert (order["priority"], order["target_minutes"]) == ("emergency", 120)
    collected = ok(gateway.lab.post(f"/v1/orders/{order['id']}/collection"))
    again = ok(gateway.lab.post(f"/v1/orders/{order['id']}/collection"))
    assert again["collected_at"] == collected["collected_at"] is not None
    received = ok(gateway.lab.post(f"/v1/orders/{order['id']}/receipt"))
    assert received["received_at"] is not None
    ok(gateway.lab.post(f"/v1/orders/{order['id']}/reports", json=REPORT), 201)
    reported = ok(gateway.lab.get(f"/v1/orders/{order['id']}"))
    assert reported["reported_at"] is not None and reported["collected_at"] == collected["collected_at"]

    figures = ok(gateway.lab.get("/v1/turnaround", params={"test_code": CBC, "priority": "emergency"}))
    [row] = figures
    assert row["orders"] >= 1 and row["reported"] >= 1 and row["median_minutes"] is not None

    journey = ok(gateway.his.get(f"/v1/visits/{visit['id']}/journey"))
    [wait] = [w for w in journey["waits"] if w["stage"] == "order_to_report"]
    assert (wait["target_minutes"], wait["exceeded"]) == (120, False)


def test_an_order_past_due_is_on_the_overdue_list_and_announced_once(gateway: Gateway) -> None:
    _, order = emergency_order(gateway)
    backdate(gateway, order["id"], minutes=150)

    listed = ok(gateway.lab.get("/v1/orders/overdue", params={"priority": "emergency", "limit": 100}))
    [mine] = [o for o in listed if o["id"] == order["id"]]
    assert 29 <= mine["minutes_overdue"] <= 31

    def announced() -> list[dict[str, Any]]:
        log = ok(gateway.his.get("/v1/events", params={"after": 0, "limit": 100, "type": "order.overdue"}))
        return [e for e in log["events"] if e["data"]["order_id"] == order["id"]]

    eventually(lambda: announced() != [], what="order.overdue on the hub")
    [event] = announced()
    assert event["data"]["target_minutes"] == 120 and event["data"]["priority"] == "emergency"

    # Reported at last: off the list, and never announced again.
    ok(gateway.lab.post(f"/v1/orders/{order['id']}/reports", json=REPORT), 201)
    listed = ok(gateway.lab.get("/v1/orders/overdue", params={"limit": 100}))
    assert order["id"] not in {o["id"] for o in listed}
    figures = ok(gateway.lab.get("/v1/turnaround", params={"test_code": CBC, "priority": "emergency"}))
    assert figures[0]["reported"] >= 1 and figures[0]["within_target"] < figures[0]["reported"]


def test_patient_facing_clients_never_see_the_lab_figures(gateway: Gateway) -> None:
    for path in ("/v1/orders/overdue", "/v1/turnaround"):
        assert_problem(gateway.kiosk.get(path), 403)
