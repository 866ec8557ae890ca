"""Rate limits with real processes: a client created through the admin API with a low limit gets 429."""

import uuid

import httpx

from tests.e2e.clients import Gateway, assert_problem, ok, unique_department


def test_a_client_over_its_limit_gets_429_and_others_are_unaffected(gateway: Gateway) -> None:
    created = ok(
        gateway.admin.post(
            "/v1/admin/clients",
            json={
                "name": f"board-{uuid.uuid4().hex[:8]}",
                "kind": "board",
                "scopes": ["board:read"],
                "rate_limit_per_second": 0.01,  # one more request every 100 s
                "rate_burst": 3,
            },
        ),
        201,
    )
    department = unique_department()
    with httpx.Client(
        base_url=gateway.admin.base_url, headers={"authorization": f"Bearer {created['key']}"}, timeout=30
    ) as board:
        for _ in range(3):
            ok(board.get(f"/v1/queues/{department}/board"))
        refused = board.get(f"/v1/queues/{department}/board")
        body = assert_problem(refused, 429)
        assert body["type"].endswith("/rate-limited")
        assert refused.headers["retry-after"].isdigit() and int(refused.headers["retry-after"]) >= 1
        # the other clients, and the development board, go on as before
        ok(gateway.board.get(f"/v1/queues/{department}/board"))
        ok(gateway.nurse.get(f"/v1/queues/{department}"))
        assert_problem(board.get(f"/v1/queues/{department}/stats"), 429)  # still limited, on any route


def test_a_page_above_the_cap_is_refused_naming_it(gateway: Gateway) -> None:
    body = assert_problem(gateway.his.get("/v1/orders", params={"limit": 101}), 400)
    assert "100" in body["detail"]
