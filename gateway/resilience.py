"""How the gateway survives a failing service: which failures may be re-sent, backoff, circuit breakers.

Pure logic with the clock, sleep and randomness injectable, so it is tested without a network or a
wall clock; `gateway.upstreams` wires it to the pooled clients. The rules (reliability.md §7.6-7.8):

- A request is re-sent only if running it twice cannot do harm: GET/HEAD, or any request carrying an
  `Idempotency-Key` (the service then answers a repeat with the first result). And only after a failure
  that left no answer: no connection, or a connection dropped before the response; a read timeout only
  for GET/HEAD, since a POST that timed out may still be running.
- Every call has one deadline over all its attempts (`Deadline`, a few seconds for reads): each
  attempt's timeouts are cut to what is left of it, and a retry starts only if its pause leaves an
  attempt worth making (`RetryPolicy.min_attempt_seconds`). A stalled service costs its caller the
  deadline, never the read timeout times the attempts.
- Backoff is exponential, capped, with full jitter (a uniform pause in `[0, min(cap, base·2^n))`), so
  gateways retrying together do not hit a recovering service in step; no pause runs past the deadline.
- A breaker per service opens after N consecutive failed calls (no usable answer, or a 5xx that is not
  the service's own problem+json), or after M consecutive slow calls (answered or not, slower than a
  share of their deadline, 80% by default: resilience4j's slow-call rule with a window of M calls at
  a 100% rate), and then refuses at once. A frozen service's calls time out, so they are both: it
  opens after M calls whatever the call rate. Only the active health check re-admits the service (to
  half-open: the next call decides, and a slow answer re-opens it), never a lucky client request.
"""

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TypeVar

import aiohttp
import httpx

from gateway.pools import Timeouts
from gateway.wire import ConnectFailed, ConnectTimeout, Disconnected, PoolTimeout, ReadTimeout, WireError

logger = logging.getLogger("patientflow.gateway")
T = TypeVar("T")

SAFE_METHODS = frozenset({"GET", "HEAD"})
# Everything a call through a pool (the gateway's own `gateway.wire`, or aiohttp and httpx for the
# benchmark) may raise instead of answering.
UpstreamError = (WireError, httpx.HTTPError, aiohttp.ClientError, OSError)  # OSError includes TimeoutError


class Failure(StrEnum):
    """How an upstream call failed, as far as the gateway can tell."""

    refused = "refused"  # no connection: the request never left the gateway
    connect_timeout = "connect-timeout"  # no connection in time: never left either
    reset = "reset"  # the connection dropped before an answer: the service may have acted
    read_timeout = "read-timeout"  # sent, but no answer in time: the service may still act
    deadline = "deadline"  # the overall deadline ran out (e.g. a service trickling bytes)
    invalid = "invalid"  # an answer that is not usable HTTP


def root_cause(exc: BaseException) -> BaseException:
    """The aiohttp exception under an httpx one, when there is one.

    httpx-aiohttp 0.2 reports a refused or reset connection as `httpx.ConnectTimeout` (and lets some
    protocol errors through unwrapped), so only the original says what happened.
    """
    return exc.__cause__ if isinstance(exc.__cause__, aiohttp.ClientError) else exc


def classify(exc: BaseException) -> Failure:
    """The failure behind an exception from an upstream call (aiohttp or httpcore underneath)."""
    root = root_cause(exc)
    # Order matters: aiohttp's timeouts are also connection errors, its connector errors OSErrors.
    if isinstance(
        root,
        ConnectTimeout
        | PoolTimeout
        | aiohttp.ConnectionTimeoutError
        | httpx.ConnectTimeout
        | httpx.PoolTimeout,
    ):
        return Failure.connect_timeout
    if isinstance(root, ReadTimeout | aiohttp.ServerTimeoutError | httpx.TimeoutException | TimeoutError):
        return Failure.read_timeout
    if isinstance(
        root, ConnectFailed | aiohttp.ClientConnectorError | httpx.ConnectError | ConnectionRefusedError
    ):
        return Failure.refused
    if isinstance(
        root,
        Disconnected
        | aiohttp.ServerDisconnectedError
        | aiohttp.ClientOSError
        | aiohttp.ClientPayloadError
        | httpx.RemoteProtocolError
        | httpx.ReadError
        | httpx.WriteError
        | ConnectionError,
    ):
        return Failure.reset
    return Failure.invalid


def retry_safe(method: str, *, idempotency_key: bool) -> bool:
    """Whether running this request twice is harmless."""
    return method in SAFE_METHODS or idempotency_key


def may_resend(failure: Failure, method: str) -> bool:
    """Whether a retry-safe request may be re-sent after this failure."""
    if failure in (Failure.refused, Failure.connect_timeout, Failure.reset):
        return True
    return failure is Failure.read_timeout and method in SAFE_METHODS


@dataclass(slots=True)
class Deadline:
    """One call's time budget, retries and pauses included, on an injectable clock (seconds); `held`
    of them are a held read's wait for a change (`wait=`), which is no slowness."""

    seconds: float
    clock: Callable[[], float] = time.monotonic
    held: float = 0.0
    started: float = field(init=False)

    def __post_init__(self) -> None:
        self.started = self.clock()

    def left(self) -> float:
        return max(0.0, self.started + self.seconds - self.clock())

    def elapsed(self) -> float:
        return self.clock() - self.started

    def is_slow(self, share: float) -> bool:
        """Whether the call so far took more than `share` of its deadline (a slow call for the breaker),
        the hold not counted."""
        return self.elapsed() - self.held > share * (self.seconds - self.held)


def attempt_timeout(timeout: Timeouts, time_left: float, *, stream: bool = False) -> Timeouts:
    """One attempt's timeouts, none longer than what is left of the deadline.

    A stream's read timeout is the silence allowed between its chunks, which outlive the deadline; its
    head is bounded by the deadline around the whole call instead.
    """

    time_left = max(time_left, 0.001)  # aiohttp reads a timeout of 0 as none at all

    def cut(seconds: float | None) -> float:
        return time_left if seconds is None else min(seconds, time_left)

    read = timeout.read if stream else cut(timeout.read)
    return Timeouts(connect=cut(timeout.connect), read=read, write=cut(timeout.write), pool=cut(timeout.pool))


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """At most `attempts` extra attempts, pausing with capped, full-jitter exponential backoff.

    A retry is made only if, after its pause, at least `min_attempt_seconds` of the deadline remain: an
    attempt with less could only time out.
    """

    attempts: int = 2
    base_seconds: float = 0.05
    cap_seconds: float = 0.5
    min_attempt_seconds: float = 0.1

    def pause(self, retry: int, rand: Callable[[], float] = random.random) -> float:
        """The pause before retry number `retry` (0 for the first): uniform in `[0, min(cap, base·2^n))`."""
        return rand() * min(self.cap_seconds, self.base_seconds * 2**retry)


NO_RETRY = RetryPolicy(attempts=0)


async def with_retries(
    attempt: Callable[[], Awaitable[T]],
    *,
    policy: RetryPolicy,
    resend: Callable[[Exception], bool],
    time_left: Callable[[], float],
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    rand: Callable[[], float] = random.random,
) -> T:
    """`attempt()`, repeated under `policy` while `resend(exc)` allows and the deadline (`time_left()`) has
    room for the pause and one more attempt."""
    retry = 0
    while True:
        try:
            return await attempt()
        except Exception as exc:
            if retry >= policy.attempts or not resend(exc):
                raise
            pause = policy.pause(retry, rand)
            if pause + policy.min_attempt_seconds > time_left():
                raise
            await sleep(pause)
            retry += 1


class CircuitState(StrEnum):
    closed = "closed"  # calls flow
    open = "open"  # calls fail fast until the health check sees the service ready
    half_open = "half-open"  # re-admitted by the health check: the next call closes or re-opens it


class CircuitBreaker:
    """One service's breaker: opens after `failure_threshold` consecutive failed calls, or after
    `slow_threshold` consecutive slow ones (a timed-out call is usually both)."""

    def __init__(self, service: str, *, failure_threshold: int, slow_threshold: int | None = None) -> None:
        self.service = service
        self.failure_threshold = failure_threshold
        self.slow_threshold = slow_threshold or failure_threshold
        self.state = CircuitState.closed
        self.consecutive_failures = 0
        self.consecutive_slow = 0

    @property
    def admits_calls(self) -> bool:
        return self.state is not CircuitState.open

    def record_success(self, *, slow: bool = False) -> None:
        """A usable answer (any 2xx-4xx, or the service's own problem+json); `slow` if it came late."""
        self.consecutive_failures = 0
        self._count_slow(slow)
        if self.state is CircuitState.open:
            # A late answer to a call admitted before it opened proves little: only the health check
            # re-admits.
            return
        if self.state is CircuitState.half_open and not slow:
            self._become(CircuitState.closed)
        elif slow and (self.state is CircuitState.half_open or self.consecutive_slow >= self.slow_threshold):
            self._become(CircuitState.open)

    def record_failure(self, *, slow: bool = False) -> None:
        """No usable answer: refused, dropped, timed out, or a 5xx that is not a problem+json."""
        if self.state is CircuitState.open:
            return
        self.consecutive_failures += 1
        self._count_slow(slow)
        if (
            self.state is CircuitState.half_open
            or self.consecutive_failures >= self.failure_threshold
            or self.consecutive_slow >= self.slow_threshold
        ):
            self._become(CircuitState.open)

    def readmit(self) -> None:
        """The health check saw the service ready: let calls through again, on probation."""
        if self.state is CircuitState.open:
            self.consecutive_failures = self.consecutive_slow = 0
            self._become(CircuitState.half_open)

    def _count_slow(self, slow: bool) -> None:
        self.consecutive_slow = self.consecutive_slow + 1 if slow else 0

    def _become(self, state: CircuitState) -> None:
        logger.warning(
            "circuit for %s: %s -> %s", self.service, self.state.value, state.value,
            extra={"upstream": self.service, "circuit": state.value},
        )  # fmt: skip
        self.state = state


class HealthChecker:
    """Probes each service whose circuit is open, every `interval` seconds; re-admits those ready.

    `probe(service)` answers whether the service's `/readyz` said 200 (and must not raise).
    """

    def __init__(
        self,
        breakers: Mapping[str, CircuitBreaker],
        probe: Callable[[str], Awaitable[bool]],
        *,
        interval: float,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.breakers = breakers
        self.probe = probe
        self.interval = interval
        self.sleep = sleep
        self._task: asyncio.Task[None] | None = None

    async def check_once(self) -> None:
        """Probe the open circuits' services concurrently; re-admit every one that is ready."""
        closed_off = [name for name, breaker in self.breakers.items() if not breaker.admits_calls]
        ready = await asyncio.gather(*(self.probe(name) for name in closed_off))
        for name, is_ready in zip(closed_off, ready, strict=True):
            if is_ready:
                self.breakers[name].readmit()

    async def run(self) -> None:
        while True:
            await self.sleep(self.interval)
            try:
                await self.check_once()
            except Exception:  # a bug in one round must not end the checking for good
                logger.exception("health check round failed")

    def start(self) -> None:
        """Start checking in the background (call from within the running event loop)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self.run(), name="gateway-health-check")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
