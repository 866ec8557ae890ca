"""One medical card, many desks at the same moment over real HTTP: one record gets it, the others a 409
naming that record, never a 500 (SQLite, PostgreSQL)."""

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.gateway.factories import random_id_number
from tests.registration.factories import staff

DESKS = 10
CARD = "6222000011112222"


def distinct_id_numbers(count: int) -> list[str]:
    numbers: set[str] = set()
    while len(numbers) < count:
        numbers.add(random_id_number())
    return sorted(numbers)


def test_simultaneous_registrations_with_one_card_give_it_to_exactly_one(served_registration: str) -> None:
    start = threading.Barrier(DESKS)

    def register(id_number: str) -> httpx.Response:
        body = {"id_number": id_number, "name": "张三", "card_number": CARD}
        with staff(served_registration) as client:
            start.wait()
            return client.post("/patients", json=body)

    with ThreadPoolExecutor(DESKS) as pool:
        answers = list(pool.map(register, distinct_id_numbers(DESKS)))
    assert Counter(a.status_code for a in answers) == {201: 1, 409: DESKS - 1}, [a.text for a in answers]
    [winner] = [a.json()["id"] for a in answers if a.status_code == 201]
    assert {a.json()["existing_patient_id"] for a in answers if a.status_code == 409} == {winner}
    with staff(served_registration) as client:
        page = client.get("/patients", params={"card_number": CARD}).json()
    assert [p["id"] for p in page["patients"]] == [winner]


def test_simultaneous_changes_to_one_card_give_it_to_exactly_one(served_registration: str) -> None:
    with staff(served_registration) as client:
        ids = [
            client.post("/patients", json={"id_number": number, "name": "李四"}).json()["id"]
            for number in distinct_id_numbers(DESKS)
        ]
    start = threading.Barrier(DESKS)

    def record(patient_id: str) -> httpx.Response:
        with staff(served_registration) as client:
            start.wait()
            return client.patch(f"/patients/{patient_id}", json={"card_number": CARD})

    with ThreadPoolExecutor(DESKS) as pool:
        answers = list(pool.map(record, ids))
    assert Counter(a.status_code for a in answers) == {200: 1, 409: DESKS - 1}, [a.text for a in answers]
    with staff(served_registration) as client:
        page = client.get("/patients", params={"card_number": CARD}).json()
    assert [p["id"] for p in page["patients"]] == [a.json()["id"] for a in answers if a.status_code == 200]
