"""The device model a deployable policy plans with (simqos.policies.planning.device_model): its Monte Carlo
capacity table against closed forms, and the compiled lookup against the table."""

import functools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.linalg import expm

from simqos.policies.planning.device_model import SpeedModel, capacity_probability, capacity_table


def test_constant_speed_capacity_is_a_step_at_speed_times_tau():
    """At constant speed 0.5 the device does exactly 0.5 · τ · 1000 profiled ms in τ seconds."""
    table, step, work_step = capacity_table(SpeedModel([0.5], [np.inf], [[1.0]]), horizon_s=0.02, grid=11, samples=64)
    assert step == pytest.approx(0.002)
    tau = 0.01  # 5 ms of work
    assert capacity_probability(table, 0, 11, step, work_step, tau, 4.9) == 1.0
    assert capacity_probability(table, 0, 11, step, work_step, tau, 5.0 + 2 * work_step) == 0.0
    assert capacity_probability(table, 0, 11, step, work_step, tau, 0.0) == 1.0
    assert capacity_probability(table, 0, 11, step, work_step, 0.0, 1.0) == 0.0
    assert capacity_probability(table, 0, 11, step, work_step, 1.0, 1e6) == 0.0  # past the table: never


def test_markov_capacity_has_the_chains_expected_work():
    """E[C(τ) | start in i] = 1000 ∫₀^τ (e^{Qt} v)_i dt for a CTMC with generator Q and speeds v:
    the table's mean (the area under P(C ≥ w) over w) matches it within Monte Carlo error."""
    speeds, dwell = np.array([0.4, 0.25, 0.15]), np.array([0.01, 0.004, 0.002])
    jumps = np.array([[0.0, 0.7, 0.3], [0.5, 0.0, 0.5], [0.8, 0.2, 0.0]])
    q = jumps / dwell[:, None] - np.diag(1 / dwell)
    grid, samples, horizon = 9, 4000, 0.016
    table, step, work_step = capacity_table(SpeedModel(speeds, dwell, jumps), horizon, grid, samples)
    ts = np.linspace(0, horizon, 2001)
    occupancy = np.array([expm(q * t) @ speeds for t in ts])  # speed expected at t, per start state
    for g in (2, 5, 8):
        upto = ts <= g * step + 1e-12
        expected = 1e3 * np.trapezoid(occupancy[upto], ts[upto], axis=0)
        for start in range(3):
            mean = table[start * grid + g].sum() * work_step  # E[C] = ∫ P(C ≥ w) dw
            assert mean == pytest.approx(expected[start], rel=0.02, abs=work_step), (g, start)


@settings(max_examples=60, deadline=None)
@given(tau=st.floats(0.0, 0.03), work=st.floats(0.0, 20.0))
def test_capacity_probability_falls_with_work_and_rises_with_time(tau, work):
    table, step, work_step = _two_state_table()
    p = capacity_probability(table, 1, 33, step, work_step, tau, work)
    assert 0.0 <= p <= 1.0
    assert capacity_probability(table, 1, 33, step, work_step, tau, work + 0.5) <= p + 1e-12
    assert capacity_probability(table, 1, 33, step, work_step, tau + 0.002, work) >= p - 1e-12


@functools.cache
def _two_state_table():
    model = SpeedModel([1.0, 0.3], [0.005, 0.003], [[0.0, 1.0], [1.0, 0.0]])
    return capacity_table(model, horizon_s=0.032, grid=33, samples=512)
