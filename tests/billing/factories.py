"""Plain helpers for billing tests: patients and visits in registration, charges and payments in billing."""

import uuid
from datetime import timedelta
from typing import Any

import httpx
from fastapi.testclient import TestClient

from kit.database import Database
from kit.feed import FeedConsumer
from kit.testing import eventually, feed_headers
from services.billing.models import VisitAccount

# Valid resident identity numbers (GB 11643 check characters).
ID_NUMBERS = ["11010519491231002X", "440524188001010014", "110101199003074477"]
OUTPATIENT_FEE_FEN = 2000  # 110200001 普通门诊诊察费
EMERGENCY_FEE_FEN = 2500  # 110200005 急诊诊察费
INFUSION = "120400006"  # 静脉输液, 500 fen
CBC = "250101015"  # 血细胞分析, 2000 fen


def register_patient(registration: httpx.Client, **overrides: Any) -> dict[str, Any]:
    body = {"id_number": ID_NUMBERS[0], "name": "张三"} | overrides
    response = registration.post("/patients", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def register_unidentified(registration: httpx.Client) -> dict[str, Any]:
    return register_patient(registration, unidentified=True, id_number=None, name=None, alias="男，约40岁")


def register_insured(registration: httpx.Client, alias: str = "男，约50岁") -> dict[str, Any]:
    """An unidentified `employee`-insured patient (甲 90 %; 乙 70 % above a 100-yuan deductible)."""
    return register_patient(
        registration, unidentified=True, id_number=None, name=None, alias=alias, insurance_scheme="employee"
    )


def open_visit(registration: httpx.Client, patient_id: str, **overrides: Any) -> dict[str, Any]:
    body = {"patient_id": patient_id, "kind": "outpatient", "department": "internal"} | overrides
    response = registration.post("/visits", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def account(client: TestClient, visit_id: str) -> dict[str, Any]:
    response = client.get(f"/visits/{visit_id}/account")
    assert response.status_code == 200, response.text
    return response.json()


def wait_for_account(client: TestClient, visit_id: str, *, charges: int = 0) -> dict[str, Any]:
    """The account once billing's registration consumer has opened it (with at least `charges` lines)."""

    def probe() -> dict[str, Any] | None:
        response = client.get(f"/visits/{visit_id}/account")
        if response.status_code == 200 and len(response.json()["charges"]) >= charges:
            return response.json()
        return None

    return eventually(probe, what=f"the account of visit {visit_id}")


def new_visit(
    registration: httpx.Client, client: TestClient, patient_id: str | None = None, **overrides: Any
) -> dict[str, Any]:
    """A visit whose account billing has opened (and charged its fee, if any); by default of a new
    patient (unidentified, so tests need no supply of distinct identity numbers)."""
    patient_id = patient_id or register_unidentified(registration)["id"]
    visit = open_visit(registration, patient_id, **overrides)
    fee_expected = visit["kind"] != "inpatient"
    wait_for_account(client, visit["id"], charges=1 if fee_expected else 0)
    return visit


def backdate_account(client: TestClient, visit_id: str, *, days: int) -> None:
    """Move the visit's opening `days` back, as if it had been admitted then (registration can't)."""
    database: Database = client.app.state.database  # type: ignore[attr-defined]
    with database.session() as session:
        account = session.get(VisitAccount, visit_id)
        assert account is not None
        account.opened_at -= timedelta(days=days)
        session.add(account)


def consumer(client: TestClient, source: str) -> FeedConsumer:
    found: FeedConsumer = next(c for c in client.app.state.consumers if c.source == source)  # type: ignore[attr-defined]
    return found


def wait_until_consumed(client: TestClient, source: str, position: int) -> None:
    """Wait until billing's consumer of `source` has moved past `position` (applied or skipped it)."""
    reader = consumer(client, source)
    eventually(lambda: reader.cursor() >= position, what=f"{source} feed position {position}")


def new_key() -> str:
    return str(uuid.uuid4())


def keyed(key: str | None = None) -> dict[str, str]:
    return {"Idempotency-Key": key or new_key()}


def post_charge(
    client: TestClient, visit_id: str, item_code: str = INFUSION, quantity: int = 1, **extra: Any
) -> dict[str, Any]:
    body = {"visit_id": visit_id, "item_code": item_code, "quantity": quantity} | extra
    response = client.post("/charges", json=body, headers=keyed())
    assert response.status_code == 201, response.text
    return response.json()


def post_payment(client: TestClient, visit_id: str, **body: Any) -> dict[str, Any]:
    response = client.post("/payments", json={"visit_id": visit_id, "method": "cash"} | body, headers=keyed())
    assert response.status_code == 201, response.text
    return response.json()


def billing_events(client: TestClient, event_type: str | None = None) -> list[dict[str, Any]]:
    params: dict[str, Any] = {"after": 0, "limit": 500}
    if event_type:
        params["type"] = event_type
    response = client.get("/events", headers=feed_headers("billing"), params=params)
    assert response.status_code == 200, response.text
    events: list[dict[str, Any]] = response.json()["events"]
    return events


def rejections(client: TestClient, visit_id: str | None = None) -> list[dict[str, Any]]:
    response = client.get("/rejected-charges", params={"visit_id": visit_id} if visit_id else {})
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()
    return found


def assert_no_floats(value: Any, path: str = "$") -> None:
    """Money is integer fen: no float may appear anywhere in a JSON document."""
    assert not isinstance(value, float), f"float at {path}: {value!r}"
    if isinstance(value, dict):
        for name, item in value.items():
            assert_no_floats(item, f"{path}.{name}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            assert_no_floats(item, f"{path}[{index}]")
