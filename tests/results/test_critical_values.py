"""Critical values (危急值): listed while pending, acknowledged by a clinician only (`critical:ack`), and
escalated exactly once when nobody acknowledged them in time."""

from collections import Counter
from datetime import timedelta
from typing import Any

import httpx
from fastapi.testclient import TestClient

from kit.clock import utcnow
from kit.testing import internal_headers, run_together
from services.results.escalation import CriticalEscalator
from tests.results.factories import (
    create_emergency_visit,
    create_patient,
    events,
    place_order,
    post_report,
    released_order,
)

POTASSIUM = {"code": "K", "name": "钾", "value": "6.8", "unit": "mmol/L", "flag": "critical"}
SODIUM = {"code": "NA", "name": "钠", "value": "118", "unit": "mmol/L", "flag": "critical"}
ACK = {"acknowledged_by": "王医生", "note": "已复查"}


def doctor() -> dict[str, str]:
    """A clinician's headers, minted when used (internal tokens are short-lived)."""
    return internal_headers("doctor-dev", {"results:read", "critical:ack"}, audience="results", kind="doctor")


def critical_report(client: TestClient, order: dict[str, Any], *observations: dict[str, Any]) -> Any:
    return post_report(client, order["id"], "preliminary", observations=list(observations or [POTASSIUM]))


def pending(client: TestClient, **params: str) -> list[dict[str, Any]]:
    response = client.get("/critical-values", params=params)
    assert response.status_code == 200, response.text
    return list(response.json())


def escalator(client: TestClient, *, minutes_later: float) -> CriticalEscalator:
    app: Any = client.app
    later = utcnow() + timedelta(minutes=minutes_later)
    return CriticalEscalator(app.state.database, app.state.settings, clock=lambda: later)


def test_each_critical_observation_is_a_pending_value_for_the_ordering_department(
    client: TestClient, registration: httpx.Client
) -> None:
    internal = released_order(client, registration)
    emergency = place_order(
        client, create_emergency_visit(registration, create_patient(registration, 1)["id"])["id"]
    )
    report = critical_report(client, internal, POTASSIUM, SODIUM)
    critical_report(client, emergency)

    values = pending(client)
    assert [(v["department"], v["observation_code"]) for v in values] == [
        ("internal", "K"),
        ("internal", "NA"),
        ("emergency", "K"),
    ]
    assert (values[0]["report_id"], values[0]["value"], values[0]["unit"]) == (report["id"], "6.8", "mmol/L")
    assert [v["department"] for v in pending(client, department="emergency")] == ["emergency"]
    [event] = [e for e in events(client, "report.critical") if e["data"]["report_id"] == report["id"]]
    assert event["data"]["department"] == "internal"
    assert event["data"]["critical_value_ids"] == [values[0]["id"], values[1]["id"]]


def test_a_clinician_acknowledges_once_and_the_value_leaves_the_pending_list(
    client: TestClient, registration: httpx.Client
) -> None:
    order = released_order(client, registration)
    critical_report(client, order)
    [value] = pending(client)

    acked = client.post(f"/critical-values/{value['id']}/acknowledgement", json=ACK, headers=doctor())
    assert acked.status_code == 200, acked.text
    assert (acked.json()["acknowledged_by"], acked.json()["acknowledged_at"] is not None) == ("王医生", True)
    assert pending(client) == []
    assert [v["id"] for v in pending(client, status="acknowledged")] == [value["id"]]
    [event] = events(client, "critical.acknowledged")
    assert event["data"]["critical_value_id"] == value["id"] and event["data"]["escalated"] is False
    assert "王医生" not in str(event)  # events carry references, not names

    twice = client.post(f"/critical-values/{value['id']}/acknowledgement", json=ACK, headers=doctor())
    assert twice.status_code == 409 and twice.json()["type"].endswith("/critical-already-acknowledged")
    assert len(events(client, "critical.acknowledged")) == 1


def test_a_non_clinician_cannot_acknowledge(client: TestClient, registration: httpx.Client) -> None:
    order = released_order(client, registration)
    critical_report(client, order)
    [value] = pending(client)
    lab = internal_headers("lab-dev", {"results:read", "results:write"}, audience="results", kind="lis")
    nurse = internal_headers("nurse-dev", {"triage:write"}, audience="results", kind="nurse")
    patient = internal_headers(
        "app-dev", {"results:read", "critical:ack"}, audience="results", patient=order["patient_id"]
    )
    for headers in (lab, nurse, patient):
        refused = client.post(f"/critical-values/{value['id']}/acknowledgement", json=ACK, headers=headers)
        assert refused.status_code == 403, refused.text
    assert [v["id"] for v in pending(client)] == [value["id"]]
    assert events(client, "critical.acknowledged") == []
    missing = client.post(
        "/critical-values/00000000-0000-4000-8000-000000000000/acknowledgement", json=ACK, headers=doctor()
    )
    assert missing.status_code == 404
    assert (
        client.post(f"/critical-values/{value['id']}/acknowledgement", json={}, headers=doctor()).status_code
        == 422
    )


def test_an_unacknowledged_value_is_escalated_exactly_once_after_the_configured_time(
    client: TestClient, registration: httpx.Client
) -> None:
    order = released_order(client, registration)
    critical_report(client, order)
    [value] = pending(client)
    limit = client.app.state.settings.critical_escalation_minutes  # type: ignore[attr-defined]

    assert escalator(client, minutes_later=limit - 1).run_once() == []
    assert escalator(client, minutes_later=limit + 1).run_once() == [value["id"]]
    assert escalator(client, minutes_later=limit + 2).run_once() == []
    [escalated] = events(client, "critical.escalated")
    assert escalated["data"]["critical_value_id"] == value["id"]
    assert escalated["data"]["waited_minutes"] >= limit
    [still] = pending(client)  # escalated, still waiting for a clinician
    assert still["escalated_at"] is not None

    client.post(f"/critical-values/{value['id']}/acknowledgement", json=ACK, headers=doctor())
    assert events(client, "critical.acknowledged")[0]["data"]["escalated"] is True


def test_an_acknowledged_value_is_never_escalated(client: TestClient, registration: httpx.Client) -> None:
    order = released_order(client, registration)
    critical_report(client, order)
    [value] = pending(client)
    client.post(f"/critical-values/{value['id']}/acknowledgement", json=ACK, headers=doctor())
    assert escalator(client, minutes_later=60).run_once() == []
    assert events(client, "critical.escalated") == []


def test_escalation_loops_racing_escalate_each_value_once(
    client: TestClient, registration: httpx.Client
) -> None:
    """Several results processes (or loops) at once: each value is escalated by exactly one of them
    (row locks with SKIP LOCKED on PostgreSQL; SQLite's single writer serialises them)."""
    for index in range(3):
        critical_report(client, released_order(client, registration, patient_index=index), POTASSIUM, SODIUM)
    values = {v["id"] for v in pending(client)}
    assert len(values) == 6
    loops = [escalator(client, minutes_later=60) for _ in range(4)]
    escalated = [value for ids in run_together([loop.run_once for loop in loops]) for value in ids]
    assert Counter(escalated) == dict.fromkeys(values, 1)
    assert Counter(
        e["data"]["critical_value_id"] for e in events(client, "critical.escalated")
    ) == dict.fromkeys(values, 1)


def test_bad_list_parameters_are_400_and_an_oversized_acknowledgement_422(
    client: TestClient, registration: httpx.Client
) -> None:
    order = released_order(client, registration)
    critical_report(client, order)
    [value] = pending(client)
    for params in ({"status": "bogus"}, {"department": "d" * 33}, {"limit": "100000"}):
        response = client.get("/critical-values", params=params)
        assert response.status_code == 400, (params, response.text)
        assert response.headers["content-type"] == "application/problem+json"
    long_name = {"acknowledged_by": "王" * 65}
    path = f"/critical-values/{value['id']}/acknowledgement"
    assert client.post(path, json=long_name, headers=doctor()).status_code == 422
    assert (
        client.post(
            "/critical-values/" + "c" * 37 + "/acknowledgement", json=ACK, headers=doctor()
        ).status_code
        == 400
    )
    assert [v["acknowledged_at"] for v in pending(client)] == [None]
