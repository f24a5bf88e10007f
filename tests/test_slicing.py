"""The time-slicing fit of validate (queued speeds and the slice) on probes made by hand from
the very model the simulator runs."""

import numpy as np
import pandas as pd
import pytest

from simqos.sim.timeslice import sliced_work, wake_wait_ms, wake_waited
from simqos.validate.slicing import MIN_PROBES, fit_slicing, probe_times_ms


def _probes(target: float, speeds: list[float], slice_ms: float, predicted_ms: list[float], n: int, woken_every: int = 3,
            wake: float = 0.0):  # fmt: skip
    """``n`` probes per level at ``target`` (the share of the core), the levels in turn, every
    ``woken_every``-th finding the server idle (and waiting ``wake`` of the rest of the running
    competitor's slice), each taking what the simulator's model gives for its predicted time,
    which varies by up to a fifth from probe to probe (as layers' do)."""
    level = np.arange(n * len(speeds)) % len(speeds)
    woken = np.arange(n * len(speeds)) % woken_every == 0
    rng = np.random.default_rng(0)
    predicted = np.array(predicted_ms)[level] * rng.uniform(0.8, 1.2, len(level))
    begin_s = np.cumsum(rng.exponential(0.034, len(level)))
    speed = np.full(len(level), speeds[0])
    work = predicted * speeds[0] / np.array(speeds)[level]
    woke = np.array([wake_waited(t, target, slice_ms, np.array([wake])) if w else 0.0 for t, w in zip(begin_s, woken)])
    took = probe_times_ms(work, woken, np.full(len(level), target), speed, slice_ms, woke)
    return pd.DataFrame({"target_speed": target, "gaps": "34 ms", "level": level, "begin_s": begin_s, "woken": woken, "took_ms": took,
                         "predicted_ms": predicted})


def test_a_slice_by_hand():
    """Work 4 ms at half the core, slices of 1.5 ms, at speed 0.5: woken, a whole slice first,
    two turns of 1.5 ms: 7 ms, leaving 0.5; queued, 0.5 then three turns: 8.5 ms, leaving 1;
    then 1 and two turns: 7 ms."""
    times = probe_times_ms(np.full(3, 4.0), np.array([True, False, False]), np.full(3, 0.5), np.full(3, 0.5), 1.5)
    np.testing.assert_allclose(times, [7.0, 8.5, 7.0])
    assert probe_times_ms(np.full(1, 4.0), np.array([True]), np.full(1, 0.5), np.full(1, 0.4), 0.0)[0] == 10.0  # no slicing


def test_the_queued_speeds_and_the_slice_come_back():
    """The speeds are read from the queued probes' means, which average over where each slice
    stands, so they come back to within a few per cent, and the slice to within a step of the grid."""
    probes = pd.concat([
        _probes(0.25, [0.22, 0.18], 4.0, [9.0, 5.0], 150),
        _probes(0.5, [0.45, 0.40], 4.0, [9.0, 5.0], 150),
        _probes(1.0, [1.0, 1.0], 4.0, [9.0, 5.0], 150),  # no competitors: not read
    ], ignore_index=True)  # fmt: skip
    fit = fit_slicing(probes)
    assert set(fit.speeds) == {0.25, 0.5}
    np.testing.assert_allclose(fit.speeds[0.25], [0.22, 0.18], rtol=0.05)
    np.testing.assert_allclose(fit.speeds[0.5], [0.45, 0.40], rtol=0.05)
    assert fit.slice_ms == pytest.approx(4.0, abs=0.25)
    assert fit.distance < 0.05 < fit.unsliced_distance
    assert (fit.table.groupby(["target_speed", "level"])["probes"].sum() == 150).all()


def test_too_few_queued_probes_leave_the_state_to_the_calibration():
    few = _probes(0.25, [0.25, 0.2], 4.0, [9.0, 5.0], MIN_PROBES, woken_every=1)  # every probe woken: none queued
    fit = fit_slicing(few)
    assert fit.speeds == {} and fit.slice_ms == 0.0 and fit.table.empty


def test_a_wake_wait_by_hand():
    """At 1 ms into a 4 ms slice cycle, a woken request waits the 3 ms left, times the fraction
    for its competitors: half of it under one competitor (half the core); under three (a
    quarter) the last fraction, none; at the whole core nothing competes. As work at half the
    core a 2 ms request then takes 2 ms, plus the 1.5 ms wait."""
    assert wake_wait_ms(0.001, 0.5, 4.0, np.array([0.5, 0.0])) == pytest.approx(1.5)
    assert wake_wait_ms(0.001, 0.25, 4.0, np.array([0.5, 0.0])) == 0.0
    assert wake_wait_ms(0.001, 1.0, 4.0, np.array([1.0])) == 0.0
    woke = wake_waited(0.001, 0.5, 4.0, np.array([0.5]))
    assert sliced_work(2.0, 0.5, 4.0, 4.0, woke) / 0.5 == pytest.approx(2.0 + 1.5)


def test_the_wake_wait_comes_back_by_the_number_of_competitors():
    """Woken probes that wait 80 % of the running competitor's slice under one competitor and
    none under three: the fractions come back, the count between them taking the one below."""
    probes = pd.concat([
        _probes(0.25, [0.25, 0.2], 4.0, [9.0, 5.0], 150, wake=0.0),
        _probes(0.5, [0.5, 0.45], 4.0, [9.0, 5.0], 150, wake=0.8),
        _probes(1.0, [1.0, 1.0], 4.0, [9.0, 5.0], 150),
    ], ignore_index=True)  # fmt: skip
    fit = fit_slicing(probes)
    assert fit.slice_ms == pytest.approx(4.0, abs=0.25)
    assert fit.wake_wait == pytest.approx([0.8, 0.8, 0.0], abs=0.1)
