"""`x-feed-head` (kit.feedhead): with each answer a sibling service learns how far the feed went."""

from fastapi.testclient import TestClient

from kit.testing import feed_headers, internal_headers
from tests.registration.factories import VALID_ID_NUMBERS, create_patient, create_visit


def sibling() -> dict[str, str]:
    """Headers of results calling registration (minted per call: tokens expire)."""
    return internal_headers("service:results", {"registration:read"}, audience="registration")


def head(client: TestClient) -> int:
    position: int = client.get("/events/head", headers=feed_headers("registration")).json()["position"]
    return position


def opened_at(client: TestClient, visit_id: str) -> int:
    """The feed position of the visit's `visit.opened`."""
    feed = client.get("/events", params={"type": "visit.opened"}, headers=feed_headers("registration")).json()
    position: int = next(e["position"] for e in feed["events"] if e["visit_id"] == visit_id)
    return position


def test_a_sibling_service_gets_the_feed_head_after_what_it_read(client: TestClient) -> None:
    visit = create_visit(client, create_patient(client)["id"])
    answer = client.get(f"/visits/{visit['id']}", headers=sibling())
    assert answer.status_code == 200
    assert opened_at(client, visit["id"]) <= int(answer.headers["x-feed-head"]) <= head(client)

    later = create_visit(client, create_patient(client, id_number=VALID_ID_NUMBERS[1])["id"])
    again = client.get(f"/visits/{visit['id']}", headers=sibling())
    assert opened_at(client, later["id"]) <= int(again.headers["x-feed-head"]) <= head(client)


def test_a_sibling_service_gets_the_head_with_a_404_too(client: TestClient) -> None:
    answer = client.get("/visits/no-such-visit", headers=sibling())
    assert answer.status_code == 404
    assert answer.headers["x-feed-head"] == "0"


def test_outside_clients_never_see_it(client: TestClient) -> None:
    visit = create_visit(client, create_patient(client)["id"])
    assert "x-feed-head" not in client.get(f"/visits/{visit['id']}").headers  # the gateway's client
