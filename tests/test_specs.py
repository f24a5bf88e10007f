"""Scenario specs carry their behaviour: a deadline's median, longest and draws, an arrival
process's mean rate — hand-computable cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import TypeAdapter

from simqos.specs import Arrival, Deadline

deadline = TypeAdapter(Deadline).validate_python
arrival = TypeAdapter(Arrival).validate_python


def test_each_deadline_kind_has_its_median_longest_and_fixed_value():
    constant = deadline({"kind": "constant", "ms": 10})
    uniform = deadline({"kind": "uniform", "low_ms": 4, "high_ms": 8})
    lognormal = deadline({"kind": "lognormal", "median_ms": 10, "sigma": 0.5})
    assert (constant.median_ms, constant.longest_ms, constant.fixed_ms) == (10, 10, 10)
    assert (uniform.median_ms, uniform.longest_ms, uniform.fixed_ms) == (6, 8, None)
    assert lognormal.median_ms == 10 and lognormal.longest_ms == pytest.approx(10 * math.exp(1.75)) and lognormal.fixed_ms is None


def test_deadlines_are_drawn_from_the_generator_they_are_given():
    assert np.array_equal(deadline({"kind": "constant", "ms": 10}).draw(3, np.random.default_rng(0)), [10.0, 10.0, 10.0])
    drawn = deadline({"kind": "uniform", "low_ms": 4, "high_ms": 8}).draw(1000, np.random.default_rng(1))
    assert np.array_equal(drawn, np.random.default_rng(1).uniform(4, 8, size=1000)) and 4 <= drawn.min() and drawn.max() <= 8
    logs = np.log(deadline({"kind": "lognormal", "median_ms": 10, "sigma": 0.5}).draw(20_000, np.random.default_rng(2)))
    assert np.median(logs) == pytest.approx(math.log(10), abs=0.02) and logs.std() == pytest.approx(0.5, abs=0.01)


def test_each_arrival_kind_has_its_mean_rate(tmp_path):
    assert arrival({"kind": "poisson", "rate_hz": 30}).mean_rate_hz() == 30
    assert arrival({"kind": "periodic", "fps": 15, "jitter_ms": 2}).mean_rate_hz() == 15
    # two states, 10/s for 1 s on average then silent for 3 s: a quarter of the time at 10/s
    bursty = arrival({"kind": "bursty", "states": [{"rate_hz": 10, "mean_dwell_s": 1}, {"rate_hz": 0, "mean_dwell_s": 3}]})
    assert bursty.mean_rate_hz() == pytest.approx(2.5)
    path = tmp_path / "arrivals.csv"
    path.write_text("arrival_s\n0.5\n1.0\n2.0\n4.0\n")
    assert arrival({"kind": "trace", "path": str(path)}).mean_rate_hz() == pytest.approx(1.0)  # 4 arrivals over 4 s
