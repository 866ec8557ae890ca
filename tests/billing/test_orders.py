"""Order charges from results' feed: exactly once, never invented, never lost."""

import asyncio
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from kit.errors import ServiceUnavailable
from kit.feed import PAGE_SIZE, FeedReader, PageFailed
from kit.testing import FakeFeed, feed_headers, service_client
from patientflow.supervisor import free_port
from services.billing import consumers
from services.billing.app import create_app
from services.billing.models import BillingTable
from tests.billing.conftest import billing_settings, order_placed
from tests.billing.factories import (
    CBC,
    OUTPATIENT_FEE_FEN,
    account,
    consumer,
    new_visit,
    open_visit,
    register_unidentified,
    rejections,
    wait_until_consumed,
)


def order_charges(client: TestClient, visit_id: str) -> list[dict[str, object]]:
    return [c for c in account(client, visit_id)["charges"] if c["origin"] == "order"]


def test_order_placed_is_charged_once_with_its_order_id(
    registration: httpx.Client, client: TestClient, results_feed: FakeFeed
) -> None:
    visit = new_visit(registration, client)
    placed = order_placed(results_feed, visit, CBC, quantity=2)
    redelivered = results_feed.publish(placed)  # at-least-once: the same event again, at a later position
    wait_until_consumed(client, "results", redelivered["position"])
    with client.app.state.database.session() as session:  # type: ignore[attr-defined]
        unseen = client.app.state.unseen_visits  # type: ignore[attr-defined]
        consumers.apply_results_event(session, placed, unseen=unseen, credit_limit_fen=500_000)

    [charge] = order_charges(client, visit["id"])
    assert charge["order_id"] == placed["data"]["order_id"]
    assert (charge["item_code"], charge["quantity"], charge["unit_price_fen"]) == (CBC, 2, 2000)
    assert charge["amount_fen"] == 4000
    assert account(client, visit["id"])["charges_total_fen"] == OUTPATIENT_FEE_FEN + 4000
    assert rejections(client) == []


def test_a_second_event_for_the_same_order_is_refused_not_charged(
    registration: httpx.Client, client: TestClient, results_feed: FakeFeed
) -> None:
    visit = new_visit(registration, client)
    first = order_placed(results_feed, visit, CBC)
    again = order_placed(results_feed, visit, CBC, order_id=first["data"]["order_id"])
    wait_until_consumed(client, "results", again["position"])

    assert len(order_charges(client, visit["id"])) == 1
    [refused] = rejections(client, visit["id"])
    assert (refused["event_id"], refused["reason"]) == (again["id"], "duplicate-order")


def test_unknown_code_bad_quantity_and_unknown_visit_are_recorded_never_charged(
    registration: httpx.Client, client: TestClient, results_feed: FakeFeed
) -> None:
    visit = new_visit(registration, client)
    unknown_code = order_placed(results_feed, visit, "999999999")
    bad_quantity = order_placed(results_feed, visit, CBC, quantity=2.5)
    ghost = {"id": "7d0c6c39-0000-4000-8000-000000000000", "patient_id": visit["patient_id"]}
    no_visit = order_placed(results_feed, ghost, CBC)
    wait_until_consumed(client, "results", no_visit["position"])

    assert order_charges(client, visit["id"]) == []
    reasons = {r["event_id"]: (r["reason"], r["item_code"]) for r in rejections(client)}
    assert reasons == {
        unknown_code["id"]: ("unknown-item", "999999999"),
        bad_quantity["id"]: ("invalid-quantity", CBC),
        no_visit["id"]: ("unknown-visit", CBC),
    }
    assert client.get(f"/visits/{ghost['id']}/account").status_code == 404
    events = client.get("/events", headers=feed_headers("billing")).json()["events"]
    assert all(e["data"]["origin"] != "order" for e in events if e["type"] == "charge.posted")
    # Refusals on a visit billing knows are announced too (an unknown visit has no one to tell).
    refused = {
        e["data"]["source_event_id"]: e["data"]["reason"] for e in events if e["type"] == "charge.refused"
    }
    assert refused == {unknown_code["id"]: "unknown-item", bad_quantity["id"]: "invalid-quantity"}


def test_order_for_a_visit_billing_has_not_read_yet_is_charged_after_asking_registration(
    registration: httpx.Client, client: TestClient, results_feed: FakeFeed, registration_url: str
) -> None:
    registration_feed = consumer(client, "registration")
    registration_feed.stop()  # billing falls behind registration's feed
    patient = register_unidentified(registration)
    visit = open_visit(registration, patient["id"], payment_mode="settle_later")

    placed = order_placed(results_feed, visit, CBC)
    wait_until_consumed(client, "results", placed["position"])
    opened = account(client, visit["id"])
    assert (opened["patient_id"], opened["payment_mode"]) == (patient["id"], "settle_later")
    assert [c["item_code"] for c in opened["charges"]] == [CBC]

    async def catch_up() -> None:  # billing reads registration's feed again: the fee, once
        async with FeedReader(wait_seconds=0) as source:
            assert 0 < await registration_feed.poll_once(source) < PAGE_SIZE  # all there was

    asyncio.run(catch_up())
    assert sorted(c["item_code"] for c in account(client, visit["id"])["charges"]) == ["110200001", CBC]


def test_order_is_not_lost_while_registration_is_down(
    data_dir: Path, results_feed: FakeFeed, registration: httpx.Client
) -> None:
    dead_url = f"http://127.0.0.1:{free_port()}"  # a port nobody listens on
    results_feed.clear()
    settings = billing_settings(data_dir, registration_url=dead_url, results_url=results_feed.url)
    with service_client(create_app(settings), BillingTable.metadata) as client:
        reader = consumer(client, "results")
        reader.stop()  # polled by hand below: nothing races it
        visit = {"id": "5e2a8f4c-0000-4000-8000-000000000000", "patient_id": "p-1"}
        order_placed(results_feed, visit, CBC)

        async def read_a_page() -> None:
            async with FeedReader(wait_seconds=0) as source:
                await reader.poll_once(source)

        with pytest.raises(PageFailed) as failed:
            asyncio.run(read_a_page())
        assert isinstance(failed.value.__cause__, ServiceUnavailable)  # resolve cannot reach registration

        assert reader.cursor() == 0  # not consumed: the consumer will read it again
        assert rejections(client) == []
        assert client.get(f"/visits/{visit['id']}/account").status_code == 404
