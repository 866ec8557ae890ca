"""Triage's level I/II puts an open emergency visit on the green channel (green_channel.py), once."""

import uuid
from typing import Any

from fastapi.testclient import TestClient

from kit.testing import FakeFeed, eventually
from tests.registration.factories import create_patient, create_visit, visit_event
from tests.registration.test_stays import feed


def visit_triaged(visit: dict[str, Any], level: str) -> dict[str, Any]:
    """A `visit.triaged` as triage publishes it."""
    data = {
        "assessment_id": str(uuid.uuid4()),
        "level": level,
        "zone": "red" if level in ("I", "II") else "yellow",
        "suggested_level": None,
        "green_channel": level in ("I", "II"),
    }
    return visit_event(visit, "visit.triaged", source="triage", data=data)


def payment_mode(client: TestClient, visit: dict[str, Any]) -> str:
    mode: str = client.get(f"/visits/{visit['id']}").json()["payment_mode"]
    return mode


def test_level_i_or_ii_puts_an_emergency_visit_on_the_green_channel_once(
    client: TestClient, triage_feed: FakeFeed
) -> None:
    patient = create_patient(client)
    level_iii = create_visit(client, patient["id"], kind="emergency", department="emergency")
    level_ii = create_visit(client, patient["id"], kind="emergency", department="emergency")
    outpatient = create_visit(client, patient["id"])
    triage_feed.publish(visit_triaged(level_iii, "III"))
    triage_feed.publish(visit_triaged(outpatient, "I"))  # the green channel is for emergency visits only
    triaged = triage_feed.publish(visit_triaged(level_ii, "II"))
    triage_feed.publish(visit_triaged(level_ii, "I"))  # already on it: nothing more
    eventually(lambda: payment_mode(client, level_ii) == "green_channel", what="the switch")
    (switched,) = eventually(lambda: feed(client, "visit.green_channel") or None, what="the event")
    assert switched["visit_id"] == level_ii["id"]
    assert switched["data"] == {
        "payment_mode": "green_channel",
        "previous_payment_mode": "prepay",
        "level": "II",
        "assessment_id": triaged["data"]["assessment_id"],
    }
    marker = create_visit(client, patient["id"], kind="emergency", department="emergency")
    triage_feed.publish(visit_triaged(marker, "I"))
    eventually(lambda: payment_mode(client, marker) == "green_channel", what="the last event applied")
    assert (payment_mode(client, level_iii), payment_mode(client, outpatient)) == ("prepay", "prepay")
    assert [e["visit_id"] for e in feed(client, "visit.green_channel")] == [level_ii["id"], marker["id"]]
