"""The resilience rules without a network or a clock: what is retried, backoff, breaker, health check."""

import asyncio
import logging

import aiohttp
import httpx
import pytest

from gateway.pools import Timeouts
from gateway.resilience import (
    NO_RETRY,
    CircuitBreaker,
    CircuitState,
    Deadline,
    Failure,
    HealthChecker,
    RetryPolicy,
    attempt_timeout,
    classify,
    may_resend,
    retry_safe,
    with_retries,
)


def wrapped(outer: Exception, cause: Exception) -> Exception:
    """An httpx exception raised from an aiohttp one, as httpx-aiohttp does."""
    outer.__cause__ = cause
    return outer


# --- which failures, and which requests, may be re-sent ---------------------------------------------


@pytest.mark.parametrize(
    ("exc", "failure"),
    [
        (httpx.ConnectError("refused"), Failure.refused),
        (ConnectionRefusedError(), Failure.refused),
        (httpx.ConnectTimeout("slow connect"), Failure.connect_timeout),
        (httpx.PoolTimeout("pool"), Failure.connect_timeout),
        (httpx.ReadTimeout("slow"), Failure.read_timeout),
        (TimeoutError(), Failure.read_timeout),
        (httpx.RemoteProtocolError("Server disconnected"), Failure.reset),
        (httpx.ReadError("reset"), Failure.reset),
        (ConnectionResetError(), Failure.reset),
        # httpx-aiohttp calls a dropped connection a ConnectTimeout: the aiohttp cause decides
        (wrapped(httpx.ConnectTimeout(""), aiohttp.ServerDisconnectedError()), Failure.reset),
        (wrapped(httpx.ConnectTimeout(""), aiohttp.ConnectionTimeoutError()), Failure.connect_timeout),
        (wrapped(httpx.ReadTimeout(""), aiohttp.SocketTimeoutError()), Failure.read_timeout),
        (httpx.DecodingError("garbage"), Failure.invalid),
    ],
)
def test_classify(exc: Exception, failure: Failure) -> None:
    assert classify(exc) is failure


def test_only_safe_methods_or_keyed_requests_are_retry_safe() -> None:
    assert retry_safe("GET", idempotency_key=False)
    assert retry_safe("HEAD", idempotency_key=False)
    assert retry_safe("POST", idempotency_key=True)
    assert not retry_safe("POST", idempotency_key=False)
    assert not retry_safe("DELETE", idempotency_key=False)


def test_failures_before_an_answer_may_be_resent_read_timeouts_only_for_get() -> None:
    for failure in (Failure.refused, Failure.connect_timeout, Failure.reset):
        assert may_resend(failure, "GET") and may_resend(failure, "POST")
    assert may_resend(Failure.read_timeout, "GET")
    assert not may_resend(Failure.read_timeout, "POST")  # it may still be running
    for failure in (Failure.deadline, Failure.invalid):
        assert not may_resend(failure, "GET")


# --- backoff ----------------------------------------------------------------------------------------


def test_backoff_is_exponential_capped_and_fully_jittered() -> None:
    policy = RetryPolicy(attempts=6, base_seconds=0.05, cap_seconds=0.5)
    ceilings = [policy.pause(n, rand=lambda: 1.0) for n in range(6)]
    assert ceilings == pytest.approx([0.05, 0.1, 0.2, 0.4, 0.5, 0.5])
    assert policy.pause(3, rand=lambda: 0.0) == 0.0
    assert policy.pause(3, rand=lambda: 0.25) == pytest.approx(0.1)


class Attempts:
    """An upstream call that fails with `errors` in turn, then answers."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.count = 0

    async def __call__(self) -> str:
        self.count += 1
        if self.errors:
            raise self.errors.pop(0)
        return "answer"


def run_retries(
    attempts: Attempts, method: str, *, policy: RetryPolicy, time_left: float = 10.0
) -> tuple[str | Exception, list[float]]:
    pauses: list[float] = []

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)

    async def main() -> str:
        return await with_retries(
            attempts,
            policy=policy,
            resend=lambda exc: may_resend(classify(exc), method),
            time_left=lambda: time_left,
            sleep=sleep,
            rand=lambda: 0.5,
        )

    try:
        return asyncio.run(main()), pauses
    except Exception as exc:
        return exc, pauses


def test_get_is_retried_after_refusals_and_read_timeouts() -> None:
    attempts = Attempts(httpx.ConnectError("refused"), httpx.ReadTimeout("slow"))
    result, pauses = run_retries(attempts, "GET", policy=RetryPolicy(attempts=2))
    assert result == "answer"
    assert attempts.count == 3
    assert pauses == pytest.approx([0.025, 0.05])


def test_attempts_are_bounded() -> None:
    attempts = Attempts(*(httpx.ConnectError("refused") for _ in range(5)))
    result, pauses = run_retries(attempts, "GET", policy=RetryPolicy(attempts=2))
    assert isinstance(result, httpx.ConnectError)
    assert attempts.count == 3 and len(pauses) == 2


def test_post_that_timed_out_is_never_resent() -> None:
    attempts = Attempts(httpx.ReadTimeout("slow"))
    result, pauses = run_retries(attempts, "POST", policy=RetryPolicy(attempts=2))
    assert isinstance(result, httpx.ReadTimeout)
    assert attempts.count == 1 and pauses == []


def test_requests_that_are_not_retry_safe_get_one_attempt() -> None:
    attempts = Attempts(httpx.ConnectError("refused"))
    result, _ = run_retries(attempts, "POST", policy=NO_RETRY)
    assert isinstance(result, httpx.ConnectError)
    assert attempts.count == 1


def test_no_pause_runs_past_the_deadline() -> None:
    attempts = Attempts(httpx.ConnectError("refused"))
    result, pauses = run_retries(attempts, "GET", policy=RetryPolicy(attempts=2), time_left=0.01)
    assert isinstance(result, httpx.ConnectError)
    assert attempts.count == 1 and pauses == []


def test_a_retry_needs_room_for_its_pause_and_an_attempt() -> None:
    # 0.12 s left: the 0.025 s pause fits, but leaves less than the 0.1 s an attempt is worth
    attempts = Attempts(httpx.ConnectError("refused"))
    result, pauses = run_retries(attempts, "GET", policy=RetryPolicy(attempts=2), time_left=0.12)
    assert isinstance(result, httpx.ConnectError)
    assert attempts.count == 1 and pauses == []


# --- deadlines -------------------------------------------------------------------------------------


def test_deadline_counts_down_on_its_clock_and_knows_a_slow_call() -> None:
    now = [50.0]
    deadline = Deadline(3.0, clock=lambda: now[0])
    now[0] += 1.0
    assert deadline.left() == pytest.approx(2.0) and deadline.elapsed() == pytest.approx(1.0)
    assert not deadline.is_slow(0.5)
    now[0] += 0.6
    assert deadline.is_slow(0.5)  # 1.6 s of 3 s
    now[0] += 5.0
    assert deadline.left() == 0.0


def test_attempt_timeouts_are_cut_to_what_is_left() -> None:
    configured = Timeouts(connect=1.0, read=10.0, write=5.0, pool=2.0)
    cut = attempt_timeout(configured, 2.5)
    assert (cut.connect, cut.read, cut.write, cut.pool) == (1.0, 2.5, 2.5, 2.0)
    # a stream's read timeout is the silence allowed between chunks, which outlive the deadline
    stream = attempt_timeout(Timeouts(connect=1.0, read=60.0, write=5.0, pool=2.0), 2.5, stream=True)
    assert (stream.connect, stream.read, stream.write, stream.pool) == (1.0, 60.0, 2.5, 2.0)


# --- the breaker -------------------------------------------------------------------------------------


def test_breaker_opens_after_consecutive_slow_calls_answered_or_not() -> None:
    breaker = CircuitBreaker("results", failure_threshold=5, slow_threshold=3)
    breaker.record_success(slow=True)
    breaker.record_success(slow=True)
    breaker.record_success()  # a quick answer resets the slow count
    breaker.record_success(slow=True)
    breaker.record_failure(slow=True)  # a timeout: a failure and a slow call
    assert breaker.state is CircuitState.closed
    breaker.record_success(slow=True)
    assert breaker.state is CircuitState.open


def test_timeouts_open_the_breaker_at_the_slow_threshold_before_the_failure_threshold() -> None:
    breaker = CircuitBreaker("results", failure_threshold=5, slow_threshold=3)
    for _ in range(3):
        breaker.record_failure(slow=True)
    assert breaker.state is CircuitState.open and breaker.consecutive_failures == 3


def test_a_slow_answer_on_probation_reopens_a_quick_one_closes() -> None:
    breaker = CircuitBreaker("results", failure_threshold=1, slow_threshold=3)
    breaker.record_failure()
    breaker.readmit()
    breaker.record_success(slow=True)
    assert breaker.state is CircuitState.open
    breaker.readmit()
    breaker.record_success()
    assert breaker.state is CircuitState.closed


def test_breaker_opens_after_consecutive_failures_only() -> None:
    breaker = CircuitBreaker("results", failure_threshold=3)
    breaker.record_failure()
    breaker.record_failure()
    breaker.record_success()  # an answer in between resets the count
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state is CircuitState.closed and breaker.admits_calls
    breaker.record_failure()
    assert breaker.state is CircuitState.open and not breaker.admits_calls


def test_only_the_health_check_readmits_an_open_circuit() -> None:
    breaker = CircuitBreaker("results", failure_threshold=1)
    breaker.record_failure()
    breaker.record_success()  # a late answer to a call admitted earlier
    assert breaker.state is CircuitState.open
    breaker.readmit()
    assert breaker.state is CircuitState.half_open and breaker.admits_calls
    breaker.record_success()
    assert breaker.state is CircuitState.closed


def test_a_failure_on_probation_reopens_at_once() -> None:
    breaker = CircuitBreaker("results", failure_threshold=5)
    for _ in range(5):
        breaker.record_failure()
    breaker.readmit()
    breaker.record_failure()
    assert breaker.state is CircuitState.open


def test_state_changes_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    breaker = CircuitBreaker("billing", failure_threshold=1)
    with caplog.at_level(logging.WARNING, logger="patientflow.gateway"):
        breaker.record_failure()
        breaker.readmit()
        breaker.record_success()
    # Only the breaker's own lines: the package's in-process registration logs too, from its feed
    # threads, whenever its billing feed (never served here) is retried.
    assert [r.getMessage() for r in caplog.records if r.name == "patientflow.gateway"] == [
        "circuit for billing: closed -> open",
        "circuit for billing: open -> half-open",
        "circuit for billing: half-open -> closed",
    ]


def test_health_check_probes_open_circuits_and_readmits_the_ready() -> None:
    breakers = {name: CircuitBreaker(name, failure_threshold=1) for name in ("triage", "results", "billing")}
    breakers["results"].record_failure()
    breakers["billing"].record_failure()
    probed: list[str] = []

    async def probe(service: str) -> bool:
        probed.append(service)
        return service == "results"

    asyncio.run(HealthChecker(breakers, probe, interval=1.0).check_once())
    assert sorted(probed) == ["billing", "results"]  # a closed circuit is not probed
    assert breakers["results"].state is CircuitState.half_open
    assert breakers["billing"].state is CircuitState.open
    assert breakers["triage"].state is CircuitState.closed


def test_health_checker_runs_every_interval_until_stopped() -> None:
    breakers = {"results": CircuitBreaker("results", failure_threshold=1)}
    breakers["results"].record_failure()
    intervals: list[float] = []

    async def main() -> None:
        async def probe(_service: str) -> bool:
            return True

        async def sleep(seconds: float) -> None:
            intervals.append(seconds)
            await asyncio.sleep(0)

        checker = HealthChecker(breakers, probe, interval=2.5, sleep=sleep)
        checker.start()
        while not breakers["results"].admits_calls:
            await asyncio.sleep(0)
        await checker.stop()

    asyncio.run(main())
    assert intervals[0] == 2.5
    assert breakers["results"].state is CircuitState.half_open
