import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simqos.sim.metrics import wilson_interval


def test_wilson_hand_computed():
    # p = 0.5, n = 100, z = 1.95996: centre 0.5, half = z*sqrt(.25/100 + z^2/40000)/(1+z^2/100)
    z = 1.959963984540054
    half = z * math.sqrt(0.25 / 100 + z * z / 40000) / (1 + z * z / 100)
    low, high = wilson_interval(50, 100)
    assert low == pytest.approx(0.5 - half, abs=1e-12)
    assert high == pytest.approx(0.5 + half, abs=1e-12)


def test_wilson_zero_successes_is_informative():
    low, high = wilson_interval(0, 1000)
    assert low == 0.0
    assert 0.003 < high < 0.005  # about 3.84 / 1000


@given(st.integers(1, 10_000).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_wilson_contains_the_estimate(case):
    k, n = case
    low, high = wilson_interval(k, n)
    assert 0.0 <= low <= k / n <= high <= 1.0


@pytest.mark.parametrize("args", [(1, 0), (-1, 5), (6, 5)])
def test_wilson_rejects_bad_counts(args):
    with pytest.raises(ValueError):
        wilson_interval(*args)
