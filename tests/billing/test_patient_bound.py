"""Billing decides for itself: acting for one patient, another patient's account and daily bill answer
404 exactly as a visit billing has no account for."""

import httpx
from fastapi.testclient import TestClient

from kit.testing import internal_headers
from tests.billing.factories import new_visit


def acting_for(patient_id: str) -> dict[str, str]:
    return internal_headers("app-dev", {"billing:read"}, audience="billing", patient=patient_id)


def test_another_patients_account_and_daily_bill_are_404_like_missing_ones(
    client: TestClient, registration: httpx.Client
) -> None:
    mine, theirs = new_visit(registration, client), new_visit(registration, client)
    me = mine["patient_id"]
    missing = "3c5d0a7e-0000-4000-8000-000000000000"

    for part in ("account", "daily-bill"):
        refused = client.get(f"/visits/{theirs['id']}/{part}", headers=acting_for(me))
        absent = client.get(f"/visits/{missing}/{part}", headers=acting_for(me))
        assert refused.status_code == absent.status_code == 404, part
        assert refused.json()["type"] == absent.json()["type"]
        assert theirs["patient_id"] not in refused.text
        own = client.get(f"/visits/{mine['id']}/{part}", headers=acting_for(me))
        assert own.status_code == 200 and own.json()["patient_id"] == me
