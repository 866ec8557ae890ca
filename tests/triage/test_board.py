"""The waiting-room board: names masked at ticket time, the board scope checked by triage itself."""

from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from kit.client import ServiceClient
from kit.testing import internal_headers
from services.triage.service import mask_name
from tests.triage.factories import assess, call_next, open_named_visit, open_visit, take_ticket


def board_headers() -> dict[str, str]:
    """Minted per use: a token minted at import would expire during a long run (5 minutes)."""
    return internal_headers("hall-board", {"board:read"}, audience="triage")


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("张三丰", "张*丰"),
        ("张三", "张*"),
        ("张", "*"),
        ("欧阳娜娜", "欧**娜"),
        ("爱新觉罗溥仪", "爱***仪"),  # at most three masks: the length of a long name does not show
        ("阿卜杜·热合曼", "阿***曼"),
        ("John Smith", "J***h"),
        ("Li", "L*"),
        ("  王五  ", "王*"),
        ("", "无名氏"),
        ("   ", "无名氏"),
        (None, "无名氏"),
    ],
)
def test_mask_name_keeps_the_first_and_last_character_only(name: str | None, shown: str) -> None:
    assert mask_name(name) == shown


def test_the_board_shows_called_then_waiting_tickets_with_masked_names(
    client: TestClient, registration: httpx.Client
) -> None:
    first = open_named_visit(registration, "张小三")
    second = open_named_visit(registration, "李四")
    unnamed = open_visit(registration)
    assess(client, first["id"], chief_complaint="胸痛30分钟")
    tickets = [take_ticket(client, visit["id"]) for visit in (first, second, unnamed)]
    call_next(client, counter="3")

    response = client.get("/queues/internal/board", headers=board_headers())

    assert response.status_code == 200, response.text
    assert response.json() == {
        "department": "internal",
        "suspended": False,
        "tickets": [
            {"display_number": "I001", "name": "张*三", "status": "called", "counter": "3"},
            {"display_number": "I002", "name": "李*", "status": "waiting", "counter": None},
            {"display_number": "I003", "name": "无名氏", "status": "waiting", "counter": None},
        ],
    }
    for secret in (
        "张小三",
        "李四",
        "胸痛",
        *(t["visit_id"] for t in tickets),
        *(t["patient_id"] for t in tickets),
    ):
        assert secret not in response.text


def test_a_ticket_asks_registration_once_for_its_visit_and_name(
    client: TestClient, registration: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ticket needs the visit (open?) and the board name: one read of registration gives both, also
    when an assessment routes the visit to a department."""
    asked: list[str] = []
    plain_get = ServiceClient.get

    async def counted_get(self: ServiceClient, model: type[Any], path: str, **params: str) -> Any:
        asked.append(path)
        return await plain_get(self, model, path, **params)

    monkeypatch.setattr(ServiceClient, "get", counted_get)
    queued = open_named_visit(registration, "张小三")
    routed = open_named_visit(registration, "李四")

    take_ticket(client, queued["id"])
    assert asked == ["/visits/{visit_id}/with-name"]
    assess(client, routed["id"], department="internal")
    assert asked == ["/visits/{visit_id}/with-name"] * 2
    assess(client, queued["id"])  # no department: the visit alone
    assert asked == ["/visits/{visit_id}/with-name"] * 2 + ["/visits/{visit_id}"]
    board = client.get("/queues/internal/board", headers=board_headers()).json()
    assert [t["name"] for t in board["tickets"]] == ["张*三", "李*"]


def test_finished_tickets_leave_the_board(client: TestClient, registration: httpx.Client) -> None:
    ticket = take_ticket(client, open_named_visit(registration, "王五")["id"])
    call_next(client)
    assert client.post(f"/tickets/{ticket['id']}/finish").status_code == 200
    assert client.get("/queues/internal/board", headers=board_headers()).json()["tickets"] == []


@pytest.mark.parametrize("scopes", [set(), {"triage:read"}, {"triage:read", "triage:write"}])
def test_triage_itself_refuses_the_board_without_the_board_scope(
    client: TestClient, scopes: set[str]
) -> None:
    response = client.get(
        "/queues/internal/board", headers=internal_headers("someone", scopes, audience="triage")
    )
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"
    assert "board:read" in response.json()["detail"]
