"""Helpers for inpatient billing tests: admissions in the real registration, billing's copy of the stay,
stays moved back in time (registration admits only now), the nightly job and the daily bills."""

import uuid
from datetime import date, timedelta
from typing import Any

import httpx
from fastapi.testclient import TestClient
from sqlmodel import select

from kit.clock import hospital_date, utcnow
from kit.database import Database
from kit.testing import eventually
from services.billing.models import BillingStay, StayBed, VisitAccount
from tests.billing.factories import account, keyed, new_visit

GENERAL_BED_FEN, ICU_BED_FEN = 3000, 12000  # 110900001 普通病房床位费, 110900004 重症监护病房床位费
GRADE_II_FEN, GRADE_I_FEN = 1500, 2500  # 120100003 Ⅱ级护理, 120100002 Ⅰ级护理


def today() -> date:
    return hospital_date(utcnow())


def database(client: TestClient) -> Database:
    found: Database = client.app.state.database  # type: ignore[attr-defined]
    return found


def new_ward(
    registration: httpx.Client, *, department: str = "cardiology", beds: dict[str, str] | None = None
) -> str:
    code = f"w-{uuid.uuid4().hex[:8]}"
    beds = beds or {"1": "general", "2": "icu"}
    body = {
        "code": code,
        "department": department,
        "name": f"{department} 病区",
        "beds": [{"code": bed, "bed_class": bed_class} for bed, bed_class in beds.items()],
    }
    response = registration.post("/wards", json=body)
    assert response.status_code == 201, response.text
    return code


def admitted_visit(
    registration: httpx.Client, client: TestClient, *, bed: str = "1", **visit: Any
) -> dict[str, Any]:
    """A new visit admitted to a new ward's bed, once billing has read the admission."""
    opened = new_visit(registration, client, **visit)
    ward = new_ward(registration)
    response = registration.post(f"/visits/{opened['id']}/admission", json={"ward": ward, "bed": bed})
    assert response.status_code == 201, response.text
    wait_for_stay(client, opened["id"])
    return opened | {"ward": ward}


def wait_for_stay(client: TestClient, visit_id: str, *, beds: int = 1, discharged: bool = False) -> None:
    def probe() -> bool:
        with database(client).session(write=False) as session:
            stay = session.get(BillingStay, visit_id)
            placed = session.exec(select(StayBed).where(StayBed.visit_id == visit_id)).all()
            return stay is not None and len(placed) >= beds and (stay.discharged_at is not None) == discharged

    eventually(probe, what=f"billing to read the stay of visit {visit_id}")


def move_stay_back(client: TestClient, visit_id: str, *, days: int) -> None:
    """As if the patient had been admitted (and placed, and the visit opened) `days` days earlier."""
    shift = timedelta(days=days)
    with database(client).session() as session:
        stay = session.get(BillingStay, visit_id)
        account_row = session.get(VisitAccount, visit_id)
        assert stay is not None and account_row is not None
        stay.admitted_at -= shift
        account_row.opened_at -= shift
        first = session.exec(select(StayBed).where(StayBed.visit_id == visit_id).order_by(StayBed.id)).first()  # type: ignore[arg-type]
        assert first is not None
        first.from_at -= shift
        session.add_all([stay, account_row, first])


def run_days(client: TestClient, day: date | None = None) -> dict[str, Any]:
    response = client.post("/inpatient-days/runs", json={"date": (day or today()).isoformat()})
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def run_bills(client: TestClient, day: date | None = None) -> dict[str, Any]:
    response = client.post("/daily-bills/runs", json={"date": (day or today()).isoformat()})
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def day_charges(client: TestClient, visit_id: str) -> list[tuple[str, str, int]]:
    """(service date, item code, amount) of the visit's bed and nursing days, in posting order."""
    charges = account(client, visit_id)["charges"]
    return [
        (c["service_date"], c["item_code"], c["amount_fen"])
        for c in charges
        if c["origin"] == "inpatient_day"
    ]


def deposit(client: TestClient, visit_id: str, amount_fen: int, **extra: Any) -> dict[str, Any]:
    body = {"amount_fen": amount_fen, "method": "card"} | extra
    response = client.post(f"/visits/{visit_id}/deposits", json=body, headers=keyed())
    assert response.status_code == 201, response.text
    found: dict[str, Any] = response.json()
    return found
