"""The billing feed: a paid charge releases a prepay order, once, however often it is delivered."""

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from fastapi.testclient import TestClient

from kit.feed import FeedConsumer
from kit.testing import FakeFeed, eventually
from tests.results.factories import (
    charge_paid,
    create_patient,
    create_visit,
    events,
    place_order,
    post_report,
    released_order,
    report_body,
)


def billing_consumer(client: TestClient) -> FeedConsumer:
    consumers: list[FeedConsumer] = client.app.state.consumers  # type: ignore[attr-defined]
    return next(c for c in consumers if c.source == "billing")


def prepay_order(client: TestClient, registration: httpx.Client) -> dict[str, Any]:
    visit = create_visit(registration, create_patient(registration)["id"])
    return place_order(client, visit["id"])


def status_of(client: TestClient, order: dict[str, Any]) -> str:
    status: str = client.get(f"/orders/{order['id']}").json()["status"]
    return status


def test_charge_paid_on_billings_feed_releases_the_order_for_the_lab(
    client: TestClient, registration: httpx.Client, billing: FakeFeed
) -> None:
    order = prepay_order(client, registration)
    refused = client.post(f"/orders/{order['id']}/reports", json=report_body())
    assert refused.status_code == 402

    billing.publish(charge_paid(1, order))
    eventually(lambda: status_of(client, order) == "released", what="the charge.paid to be consumed")

    released = client.get(f"/orders/{order['id']}").json()
    assert released["released_at"] is not None
    [event] = events(client, "order.released")
    assert event["data"] == {"order_id": order["id"], "test_code": order["test_code"], "reason": "paid"}
    assert (event["visit_id"], event["patient_id"]) == (order["visit_id"], order["patient_id"])
    assert [o["id"] for o in client.get("/orders", params={"status": "released"}).json()] == [order["id"]]
    post_report(client, order["id"])


def test_the_same_charge_paid_applied_twice_has_one_effect(
    client: TestClient, registration: httpx.Client
) -> None:
    order = prepay_order(client, registration)
    consumer = billing_consumer(client)
    paid = charge_paid(1, order)

    consumer.apply(paid)
    consumer.apply(paid)  # the same page read again: the cursor is already past it
    consumer.apply(paid | {"position": 2})  # redelivered at a new position: the consumed-event record

    assert status_of(client, order) == "released"
    assert len(events(client, "order.released")) == 1
    assert consumer.cursor() == 2


def test_charge_paid_without_an_order_or_for_a_released_order_changes_nothing(
    client: TestClient, registration: httpx.Client
) -> None:
    consumer = billing_consumer(client)
    waiting = prepay_order(client, registration)
    settle_later = released_order(client, registration, patient_index=1)

    registration_fee = charge_paid(1, waiting)
    registration_fee["data"]["order_id"] = None
    consumer.apply(registration_fee)
    consumer.apply(charge_paid(2, settle_later))
    consumer.apply(charge_paid(3, {**waiting, "id": "no-such-order"}))

    assert status_of(client, waiting) == "awaiting_payment"
    assert [e["data"]["reason"] for e in events(client, "order.released")] == ["payment_mode"]


def test_other_billing_events_are_ignored(client: TestClient, registration: httpx.Client) -> None:
    order = prepay_order(client, registration)
    posted = charge_paid(1, order) | {"type": "charge.posted"}
    billing_consumer(client).apply(posted)
    assert status_of(client, order) == "awaiting_payment"


def test_a_held_read_of_an_order_answers_as_soon_as_payment_releases_it(
    client: TestClient, registration: httpx.Client, billing: FakeFeed
) -> None:
    """A lab screen asks `?wait=10&while_status=awaiting_payment` instead of polling: the answer comes
    when results applies the payment, not at the screen's next poll."""
    order = prepay_order(client, registration)
    commits = client.app.state.database.outbox_commits  # type: ignore[attr-defined]
    held_read = {"wait": 10, "while_status": "awaiting_payment"}
    with ThreadPoolExecutor(1) as pool:
        held = pool.submit(client.get, f"/orders/{order['id']}", params=held_read)
        eventually(lambda: commits.waiting, what="the read to be held")
        assert not held.done()
        billing.publish(charge_paid(1, order))
        answer = held.result()
    assert answer.status_code == 200
    assert answer.json()["status"] == "released"
    # Held until its time runs out, it answers the order as it stands; another status answers at once.
    unpaid = place_order(client, create_visit(registration, create_patient(registration, 1)["id"])["id"])
    for params in (
        {"wait": 0.2, "while_status": "awaiting_payment"},
        {"wait": 10, "while_status": "released"},
    ):
        still = client.get(f"/orders/{unpaid['id']}", params=params)
        assert (still.status_code, still.json()["status"]) == (200, "awaiting_payment")


def test_a_held_read_refuses_holds_and_statuses_it_does_not_know(
    client: TestClient, registration: httpx.Client
) -> None:
    order = prepay_order(client, registration)
    for params in (
        {"wait": 11, "while_status": "awaiting_payment"},  # longer than any hold (kit.params)
        {"wait": -1, "while_status": "awaiting_payment"},
        {"wait": "nan", "while_status": "awaiting_payment"},
        {"wait": "1e999", "while_status": "awaiting_payment"},
        {"wait": 1, "while_status": "paid"},
    ):
        refused = client.get(f"/orders/{order['id']}", params=params)
        assert refused.status_code == 400, params  # a bad query parameter (kit.errors)
        assert refused.headers["content-type"] == "application/problem+json"
    assert status_of(client, order) == "awaiting_payment"


def test_a_held_read_hears_of_a_status_change_no_event_announces(
    client: TestClient, registration: httpx.Client
) -> None:
    """Cancelling a final report nobody read gives its order back to the lab (`reported` → `released`)
    with no event of its own: the held read still wakes, for every change of status wakes it."""
    order = released_order(client, registration)
    report = post_report(client, order["id"])
    commits = client.app.state.database.outbox_commits  # type: ignore[attr-defined]
    held_read = {"wait": 10, "while_status": "reported"}
    with ThreadPoolExecutor(1) as pool:
        held = pool.submit(client.get, f"/orders/{order['id']}", params=held_read)
        eventually(lambda: commits.waiting, what="the read to be held")
        cancelled = client.post(f"/reports/{report['id']}/cancellation", json={"reason": "标本溶血"})
        assert cancelled.status_code == 200
        answer = held.result()
    # Not woken, it would answer after its 10 s what it read before the cancel: `reported`.
    assert answer.json()["status"] == "released"
    assert events(client, "report.amended_notice") == []
