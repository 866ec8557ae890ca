"""Rate limits per client and per route (429 + Retry-After), and the page-size cap."""

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.app import create_app as create_gateway
from gateway.errors import PageTooLarge, RateLimited
from gateway.limits import RateLimiter, check_page_size, requested_hold, without_hold
from kit.params import MAX_HOLD_SECONDS
from kit.testing import HTTP_TIMEOUT_SECONDS, serve
from tests.gateway.factories import bearer, gateway_settings
from tests.gateway.servers import EchoUpstream
from tests.gateway.test_proxy import assert_problem


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr("gateway.limits.time.monotonic", fake)
    return fake


def test_a_bucket_allows_its_burst_then_refills_at_its_rate(clock: FakeClock) -> None:
    limiter = RateLimiter()
    for _ in range(3):
        limiter.check(("c", ""), 0.5, 3, what="c")
    with pytest.raises(RateLimited) as refused:
        limiter.check(("c", ""), 0.5, 3, what="c")
    assert refused.value.status == 429
    assert refused.value.headers["Retry-After"] == "2"  # one token every 2 s
    clock.now += 2.0
    limiter.check(("c", ""), 0.5, 3, what="c")
    limiter.check(("other", ""), 0.5, 3, what="other")  # buckets are per key


def test_retry_after_is_a_whole_second_at_least(clock: FakeClock) -> None:
    limiter = RateLimiter()
    limiter.check(("c", ""), 100.0, 1, what="c")
    with pytest.raises(RateLimited) as refused:
        limiter.check(("c", ""), 100.0, 1, what="c")
    assert refused.value.headers["Retry-After"] == "1"


def test_a_changed_limit_applies_to_an_existing_bucket(clock: FakeClock) -> None:
    limiter = RateLimiter()
    limiter.check(("c", ""), 1.0, 5, what="c")
    limiter.check(("c", ""), 1.0, 1, what="c")  # tokens cut down to the new burst, this one spent
    with pytest.raises(RateLimited):
        limiter.check(("c", ""), 1.0, 1, what="c")


@pytest.mark.parametrize(
    "query",
    [
        b"limit=101",
        b"after=3&limit=500",
        b"limit=1000000000000",
        # as the service decodes and parses them: no way around the cap by spelling
        b"%6Cimit=500",
        b"limit=%35%30%30",
        b"limit=+500",
        b"limit=5_00",
        b"limit=500.0",
        b"limit=100&limit=500",
    ],
)
def test_pages_above_the_cap_are_refused(query: bytes) -> None:
    with pytest.raises(PageTooLarge) as refused:
        check_page_size(query, 100)
    assert "100" in refused.value.detail


@pytest.mark.parametrize(
    "query", [b"", b"limit=100", b"limit=abc", b"unlimited=500", b"page_limit=900", b"type=a%2Cb&limit=%31"]
)
def test_pages_within_the_cap_pass(query: bytes) -> None:
    check_page_size(query, 100)


# --- through the gateway --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def strict_gateway(keys_file: Path, echo_url: str) -> Iterator[str]:
    """Five requests per client, refilled very slowly; one call on the stats route."""
    settings = gateway_settings(
        keys_file,
        triage_url=echo_url,
        rate_limit_per_second=0.01,
        rate_burst=5,
        route_rate_limits={"GET /queues/{department}/stats": 0.01},
        max_page_size=50,
    )
    with serve(create_gateway(settings)) as url:
        yield url


def test_a_client_over_its_limit_gets_429_and_others_go_on(
    strict_gateway: str, api_keys: dict[str, str], echo: EchoUpstream
) -> None:
    with httpx.Client(base_url=strict_gateway, timeout=HTTP_TIMEOUT_SECONDS) as client:
        reader = bearer(api_keys["reader"])
        statuses = [client.get("/v1/queues/a", headers=reader).status_code for _ in range(5)]
        echo.seen.clear()
        refused = client.get("/v1/queues/a", headers=reader)
        body = assert_problem(refused, 429)
        assert body["type"].endswith("/rate-limited")
        assert int(refused.headers["retry-after"]) >= 1
        assert echo.seen == []  # the service never saw the refused call
        assert statuses == [200] * 5
        assert client.get("/v1/queues/a", headers=bearer(api_keys["his-dev"])).status_code == 200


def test_a_route_limit_is_per_client_and_route(strict_gateway: str, api_keys: dict[str, str]) -> None:
    with httpx.Client(base_url=strict_gateway, timeout=HTTP_TIMEOUT_SECONDS) as client:
        admin = bearer(api_keys["admin"])
        his = bearer(api_keys["his-dev"])
        assert client.get("/v1/queues/b/stats", headers=his).status_code == 200
        refused = client.get("/v1/queues/b/stats", headers=his)
        assert_problem(refused, 429)
        assert int(refused.headers["retry-after"]) >= 1
        assert client.get("/v1/queues/b", headers=his).status_code == 200  # other routes go on
        assert client.get("/v1/admin/clients", headers=admin).status_code == 200


def test_a_page_above_the_cap_is_400_naming_it(strict_gateway: str, api_keys: dict[str, str]) -> None:
    with httpx.Client(base_url=strict_gateway, timeout=HTTP_TIMEOUT_SECONDS) as client:
        response = client.get("/v1/queues/c?limit=51", headers=bearer(api_keys["his-dev"]))
    body = assert_problem(response, 400)
    assert body["max_page_size"] == 50 and "50" in body["detail"]


def test_a_clients_own_limit_from_the_database_wins(client: httpx.Client, api_keys: dict[str, str]) -> None:
    admin = bearer(api_keys["admin"])
    created = client.post(
        "/v1/admin/clients",
        json={
            "name": f"limited-{uuid.uuid4().hex[:8]}",
            "kind": "board",
            "scopes": ["triage:read"],
            "rate_limit_per_second": 0.01,
            "rate_burst": 2,
        },
        headers=admin,
    )
    assert created.status_code == 201, created.text
    own = bearer(created.json()["key"])
    assert [client.get("/v1/queues/d", headers=own).status_code for _ in range(2)] == [200, 200]
    assert_problem(client.get("/v1/queues/d", headers=own), 429)
    assert client.get("/v1/queues/d", headers=bearer(api_keys["reader"])).status_code == 200


@pytest.fixture(scope="module")
def print_limited_gateway(keys_file: Path, echo_url: str) -> Iterator[str]:
    """Results' print routes limited to one call per client (refilled very slowly), as a hospital
    would cap a kiosk that loops on printing."""
    settings = gateway_settings(
        keys_file,
        results_url=echo_url,
        route_rate_limits={"POST /visits/{id}/prints": 0.01, "POST /reports/{id}/prints": 0.01},
    )
    with serve(create_gateway(settings)) as url:
        yield url


def test_results_print_routes_are_rate_limited_per_client(
    print_limited_gateway: str, api_keys: dict[str, str], echo: EchoUpstream
) -> None:
    with httpx.Client(base_url=print_limited_gateway, timeout=HTTP_TIMEOUT_SECONDS) as client:
        his = bearer(api_keys["his-dev"])
        visit = f"/v1/visits/{uuid.uuid4()}/prints"
        assert client.post(visit, json={}, headers=his).status_code == 200  # the echo's answer
        echo.seen.clear()
        refused = client.post(visit, json={}, headers=his)
        assert_problem(refused, 429)
        assert int(refused.headers["retry-after"]) >= 1
        assert echo.seen == []  # results never saw the refused print
        # another print route of the same client has its own bucket
        assert client.post(f"/v1/reports/{uuid.uuid4()}/prints", json={}, headers=his).status_code == 200


def test_the_hold_a_read_asks_for_is_read_as_the_service_reads_it_and_bounded() -> None:
    assert requested_hold(b"") == 0.0
    assert requested_hold(b"while_status=awaiting_payment&wait=2.5") == 2.5
    assert requested_hold(b"%77ait=3&while_status=x") == 3.0  # percent-encoded, as the service decodes it
    assert requested_hold(b"wait=1&wait=4&while_status=x") == 4.0  # the last one, as FastAPI takes a scalar
    # `wait` alone holds nothing at the service, so it buys no longer deadline here either
    assert requested_hold(b"wait=10") == 0.0
    # no sane client: the service refuses these itself (400); the gateway adds at most the longest hold
    for wait in (b"1e999", b"nan", b"-5", b"abc", b"99"):
        assert 0.0 <= requested_hold(b"while_status=x&wait=" + wait) <= MAX_HOLD_SECONDS, wait
    assert requested_hold(b"while_status=x&wait=1e999") == 0.0
    assert requested_hold(b"while_status=x&wait=99") == MAX_HOLD_SECONDS


def test_a_read_past_the_held_share_is_sent_without_its_hold_and_nothing_else_changes() -> None:
    assert without_hold(b"wait=10&while_status=awaiting_payment") == b"while_status=awaiting_payment"
    assert without_hold(b"a=%E4%B8%80&%77ait=3&b=1") == b"a=%E4%B8%80&b=1"
    assert without_hold(b"waiting=1") == b"waiting=1"
