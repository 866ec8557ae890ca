"""Billing follows the stay: an admitted visit's account becomes inpatient, a discharged one awaits its
discharge settlement (出院结算), a closed visit takes no charge by hand — and a charge for work done before
it closed, arriving through the feed, is still posted and settled."""

import uuid
from typing import Any

import httpx
from fastapi.testclient import TestClient

from kit.testing import FakeFeed, eventually
from tests.billing.conftest import order_placed
from tests.billing.factories import CBC, EMERGENCY_FEE_FEN, INFUSION, account, keyed, new_visit


def admit(registration: httpx.Client, visit_id: str) -> None:
    ward = f"w-{uuid.uuid4().hex[:8]}"
    body = {"code": ward, "department": "cardiology", "name": "心内科", "beds": [{"code": "1"}]}
    assert registration.post("/wards", json=body).status_code == 201
    response = registration.post(f"/visits/{visit_id}/admission", json={"ward": ward, "bed": "1"})
    assert response.status_code == 201, response.text


def account_when(client: TestClient, visit_id: str, what: str, check: Any) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        found = account(client, visit_id)
        return found if check(found) else None

    return eventually(probe, what=what)


def test_a_discharged_green_channel_stay_is_settled_with_every_charge_caused_before(
    registration: httpx.Client, client: TestClient, results_feed: FakeFeed
) -> None:
    visit = new_visit(
        registration, client, kind="emergency", department="emergency", payment_mode="green_channel"
    )
    admit(registration, visit["id"])
    account_when(client, visit["id"], "an inpatient account", lambda a: a["kind"] == "inpatient")
    assert client.post("/charges", json={"visit_id": visit["id"], "item_code": INFUSION, "quantity": 1},
                       headers=keyed()).status_code == 201  # fmt: skip

    discharged = registration.post(f"/visits/{visit['id']}/discharge")
    assert discharged.status_code == 200, discharged.text
    order_placed(results_feed, visit, CBC)  # ordered before discharge, read by billing only now

    due = account_when(
        client, visit["id"], "the discharge mark", lambda a: a["awaiting_discharge_settlement"]
    )
    assert due["discharged_at"] is not None and due["status"] == "open"
    refused = client.post("/charges", json={"visit_id": visit["id"], "item_code": INFUSION, "quantity": 1},
                          headers=keyed())  # fmt: skip
    assert refused.status_code == 409, refused.text
    assert refused.json()["type"].endswith("/visit-closed") and refused.json()["visit_id"] == visit["id"]

    settled = client.post(f"/visits/{visit['id']}/settlement", json={"method": "insurance"}, headers=keyed())
    assert settled.status_code == 201, settled.text
    # the fee, the infusion, the CBC, and the day of a same-day stay (bed 3000, nursing 1500; 算入不算出)
    assert settled.json()["total_fen"] == EMERGENCY_FEE_FEN + 500 + 2000 + 3000 + 1500
    final = account(client, visit["id"])
    assert (final["status"], final["balance_fen"], final["awaiting_discharge_settlement"]) == (
        "settled",
        0,
        False,
    )
    assert [c["origin"] for c in final["charges"]] == [
        "registration",
        "manual",
        "order",
        "inpatient_day",
        "inpatient_day",
    ]
