"""The idle slowdown: the profile's idle.csv, its interpolation, and what the engine does with it."""

import numpy as np
import pandas as pd
import pytest

from bundles import scenario_dict, write_bundle
from simqos.sim.execution import run_plan
from simqos.sim.plan import build_plan
from simqos.errors import SimqosError
from simqos.bundle import load_profile, save_profile
from simqos.scenario import parse_scenario
from simqos.sim.serving import idle_factor_at


def test_interpolation_by_hand():
    gaps, factors = np.array([0.0, 2.0, 10.0]), np.array([1.0, 1.5, 3.0])
    assert idle_factor_at(gaps, factors, 0.0) == 1.0
    assert idle_factor_at(gaps, factors, 1.0) == pytest.approx(1.25)
    assert idle_factor_at(gaps, factors, 6.0) == pytest.approx(2.25)
    assert idle_factor_at(gaps, factors, 10.0) == 3.0 and idle_factor_at(gaps, factors, 500.0) == 3.0
    assert idle_factor_at(np.array([0.0]), np.array([1.0]), 7.0) == 1.0  # no idle table: no slowdown


def test_factors_are_median_ratios_per_level(tmp_path):
    folder = write_bundle(tmp_path / "b", {("x", 0): [4.0], ("x", 1): [2.0]}, {"x": 0})
    profile = load_profile(folder)
    idle = pd.DataFrame([
        {"level": 0, "idle_ms": 0.0, "sample": 0, "latency_ms": 4.0}, {"level": 0, "idle_ms": 10.0, "sample": 0, "latency_ms": 12.0},
        {"level": 1, "idle_ms": 0.0, "sample": 0, "latency_ms": 2.0}, {"level": 1, "idle_ms": 10.0, "sample": 0, "latency_ms": 4.0},
    ])
    save_profile(profile.__class__(**{**profile.__dict__, "idle": idle}), folder)
    gaps, factors = load_profile(folder).idle_factors()
    assert list(gaps) == [0.0, 10.0] and factors.tolist() == [[1.0, 3.0], [1.0, 2.0]]  # 12/4 and 4/2


@pytest.mark.parametrize("rows, fragment", [
    ([(0, 5.0, 1.0), (1, 5.0, 1.0)], "idle_ms 0"),
    ([(0, 0.0, 1.0), (0, 5.0, 1.0), (1, 0.0, 1.0)], "same idle gaps"),
    ([(0, 0.0, 1.0), (1, 0.0, -1.0)], "latency_ms"),
])
def test_bad_idle_tables_are_refused(tmp_path, rows, fragment):
    folder = write_bundle(tmp_path / "b", {("x", 0): [4.0], ("x", 1): [2.0]}, {"x": 0})
    pd.DataFrame([{"level": k, "idle_ms": g, "sample": 0, "latency_ms": t} for k, g, t in rows]).to_csv(folder / "idle.csv", index=False)
    with pytest.raises(SimqosError, match=fragment):
        load_profile(folder)


@pytest.fixture(scope="module")
def slow_after_idle(tmp_path_factory):
    """Always 4 ms back to back; twice that after 10 ms idle or more."""
    return write_bundle(tmp_path_factory.mktemp("idle") / "b", {("x", 0): [4.0]}, {"x": 0}, idle_factor={0.0: 1.0, 10.0: 2.0})


@pytest.mark.parametrize("engine", ["simpy", "auto"])
def test_isolated_requests_pay_the_idle_slowdown_and_queued_ones_do_not(slow_after_idle, engine):
    sparse = build_plan(parse_scenario(scenario_dict(
        slow_after_idle, requests=20, engine=engine,
        workload={"arrival": {"kind": "periodic", "fps": 10}, "deadline": {"kind": "constant", "ms": 100}})))
    records = run_plan(sparse)
    assert records["latency_ms"].to_numpy() == pytest.approx(8.0)  # >= 96 ms idle before each: factor 2
    busy = build_plan(parse_scenario(scenario_dict(
        slow_after_idle, requests=20, engine=engine,
        workload={"arrival": {"kind": "periodic", "fps": 1000}, "deadline": {"kind": "constant", "ms": 100}})))
    records = run_plan(busy)
    service_ms = ((records["finish_s"] - records["start_s"]) * 1e3).to_numpy()
    assert service_ms[1:] == pytest.approx(4.0)  # each starts as the previous finishes: never idle
    half = build_plan(parse_scenario(scenario_dict(
        slow_after_idle, requests=30, engine=engine,
        workload={"arrival": {"kind": "poisson", "rate_hz": 150}, "deadline": {"kind": "constant", "ms": 100}})))
    records = run_plan(half)
    finish, expected = 0.0, []  # an independent recursion: start when free, work x factor(idle time)
    for arrival in records["arrival_s"]:
        start = max(arrival, finish)
        finish = start + 4.0 * idle_factor_at(np.array([0.0, 10.0]), np.array([1.0, 2.0]), (start - finish) * 1e3) / 1e3
        expected.append(finish)
    assert records["finish_s"].to_numpy() == pytest.approx(expected, abs=1e-12)
