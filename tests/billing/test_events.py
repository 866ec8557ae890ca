"""Billing's feed keeps the event catalogue's contract, and no amount anywhere is a float."""

import httpx
from fastapi.testclient import TestClient

from kit.testing import FakeFeed, eventually
from tests.billing.conftest import order_placed
from tests.billing.factories import (
    CBC,
    account,
    assert_no_floats,
    billing_events,
    keyed,
    new_visit,
    post_charge,
    post_payment,
)

CONTRACT = {
    "charge.posted": {"charge_id", "item_code", "quantity", "amount_fen", "order_id", "origin"},
    "charge.paid": {"charge_id", "order_id", "payment_id"},
    "payment.received": {"payment_id", "amount_fen", "method", "charge_ids"},
    "visit.settled": {"payment_id", "total_fen"},
    "invoice.issued": {
        "invoice_id",
        "number",
        "total_fen",
        "insurer_fen",
        "patient_fen",
        "insurance_scheme",
        "supersedes",
    },
}


def test_a_whole_visit_emits_contract_events_with_integer_amounts(
    registration: httpx.Client, client: TestClient, results_feed: FakeFeed
) -> None:
    visit = new_visit(registration, client, payment_mode="settle_later")
    order_placed(results_feed, visit, CBC)
    eventually(lambda: len(account(client, visit["id"])["charges"]) == 2, what="the order charge")
    post_payment(client, visit["id"])
    post_charge(client, visit["id"], "YP0001", 2)
    settled = client.post(f"/visits/{visit['id']}/settlement", json={"method": "alipay"}, headers=keyed())
    assert settled.status_code == 201, settled.text

    events = billing_events(client)
    assert [e["type"] for e in events] == [
        "charge.posted",
        "charge.posted",
        "payment.received",
        "charge.paid",
        "charge.paid",
        "charge.posted",
        "payment.received",
        "charge.paid",
        "invoice.issued",
        "visit.settled",
    ]
    for event in events:
        assert event["source"] == "billing"
        assert (event["visit_id"], event["patient_id"]) == (visit["id"], visit["patient_id"])
        assert event["aggregate"] == {"type": "visit", "id": visit["id"]}
        assert event["data"].keys() == CONTRACT[event["type"]]
    assert [e["sequence"] for e in events] == list(range(1, len(events) + 1))

    for document in (
        events,
        settled.json(),
        account(client, visit["id"]),
        client.get(f"/visits/{visit['id']}/daily-bill").json(),
        client.get("/catalogue").json(),
    ):
        assert_no_floats(document)
