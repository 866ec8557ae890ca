"""Rate limits (token buckets per client and per client and route), the page-size cap and held reads.

Buckets live in this process's memory: with several gateway replicas each enforces its own share,
which is enough to stop one client from starving the others through any single gateway.
"""

import math
import time
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote_plus

from gateway.errors import PageTooLarge, RateLimited
from kit.params import MAX_HOLD_SECONDS


@dataclass(slots=True)
class TokenBucket:
    """`burst` requests at once, refilled at `rate` per second."""

    rate: float
    burst: int
    tokens: float
    updated: float

    def take(self, now: float) -> float:
        """0.0 if a request may pass now (and count it), else the seconds until one may."""
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


class RateLimiter:
    """Buckets by key (`client`, or `client` + route); a bucket follows its limit when that changes."""

    def __init__(self) -> None:
        self._buckets: dict[tuple[str, str], TokenBucket] = {}

    def check(self, key: tuple[str, str], rate: float, burst: int, *, what: str) -> None:
        """Count one request against the bucket; RateLimited (429) when it is empty."""
        now = time.monotonic()
        bucket = self._buckets.get(key)
        if bucket is None or (bucket.rate, bucket.burst) != (rate, burst):
            tokens = burst if bucket is None else min(bucket.tokens, burst)
            bucket = self._buckets[key] = TokenBucket(rate, burst, tokens, now)
        wait = bucket.take(now)
        if wait:
            retry_after = max(1, math.ceil(wait))
            raise RateLimited(
                f"Rate limit of {rate:g} requests/s exceeded for {what}.", retry_after=retry_after
            )


def route_burst(rate: float) -> int:
    """A per-route bucket holds one second's worth of requests (at least one)."""
    return max(1, math.ceil(rate))


def check_page_size(query_string: bytes, cap: int) -> None:
    """PageTooLarge (400) when a `limit` query parameter asks for more than `cap` items.

    Read as the services read it: percent-decoded (`%6Cimit=500`, `limit=%35%30%30`), and any number
    their validation would take as an int (` 500`, `5_00`, `500.0`).
    """
    if b"limit" not in query_string and b"%" not in query_string:  # the common case: no parsing at all
        return
    for name, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        if name == "limit" and _number(value) > cap:
            raise PageTooLarge(cap)


def _number(text: str) -> float:
    """The number a `limit` value reads as (a superset of what the services accept); 0 if none."""
    try:
        return float(text)
    except ValueError:
        return 0.0  # not a number: the service answers 400 itself


def requested_hold(query_string: bytes) -> float:
    """The seconds a held read's `wait` asks for, as the service reads it, within 0 to `MAX_HOLD_SECONDS`
    (the service refuses a larger one itself; a value that is no number holds nothing). A read holds
    only while it names what it waits out (`while_status`), as the service does: `wait` alone is none."""
    if b"wait" not in query_string and b"%" not in query_string:
        return 0.0
    hold, waits_out = 0.0, False
    for name, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        if name == "wait":
            hold = _number(value)
        waits_out = waits_out or name == "while_status"
    if not waits_out or not math.isfinite(hold):
        return 0.0
    return min(max(hold, 0.0), MAX_HOLD_SECONDS)


def target_without_hold(target: str) -> str:
    """A request target (path and query) without its `wait` parameters."""
    path, _, query = target.partition("?")
    rest = without_hold(query.encode("latin-1"))
    return f"{path}?{rest.decode('latin-1')}" if rest else path


def without_hold(query_string: bytes) -> bytes:
    """The query without its `wait` parameters (the service then answers at once); the others as sent."""
    return b"&".join(
        part
        for part in query_string.split(b"&")
        if unquote_plus(part.split(b"=", 1)[0].decode("latin-1")) != "wait"
    )
