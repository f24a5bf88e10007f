"""No device frozen where nobody said so: a trace file shorter than the run is an error unless
the scenario says ``after_end: hold`` or ``repeat``, and a sampled process lasts as long as the
run uses the device, however overloaded (each test failed before: the last value held)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bundles import scenario_dict, write_bundle
from simqos.bound import plan_bound, replication_bound
from simqos.sim.execution import run_plan
from simqos.sim.inputs import sample_inputs
from simqos.sim.plan import build_plan
from simqos.sim.replication import run_policy
from simqos.errors import SimqosError
from simqos.scenario import parse_scenario


@pytest.fixture(scope="module")
def four_ms(tmp_path_factory):
    """One layer, two levels: always exactly 4 ms and 2 ms."""
    return write_bundle(tmp_path_factory.mktemp("b") / "det", {("x", 0): [4.0], ("x", 1): [2.0]}, {"x": 0},
                        accuracy={"0": 0.9, "1": 0.8})


def _plan(profile, **overrides):
    return build_plan(parse_scenario(scenario_dict(profile, **overrides)))


def _speed_file(tmp_path, rows: list[tuple[float, float]], name: str = "speed.csv"):
    path = tmp_path / name
    path.write_text("time_s,speed\n" + "".join(f"{t},{v}\n" for t, v in rows))
    return path


PERIODIC = {"arrival": {"kind": "periodic", "fps": 100, "jitter_ms": 0}, "deadline": {"kind": "constant", "ms": 50}}


def test_a_speed_trace_shorter_than_the_arrivals_is_an_error_naming_both(four_ms, tmp_path):
    path = _speed_file(tmp_path, [(0, 1.0), (1.0, 0.5)])  # ends at 1 s; 200 arrivals at 100/s until 2 s
    with pytest.raises(SimqosError, match=r"scenario: device.speed: .*speed.csv ends at 1 s, but replication 0's arrivals run to 2 s.*after_end: hold"):
        _plan(four_ms, requests=200, workload=PERIODIC, device={"speed": {"kind": "trace", "path": str(path)}})  # before any work


def test_hold_keeps_the_last_value_and_repeat_replays_the_file(four_ms, tmp_path):
    short = _speed_file(tmp_path, [(0, 1.0), (0.5, 0.5)])
    held = _speed_file(tmp_path, [(0, 1.0), (0.5, 0.5), (10.0, 0.5)], "held.csv")
    tiled = _speed_file(tmp_path, [(0, 1.0), (0.5, 0.5), (1.0, 1.0), (1.5, 0.5), (2.0, 1.0), (2.5, 0.5)], "tiled.csv")

    def records(path, after_end):
        device = {"speed": {"kind": "trace", "path": str(path), "after_end": after_end}}
        return run_plan(_plan(four_ms, requests=200, workload=PERIODIC, device=device)).drop(columns="policy")

    pd.testing.assert_frame_equal(records(short, "hold"), records(held, "error"))
    pd.testing.assert_frame_equal(records(short, "repeat"), records(tiled, "error"))  # period: last time + mean gap = 1 s


def test_a_run_that_outlasts_an_error_trace_is_an_error(four_ms, tmp_path):
    """Arrivals inside the trace, but the queue drains after its end (4 ms of work every 2 ms)."""
    path = _speed_file(tmp_path, [(0, 1.0), (0.5, 1.0)])
    plan = _plan(four_ms, requests=200, workload={**PERIODIC, "arrival": {"kind": "periodic", "fps": 500, "jitter_ms": 0}},
                 device={"speed": {"kind": "trace", "path": str(path)}})
    with pytest.raises(SimqosError, match="replication 0 uses the device until 0.8"):
        run_plan(plan)


def test_an_arrival_trace_shorter_than_the_requests_is_an_error_unless_repeated(four_ms, tmp_path):
    path = tmp_path / "arrivals.csv"
    path.write_text("arrival_s\n0.1\n0.2\n0.3\n")
    workload = {"arrival": {"kind": "trace", "path": str(path)}, "deadline": {"kind": "constant", "ms": 50}}
    with pytest.raises(SimqosError, match=r"has 3 arrivals until 0.3 s, but the run asks for 7 requests.*after_end: repeat"):
        _plan(four_ms, requests=7, warmup_requests=0, workload=workload)
    plan = _plan(four_ms, requests=7, warmup_requests=0, workload={**workload, "arrival": {**workload["arrival"], "after_end": "repeat"}})
    period = 0.3 + 0.1  # the last arrival plus the mean gap
    np.testing.assert_allclose(sample_inputs(plan, 0).arrivals_s, [0.1, 0.2, 0.3, 0.1 + period, 0.2 + period, 0.3 + period, 0.1 + 2 * period])


def test_an_overloaded_run_sees_its_speed_process_to_the_end(four_ms):
    """Three times more work than the device can do: the queue drains long after the default
    horizon (twice the last arrival plus a minute). The records equal those of a run whose
    process was sampled far enough from the start, and so does the bound."""
    workload = {"arrival": {"kind": "poisson", "rate_hz": 750}, "deadline": {"kind": "constant", "ms": 5}}
    device = {"speed": {"kind": "markov", "states": [{"speed": 1.0, "mean_dwell_s": 2.0}, {"speed": 0.5, "mean_dwell_s": 2.0}]}}
    plan = _plan(four_ms, requests=40_000, warmup_requests=0, workload=workload, device=device,
                 policies=[{"kind": "static", "level": 0}])
    records = run_plan(plan)
    last_arrival = records["arrival_s"].max()
    assert records["finish_s"].max() > 2 * last_arrival + 60  # past the default horizon
    far = sample_inputs(plan, 0, horizon_s=10 * records["finish_s"].max())
    pd.testing.assert_frame_equal(records, run_policy(plan, far, 0, 0))
    bound = plan_bound(plan)
    assert bound == replication_bound(plan, far)
