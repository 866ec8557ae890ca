"""Plain factory functions for registration tests, and the staff clients of the races over real HTTP."""

import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx
from fastapi.testclient import TestClient

from kit.clock import utcnow
from kit.testing import internal_headers

T = TypeVar("T")

# Valid numbers (GB 11643 check characters computed): the standard's own examples and a few more.
VALID_ID_NUMBERS = [
    "11010519491231002X",
    "440524188001010014",
    "110101199003074477",
    "310104198507120029",
    "320106199202151237",
]


def create_patient(client: TestClient, **overrides: Any) -> dict[str, Any]:
    body = {"id_number": VALID_ID_NUMBERS[0], "name": "张三"} | overrides
    response = client.post("/patients", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def create_visit(client: TestClient, patient_id: str, **overrides: Any) -> dict[str, Any]:
    body = {"patient_id": patient_id, "kind": "outpatient", "department": "internal"} | overrides
    response = client.post("/visits", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def create_department(client: TestClient, **overrides: Any) -> dict[str, Any]:
    """A department of its own (a fresh code), so tests never share one."""
    body = {"code": f"dept-{uuid.uuid4().hex[:8]}", "name": "心内科", "floor": "3F", "zone": "B"} | overrides
    response = client.post("/departments", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def create_doctor(client: TestClient, department: str, **overrides: Any) -> dict[str, Any]:
    body = {"name": "李医生", "title": "attending", "department": department} | overrides
    response = client.post("/doctors", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def create_clinic_session(client: TestClient, **overrides: Any) -> dict[str, Any]:
    """An ad-hoc session of a fresh department and doctor, starting in three hours (bookable now):
    quota 4 in four 30-minute slots unless told."""
    department = overrides.pop("department", None) or create_department(client)["code"]
    doctor_id = overrides.pop("doctor_id", None) or create_doctor(client, department)["id"]
    starts_at = overrides.pop("starts_at", None) or datetime.now(UTC).replace(microsecond=0) + timedelta(
        hours=3
    )
    body = {
        "department": department,
        "doctor_id": doctor_id,
        "date": starts_at.date().isoformat(),
        "period": "morning",
        "starts_at": starts_at.isoformat(),
        "ends_at": (starts_at + timedelta(hours=2)).isoformat(),
        "quota": 4,
        "slot_minutes": 30,
    } | overrides
    response = client.post("/clinic-sessions", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def book(client: TestClient, clinic_session_id: str, patient_id: str, **overrides: Any) -> Any:
    """POST /appointments (the response, not checked: many tests expect a refusal)."""
    body = {"clinic_session_id": clinic_session_id, "patient_id": patient_id, "channel": "phone"} | overrides
    return client.post("/appointments", json=body)


def staff(url: str) -> httpx.Client:
    """A desk's client of the registration served at `url` (the `served_registration` fixture)."""
    return httpx.Client(base_url=url, headers=internal_headers(audience="registration"), timeout=60)


def run_together(url: str, jobs: list[Callable[[httpx.Client], T]]) -> list[T]:
    """Each job on its own thread and HTTP client, all released at the same moment by a barrier."""
    start = threading.Barrier(len(jobs))

    def run(job: Callable[[httpx.Client], T]) -> T:
        with staff(url) as client:
            start.wait()
            return job(client)

    with ThreadPoolExecutor(len(jobs)) as pool:
        return list(pool.map(run, jobs))


def visit_event(
    visit: dict[str, Any], event_type: str, *, source: str, data: dict[str, Any]
) -> dict[str, Any]:
    """An event about `visit` as a sibling service's feed publishes it (contracts.md), the first of its
    feed and of the visit's aggregate."""
    return {
        "id": str(uuid.uuid4()),
        "type": event_type,
        "version": 1,
        "source": source,
        "position": 1,
        "aggregate": {"type": "visit", "id": visit["id"]},
        "sequence": 1,
        "occurred_at": utcnow().isoformat(),
        "visit_id": visit["id"],
        "patient_id": visit["patient_id"],
        "data": data,
    }
