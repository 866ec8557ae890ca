"""`GET /wait-metrics…`: the hub turns the services' events into waits per visit, department, queue, hour."""

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from kit.testing import FakeFeed
from tests.events.factories import as_caller, logged_ids, publish, source_event

# 2026-03-02 08:00 at the hospital (Asia/Shanghai) is 00:00 UTC.
DAY = "2026-03-02"
T0 = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)


class VisitFeeds:
    """Publishes one visit's events, each caused by the one before, as the services would carry it."""

    def __init__(self, feeds: dict[str, FakeFeed], visit_id: str, department: str, opened: float) -> None:
        self.feeds, self.visit_id, self.department = feeds, visit_id, department
        self.last: dict[str, int] = {}
        self.count = 0
        self.emit("registration", "visit.opened", opened, department=department, payment_mode="prepay")

    def emit(self, source: str, event_type: str, minute: float, **data: Any) -> None:
        event = source_event(
            event_type,
            visit_id=self.visit_id,
            patient_id=f"p-{self.visit_id}",
            occurred_at=T0 + timedelta(minutes=minute),
            data=data,
            causes=dict(self.last),
        )
        self.last[source] = publish(self.feeds, source, event)["position"]
        self.count += 1

    def ticket(self, queued: float, called: float | None, finished: float | None, queue: str = "") -> None:
        ticket = {"ticket_id": f"t-{self.visit_id}-{queued}", "department": queue or self.department}
        self.emit("triage", "ticket.queued", queued, **ticket, number=1, priority="normal")
        if called is not None:
            self.emit("triage", "ticket.called", called, **ticket, number=1, wait_seconds=0)
        if finished is not None:
            self.emit("triage", "ticket.finished", finished, **ticket, number=1)

    def paid_order(self, placed: float, paid: float, reported: float) -> None:
        order = {"order_id": f"o-{self.visit_id}"}
        self.emit("results", "order.placed", placed, **order, status="awaiting_payment", test_code="CBC")
        self.emit("billing", "charge.paid", paid, **order, charge_id="c", payment_id="pay")
        self.emit("results", "report.final", reported, **order, report_id="r", test_code="CBC")


def a_morning(feeds: dict[str, FakeFeed]) -> int:
    """Internal medicine: queue waits 5, 12 and 30 minutes (one still in consultation); surgery: one
    patient at 09:00 still waiting. Returns how many events were published."""
    first = VisitFeeds(feeds, "v1", "internal", 0)
    first.ticket(queued=1, called=6, finished=14)
    first.paid_order(placed=10, paid=22, reported=52)
    second = VisitFeeds(feeds, "v2", "internal", 2)
    second.ticket(queued=3, called=15, finished=21)
    third = VisitFeeds(feeds, "v3", "internal", 5)
    third.ticket(queued=5, called=35, finished=None)
    fourth = VisitFeeds(feeds, "v4", "surgery", 60)
    fourth.ticket(queued=61, called=None, finished=None)
    return sum(v.count for v in (first, second, third, fourth))


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text)


def figures(body: dict[str, Any], interval: str) -> list[dict[str, Any]]:
    return [f for f in body["figures"] if f["interval"] == interval]


def test_waits_of_a_morning_by_department_queue_and_hour(
    hub: httpx.Client, feeds: dict[str, FakeFeed]
) -> None:
    logged_ids(hub, a_morning(feeds))

    totals = hub.get("/wait-metrics", params={"from_date": DAY}).json()
    assert (totals["from_date"], totals["to_date"], totals["target_minutes"]) == (DAY, DAY, 10)
    [queue] = figures(totals, "queue_wait")
    assert (queue["count"], queue["open"]) == (3, 1)  # surgery's patient still waits
    assert (queue["mean_minutes"], queue["p90_minutes"], queue["max_minutes"]) == (15.67, 30, 30)
    assert queue["over_target_share"] == round(2 / 3, 4)
    [consultation] = figures(totals, "consultation")
    assert (consultation["count"], consultation["open"], consultation["mean_minutes"]) == (2, 1, 7)
    [to_call] = figures(totals, "registration_to_call")
    assert (to_call["count"], to_call["open"], to_call["max_minutes"]) == (3, 1, 30)
    [payment] = figures(totals, "order_to_payment")
    assert (payment["count"], payment["mean_minutes"], payment["over_target_share"]) == (1, 12, 1.0)
    [result] = figures(totals, "payment_to_result")
    assert result["mean_minutes"] == 30
    [order_to_result] = figures(totals, "order_to_result")
    assert order_to_result["mean_minutes"] == 42

    grouped = hub.get("/wait-metrics", params={"from_date": DAY, "group_by": "department,hour"}).json()
    assert grouped["group_by"] == ["department", "hour"]
    rows = {(f["department"], f["hour"]): f for f in figures(grouped, "queue_wait")}
    assert set(rows) == {("internal", 8), ("surgery", 9)}
    assert (rows["internal", 8]["count"], rows["surgery", 9]["open"]) == (3, 1)

    surgery = hub.get("/wait-metrics", params={"from_date": DAY, "department": "surgery"}).json()
    assert [(f["interval"], f["count"], f["open"]) for f in surgery["figures"]] == [
        ("registration_to_call", 0, 1),  # an outpatient nobody triages does not wait for triage
        ("queue_wait", 0, 1),
    ]
    by_queue = hub.get("/wait-metrics", params={"from_date": DAY, "queue": "internal", "group_by": "queue"})
    assert {(f["interval"], f["queue"]) for f in by_queue.json()["figures"]} >= {("queue_wait", "internal")}

    # Another day has none of these waits.
    assert hub.get("/wait-metrics", params={"from_date": "2026-03-03"}).json()["figures"] == []


def test_one_visits_intervals_and_the_days_tickets_for_a_replay(
    hub: httpx.Client, feeds: dict[str, FakeFeed]
) -> None:
    logged_ids(hub, a_morning(feeds))
    visit = hub.get("/wait-metrics/visits/v1").json()
    assert visit["department"] == "internal"
    minutes = {i["interval"]: i["minutes"] for i in visit["intervals"]}
    assert minutes == {
        "registration_to_call": 6,
        "queue_wait": 5,
        "consultation": 8,
        "order_to_payment": 12,
        "payment_to_result": 30,
        "order_to_result": 42,
    }
    assert hub.get("/wait-metrics/visits/nobody").status_code == 404

    tickets = hub.get("/wait-metrics/tickets", params={"from_date": DAY, "queue": "internal"}).json()
    assert [instant(t["queued_at"]) for t in tickets] == [T0 + timedelta(minutes=m) for m in (1, 3, 5)]
    assert instant(tickets[0]["ended_at"]) == T0 + timedelta(minutes=14)
    assert all(set(t) == {"queue", "department", "queued_at", "called_at", "service_started_at", "ended_at"}
               for t in tickets)  # fmt: skip


@pytest.mark.parametrize(
    ("params", "status", "slug"),
    [
        ({"from_date": "2026-03-05", "to_date": "2026-03-01"}, 400, "invalid-range"),
        ({"from_date": "2026-01-01", "to_date": "2026-03-01"}, 400, "invalid-range"),
        ({"from_date": "2100-01-01"}, 400, "invalid-range"),
        ({"from_date": "9999-12-31"}, 400, "invalid-range"),
        ({"from_date": "yesterday"}, 400, "invalid-parameter"),
        ({"group_by": "department,ward"}, 400, "invalid-grouping"),
        ({"department": "nowhere"}, 400, "unknown-department"),
        ({"queue": "nowhere"}, 400, "unknown-queue"),
        ({"department": "x" * 33}, 400, "invalid-parameter"),
        ({"department": "内科"}, 400, "invalid-parameter"),
    ],
)
def test_bad_metrics_queries_are_problems(
    hub: httpx.Client, feeds: dict[str, FakeFeed], params: dict[str, str], status: int, slug: str
) -> None:
    logged_ids(hub, a_morning(feeds))
    response = hub.get("/wait-metrics", params=params)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["type"].endswith(slug)


def test_metrics_need_metrics_read(hub: httpx.Client) -> None:
    with as_caller(hub, "nurse-dev", {"events:read", "triage:read", "registration:read"}) as nurse:
        assert nurse.get("/wait-metrics").status_code == 403
        assert nurse.get("/wait-metrics/tickets").status_code == 403
    with as_caller(hub, "app-dev", {"metrics:read"}, patient="p-v1") as app:
        assert app.get("/wait-metrics").status_code == 403  # never for one patient's app
