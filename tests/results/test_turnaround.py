"""Turnaround (TAT): each order's priority, target and due time, the lab's collection and receipt, its
first final report, the overdue list and `order.overdue` (once), and TAT figures per item and priority."""

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlmodel import update

from kit.clock import as_utc, hospital_date, utcnow
from kit.stats import nearest_rank
from kit.testing import FakeFeed, internal_headers, run_together, service_client
from services.results import turnaround
from services.results.app import create_app
from services.results.models import LabOrder, ResultsTable
from services.results.schemas import Priority
from services.results.turnaround import OverdueWatcher
from tests.results.conftest import results_settings
from tests.results.factories import (
    CBC,
    CHEST_XRAY,
    create_emergency_visit,
    create_patient,
    create_unidentified_patient,
    create_visit,
    events,
    place_order,
    post_report,
    released_order,
)


def at(value: str) -> datetime:
    return as_utc(datetime.fromisoformat(value))


def backdate(client: TestClient, order_id: str, *, minutes: int) -> None:
    """The order was placed `minutes` ago (its due time moves with it): a lab's morning, in a test."""
    app: Any = client.app
    with app.state.database.session() as session:
        order = session.get(LabOrder, order_id)
        shift = timedelta(minutes=minutes)
        session.exec(
            update(LabOrder)
            .where(LabOrder.id == order_id)  # type: ignore[arg-type]
            .values(ordered_at=order.ordered_at - shift, due_at=order.due_at - shift)
        )


def watcher(client: TestClient, *, minutes_later: float = 0) -> OverdueWatcher:
    app: Any = client.app
    later = utcnow() + timedelta(minutes=minutes_later)
    return OverdueWatcher(app.state.database, app.state.settings, clock=lambda: later)


def overdue(client: TestClient, **params: str) -> list[dict[str, Any]]:
    response = client.get("/orders/overdue", params=params)
    assert response.status_code == 200, response.text
    return list(response.json())


def emergency_order(client: TestClient, registration: httpx.Client, index: int = 1, **overrides: Any) -> Any:
    """An emergency visit's order (green channel: the lab starts at once); an unidentified patient, as
    emergencies often are, so a test may have as many as it needs."""
    visit = create_emergency_visit(registration, create_unidentified_patient(registration)["id"])
    return place_order(client, visit["id"], **overrides)


def test_an_emergency_visit_orders_at_emergency_priority_due_in_two_hours(
    client: TestClient, registration: httpx.Client
) -> None:
    routine = released_order(client, registration)
    emergency = emergency_order(client, registration)
    patient = create_patient(registration, 2)
    visit = create_visit(registration, patient["id"], payment_mode="settle_later")
    asked = place_order(client, visit["id"], priority="emergency")

    assert (routine["priority"], routine["target_minutes"]) == ("routine", 1440)
    assert (emergency["priority"], emergency["target_minutes"]) == ("emergency", 120)
    assert asked["priority"] == "emergency"  # an outpatient order marked urgent by its doctor
    for order in (routine, emergency):
        assert at(order["due_at"]) - at(order["ordered_at"]) == timedelta(minutes=order["target_minutes"])
    assert client.get(f"/orders/{emergency['id']}").json()["due_at"] == emergency["due_at"]


@pytest.fixture
def fast_cbc_client(
    results_data_dir: Path, registration_url: str, registration: httpx.Client, billing: FakeFeed
) -> Iterator[TestClient]:
    """Results where the hospital promises an emergency blood count in 60 minutes."""
    settings = results_settings(results_data_dir, registration_url, billing.url)
    settings = settings.model_copy(update={"tat_item_minutes": {CBC: {Priority.emergency: 60}}})
    with service_client(create_app(settings), ResultsTable.metadata) as client:
        yield client


def test_an_item_may_have_its_own_target_for_a_priority(
    fast_cbc_client: TestClient, registration: httpx.Client
) -> None:
    cbc = emergency_order(fast_cbc_client, registration)
    xray = emergency_order(fast_cbc_client, registration, 2, test_code=CHEST_XRAY)
    routine_cbc = released_order(fast_cbc_client, registration)
    assert (cbc["target_minutes"], xray["target_minutes"], routine_cbc["target_minutes"]) == (60, 120, 1440)


def test_collection_and_receipt_keep_their_first_time(client: TestClient, registration: httpx.Client) -> None:
    order = released_order(client, registration)
    first = client.post(f"/orders/{order['id']}/collection")
    assert first.status_code == 200, first.text
    again = client.post(f"/orders/{order['id']}/collection")
    assert again.status_code == 200 and again.json()["collected_at"] == first.json()["collected_at"]
    received = client.post(f"/orders/{order['id']}/receipt").json()
    assert at(received["received_at"]) >= at(first.json()["collected_at"])
    assert client.post(f"/orders/{order['id']}/receipt").json()["received_at"] == received["received_at"]


def test_an_imaging_receipt_without_collection_is_both_at_once(
    client: TestClient, registration: httpx.Client
) -> None:
    order = emergency_order(client, registration, test_code=CHEST_XRAY)
    received = client.post(f"/orders/{order['id']}/receipt").json()
    assert received["collected_at"] == received["received_at"] is not None


def test_the_lab_cannot_collect_an_unpaid_order_or_an_unknown_one(
    client: TestClient, registration: httpx.Client
) -> None:
    visit = create_visit(registration, create_patient(registration)["id"])  # prepay
    unpaid = place_order(client, visit["id"])
    refused = client.post(f"/orders/{unpaid['id']}/collection")
    assert refused.status_code == 402 and refused.json()["type"].endswith("order-awaiting-payment")
    assert client.get(f"/orders/{unpaid['id']}").json()["collected_at"] is None
    assert client.post("/orders/no-such-order/receipt").status_code == 404
    assert client.post(f"/orders/{'x' * 37}/collection").status_code == 400


def test_reported_at_is_the_first_final_report_and_stays_through_an_amendment(
    client: TestClient, registration: httpx.Client
) -> None:
    order = released_order(client, registration)
    post_report(client, order["id"], "preliminary")
    assert client.get(f"/orders/{order['id']}").json()["reported_at"] is None
    report = post_report(client, order["id"], "final")
    first = client.get(f"/orders/{order['id']}").json()["reported_at"]
    assert first == report["reported_at"]
    body = {"status": "amended", "conclusion": "复核", "verified_by": "李技师", "reason": "复核后修改"}
    assert client.post(f"/reports/{report['id']}/amendments", json=body).status_code == 200
    assert client.get(f"/orders/{order['id']}").json()["reported_at"] == first


def test_the_overdue_list_is_unreported_orders_past_due_longest_first(
    client: TestClient, registration: httpx.Client
) -> None:
    late = emergency_order(client, registration, 1)
    later = emergency_order(client, registration, 2, test_code=CHEST_XRAY)
    on_time = emergency_order(client, registration, 3)
    done = emergency_order(client, registration, 4)
    routine = released_order(client, registration, 0)
    backdate(client, late["id"], minutes=150)
    backdate(client, later["id"], minutes=200)
    backdate(client, done["id"], minutes=300)
    backdate(client, routine["id"], minutes=300)  # 5 h of a 24 h target: not due yet
    post_report(client, done["id"])

    listed = overdue(client)
    assert [o["id"] for o in listed] == [later["id"], late["id"]]
    assert 79 <= listed[0]["minutes_overdue"] <= 81 and 29 <= listed[1]["minutes_overdue"] <= 31
    assert [o["id"] for o in overdue(client, test_code=CBC)] == [late["id"]]
    assert overdue(client, priority="routine") == []
    assert on_time["id"] not in {o["id"] for o in listed}


def test_a_cancelled_report_puts_its_order_back_on_the_overdue_list(
    client: TestClient, registration: httpx.Client
) -> None:
    order = emergency_order(client, registration)
    backdate(client, order["id"], minutes=150)
    report = post_report(client, order["id"])
    assert overdue(client) == []
    cancelled = client.post(f"/reports/{report['id']}/cancellation", json={"reason": "标本溶血"})
    assert cancelled.status_code == 200, cancelled.text
    assert [o["id"] for o in overdue(client)] == [order["id"]]  # the lab owes a new report
    assert client.get(f"/orders/{order['id']}").json()["reported_at"] is not None  # TAT keeps the first


def test_the_overdue_list_and_figures_are_for_staff_only(client: TestClient) -> None:
    kiosk = internal_headers("kiosk-hall-1", {"results:read"}, audience="results", kind="kiosk")
    for path in ("/orders/overdue", "/turnaround"):
        refused = client.get(path, headers=kiosk)
        assert refused.status_code == 403 and refused.json()["type"].endswith("staff-only")
    assert client.get("/orders/overdue", params={"priority": "soon"}).status_code == 400
    assert client.get("/orders/overdue", params={"limit": 10**30}).status_code == 400


def test_an_overdue_order_is_announced_exactly_once(client: TestClient, registration: httpx.Client) -> None:
    order = emergency_order(client, registration)
    assert watcher(client, minutes_later=119).run_once() == []
    assert watcher(client, minutes_later=121).run_once() == [order["id"]]
    assert watcher(client, minutes_later=180).run_once() == []
    [event] = events(client, "order.overdue")
    assert event["data"]["order_id"] == order["id"]
    assert (event["data"]["priority"], event["data"]["target_minutes"]) == ("emergency", 120)
    assert event["data"]["department"] == "emergency" and event["data"]["minutes_overdue"] >= 1

    reported = emergency_order(client, registration, 2)
    post_report(client, reported["id"])
    assert watcher(client, minutes_later=500).run_once() == []  # reported late, never "overdue"


def test_overdue_checks_racing_announce_each_order_once(
    client: TestClient, registration: httpx.Client
) -> None:
    """Several results processes at once: each order is announced by exactly one of them."""
    orders = {emergency_order(client, registration, index)["id"] for index in range(1, 4)}
    loops = [watcher(client, minutes_later=150) for _ in range(4)]
    announced = [order for ids in run_together([loop.run_once for loop in loops]) for order in ids]
    assert Counter(announced) == dict.fromkeys(orders, 1)
    assert Counter(e["data"]["order_id"] for e in events(client, "order.overdue")) == dict.fromkeys(orders, 1)


def test_turnaround_figures_per_item_and_priority(client: TestClient, registration: httpx.Client) -> None:
    fast = emergency_order(client, registration, 1)
    slow = emergency_order(client, registration, 2)
    waiting = emergency_order(client, registration, 3)
    xray = emergency_order(client, registration, 4, test_code=CHEST_XRAY)
    backdate(client, slow["id"], minutes=180)
    backdate(client, waiting["id"], minutes=130)
    for order in (fast, slow):
        post_report(client, order["id"])

    response = client.get("/turnaround", params={"priority": "emergency"})
    assert response.status_code == 200, response.text
    by_item = {row["test_code"]: row for row in response.json()}
    cbc = by_item[CBC]
    assert (cbc["orders"], cbc["reported"], cbc["within_target"], cbc["overdue_unreported"]) == (3, 2, 1, 1)
    assert cbc["median_minutes"] in (0, 1) and cbc["p90_minutes"] in (180, 181)
    assert Decimal(cbc["within_target_share"]) == Decimal("0.3333")
    assert by_item[CHEST_XRAY]["reported"] == 0 and by_item[CHEST_XRAY]["within_target_share"] is None
    assert client.get("/turnaround", params={"test_code": CHEST_XRAY}).json()[0]["orders"] == 1
    assert xray["priority"] == "emergency"


def test_turnaround_periods_are_hospital_days_and_bounded(
    client: TestClient, registration: httpx.Client
) -> None:
    released_order(client, registration)
    today = hospital_date(utcnow())
    assert client.get("/turnaround", params={"from_date": today.isoformat()}).json()[0]["orders"] == 1
    tomorrow = (today + timedelta(days=1)).isoformat()
    assert client.get("/turnaround", params={"from_date": tomorrow, "to_date": tomorrow}).json() == []
    backwards = client.get("/turnaround", params={"from_date": tomorrow, "to_date": today.isoformat()})
    assert backwards.status_code == 400 and backwards.json()["type"].endswith("bad-period")
    assert (
        client.get("/turnaround", params={"from_date": "2000-01-01", "to_date": "2099-12-31"}).status_code
        == 400
    )
    assert client.get("/turnaround", params={"from_date": "9999-12-31"}).status_code == 400


# --- pure rules ---


def order(minutes_to_report: int | None, *, target: int = 120, at_minute: int = 0) -> LabOrder:
    ordered = datetime(2026, 12, 1, 8, 0, tzinfo=UTC) + timedelta(minutes=at_minute)
    return LabOrder(
        id=f"o-{at_minute}-{minutes_to_report}", visit_id="v", patient_id="p", test_code=CBC,
        test_name="血常规", payment_mode="settle_later", status="released", ordered_at=ordered,
        priority="emergency",
        target_minutes=target, due_at=ordered + timedelta(minutes=target),
        reported_at=None if minutes_to_report is None else ordered + timedelta(minutes=minutes_to_report),
    )  # fmt: skip


def test_nearest_rank_is_an_observed_value() -> None:
    assert nearest_rank([10], 90) == 10
    assert nearest_rank(list(range(1, 11)), 90) == 9  # ceil(0.9 * 10) = 9th
    assert nearest_rank(list(range(1, 11)), 50) == 5
    assert nearest_rank(list(range(1, 12)), 90) == 10  # ceil(9.9) = 10th


def test_figures_count_a_report_exactly_at_due_as_in_time_and_round_minutes_up() -> None:
    now = datetime(2026, 12, 2, tzinfo=UTC)
    rows = turnaround.figures([order(120), order(121, at_minute=1), order(None, at_minute=2)], now=now)
    [row] = rows
    assert (row.orders, row.reported, row.within_target, row.overdue_unreported) == (3, 2, 1, 1)
    assert (row.median_minutes, row.p90_minutes) == (120, 121)
    assert row.within_target_share == Decimal("0.3333")
    early = turnaround.figures([order(None)], now=datetime(2026, 12, 1, 9, tzinfo=UTC))
    assert early[0].within_target_share is None and early[0].overdue_unreported == 0
