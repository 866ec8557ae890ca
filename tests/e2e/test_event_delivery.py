"""Both foundation journeys reach an SSE client and a webhook receiver: every event, once, in visit order.

The SSE client follows `/v1/events/stream` through the gateway and reconnects with `Last-Event-ID` when
the gateway restarts between the journeys; the webhook receiver is a real HTTP server that verifies
every signature. What "every event" means comes from the services' own feeds, not from the hub.
"""

import threading
from typing import Any

import httpx
from jsonschema import Draft202012Validator

import tests.e2e.test_journeys as journeys
from kit.auth import mint_internal_token
from kit.testing import HTTP_TIMEOUT_SECONDS
from patientflow.supervisor import System
from services.events.service import SOURCES
from tests.e2e.clients import Gateway, eventually, ok
from tests.events.receiver import WebhookReceiver
from tests.events.sse import sse_messages

Event = dict[str, Any]
RECONNECT_SECONDS = 0.2  # an EventSource's `retry`: how long to wait before trying the stream again


def service_client(system: System, name: str) -> httpx.Client:
    """A client on one service directly, as a sibling service would call it."""
    scopes = {"events:read"} if name == "events" else set()  # services' own feeds need no scope
    token = mint_internal_token(
        system.env["PATIENTFLOW_INTERNAL_SECRET"], "service:e2e", scopes, audience=name
    )
    return httpx.Client(
        base_url=system.url(name), headers={"authorization": f"Bearer {token}"}, timeout=HTTP_TIMEOUT_SECONDS
    )


def read_feed(client: httpx.Client, path: str, after: int = 0) -> tuple[list[Event], int]:
    """Every event of a feed (a service's `/events` or the hub's `/log`) after a cursor, and the end."""
    events: list[Event] = []
    while True:
        page = ok(client.get(path, params={"after": after, "limit": 500}))
        events += page["events"]
        if page["next_after"] == after:
            return events, after
        after = page["next_after"]


class StreamFollower:
    """Follows an event stream in a thread, resuming with `Last-Event-ID` whenever the stream breaks.

    Between tries it waits as an SSE client waits before reconnecting, but stops waiting the moment
    the test stops following.
    """

    def __init__(self, url: str, headers: dict[str, str], after: int) -> None:
        self.url, self.headers, self.after = url, headers, after
        self.last_id: str | None = None
        self.received: list[Event] = []
        self.connections = 0
        self._stop = threading.Event()
        self._response: httpx.Response | None = None
        self._thread = threading.Thread(target=self._run, name="sse-follower", daemon=True)

    def __enter__(self) -> "StreamFollower":
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        if self._response is not None:
            self._response.close()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        timeout = httpx.Timeout(10.0, read=30.0)  # the hub sends a heartbeat every 15 s
        with httpx.Client(timeout=timeout) as client:
            while not self._stop.is_set():
                resume = {"last-event-id": self.last_id} if self.last_id else {}
                try:
                    with client.stream(
                        "GET", self.url, params={"after": self.after}, headers=self.headers | resume
                    ) as response:
                        if response.status_code != 200:  # the gateway or the hub is restarting
                            self._stop.wait(RECONNECT_SECONDS)
                            continue
                        self._response = response
                        self.connections += 1
                        for message in sse_messages(response.iter_lines()):
                            if message.comment is None:
                                self.received.append(message.json())
                                self.last_id = message.id
                except Exception:  # the connection broke (or we closed it to stop): resume
                    self._stop.wait(RECONNECT_SECONDS)


def first_occurrences(events: list[Event]) -> list[Event]:
    """De-duplicated by id, keeping arrival order."""
    seen: set[str] = set()
    return [e for e in events if not (e["id"] in seen or seen.add(e["id"]))]  # type: ignore[func-returns-value]


def assert_per_visit_order(arrived: list[Event], log: list[Event]) -> None:
    """Each visit's events arrive in the hub's order, numbered 1, 2, 3, ... without gaps or repeats."""
    for visit_id in {e["visit_id"] for e in log if e["visit_id"]}:
        expected = [e["id"] for e in log if e["visit_id"] == visit_id]
        got = [e for e in arrived if e["visit_id"] == visit_id]
        assert [e["id"] for e in got] == expected, f"visit {visit_id}"
        sequences = [e["visit_sequence"] for e in got]
        assert sequences == list(range(sequences[0], sequences[0] + len(sequences)))


def logged(hub: httpx.Client, after: int, wanted: set[str]) -> list[Event] | None:
    """The hub's log after a cursor, once it holds every wanted event."""
    events = read_feed(hub, "/log", after)[0]
    return events if wanted <= {e["id"] for e in events} else None


def test_both_journeys_reach_sse_and_webhooks_once_in_visit_order_across_a_gateway_restart(
    system: System, gateway: Gateway, receiver: WebhookReceiver
) -> None:
    hub = service_client(system, "events")
    sources = {name: service_client(system, name) for name in SOURCES}
    start = {name: read_feed(client, "/events")[1] for name, client in sources.items()}
    _, hub_start = read_feed(hub, "/log")
    subscription = ok(
        gateway.his.post("/v1/subscriptions", json={"url": receiver.url, "event_types": ["*"]}), 201
    )
    receiver.secret = subscription["secret"]
    stream_url = f"{system.url('gateway')}/v1/events/stream"
    his_key = gateway.his.headers["authorization"]
    with StreamFollower(stream_url, {"authorization": his_key}, after=hub_start) as follower:
        journeys.test_outpatient_prepay_journey(gateway)
        system.stop_service("gateway")
        system.start_service("gateway")
        journeys.test_green_channel_journey_with_billing_stopped(system, gateway)

        # Every event the four services wrote during the journeys, read from their own feeds.
        written = {e["id"] for name, c in sources.items() for e in read_feed(c, "/events", start[name])[0]}
        log = eventually(lambda: logged(hub, hub_start, written), what="the hub to log the journeys")
        eventually(
            lambda: written <= {e["id"] for e in follower.received}, what="the SSE client to get them all"
        )
        eventually(
            lambda: written <= set(receiver.delivered_ids()), what="the webhook receiver to get them all"
        )

    journey_log = [e for e in log if e["id"] in written]
    streamed = [e for e in follower.received if e["id"] in written]
    hooked = [e for e in first_occurrences(receiver.delivered) if e["id"] in written]
    assert follower.connections >= 2  # the gateway restart broke the stream, and it resumed
    assert [e["id"] for e in streamed] == [e["id"] for e in journey_log]  # resumed exactly: no gap, no repeat
    assert sorted(e["id"] for e in hooked) == sorted(written) and receiver.rejected == 0
    for event in journey_log:  # and each is what the published catalogue promises
        schema = ok(
            gateway.his.get(f"/v1/event-schemas/{event['type']}", params={"version": event["version"]})
        )
        Draft202012Validator(schema).validate(event)
    assert_per_visit_order(streamed, journey_log)
    assert_per_visit_order(hooked, journey_log)
    for visit_id in {e["visit_id"] for e in journey_log if e["type"] == "visit.opened"}:
        assert next(e for e in journey_log if e["visit_id"] == visit_id)["type"] == "visit.opened"
    # Across sources, causes come first: billing's `charge.paid` before the release it caused in results.
    paid_releases = [
        e for e in journey_log if e["type"] == "order.released" and e["data"]["reason"] == "paid"
    ]
    assert paid_releases, "the prepay journey releases its order on payment"
    for release in paid_releases:
        causes = [
            e
            for e in journey_log
            if e["type"] == "charge.paid" and e["data"]["order_id"] == release["aggregate"]["id"]
        ]
        assert causes and causes[0]["position"] < release["position"]
    for client in (hub, *sources.values()):
        client.close()
