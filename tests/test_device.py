import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simqos.sim.device import (
    ConstantProcess,
    MarkovProcess,
    PeriodicProcess,
    ProductProcess,
    SpeedTrace,
    Trace,
    constant_trace,
    markov_trace,
    periodic_trace,
    resident_trace,
    sampled,
)


def test_finish_time_hand_computed():
    # speed 1 on [0, 1 s), 0.5 afterwards: 1500 ms of work from 0 ends at 1 + 0.5 / 0.5 = 2 s
    speed = SpeedTrace(Trace(np.array([0.0, 1.0]), np.array([1.0, 0.5])))
    assert speed.finish_time_s(0.0, 1500.0) == pytest.approx(2.0)
    assert speed.finish_time_s(0.5, 250.0) == pytest.approx(0.75)
    assert speed.finish_time_s(0.9, 200.0) == pytest.approx(1.0 + 0.1 / 0.5)  # change mid-layer
    assert speed.work_done_ms(3.0) == pytest.approx(1000 + 2000 * 0.5)


@given(
    st.lists(st.floats(0.05, 4.0), min_size=1, max_size=20),
    st.lists(st.floats(0.001, 2.0), min_size=20, max_size=20),
    st.floats(0, 30),
    st.floats(0, 5000),
)
def test_finish_time_inverts_cumulative_work(speeds, gaps, start, work):
    times = np.concatenate([[0.0], np.cumsum(gaps[: len(speeds) - 1])])
    s = SpeedTrace(Trace(times, np.array(speeds)))
    end = s.finish_time_s(start, work)
    assert end >= start
    assert s.work_done_ms(end) - s.work_done_ms(start) == pytest.approx(work, rel=1e-9, abs=1e-6)


def test_markov_trace_spends_time_as_the_stationary_distribution():
    rng = np.random.default_rng(0)
    trans = np.array([[0.0, 1.0], [1.0, 0.0]])
    t = markov_trace([1.0, 0.25], [2.0, 0.5], trans, 20_000.0, rng)
    durations = np.diff(t.times_s)
    share_slow = durations[t.values[:-1] == 0.25].sum() / durations.sum()
    assert share_slow == pytest.approx(0.5 / 2.5, abs=0.01)


def test_periodic_trace():
    t = periodic_trace(high=1.0, low=0.2, period_s=1.0, duty=0.25, horizon_s=3.0)
    assert t.at(0.1) == 0.2 and t.at(0.3) == 1.0 and t.at(1.2) == 0.2 and t.at(1.9) == 1.0


def test_resident_levels_follow_memory_with_reload_time():
    # level bytes 8 MB, 2 MB; memory 10 MB, then 3 MB from t=1 to t=2, then 10 MB again
    memory = Trace(np.array([0.0, 1.0, 2.0]), np.array([10.0, 3.0, 10.0]))
    r = resident_trace(memory, [8_000_000, 2_000_000], bandwidth_mb_s=12.0)
    assert r.at(0.5) == 0 and r.at(1.5) == 1
    # reloading level 0's extra 6 MB at 12 MB/s takes 0.5 s
    assert r.at(2.4) == 1 and r.at(2.5) == 0
    nothing = resident_trace(constant_trace(1.0), [8_000_000, 2_000_000], 12.0)
    assert nothing.at(5.0) == 2  # no level fits


def test_a_second_drop_cancels_a_reload():
    memory = Trace(np.array([0.0, 1.0, 2.0, 2.2, 3.0]), np.array([10.0, 3.0, 10.0, 3.0, 10.0]))
    r = resident_trace(memory, [8_000_000, 2_000_000], bandwidth_mb_s=12.0)
    assert r.at(2.3) == 1 and r.at(3.4) == 1 and r.at(3.5) == 0


def test_the_compiled_markov_walk_draws_what_numpy_draws():
    """markov_trace's loop is compiled; numba's Generator must give NumPy's very draws (else the
    same seed would give other records than an uncompiled run, or another numba)."""
    import numpy as np

    from simqos.sim.device import _markov_walk

    dwell = np.array([1.0, 0.2, 0.05])
    cdf = np.cumsum([[0.0, 0.5, 0.5], [0.7, 0.0, 0.3], [0.5, 0.5, 0.0]], axis=1)
    compiled = _markov_walk(np.random.default_rng(7), dwell, cdf, 0.0, 0, 500.0)
    reference = _markov_walk.py_func(np.random.default_rng(7), dwell, cdf, 0.0, 0, 500.0)
    assert len(compiled[0]) > 1000
    assert np.array_equal(compiled[0], reference[0]) and np.array_equal(compiled[1], reference[1])


def test_the_compiled_bursty_walk_draws_what_numpy_draws():
    import numpy as np

    from simqos.sim.workload import _bursty_walk

    rates, dwell = np.array([30.0, 0.0, 800.0]), np.array([0.2, 0.1, 0.05])
    cdf = np.cumsum([[0.0, 0.5, 0.5], [0.5, 0.0, 0.5], [0.9, 0.1, 0.0]], axis=1)
    compiled, t, state = _bursty_walk(np.random.default_rng(3), rates, dwell, cdf, 5000, 0.0, 0)
    assert len(compiled) >= 5000 and (np.diff(compiled) >= 0).all() and compiled[-1] <= t
    python, t_python, state_python = _bursty_walk.py_func(np.random.default_rng(3), rates, dwell, cdf, 5000, 0.0, 0)
    assert np.array_equal(compiled, python) and (t, state) == (t_python, state_python)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), steps=st.lists(st.floats(0.001, 5.0), min_size=1, max_size=8), periodic=st.booleans())
def test_a_product_of_processes_is_the_pointwise_product_whatever_the_steps(seed, steps, periodic):
    """device.speed times device.noise: sampled in any steps, the same breakpoints as sampled at
    once, and at every time the product of the two factors' traces."""
    jumps = np.array([[0.0, 0.5, 0.5], [0.5, 0.0, 0.5], [0.5, 0.5, 0.0]])

    def product() -> ProductProcess:
        speed = (PeriodicProcess(1.0, 0.5, 0.7, 0.3, 0.1) if periodic
                 else MarkovProcess([1.0, 0.5, 0.25], [1.0, 0.5, 0.3], jumps, np.random.default_rng(seed), None))  # fmt: skip
        noise = MarkovProcess([1.1, 0.9, 0.01], [0.05, 0.05, 0.005], jumps, np.random.default_rng(seed + 1), None)
        return ProductProcess(speed, noise)

    stepped = product()
    parts, reached = [], 0.0
    for step in steps:
        reached += step
        parts.append(stepped.extend(reached))
    times = np.concatenate([p[0] for p in parts])
    values = np.concatenate([p[1] for p in parts])
    whole = sampled(product(), reached)
    n = min(len(times), len(whole.times_s))
    np.testing.assert_array_equal(times[:n], whole.times_s[:n])
    np.testing.assert_array_equal(values[:n], whole.values[:n])
    speed = (periodic_trace(1.0, 0.5, 0.7, 0.3, reached + 1, 0.1) if periodic
             else markov_trace([1.0, 0.5, 0.25], [1.0, 0.5, 0.3], jumps, reached + 1, np.random.default_rng(seed)))  # fmt: skip
    noise = markov_trace([1.1, 0.9, 0.01], [0.05, 0.05, 0.005], jumps, reached + 1, np.random.default_rng(seed + 1))
    at = np.linspace(0.0, reached, 501)
    np.testing.assert_array_equal(whole.at(at), speed.at(at) * noise.at(at))


def test_a_product_with_a_constant_is_final_only_when_both_are():
    assert ProductProcess(ConstantProcess(0.5), ConstantProcess(0.8)).final
    product = ProductProcess(PeriodicProcess(1.0, 0.5, 0.1, 0.3), ConstantProcess(0.8))
    assert not product.final
    trace = sampled(product, 0.25)
    np.testing.assert_allclose(trace.times_s, [0.0, 0.03, 0.1, 0.13, 0.2, 0.23])
    np.testing.assert_allclose(trace.values, [0.4, 0.8] * 3)
