"""Wrong tries sent at the same moment over real HTTP still lock after exactly five (SQLite, PostgreSQL)."""

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx

from kit.testing import internal_headers
from tests.registration.factories import VALID_ID_NUMBERS


def gateway_headers() -> dict[str, str]:
    """Minted per use: a token minted at import would expire during a long run (5 minutes)."""
    return internal_headers("service:gateway", {"registration:patient-proof"}, audience="registration")


TRIES = 12


def test_simultaneous_wrong_tries_lock_after_exactly_five(served_registration: str) -> None:
    with httpx.Client(
        base_url=served_registration, headers=internal_headers(audience="registration"), timeout=60
    ) as staff:
        patient = staff.post("/patients", json={"id_number": VALID_ID_NUMBERS[0], "name": "张三"}).json()
        visit = staff.post(
            "/visits", json={"patient_id": patient["id"], "kind": "outpatient", "department": "internal"}
        ).json()
    start = threading.Barrier(TRIES)

    def wrong_try(device: int) -> bool:
        proof = {"method": "slip", "slip_code": visit["slip_code"], "birth_date": "2001-01-01"}
        with httpx.Client(base_url=served_registration, headers=gateway_headers(), timeout=60) as gateway:
            start.wait()
            response = gateway.post("/session-proofs", json={"client": f"kiosk-{device}", "proof": proof})
        assert response.status_code == 200, response.text
        verified: bool = response.json()["verified"]
        return verified

    with ThreadPoolExecutor(TRIES) as pool:
        assert not any(pool.map(wrong_try, range(TRIES)))
    with httpx.Client(
        base_url=served_registration, headers=internal_headers(audience="registration"), timeout=60
    ) as staff:
        trail = staff.get("/audit/session-attempts", params={"patient_id": patient["id"]}).json()
    assert Counter(a["outcome"] for a in trail) == {"wrong-factor": 5, "locked": TRIES - 5}
