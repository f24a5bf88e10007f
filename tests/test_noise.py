"""The machine's noise fitted from probes (simqos.validate.noise): hand-made probe streams."""

import numpy as np
import pytest

from simqos.sim.device import markov_trace
from simqos.scenario import Device
from simqos.validate.noise import STALL_SPEED, fit_noise


def _probes(speed_at, seconds=30.0, gap_s=0.004, work_ms=1.0, spread=0.1, seed=0):
    """Probes every ``gap_s`` of ``work_ms`` predicted, taking ``work_ms / speed_at(t)`` times
    an independent log-normal factor of sigma ``spread``."""
    rng = np.random.default_rng(seed)
    begin = np.arange(0.0, seconds, gap_s)
    predicted = np.full(len(begin), work_ms)
    took = work_ms / speed_at(begin) * np.exp(rng.normal(0.0, spread, len(begin)))
    return begin, took, predicted


def test_independent_variation_alone_is_no_noise():
    """Probes that vary only independently, as the profile's draws already do: the windows'
    variance is all chance, so the noise is a constant 1."""
    fit = fit_noise(*_probes(lambda t: np.ones_like(t)), window_s=0.05)
    assert fit.persistent_share < 0.25
    if fit.spec["kind"] == "markov":  # what chance leaves, shrunk to next to nothing
        assert all(abs(s["speed"] - 1.0) < 0.03 for s in fit.spec["states"])
    assert fit.stalls == 0


def test_a_wander_between_two_speeds_is_found_with_its_correlation_time():
    """The machine jumps between speeds 1.2 and 0.8, 0.3 s in each on average (a two-state
    Markov chain: correlation time 0.15 s): the slow and fast states sit near those speeds
    relative to the run's speed (the time over the work: a harmonic mean, 0.96), so that 1 /
    speed averages 1 over the states; the wander explains nearly all of the windows' variance,
    and the fitted chain's correlation time (two thirds of its dwell) is the machine's."""
    trace = markov_trace([1.2, 0.8], [0.3, 0.3], np.array([[0.0, 1.0], [1.0, 0.0]]), 200.0, np.random.default_rng(5))
    fit = fit_noise(*_probes(trace.at, seconds=200.0, spread=0.05), window_s=0.05)
    speeds = {s["name"]: s["speed"] for s in fit.spec["states"]}
    assert fit.persistent_share > 0.95
    run_speed = 2 / (1 / 1.2 + 1 / 0.8)
    assert speeds["slow"] == pytest.approx(0.8 / run_speed, rel=0.05) and speeds["fast"] == pytest.approx(1.2 / run_speed, rel=0.05)
    assert np.mean([1 / v for v in speeds.values()]) == pytest.approx(1.0, abs=1e-3)  # terciles: equally occupied
    assert [s["mean_dwell_s"] for s in fit.spec["states"]] == [pytest.approx(1.5 * 0.15, rel=0.25)] * 3
    Device(noise=fit.spec)  # a scenario accepts it as device.noise


def test_stalls_are_counted_with_their_rate_and_length():
    """Three probes of 1 ms took 20 ms more (a 20 ms stall each) in 30 s of 1 ms probes every
    4 ms: 3 stalls in 7.5 s of service, 20 ms long, entered from every state and left to them."""
    begin, took, predicted = _probes(lambda t: np.ones_like(t), spread=0.0)
    took[[100, 3000, 6000]] += 20.0
    fit = fit_noise(begin, took, predicted, window_s=0.05)
    assert fit.stalls == 3
    assert fit.stall_rate_hz == pytest.approx(3 / (took.sum() / 1e3))
    assert fit.stall_mean_ms == pytest.approx(20.0, rel=0.01)  # the excess over the run's mean speed
    states = fit.spec["states"]
    assert states[-1] == {"name": "stall", "speed": STALL_SPEED, "mean_dwell_s": pytest.approx(0.02, rel=0.01)}
    jumps = np.array(fit.spec["transitions"])
    np.testing.assert_allclose(jumps.sum(axis=1), 1.0, atol=1e-5)
    assert (jumps[:-1, -1] > 0).all() and jumps[-1, -1] == 0
    # from the steady state (no wander: its variance is nil), a stall is the only way out, at the stall rate
    assert states[0]["mean_dwell_s"] == pytest.approx(1 / fit.stall_rate_hz, rel=1e-3)
    Device(noise=fit.spec)
