"""Webhooks: owned subscriptions, signed deliveries, retries, dead letters and per-visit order."""

import base64
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from kit.testing import FakeFeed, eventually, make_test_settings
from services.events.config import EventsSettings
from services.events.service import retry_delay
from services.events.signing import InvalidSignature, signed_headers, verify
from tests.events.conftest import HubStarter
from tests.events.factories import as_caller, publish, read_log, source_event, triaged_after
from tests.events.receiver import WebhookReceiver, fail_first, served_receiver

HIS_SCOPES = {
    "events:read",
    "events:subscribe",
    "registration:read",
    "triage:read",
    "results:read",
    "billing:read",
}


def subscribe(
    client: httpx.Client, receiver: WebhookReceiver, types: list[str] | None = None
) -> dict[str, Any]:
    response = client.post("/subscriptions", json={"url": receiver.url, "event_types": types or ["*"]})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    receiver.secret = created["secret"]
    return created


def deliveries(client: httpx.Client, subscription_id: str, status: str | None = None) -> list[dict[str, Any]]:
    params = {"status": status} if status else {}
    response = client.get(f"/subscriptions/{subscription_id}/deliveries", params=params)
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()
    return found


def test_subscriptions_belong_to_their_owner(hub: httpx.Client, receiver: WebhookReceiver) -> None:
    with as_caller(hub, "his-dev", HIS_SCOPES) as his, as_caller(hub, "lis-dev", HIS_SCOPES) as lis:
        created = subscribe(his, receiver, ["visit.opened"])
        assert created["secret"].startswith("whsec_")
        assert len(base64.b64decode(created["secret"].removeprefix("whsec_"))) == 32
        assert [s["id"] for s in his.get("/subscriptions").json()] == [created["id"]]
        assert "secret" not in his.get(f"/subscriptions/{created['id']}").json()
        assert lis.get("/subscriptions").json() == []
        assert lis.get(f"/subscriptions/{created['id']}").status_code == 404
        assert lis.delete(f"/subscriptions/{created['id']}").status_code == 404
        assert his.delete(f"/subscriptions/{created['id']}").status_code == 204
        assert his.get(f"/subscriptions/{created['id']}").status_code == 404
        for body in (
            {"url": "ftp://his.example/x", "event_types": ["*"]},
            {"url": receiver.url, "event_types": []},
        ):
            assert his.post("/subscriptions", json=body).status_code == 422
    with as_caller(hub, "reader", {"events:read"}) as reader:
        assert (
            reader.post("/subscriptions", json={"url": receiver.url, "event_types": ["*"]}).status_code == 403
        )


def test_deliveries_are_signed_with_the_subscription_secret(
    hub: httpx.Client, feeds: dict[str, FakeFeed], receiver: WebhookReceiver
) -> None:
    with as_caller(hub, "his-dev", HIS_SCOPES) as his:
        subscribe(his, receiver, ["visit.opened"])
    event = publish(feeds, "registration", source_event("visit.opened", visit_id="v1", patient_id="p1"))
    publish(feeds, "triage", source_event("visit.triaged", visit_id="v1", patient_id="p1"))  # not asked for
    eventually(lambda: receiver.delivered_ids() == [event["id"]], what="the signed delivery")
    assert receiver.rejected == 0
    assert receiver.delivered == [e for e in read_log(hub) if e["type"] == "visit.opened"]


def backlog(hub: httpx.Client) -> float:
    """The `patientflow_webhook_backlog` gauge as the hub's open /metrics route reports it."""
    response = hub.get("/metrics", headers={"authorization": ""})
    assert response.status_code == 200, response.text
    [value] = [
        sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
        if sample.name == "patientflow_webhook_backlog"
    ]
    return value


def test_retry_delay_backs_off_exponentially_with_jitter_up_to_the_cap(tmp_path: Path) -> None:
    settings = make_test_settings(
        EventsSettings, tmp_path, webhook_retry_base_seconds=1.0, webhook_retry_cap_seconds=600.0
    )
    for attempts in range(1, 16):
        ceiling = min(600.0, 1.0 * 2 ** (attempts - 1))  # 1, 2, 4, ..., 512, then 600
        draws = [retry_delay(settings, attempts) for _ in range(500)]
        # Half fixed, half random: within [ceiling / 2, ceiling], never above the cap ...
        assert all(ceiling / 2 <= delay <= ceiling <= 600.0 for delay in draws), (attempts, draws)
        # ... and the random half really varies over its range.
        assert min(draws) < 0.6 * ceiling and max(draws) > 0.9 * ceiling, attempts
    # Uncapped, each attempt waits at least as long as the previous one could at most (exponential growth).
    assert min(retry_delay(settings, 10) for _ in range(500)) >= 256.0


def test_the_default_retry_window_is_three_days(tmp_path: Path) -> None:
    defaults = make_test_settings(EventsSettings, tmp_path)
    assert defaults.webhook_retry_window_seconds == 3 * 24 * 3600
    assert defaults.webhook_retry_cap_seconds < defaults.webhook_retry_window_seconds


def test_a_signature_binds_the_body_the_id_and_the_time() -> None:
    secret, body = "whsec_" + base64.b64encode(b"k" * 32).decode(), b'{"a":1}'
    headers = signed_headers(secret, "evt-1", body, now=1_000_000)
    assert verify(secret, headers, body, now=1_000_010) == "evt-1"
    with pytest.raises(InvalidSignature):
        verify(secret, headers, b'{"a":2}', now=1_000_010)
    with pytest.raises(InvalidSignature):
        verify(secret, headers | {"webhook-id": "evt-2"}, body, now=1_000_010)
    with pytest.raises(InvalidSignature):  # a captured delivery replayed an hour later
        verify(secret, headers, body, now=1_003_600)


def test_a_failing_receiver_is_retried_until_it_answers(
    hub: httpx.Client, feeds: dict[str, FakeFeed], receiver: WebhookReceiver
) -> None:
    receiver.answer = fail_first(2)
    with as_caller(hub, "his-dev", HIS_SCOPES) as his:
        subscription = subscribe(his, receiver)
        event = publish(feeds, "registration", source_event("visit.opened", visit_id="v1", patient_id="p1"))
        eventually(lambda: receiver.delivered_ids() == [event["id"]], what="the delivery after two failures")
        assert receiver.attempts == [event["id"]] * 3
        [delivery] = eventually(
            lambda: deliveries(his, subscription["id"], "delivered"), what="the delivered row"
        )
    assert (delivery["attempts"], delivery["last_status_code"]) == (3, 204)


def test_the_backlog_gauge_counts_pending_deliveries_until_they_are_delivered(
    hub: httpx.Client, feeds: dict[str, FakeFeed], receiver: WebhookReceiver
) -> None:
    receiver.answer = lambda _event: 503
    with as_caller(hub, "his-dev", HIS_SCOPES) as his:
        subscription = subscribe(his, receiver)
    event = publish(feeds, "registration", source_event("visit.opened", visit_id="v1", patient_id="p1"))
    eventually(lambda: receiver.attempts.count(event["id"]) >= 2, what="a retried failing delivery")
    eventually(lambda: backlog(hub) >= 1, what="the backlog gauge to count the failing delivery")
    assert receiver.delivered_ids() == []

    receiver.answer = lambda _event: 204
    eventually(
        lambda: receiver.delivered_ids() == [event["id"]], what="the delivery once the receiver accepts"
    )
    with as_caller(hub, "his-dev", HIS_SCOPES) as his:
        eventually(lambda: deliveries(his, subscription["id"], "delivered"), what="the delivered row")
    eventually(lambda: backlog(hub) == 0, what="the backlog gauge to drop to 0")


def test_deliveries_die_after_the_retry_window_and_can_be_replayed(
    start_hub: HubStarter, feeds: dict[str, FakeFeed], receiver: WebhookReceiver
) -> None:
    receiver.answer = lambda _event: 503
    with start_hub(webhook_retry_window_seconds=0.3) as hub, as_caller(hub, "his-dev", HIS_SCOPES) as his:
        subscription = subscribe(his, receiver)
        event = publish(feeds, "registration", source_event("visit.opened", visit_id="v1", patient_id="p1"))
        [dead] = eventually(lambda: deliveries(his, subscription["id"], "dead"), what="a dead letter")
        assert dead["event_id"] == event["id"] and dead["attempts"] >= 2 and dead["last_status_code"] == 503
        assert receiver.delivered_ids() == []

        receiver.answer = lambda _event: 200
        replay = his.post(f"/subscriptions/{subscription['id']}/replay")
        assert replay.json() == {"replayed": 1}
        eventually(lambda: receiver.delivered_ids() == [event["id"]], what="the replayed delivery")
        assert deliveries(his, subscription["id"], "dead") == []


def test_a_failing_event_holds_back_only_the_later_events_of_its_visit(
    hub: httpx.Client, feeds: dict[str, FakeFeed], receiver: WebhookReceiver
) -> None:
    receiver.answer = fail_first(
        4, only=lambda event: event["type"] == "visit.opened" and event["visit_id"] == "a"
    )
    with as_caller(hub, "his-dev", HIS_SCOPES) as his:
        subscribe(his, receiver)
    a1 = publish(feeds, "registration", source_event("visit.opened", visit_id="a", patient_id="p1"))
    b1 = publish(feeds, "registration", source_event("visit.opened", visit_id="b", patient_id="p2"))
    a2 = publish(feeds, "triage", triaged_after(a1))
    b2 = publish(feeds, "triage", triaged_after(b1))
    eventually(lambda: len(receiver.delivered_ids()) == 4, what="all four deliveries")
    delivered = receiver.delivered_ids()
    assert delivered.index(a1["id"]) < delivered.index(a2["id"])
    assert delivered.index(b1["id"]) < delivered.index(b2["id"]) < delivered.index(a1["id"])  # b went on
    # a2 was not even tried while a1 was failing
    assert receiver.attempts.index(a2["id"]) > len(receiver.attempts) - 1 - receiver.attempts[::-1].index(
        a1["id"]
    )


def test_a_subscription_gets_only_what_its_owner_may_see(
    hub: httpx.Client, feeds: dict[str, FakeFeed], receiver: WebhookReceiver
) -> None:
    scopes = {"events:read", "events:subscribe", "registration:read", "triage:read"}  # no billing:read
    with as_caller(hub, "app-dev", scopes, patient="p2") as app:
        subscription = subscribe(app, receiver)
        assert subscription["patient_id"] == "p2"
    for visit_id, patient_id in (("v1", "p1"), ("v2", "p2")):
        opened = publish(
            feeds, "registration", source_event("visit.opened", visit_id=visit_id, patient_id=patient_id)
        )
        publish(feeds, "billing", source_event("charge.posted", visit_id=visit_id, patient_id=patient_id))
    last = publish(feeds, "triage", triaged_after(opened))
    eventually(lambda: last["id"] in receiver.delivered_ids(), what="the patient's last event")
    assert [(e["type"], e["visit_id"]) for e in receiver.delivered] == [
        ("visit.opened", "v2"),
        ("visit.triaged", "v2"),
    ]


def test_an_app_acting_for_one_patient_cannot_reach_another_patients_subscription(
    hub: httpx.Client, feeds: dict[str, FakeFeed], receiver: WebhookReceiver
) -> None:
    scopes = {"events:read", "events:subscribe", "registration:read"}
    with (
        as_caller(hub, "app-dev", scopes, patient="p1") as for_p1,
        as_caller(hub, "app-dev", scopes, patient="p2") as for_p2,
    ):
        subscription = subscribe(for_p1, receiver)
        event = publish(feeds, "registration", source_event("visit.opened", visit_id="v1", patient_id="p1"))
        eventually(lambda: receiver.delivered_ids() == [event["id"]], what="p1's delivery")
        path = f"/subscriptions/{subscription['id']}"
        assert for_p2.get("/subscriptions").json() == []
        assert for_p2.get(path).status_code == 404
        assert for_p2.get(f"{path}/deliveries").status_code == 404  # would list p1's visit events
        assert for_p2.post(f"{path}/replay").status_code == 404
        assert for_p2.delete(path).status_code == 404
        assert [s["id"] for s in for_p1.get("/subscriptions").json()] == [subscription["id"]]
        assert [d["event_id"] for d in deliveries(for_p1, subscription["id"])] == [event["id"]]


def test_a_revoked_owners_subscriptions_are_deleted_with_their_pending_deliveries(
    hub: httpx.Client, feeds: dict[str, FakeFeed], receiver: WebhookReceiver
) -> None:
    receiver.answer = lambda _event: 503  # his-dev's deliveries stay pending until they are dropped
    with (
        served_receiver() as other,
        as_caller(hub, "his-dev", HIS_SCOPES) as his,
        as_caller(hub, "his-dev", HIS_SCOPES, patient="p1") as his_for_p1,
        as_caller(hub, "lis-dev", HIS_SCOPES) as lis,
    ):
        plain = subscribe(his, receiver)
        subscribe(his_for_p1, receiver)
        receiver.secret = plain["secret"]  # the second one's deliveries are refused: pending too
        kept = subscribe(lis, other)
        first = publish(feeds, "registration", source_event("visit.opened", visit_id="v1", patient_id="p1"))
        eventually(lambda: first["id"] in receiver.attempts, what="a failing delivery to his-dev")
        eventually(lambda: other.delivered_ids() == [first["id"]], what="lis-dev's delivery")

        path = "/owners/his-dev/subscriptions"
        assert his.delete(path).status_code == 403  # outside clients, whatever their scopes
        assert lis.delete(path).status_code == 403
        assert hub.delete(path).json() == {"deleted": 2}
        assert hub.delete(path).json() == {"deleted": 0}
        assert his.get("/subscriptions").json() == []
        assert his.get(f"/subscriptions/{plain['id']}/deliveries").status_code == 404
        assert [s["id"] for s in lis.get("/subscriptions").json()] == [kept["id"]]

        second = publish(feeds, "registration", source_event("visit.opened", visit_id="v2", patient_id="p1"))
        eventually(
            lambda: other.delivered_ids() == [first["id"], second["id"]], what="lis-dev's second delivery"
        )
        eventually(lambda: backlog(hub) == 0, what="no pending deliveries left (his-dev's were dropped)")
        assert second["id"] not in receiver.attempts
        assert receiver.delivered_ids() == []
