"""Webhook destinations: private networks yes; link-local, unspecified and (in production) loopback no."""

import ipaddress
import socket
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from kit.testing import FakeFeed, eventually
from services.events import destinations
from services.events.config import EventsSettings
from services.events.destinations import DestinationPolicy, ResolveTimeout
from tests.events.conftest import HubStarter
from tests.events.factories import as_caller, publish, source_event
from tests.events.receiver import WebhookReceiver
from tests.events.test_webhooks import HIS_SCOPES, deliveries, subscribe

REAL_RESOLVE = destinations.resolve
STALL_CAP_SECONDS = 5.0
DEVELOPMENT = DestinationPolicy.of(environment="development", allowed_hosts=[])
PRODUCTION = DestinationPolicy.of(environment="production", allowed_hosts=["hooks.local", "127.0.0.1"])


@pytest.mark.parametrize(
    ("policy", "host", "address", "refused"),
    [
        (PRODUCTION, "his.lan", "10.1.2.3", False),  # hospital LAN
        (PRODUCTION, "lis.lan", "192.168.0.9", False),
        (PRODUCTION, "his.example", "203.0.113.7", False),
        (DEVELOPMENT, "metadata", "169.254.169.254", True),  # cloud metadata, always refused
        (PRODUCTION, "hooks.local", "169.254.169.254", True),  # even for a listed host
        (DEVELOPMENT, "x", "fe80::1", True),
        (DEVELOPMENT, "x", "::ffff:169.254.169.254", True),
        (DEVELOPMENT, "x", "0.0.0.0", True),
        (DEVELOPMENT, "x", "::", True),
        (DEVELOPMENT, "localhost", "127.0.0.1", False),  # a developer's receiver
        (PRODUCTION, "localhost", "127.0.0.1", True),
        (PRODUCTION, "x", "::1", True),
        (PRODUCTION, "hooks.local", "127.0.0.1", False),  # listed in EVENTS_WEBHOOK_ALLOWED_HOSTS
        (PRODUCTION, "HOOKS.local", "127.0.0.2", False),
    ],
)
def test_which_addresses_a_webhook_may_reach(
    policy: DestinationPolicy, host: str, address: str, refused: bool
) -> None:
    assert (policy.refusal(host, ipaddress.ip_address(address)) is not None) is refused


def test_allowed_hosts_are_read_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVENTS_WEBHOOK_ALLOWED_HOSTS", "hooks.local, 127.0.0.1")
    assert EventsSettings().webhook_allowed_hosts == ["hooks.local", "127.0.0.1"]


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1]:8080/hook",
        "http://[::ffff:169.254.169.254]/",
        "http://0.0.0.0:8080/hook",
    ],
)
def test_a_subscription_to_a_refused_address_is_a_422(hub: httpx.Client, url: str) -> None:
    with as_caller(hub, "his-dev", HIS_SCOPES) as his:
        response = his.post("/subscriptions", json={"url": url, "event_types": ["*"]})
        assert response.status_code == 422, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["title"] == "Webhook URL refused"
        assert his.get("/subscriptions").json() == []
        lan = his.post("/subscriptions", json={"url": "http://10.20.30.40/hook", "event_types": ["*"]})
        assert lan.status_code == 201, lan.text


def test_production_refuses_loopback_unless_the_host_is_allowed(
    start_hub: HubStarter, feeds: dict[str, FakeFeed], receiver: WebhookReceiver
) -> None:
    body = {"url": receiver.url, "event_types": ["*"]}
    with start_hub(environment="production") as hub, as_caller(hub, "his-dev", HIS_SCOPES) as his:
        assert his.post("/subscriptions", json=body).status_code == 422
    with (
        start_hub(environment="production", webhook_allowed_hosts=["127.0.0.1"]) as hub,
        as_caller(hub, "his-dev", HIS_SCOPES) as his,
    ):
        subscribe(his, receiver)
        event = publish(feeds, "registration", source_event("visit.opened", visit_id="v1", patient_id="p1"))
        eventually(lambda: receiver.delivered_ids() == [event["id"]], what="the delivery to an allowed host")


def test_each_delivery_checks_the_address_the_host_resolves_to_then(
    hub: httpx.Client,
    feeds: dict[str, FakeFeed],
    receiver: WebhookReceiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dns = {"receiver.hospital.test": "169.254.169.254"}  # re-pointed after the subscription (rebinding)
    real_resolve = destinations.resolve

    def resolve(host: str, port: int) -> Any:
        return [ipaddress.ip_address(dns[host])] if host in dns else real_resolve(host, port)

    monkeypatch.setattr(destinations, "resolve", resolve)
    url = httpx.URL(receiver.url).copy_with(host="receiver.hospital.test")
    with as_caller(hub, "his-dev", HIS_SCOPES) as his:
        dns["receiver.hospital.test"] = "10.9.9.9"
        response = his.post("/subscriptions", json={"url": str(url), "event_types": ["*"]})
        assert response.status_code == 201, response.text
        subscription = response.json()
        receiver.secret = subscription["secret"]
        dns["receiver.hospital.test"] = "169.254.169.254"
        event = publish(feeds, "registration", source_event("visit.opened", visit_id="v1", patient_id="p1"))

        def refused() -> dict[str, Any] | None:
            found = deliveries(his, subscription["id"], "pending")
            return found[0] if found and found[0]["attempts"] >= 2 else None

        failed = eventually(refused, what="refused attempts")
        assert failed["last_status_code"] is None
        assert failed["last_error"].startswith("refused destination: 169.254.169.254 is link-local")
        assert receiver.attempts == []

        dns["receiver.hospital.test"] = "127.0.0.1"  # the receiver, reached by its name
        eventually(
            lambda: receiver.delivered_ids() == [event["id"]], what="the delivery once the name is safe"
        )


class StalledResolver:
    """A resolver that does not answer until released (or, so that an unbounded caller cannot hang the
    suite, until a cap passes: then it fails like a name that does not exist)."""

    def __init__(self, hosts: set[str]) -> None:
        self.hosts = hosts
        self.released = threading.Event()
        self.asked = 0

    def __call__(self, host: str, port: int) -> Any:
        if host not in self.hosts:
            return REAL_RESOLVE(host, port)
        self.asked += 1
        if not self.released.wait(STALL_CAP_SECONDS):
            raise socket.gaierror(socket.EAI_NONAME, "stalled resolver gave up")
        return [ipaddress.ip_address("127.0.0.1")]


@pytest.fixture
def stalled(monkeypatch: pytest.MonkeyPatch) -> Iterator[StalledResolver]:
    resolver = StalledResolver({"stalled.hospital.test"})
    monkeypatch.setattr(destinations, "resolve", resolver)
    yield resolver
    resolver.released.set()


def test_a_lookup_that_does_not_answer_in_time_is_a_resolve_timeout() -> None:
    resolver = StalledResolver({"stalled.hospital.test"})
    policy = DestinationPolicy(production=False, resolve_timeout_seconds=0.05, resolver=resolver)
    with pytest.raises(ResolveTimeout, match=r"did not resolve within 0\.05 s"):
        policy.check_url("http://stalled.hospital.test/hook")
    with pytest.raises(OSError):  # a delivery counts it as a host that does not resolve
        policy.pin("https://stalled.hospital.test/hook")
    resolver.released.set()
    assert policy.pin("http://stalled.hospital.test:8080/hook").url.host == "127.0.0.1"
    assert resolver.asked == 3


def test_a_subscription_whose_host_does_not_resolve_in_time_is_a_422(
    start_hub: HubStarter, stalled: StalledResolver
) -> None:
    with (
        start_hub(webhook_resolve_timeout_seconds=0.05) as hub,
        as_caller(hub, "his-dev", HIS_SCOPES) as his,
    ):
        response = his.post(
            "/subscriptions", json={"url": "http://stalled.hospital.test/hook", "event_types": ["*"]}
        )
        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        assert problem["type"].endswith("/webhook-host-unresolved")
        assert problem["detail"].startswith("The destination host could not be resolved in time (0.05 s)")
        assert his.get("/subscriptions").json() == []  # nothing subscribed


def test_a_delivery_whose_host_stops_resolving_in_time_fails_and_is_retried(
    start_hub: HubStarter, feeds: dict[str, FakeFeed], receiver: WebhookReceiver, stalled: StalledResolver
) -> None:
    with (
        start_hub(webhook_resolve_timeout_seconds=0.05) as hub,
        as_caller(hub, "his-dev", HIS_SCOPES) as his,
    ):
        subscription = subscribe(his, receiver)  # the receiver's own address: checked at once
        stalled.hosts.add("127.0.0.1")  # from now on its lookups stall
        publish(feeds, "registration", source_event("visit.opened", visit_id="v1", patient_id="p1"))

        def retried() -> dict[str, Any] | None:
            found = deliveries(his, subscription["id"], "pending")
            return found[0] if found and found[0]["attempts"] >= 2 else None

        failed = eventually(retried, what="failed attempts")
        assert failed["last_error"] == "cannot resolve the host: 127.0.0.1 did not resolve within 0.05 s"
        assert receiver.attempts == []
