"""Deadlines and slow calls through `Upstreams.send`, on a fake clock and an in-memory pool.

The stand-in service advances the fake clock by however long it "takes", so a frozen service that
would cost a caller seconds costs the test nothing, and no assertion is about the wall clock.
"""

import asyncio
from typing import Any

import aiohttp
import pytest

from gateway.errors import CircuitOpen, UpstreamTimeout, UpstreamUnreachable
from gateway.pools import Headers, Timeouts, UpstreamResponse
from gateway.resilience import CircuitState
from gateway.routes import ROUTES
from gateway.upstreams import Upstreams
from tests.gateway.factories import gateway_settings


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


class Service:
    """A stand-in service's pool: `frozen` (never answers: each attempt lasts its read timeout, then times
    out), `refusing` once then answering, or answering after `answer_seconds`. Records each attempt's
    read timeout."""

    def __init__(self, clock: FakeClock, behaviour: str = "ok", answer_seconds: float = 0.0) -> None:
        self.clock = clock
        self.behaviour = behaviour
        self.answer_seconds = answer_seconds
        self.read_timeouts: list[float] = []
        self.targets: list[str] = []

    async def request(
        self, method: str, target: str, *, headers: Headers, content: bytes | None, timeouts: Timeouts,
        stream: bool = False,
    ) -> UpstreamResponse:  # fmt: skip
        assert timeouts.read is not None
        self.read_timeouts.append(timeouts.read)
        if self.behaviour == "frozen":
            self.clock.now += timeouts.read
            raise aiohttp.SocketTimeoutError("no answer")
        self.targets.append(target)
        if self.behaviour == "reset-late-once":  # a restart late in a held read
            self.behaviour = "ok"
            self.clock.now += 9.0
            raise ConnectionResetError("reset")
        if self.behaviour == "refusing-once":
            self.behaviour = "ok"
            self.clock.now += 1.0
            raise ConnectionRefusedError("refused")
        self.clock.now += self.answer_seconds
        return UpstreamResponse(200, [("content-type", "application/json")], b"[]")

    async def aclose(self) -> None:
        pass

    @property
    def attempts(self) -> int:
        return len(self.read_timeouts)


def upstreams_for(service: Service, clock: FakeClock, **settings: Any) -> Upstreams:
    """Upstreams with results served by `service` (the defaults otherwise: 10 s read timeout, 3 s reads)."""
    config = gateway_settings(None, **settings)
    upstreams = Upstreams(config, sleep=clock.sleep, rand=lambda: 0.5, clock=clock)
    upstreams.pools = {"results": service}
    return upstreams


def call(upstreams: Upstreams, method: str = "GET", **kwargs: Any) -> UpstreamResponse | Exception:
    async def main() -> UpstreamResponse:
        return await upstreams.send("results", method, "/tests", headers=[], **kwargs)

    try:
        return asyncio.run(main())
    except Exception as exc:
        return exc


def test_a_frozen_service_costs_a_read_its_deadline_once_not_the_read_timeout_per_attempt() -> None:
    clock = FakeClock()
    frozen = Service(clock, "frozen")
    upstreams = upstreams_for(frozen, clock)
    started = clock.now

    assert isinstance(call(upstreams), UpstreamTimeout)
    assert frozen.read_timeouts == [3.0]  # cut from 10 s to the 3 s deadline; no time left to retry
    assert clock.now - started == pytest.approx(3.0)


def test_each_attempt_gets_what_is_left_of_the_deadline() -> None:
    clock = FakeClock()
    service = Service(clock, "refusing-once")
    upstreams = upstreams_for(service, clock, read_deadline_seconds=3.0)

    answer = call(upstreams)
    assert isinstance(answer, UpstreamResponse) and answer.status_code == 200
    # the refusal used 1 s and the pause 0.025 s: the retry may wait only for the rest
    assert service.read_timeouts == pytest.approx([3.0, 1.975])


def test_no_retry_without_room_for_one_more_attempt() -> None:
    clock = FakeClock()
    service = Service(clock, "refusing-once")  # the refusal takes 1 s of a 1.1 s deadline
    upstreams = upstreams_for(service, clock, read_deadline_seconds=1.1)
    assert isinstance(call(upstreams), UpstreamUnreachable)
    assert service.attempts == 1


def test_writes_and_routes_have_deadlines_of_their_own() -> None:
    clock = FakeClock()
    frozen = Service(clock, "frozen")
    upstreams = upstreams_for(frozen, clock, route_deadlines={"GET /tests": 1.5})
    settings = upstreams.settings
    routes = {route.key: route for route in ROUTES}
    deadlines = {
        key: settings.deadline_for(route.method, key, route.deadline_seconds)
        for key, route in routes.items()
        if key in ("GET /orders", "POST /orders", "POST /visits/{id}/settlement", "GET /tests")
    }
    assert deadlines == {
        "GET /orders": 3.0,  # a read
        "POST /orders": 4.0,  # a write
        "POST /visits/{id}/settlement": 10.0,  # the route table's own: it waits for charges in flight
        "GET /tests": 1.5,  # the settings win
    }

    assert isinstance(call(upstreams, "POST"), UpstreamTimeout)
    assert isinstance(
        call(upstreams, "POST", deadline_seconds=deadlines["POST /visits/{id}/settlement"]), UpstreamTimeout
    )
    assert frozen.read_timeouts == [4.0, 10.0]


def test_a_frozen_service_opens_its_circuit_after_a_few_slow_calls() -> None:
    clock = FakeClock()
    frozen = Service(clock, "frozen")
    upstreams = upstreams_for(frozen, clock)  # breaker_failures 5, breaker_slow_calls 3

    for _ in range(3):
        assert isinstance(call(upstreams), UpstreamTimeout)
    assert upstreams.circuit_states()["results"] == "open"
    refused = call(upstreams)
    assert isinstance(refused, CircuitOpen) and refused.status == 503
    assert frozen.attempts == 3  # refused at once, without calling the service


def test_slow_answers_open_the_circuit_and_a_slow_answer_on_probation_reopens_it() -> None:
    clock = FakeClock()
    sluggish = Service(clock, answer_seconds=2.5)  # answers, but after 2.5 s of a 3 s deadline
    upstreams = upstreams_for(sluggish, clock)
    breaker = upstreams.breakers["results"]

    for _ in range(2):
        assert isinstance(call(upstreams), UpstreamResponse)
    sluggish.answer_seconds = 0.1
    assert isinstance(call(upstreams), UpstreamResponse)  # a quick answer: the count starts again
    sluggish.answer_seconds = 2.5
    for _ in range(3):
        assert breaker.state is CircuitState.closed
        assert isinstance(call(upstreams), UpstreamResponse)  # the callers still got their answers
    assert breaker.state is CircuitState.open

    breaker.readmit()
    assert isinstance(call(upstreams), UpstreamResponse)
    assert breaker.state is CircuitState.open  # still slow: back to open at once

    breaker.readmit()
    sluggish.answer_seconds = 0.1
    assert isinstance(call(upstreams), UpstreamResponse)
    assert breaker.state is CircuitState.closed


def test_quick_failures_are_not_slow_calls() -> None:
    clock = FakeClock()
    service = Service(clock, "refusing-once")
    upstreams = upstreams_for(service, clock, retry_attempts=0)
    for _ in range(4):
        service.behaviour = "refusing-once"  # 1 s of a 3 s deadline: a failure, not a slow one
        assert isinstance(call(upstreams), UpstreamUnreachable)
    assert upstreams.breakers["results"].consecutive_slow == 0
    assert upstreams.circuit_states()["results"] == "closed"  # 4 of the 5 failures it takes


def test_a_held_read_gets_its_hold_on_top_of_the_deadline_and_is_never_slow_for_holding() -> None:
    """A lab screen's `GET /orders/{id}?wait=8` waits up to 8 s for payment: cut at the 3 s read
    deadline it would be a 504, and three full holds would open the circuit as slow calls."""
    clock = FakeClock()
    holding = Service(clock, answer_seconds=8.2)  # the hold ran out, then the order was read
    upstreams = upstreams_for(holding, clock)
    for _ in range(4):
        answer = call(upstreams, hold_seconds=8.0)
        assert isinstance(answer, UpstreamResponse) and answer.status_code == 200
    assert holding.read_timeouts == [11.0] * 4  # the 3 s read deadline and the 8 s hold (not 3 s)
    assert upstreams.breakers["results"].consecutive_slow == 0
    holding.answer_seconds = 8.0 + 2.5  # slow beyond its hold, as a plain read at 2.5 s of 3 s
    for _ in range(3):
        assert isinstance(call(upstreams, hold_seconds=8.0), UpstreamResponse)
    assert upstreams.circuit_states()["results"] == "open"


def test_held_reads_take_at_most_half_of_a_services_connections() -> None:
    clock = FakeClock()
    service = Service(clock)
    upstreams = upstreams_for(service, clock, pool_size=4)
    assert upstreams.may_hold("results")
    upstreams._holding["results"] = 2  # two reads held now
    assert not upstreams.may_hold("results")
    assert upstreams.may_hold("billing")

    async def held_read() -> UpstreamResponse:
        target = "/orders/o-1?wait=8&while_status=awaiting_payment"
        return await upstreams.send("results", "GET", target, headers=[], hold_seconds=8.0)

    assert asyncio.run(held_read()).status_code == 200  # answered at once, as the order stands
    assert (service.targets, service.read_timeouts) == (["/orders/o-1?while_status=awaiting_payment"], [3.0])


def test_a_held_read_reset_late_in_its_hold_is_retried_without_it() -> None:
    """A retry of a held read has only what is left of the deadline: asked to hold again, it would be
    cut off (a 504 and a failure for the breaker). It asks for the order as it stands."""
    clock = FakeClock()
    service = Service(clock, "reset-late-once")
    upstreams = upstreams_for(service, clock)

    async def held_read() -> UpstreamResponse:
        target = "/orders/o-1?wait=8&while_status=awaiting_payment"
        return await upstreams.send("results", "GET", target, headers=[], hold_seconds=8.0)

    answer = asyncio.run(held_read())
    assert answer.status_code == 200
    assert service.targets == [
        "/orders/o-1?wait=8&while_status=awaiting_payment",
        "/orders/o-1?while_status=awaiting_payment",
    ]
    assert service.read_timeouts == pytest.approx(
        [11.0, 1.975]
    )  # 3 + 8, then what is left after 9 s and a pause
    assert upstreams.breakers["results"].consecutive_failures == 0
