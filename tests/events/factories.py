"""Source events as the services' feeds serve them, and small readers of the hub's API."""

import uuid
from datetime import datetime
from typing import Any

import httpx

from kit.auth import mint_internal_token
from kit.clock import utcnow
from kit.testing import HTTP_TIMEOUT_SECONDS, TEST_SECRET, FakeFeed
from tests.e2e.clients import eventually


def source_event(
    event_type: str,
    *,
    visit_id: str | None = None,
    patient_id: str | None = None,
    aggregate: tuple[str, str] | None = None,
    occurred_at: datetime | None = None,
    data: dict[str, Any] | None = None,
    causes: dict[str, int] | None = None,
) -> dict[str, Any]:
    """An event in `kit.outbox.event_to_json` form, without its position (the feed assigns it);
    `causes` maps a source to the position in its feed this event happened after."""
    aggregate_type, aggregate_id = aggregate or ("visit", visit_id or str(uuid.uuid4()))
    return {
        "id": str(uuid.uuid4()),
        "type": event_type,
        "version": 1,
        "aggregate": {"type": aggregate_type, "id": aggregate_id},
        "sequence": 1,
        "occurred_at": (occurred_at or utcnow()).isoformat(),
        "visit_id": visit_id,
        "patient_id": patient_id,
        "data": data or {},
        "causes": [{"source": source, "position": at} for source, at in sorted((causes or {}).items())],
    }


def triaged_after(opened: dict[str, Any]) -> dict[str, Any]:
    """Triage's event for a visit, caused by registration's published opening (triage looked it up)."""
    visit = {"visit_id": opened["visit_id"], "patient_id": opened["patient_id"]}
    return source_event("visit.triaged", **visit, causes={"registration": opened["position"]})


def publish(feeds: dict[str, FakeFeed], source: str, event: dict[str, Any]) -> dict[str, Any]:
    return feeds[source].publish({**event, "source": source})


def read_log(client: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    """Every event the caller may see, following `next_after` to the end."""
    events: list[dict[str, Any]] = []
    after = 0
    while True:
        response = client.get("/log", params={"after": after, "limit": 500, **params})
        assert response.status_code == 200, response.text
        page = response.json()
        events += page["events"]
        if page["next_after"] == after:
            return events
        after = page["next_after"]


def logged_ids(client: httpx.Client, count: int) -> list[str]:
    """The ids in the log once it holds at least `count` events."""
    events = eventually(
        lambda: e if len(e := read_log(client)) >= count else None, what=f"{count} logged events"
    )
    return [e["id"] for e in events]


def as_caller(hub: httpx.Client, subject: str, scopes: set[str], patient: str | None = None) -> httpx.Client:
    """A client on the same hub with another caller's credentials (as the gateway would mint them)."""
    token = mint_internal_token(TEST_SECRET, subject, scopes, audience="events", patient=patient)
    return httpx.Client(
        base_url=hub.base_url, headers={"authorization": f"Bearer {token}"}, timeout=HTTP_TIMEOUT_SECONDS
    )
