"""Percentiles as the project reports them (queue waits, wait metrics, turnaround, the simulator, bench):
nearest rank, so a p90 is always a wait someone really had, never an interpolation between two."""

from collections.abc import Sequence
from typing import TypeVar

__all__ = ["nearest_rank"]

Value = TypeVar("Value", int, float)


def nearest_rank(ordered: Sequence[Value], percent: int) -> Value:
    """`ordered[ceil(percent · n / 100) − 1]` of sorted values (n ≥ 1), in integer arithmetic: a float
    `0.9 * n` can land a hair above a whole rank and pick the next value."""
    if not ordered:
        raise ValueError("no values: a percentile of nothing is undefined")
    if not 0 < percent <= 100:
        raise ValueError(f"percent must be in 1..100, not {percent}")
    return ordered[max(-(-percent * len(ordered) // 100), 1) - 1]
