"""`GET /log`: every service's events in one order, filtered to what each caller may see."""

import httpx

from kit.testing import FakeFeed
from tests.events.factories import as_caller, logged_ids, publish, read_log, source_event


def publish_one_visit(feeds: dict[str, FakeFeed], visit_id: str, patient_id: str) -> None:
    """A visit's events in all four services, each caused by the one before (as the services carry it)."""
    opened = source_event("visit.opened", visit_id=visit_id, patient_id=patient_id)
    at = publish(feeds, "registration", opened)["position"]
    triaged = source_event(
        "visit.triaged", visit_id=visit_id, patient_id=patient_id, causes={"registration": at}
    )
    at = publish(feeds, "triage", triaged)["position"]
    order = source_event(
        "order.placed", visit_id=visit_id, aggregate=("order", visit_id), causes={"triage": at}
    )
    at = publish(feeds, "results", order)["position"]
    charge = source_event("charge.posted", visit_id=visit_id, patient_id=patient_id, causes={"results": at})
    publish(feeds, "billing", charge)


def test_the_log_holds_every_source_in_causal_order_with_its_own_positions(
    hub: httpx.Client, feeds: dict[str, FakeFeed]
) -> None:
    publish_one_visit(feeds, "v1", "p1")
    logged_ids(hub, 4)
    events = read_log(hub)
    assert [e["type"] for e in events] == ["visit.opened", "visit.triaged", "order.placed", "charge.posted"]
    assert [e["position"] for e in events] == sorted(e["position"] for e in events)
    assert [e["visit_sequence"] for e in events] == [1, 2, 3, 4]
    assert {e["source"] for e in events} == {"registration", "triage", "results", "billing"}
    assert all(e["source_position"] == 1 and e["patient_id"] == "p1" for e in events)


def test_callers_see_only_the_sources_their_scopes_read(
    hub: httpx.Client, feeds: dict[str, FakeFeed]
) -> None:
    publish_one_visit(feeds, "v1", "p1")
    logged_ids(hub, 4)
    last = read_log(hub)[-1]["position"]
    with as_caller(hub, "nurse-dev", {"events:read", "registration:read", "triage:read"}) as nurse:
        assert [e["type"] for e in read_log(nurse)] == ["visit.opened", "visit.triaged"]
    with as_caller(hub, "billing-only", {"events:read", "billing:read"}) as cashier:
        hidden = cashier.get("/log", params={"limit": 3, "type": "visit.opened,visit.triaged"}).json()
        assert hidden == {"events": [], "next_after": last}  # moved past what it may not see
        page = cashier.get("/log", params={"limit": 1}).json()
        assert [e["type"] for e in page["events"]] == ["charge.posted"]
        assert page["next_after"] == last
        assert cashier.get("/log", params={"after": last}).json() == {"events": [], "next_after": last}
    with as_caller(hub, "no-events-scope", {"registration:read"}) as other:
        assert other.get("/log").status_code == 403


def test_a_caller_acting_for_a_patient_sees_that_patients_events_only(
    hub: httpx.Client, feeds: dict[str, FakeFeed]
) -> None:
    publish_one_visit(feeds, "v1", "p1")
    publish_one_visit(feeds, "v2", "p2")
    logged_ids(hub, 8)
    scopes = {"events:read", "registration:read", "triage:read", "results:read", "billing:read"}
    with as_caller(hub, "app-dev", scopes, patient="p2") as app:
        events = read_log(app)
    assert len(events) == 4 and {e["visit_id"] for e in events} == {"v2"}


def test_type_filter_takes_several_types(hub: httpx.Client, feeds: dict[str, FakeFeed]) -> None:
    publish_one_visit(feeds, "v1", "p1")
    logged_ids(hub, 4)
    events = read_log(hub, type="charge.posted,visit.opened")
    assert [e["type"] for e in events] == ["visit.opened", "charge.posted"]


def test_the_catalogue_serves_a_versioned_schema_per_event_type(hub: httpx.Client) -> None:
    listed = hub.get("/schemas").json()["schemas"]
    assert {"type": "visit.opened", "version": 1} in [
        {"type": s["type"], "version": s["version"]} for s in listed
    ]
    schema = hub.get("/schemas/visit.opened").json()
    assert schema["properties"]["type"] == {"const": "visit.opened"}
    assert hub.get("/schemas/visit.opened", params={"version": 1}).json() == schema
    assert hub.get("/schemas/visit.teleported").status_code == 404
    with as_caller(hub, "no-events-scope", {"registration:read"}) as other:
        assert other.get("/schemas").status_code == 403
