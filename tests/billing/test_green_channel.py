"""A visit registration puts on the green channel after triage (`visit.green_channel`) pays later here too."""

import uuid
from typing import Any

import httpx
from fastapi.testclient import TestClient

from kit.clock import utcnow
from kit.database import Database
from services.billing import consumers
from tests.billing.factories import account, new_visit


def test_visit_green_channel_switches_the_accounts_payment_mode(
    registration: httpx.Client, client: TestClient
) -> None:
    visit = new_visit(registration, client, kind="emergency", department="emergency")
    assert account(client, visit["id"])["payment_mode"] == "prepay"
    event: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "type": "visit.green_channel",
        "source": "registration",
        "occurred_at": utcnow().isoformat(),
        "visit_id": visit["id"],
        "patient_id": visit["patient_id"],
        "data": {
            "payment_mode": "green_channel",
            "previous_payment_mode": "prepay",
            "level": "I",
            "assessment_id": str(uuid.uuid4()),
        },
    }
    assert "visit.green_channel" in consumers.REGISTRATION_EVENTS  # the feed asks for it
    database: Database = client.app.state.database  # type: ignore[attr-defined]
    with database.session() as session:
        consumers.apply_registration_event(session, event)
        consumers.apply_registration_event(session, event | {"visit_id": str(uuid.uuid4())})  # unknown: no-op
    assert account(client, visit["id"])["payment_mode"] == "green_channel"
