"""The calls to the services: one long-lived connection pool each, retries, breakers and health checks.

Every call either returns the service's answer or raises the problem the client should see:

- the service refused the connection or dropped it before answering -> 502;
- its circuit is open (`breaker_failures` failed or `breaker_slow_calls` slow calls in a row) -> 503
  with `Retry-After`;
- it took the request but did not answer in time (read timeout, or the call's deadline) -> 504;
- it answered a 5xx that is not its own problem+json (a crash page, a proxy in between) -> 502.

A service's own problem+json (any status) is an answer and passes through. Each call has one deadline
(the route's, else by method), retries included. What is retried, and the breaker's rules, are in
`gateway.resilience`.
"""

import asyncio
import logging
import math
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import NamedTuple

from gateway.config import GatewaySettings
from gateway.errors import BadGateway, CircuitOpen, UpstreamTimeout, UpstreamUnreachable
from gateway.limits import target_without_hold
from gateway.metrics import count_slow_call, count_upstream_attempt, count_upstream_error
from gateway.pools import AiohttpPool, Headers, HttpxPool, Pool, Timeouts, UpstreamResponse
from gateway.resilience import (
    NO_RETRY,
    CircuitBreaker,
    Deadline,
    Failure,
    HealthChecker,
    RetryPolicy,
    UpstreamError,
    attempt_timeout,
    classify,
    may_resend,
    retry_safe,
    root_cause,
    with_retries,
)
from gateway.wire import WirePool
from kit.errors import PROBLEM_MEDIA_TYPE, ProblemError

logger = logging.getLogger("patientflow.gateway")
__all__ = ["Headers", "UpstreamResponse", "Upstreams"]


def open_pool(base_url: str, settings: GatewaySettings) -> Pool:
    """The connection pool to one service, on the forwarder the settings name (`wire` but to compare)."""
    if settings.upstream_transport == "wire":
        return WirePool(base_url, settings)
    if settings.upstream_transport == "aiohttp":
        return AiohttpPool(base_url, settings)
    return HttpxPool(base_url, settings, over_aiohttp=settings.upstream_transport == "httpx-aiohttp")


def failure_problem(service: str, failure: Failure) -> ProblemError:
    """The problem for a call that got no usable answer."""
    if failure is Failure.refused:
        return UpstreamUnreachable(f"The {service} service refused the connection.", service=service)
    if failure is Failure.reset:
        return UpstreamUnreachable(f"The {service} service dropped the connection.", service=service)
    if failure is Failure.connect_timeout:
        return UpstreamTimeout(f"The {service} service did not accept a connection in time.", service=service)
    if failure in (Failure.read_timeout, Failure.deadline):
        return UpstreamTimeout(f"The {service} service did not answer in time.", service=service)
    return BadGateway(f"The {service} service sent an invalid response.", service=service)


def is_problem(response: UpstreamResponse) -> bool:
    return (response.header("content-type") or "").startswith(PROBLEM_MEDIA_TYPE)


class Attempt(NamedTuple):
    """What one attempt of a call sends: its target (path and query) and its timeouts."""

    target: str
    timeouts: Timeouts


class Upstreams:
    """The services' connection pools and breakers, opened in the gateway's lifespan and closed with it.

    `sleep` and `rand` pace the retries, `clock` keeps the deadlines and times the calls (tests pass fakes).
    """

    def __init__(
        self,
        settings: GatewaySettings,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rand: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.pools: dict[str, Pool] = {}
        self.breakers = {
            name: CircuitBreaker(
                name, failure_threshold=settings.breaker_failures, slow_threshold=settings.breaker_slow_calls
            )
            for name in settings.upstream_urls()
        }
        self.retry = RetryPolicy(
            settings.retry_attempts, settings.retry_backoff_seconds, settings.retry_backoff_cap_seconds
        )
        self.health = HealthChecker(self.breakers, self.is_ready, interval=settings.health_interval_seconds)
        self._sleep, self._rand, self._clock = sleep, rand, clock
        self._holding: Counter[str] = Counter()  # held reads in flight, by service
        self._timeouts = Timeouts(
            connect=settings.connect_timeout,
            read=settings.read_timeout,
            write=settings.write_timeout,
            pool=settings.pool_timeout,
        )
        # No deadline for a stream once its head arrived; only a long silence ends it.
        self._stream_timeouts = Timeouts(
            connect=settings.connect_timeout,
            read=settings.stream_read_timeout,
            write=settings.write_timeout,
            pool=settings.pool_timeout,
        )

    def open(self) -> None:
        """Open the pools and start the health checker (from within the running event loop)."""
        urls = self.settings.upstream_urls()
        self.pools = {name: open_pool(url, self.settings) for name, url in urls.items()}
        self.health.start()

    async def aclose(self) -> None:
        await self.health.stop()
        for pool in self.pools.values():
            await pool.aclose()
        self.pools = {}

    def circuit_states(self) -> dict[str, str]:
        """Each service's circuit: `closed`, `open` or `half-open`."""
        return {name: breaker.state.value for name, breaker in self.breakers.items()}

    @property
    def circuit_retry_after(self) -> int:
        """Seconds until the next health check may re-admit an open service."""
        return max(1, math.ceil(self.settings.health_interval_seconds))

    async def send(
        self,
        service: str,
        method: str,
        target: str,
        *,
        headers: Headers,
        content: bytes | None = None,
        stream: bool = False,
        deadline_seconds: float | None = None,
        honours_idempotency_key: bool = False,
        hold_seconds: float = 0.0,
    ) -> UpstreamResponse:
        """Call `service`; its answer, or the ProblemError a client should see.

        With `stream`, the response is returned as soon as its head arrives; the caller must close it.
        `deadline_seconds` bounds the call, retries included (default: by method, from the settings). A
        request carrying an `Idempotency-Key` is retry-safe only where the service `honours_idempotency_key`.
        `hold_seconds`, what a held read asks the service to wait, is added to the deadline and to the
        first attempt's read timeout, and never makes the call slow for the breaker; a retry goes without
        the hold (what is left of the deadline would cut a second one off), and so does a read past the
        held share of the service's connections (`may_hold`): it is answered at once, and may ask again.
        """
        breaker = self.breakers[service]
        if not breaker.admits_calls:
            raise self._failed(service, method, CircuitOpen(service, retry_after=self.circuit_retry_after))
        if hold_seconds and not self.may_hold(service):
            target, hold_seconds = target_without_hold(target), 0.0
        base_timeouts = self._stream_timeouts if stream else self._timeouts
        keyed = honours_idempotency_key and any(name == b"idempotency-key" for name, _ in headers)
        policy = self.retry if retry_safe(method, idempotency_key=keyed) else NO_RETRY
        deadline = Deadline(
            (deadline_seconds or self.settings.deadline_for(method)) + hold_seconds,
            self._clock,
            held=hold_seconds,
        )
        first = Attempt(target, base_timeouts)
        retry = first
        if hold_seconds:
            first = Attempt(target, replace(base_timeouts, read=(base_timeouts.read or 0.0) + hold_seconds))
            retry = Attempt(target_without_hold(target), base_timeouts)
            self._holding[service] += 1
        try:
            return await self._call(
                service, method, headers, content, stream, (first, retry), deadline, policy
            )
        finally:
            if hold_seconds:
                self._holding[service] -= 1

    def may_hold(self, service: str) -> bool:
        """Whether a read to `service` may be held now: held reads take at most half of its connections
        (the bulkhead), so reads waiting for a change never starve the calls that make one."""
        return self._holding[service] < max(1, self.settings.pool_size // 2)

    async def _call(
        self,
        service: str,
        method: str,
        headers: Headers,
        content: bytes | None,
        stream: bool,
        attempts: tuple[Attempt, Attempt],
        deadline: Deadline,
        policy: RetryPolicy,
    ) -> UpstreamResponse:
        """The call: the first attempt, then retries as `policy` allows (`attempts`: the first's target
        and timeouts, and every retry's)."""
        breaker, pool = self.breakers[service], self.pools[service]
        sent = 0

        async def attempt() -> UpstreamResponse:
            nonlocal sent
            target, base_timeouts = attempts[min(sent, 1)]
            sent += 1
            timeouts = attempt_timeout(base_timeouts, deadline.left(), stream=stream)
            count_upstream_attempt(service)
            return await pool.request(
                method, target, headers=headers, content=content, timeouts=timeouts, stream=stream
            )

        # The timeouts bound each wait; this bounds the whole call (a service trickling bytes).
        budget = asyncio.timeout(deadline.left())
        try:
            async with budget:
                response = await with_retries(
                    attempt,
                    policy=policy,
                    resend=lambda exc: isinstance(exc, UpstreamError) and may_resend(classify(exc), method),
                    time_left=deadline.left,
                    sleep=self._sleep,
                    rand=self._rand,
                )
        except UpstreamError as exc:
            failure = Failure.deadline if budget.expired() else classify(exc)
            breaker.record_failure(slow=self._slow(service, deadline))
            cause = f"{failure.value} ({type(root_cause(exc)).__name__})"
            raise self._failed(service, method, failure_problem(service, failure), cause) from exc
        slow = self._slow(service, deadline)
        if response.status_code >= 500 and not is_problem(response):
            breaker.record_failure(slow=slow)
            await response.aclose()
            problem = BadGateway(f"The {service} service failed ({response.status_code}).", service=service)
            raise self._failed(service, method, problem, f"status {response.status_code}")
        breaker.record_success(slow=slow)
        return response

    def _slow(self, service: str, deadline: Deadline) -> bool:
        """Whether the call was slow for the breaker (counted in the metrics when it was)."""
        slow = deadline.is_slow(self.settings.breaker_slow_call_share)
        if slow:
            count_slow_call(service)
        return slow

    def _failed(self, service: str, method: str, problem: ProblemError, cause: str = "") -> ProblemError:
        logger.warning("%s to %s answered %s: %s", method, service, problem.status, cause or problem.slug)
        count_upstream_error(service, problem)
        return problem

    async def is_ready(self, service: str) -> bool:
        """Whether the service's own `/readyz` answers 200 (the health check's probe; never raises)."""
        return await self._probe(service) == "ready"

    async def readiness(self) -> dict[str, str]:
        """Each service's answer to its own `/readyz`: `ready`, `not ready (<status>)` or `unreachable`."""
        names = list(self.pools)
        answers = await asyncio.gather(*(self._probe(name) for name in names))
        return dict(zip(names, answers, strict=True))

    async def get(self, service: str, path: str, *, headers: Headers | None = None) -> UpstreamResponse:
        """A GET of the gateway's own outside the breaker (readiness, the services' OpenAPI documents)."""
        return await self.pools[service].request(
            "GET", path, headers=headers or [], content=None, timeouts=self._timeouts
        )

    async def _probe(self, service: str) -> str:
        try:
            async with asyncio.timeout(self.settings.readiness_timeout):
                response = await self.get(service, "/readyz")
        except UpstreamError:
            return "unreachable"
        return "ready" if response.status_code == 200 else f"not ready ({response.status_code})"
