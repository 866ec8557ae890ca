"""A printed copy's PDF (`GET /prints/{id}/pdf`) follows the one release rule like every other patient
path: once the doctor withholds the report or the lab cancels it, the copy printed before is the same
404 as a missing print, audited as `not_released`; lifting the hold serves it again."""

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.results.factories import post_report, released_order
from tests.results.test_printing import audit_rows, kiosk


@pytest.mark.parametrize("hold", ["withhold", "cancellation"])
def test_a_copy_printed_before_a_hold_or_cancellation_is_held_back_with_its_report(
    client: TestClient, registration: httpx.Client, hold: str
) -> None:
    order = released_order(client, registration)
    report = post_report(client, order["id"])
    me = order["patient_id"]
    printed = client.post(f"/reports/{report['id']}/prints", headers=kiosk(me))
    assert printed.status_code == 201, printed.text
    pdf_path = printed.json()["pdf_url"].removeprefix("/v1")
    assert client.get(pdf_path, headers=kiosk(me, "before")).status_code == 200

    held = client.post(f"/reports/{report['id']}/{hold}", json={"reason": "需当面告知病情"})
    assert held.status_code == 200, held.text

    after = client.get(pdf_path, headers=kiosk(me, "after"))
    missing = client.get("/prints/00000000-0000-4000-8000-000000000000/pdf", headers=kiosk(me, "missing"))
    assert after.status_code == missing.status_code == 404
    assert {k: v for k, v in after.json().items() if k != "instance"} == {
        k: v for k, v in missing.json().items() if k != "instance"
    }
    rows = audit_rows(client)
    assert [rows[r]["outcome"] for r in ("before", "after", "missing")] == [
        "found",
        "not_released",
        "not_found",
    ]
    assert rows["after"]["report_ids"] == []
    if hold == "withhold":
        lifted = client.post(f"/reports/{report['id']}/unwithhold", json={"reason": "已当面告知"})
        assert lifted.status_code == 200, lifted.text
        assert client.get(pdf_path, headers=kiosk(me)).status_code == 200
