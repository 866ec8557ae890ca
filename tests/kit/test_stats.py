"""The one percentile every figure uses: nearest rank, exact for every count."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kit.stats import nearest_rank


def test_a_percentile_is_an_observed_value_at_its_exact_rank() -> None:
    ten = list(range(1, 11))
    assert nearest_rank(ten, 90) == 9 and nearest_rank(ten, 50) == 5 and nearest_rank(ten, 100) == 10
    assert nearest_rank(list(range(1, 12)), 90) == 10  # rank ceil(9.9)
    assert nearest_rank([4.5], 90) == 4.5
    # Where float arithmetic lands a hair above a whole rank and would pick the next value:
    twenty_five = list(range(1, 26))
    assert math.ceil(28 / 100 * 25) == 8  # 7.000000000000001
    assert nearest_rank(twenty_five, 28) == 7


@given(st.lists(st.integers(0, 10_000), min_size=1, max_size=300), st.integers(1, 100))
def test_it_is_the_smallest_value_with_that_share_at_or_below_it(values: list[int], percent: int) -> None:
    ordered = sorted(values)
    value = nearest_rank(ordered, percent)
    assert sum(1 for v in ordered if v <= value) * 100 >= percent * len(ordered)
    assert sum(1 for v in ordered if v < value) * 100 < percent * len(ordered)


def test_nothing_or_a_share_outside_1_to_100_is_refused() -> None:
    with pytest.raises(ValueError, match="no values"):
        nearest_rank([], 90)
    for percent in (0, 101, -5):
        with pytest.raises(ValueError, match=r"1\.\.100"):
            nearest_rank([1, 2], percent)
