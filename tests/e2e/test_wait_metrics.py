"""Wait metrics with real processes: a journey made through the gateway shows up, interval by interval,
in the hub's metrics (`GET /v1/wait-metrics…`, `metrics:read`)."""

from datetime import datetime, timedelta
from typing import Any

from kit.clock import hospital_date, utcnow
from tests.e2e.clients import Gateway, assert_problem, eventually, ok
from tests.e2e.test_journey import full_visit

INTERVALS = {
    "registration_to_triage",
    "registration_to_call",
    "queue_wait",
    "consultation",
    "order_to_payment",
    "payment_to_result",
    "order_to_result",
}


def test_a_journeys_intervals_appear_in_the_metrics(gateway: Gateway) -> None:
    made = full_visit(gateway)
    visit = made["visit"]
    department = visit["department"]

    def finished_intervals() -> dict[str, Any] | None:
        response = gateway.his.get(f"/v1/wait-metrics/visits/{visit['id']}")
        if response.status_code != 200:
            return None
        body: dict[str, Any] = response.json()
        done = {i["interval"] for i in body["intervals"] if i["ended_at"] is not None}
        return body if done == INTERVALS else None

    waits = eventually(finished_intervals, what="the visit's seven intervals, finished, in the hub")
    assert waits["department"] == department
    by_kind = {i["interval"]: i for i in waits["intervals"]}
    assert by_kind["queue_wait"]["queue"] == department
    assert by_kind["queue_wait"]["subject"] == made["ticket"]["id"]
    assert by_kind["order_to_result"]["subject"] == made["order"]["id"]
    opened = datetime.fromisoformat(visit["opened_at"])
    registered = datetime.fromisoformat(by_kind["registration_to_call"]["started_at"])
    assert abs(registered - opened) < timedelta(seconds=1)  # the event's own stamp, in the same commit
    assert all(i["minutes"] >= 0 for i in waits["intervals"])

    days = {"from_date": hospital_date(opened).isoformat(), "to_date": hospital_date(utcnow()).isoformat()}
    metrics = ok(
        gateway.admin.get("/v1/wait-metrics", params={**days, "department": department, "group_by": "queue"})
    )
    figures = {(f["interval"], f["queue"]): f for f in metrics["figures"]}
    queue_wait = figures[("queue_wait", department)]
    assert (queue_wait["count"], queue_wait["open"]) == (1, 0)
    assert queue_wait["mean_minutes"] == queue_wait["p90_minutes"] == by_kind["queue_wait"]["minutes"]
    assert {kind for kind, _ in figures} == INTERVALS

    tickets = ok(gateway.his.get("/v1/wait-metrics/tickets", params={**days, "queue": department}))
    assert [t["queue"] for t in tickets] == [department]
    assert tickets[0]["ended_at"] is not None


def test_metrics_through_the_gateway_need_metrics_read_and_good_input(gateway: Gateway) -> None:
    assert_problem(gateway.nurse.get("/v1/wait-metrics"), 403)
    assert_problem(gateway.app.get("/v1/wait-metrics"), 403)
    inverted = {"from_date": "2026-03-05", "to_date": "2026-03-01"}
    assert assert_problem(gateway.his.get("/v1/wait-metrics", params=inverted), 400)["type"].endswith(
        "invalid-range"
    )
    unknown = assert_problem(gateway.his.get("/v1/wait-metrics", params={"department": "no-such-dept"}), 400)
    assert unknown["type"].endswith("unknown-department")
    assert_problem(gateway.his.get("/v1/wait-metrics/visits/no-such-visit"), 404)
