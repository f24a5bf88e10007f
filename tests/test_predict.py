"""validate's out-of-sample prediction (simqos.validate.predict): the drift a run showed, the
predictive distribution the other runs give, and that a run's own data never enters its
prediction."""

import math

import numpy as np
import pandas as pd
import pytest

from bundles import scenario_dict
from simqos.scenario import parse_scenario
from simqos.sim.plan import build_plan
from simqos.sim.replication import records_table
from simqos.validate.predict import (PRIOR_LOG_SD, PRIOR_RUNS, RunDrift, out_of_sample_verdicts, predict_runs, predictive_drift,
                                     requests_by_state, run_drift)


def test_a_runs_drift_is_its_served_speed_over_the_calibrations_after_its_anchor():
    drift = run_drift("p", 0, {1.0: 0.9, 0.5: 0.4}, {1.0: 30, 0.5: 10}, {1.0: 1.0, 0.5: 0.5}, anchor=0.9, overhead_ms=0.2)
    assert drift.log_ratio == pytest.approx({1.0: 0.0, 0.5: math.log(0.4 / 0.45)})
    assert drift.level == pytest.approx(10 * math.log(0.4 / 0.45) / 40)  # the states weighed by their requests
    assert drift.overhead_ms == 0.2


def test_the_predictive_drift_pools_the_other_runs_with_the_prior():
    nothing = predictive_drift([])
    assert nothing.scale == PRIOR_LOG_SD and nothing.speeds({1.0: 0.8}, 1.1, {1.0: 0.0}) == {1.0: 0.8 * 1.1}
    runs = [RunDrift("p", 0, {1.0: 0.1, 0.5: 0.3}, {1.0: 30, 0.5: 10}, 0.0),
            RunDrift("p", 1, {1.0: -0.1, 0.5: 0.1}, {1.0: 10, 0.5: 10}, 0.0)]
    drift = predictive_drift(runs)
    assert drift.center == pytest.approx({1.0: 0.0, 0.5: 0.2}) and drift.runs == 2
    # each state of each run lies 0.1 from its centre; the prior counts as PRIOR_RUNS runs; a new run adds 1/n
    variance = (PRIOR_RUNS * PRIOR_LOG_SD**2 + 2 * 0.1**2) / (PRIOR_RUNS + 1)
    assert drift.scale == pytest.approx(math.sqrt(variance * 1.5))
    speeds = drift.speeds({1.0: 1.0, 0.5: 0.5, 0.25: 0.2}, anchor=1.0, z={1.0: 0.0, 0.5: 1.0, 0.25: -1.0})
    assert speeds[1.0] == pytest.approx(1.0) and speeds[0.5] == pytest.approx(0.5 * math.exp(0.2 + drift.scale))
    # a state no run served: their mean drift (run 0's 0.15 by its requests, run 1's 0)
    assert speeds[0.25] == pytest.approx(0.2 * math.exp(0.075 - drift.scale))


def test_requests_are_counted_by_the_state_they_started_in():
    real = pd.DataFrame({"start_s": [0.1, 0.2, 1.5, np.nan]})
    assert requests_by_state(real, pd.DataFrame({"t_s": [0.0, 1.0], "target_speed": [1.0, 0.5]})) == {1.0: 2, 0.5: 1}


@pytest.fixture
def plan(two_level):
    return build_plan(parse_scenario(scenario_dict(two_level, policies=[{"kind": "static", "level": 0}, {"kind": "static", "level": 1}])))


def _records(plan, index, replication, work_ms, rng):
    """100 requests 10 ms apart, each served at once in ``work_ms`` stretched by up to 20 %; deadline 3 ms."""
    arrivals = np.arange(100) * 0.01
    latency_s = work_ms * rng.uniform(1.0, 1.2, 100) / 1e3
    outcome = np.where(latency_s <= 3e-3, 0, 1)
    return records_table(plan, index, replication, arrivals, arrivals + 3e-3, arrivals, arrivals + latency_s,
                         np.zeros(100, dtype=np.int64), np.zeros(100, dtype=np.int64), outcome)  # fmt: skip


def test_a_runs_own_data_never_enters_its_prediction(plan):
    """Change everything run (0, 1) showed — its drift, its server cost, its records — and its
    prediction stays as it was, while the others', which learn from it, move."""
    rng = np.random.default_rng(0)
    keys = [(0, 0), (0, 1), (1, 0), (1, 1)]
    real = {key: _records(plan, key[0], key[1], 2.5, rng) for key in keys}

    def simulate(index, run, replication, speeds, overhead_ms):
        return _records(plan, index, replication, (2.4 + overhead_ms) / speeds[1.0], np.random.default_rng(replication))

    def predicted(drifts, real):
        table = predict_runs(plan, drifts, real, {1.0: 1.0}, dict.fromkeys(keys, 1.0), [0.1, 0.1], simulate, draws=20, seed=1)
        return table.set_index(["policy", "run"])

    drifts = {key: RunDrift(plan.labels[key[0]], key[1], {1.0: 0.05 * (key[1] - 0.5)}, {1.0: 100}, 0.1) for key in keys}
    before = predicted(drifts, real)
    changed = drifts | {(0, 1): RunDrift(plan.labels[0], 1, {1.0: -0.5}, {1.0: 100}, 0.9)}
    after = predicted(changed, real | {(0, 1): _records(plan, 0, 1, 9.0, rng)})
    own = (plan.labels[0], 1)
    columns = ["pred_p50_ms", "p50_low", "p50_high", "pred_p99_ms", "pred_miss_rate", "miss_high", "drift_sd", "overhead_ms"]
    pd.testing.assert_series_equal(before.loc[own, columns], after.loc[own, columns])
    assert after.loc[own, "real_p50_ms"] > 2 * before.loc[own, "real_p50_ms"]  # what it is judged against did change
    assert after.loc[(plan.labels[0], 0), "pred_p50_ms"] > before.loc[(plan.labels[0], 0), "pred_p50_ms"]  # the others learn
    assert after.loc[(plan.labels[0], 0), "overhead_ms"] == pytest.approx(0.9)  # the other run of its policy's cost
    assert before.loc[own, "drift_runs"] == 3


def test_a_policy_passes_out_of_sample_when_every_run_does():
    comparison = pd.DataFrame({"policy": ["a", "b"], "verdict": ["pass", "pass"]})
    prediction = pd.DataFrame({"policy": ["a", "a", "b", "b"], "verdict": ["pass", "pass", "pass", "fail"]})
    verdicts = out_of_sample_verdicts(comparison, prediction)
    assert list(verdicts["verdict"]) == ["pass", "fail"] and list(verdicts["runs_passed"]) == ["2 of 2", "1 of 2"]
    assert list(verdicts["in_sample_verdict"]) == ["pass", "pass"]


def _prediction(scenario, policy, verdicts, half_width=0.1):
    n = len(verdicts)
    return pd.DataFrame({"scenario": scenario, "policy": policy, "run": range(n), "real_p50_ms": 1.0, "pred_p50_ms": 1.0,
                         "p50_low": 0.9, "p50_high": 1.1, "p50_pass": True, "real_p99_ms": 3.0, "pred_p99_ms": 3.0,
                         "p99_low": 2.7, "p99_high": 3.3, "p99_pass": [v != "p99" for v in verdicts], "real_miss_rate": 0.01,
                         "pred_miss_rate": 0.01, "miss_low": [0.0] * (n - 1) + [0.005], "miss_high": 0.02,
                         "miss_pass": [v != "miss" for v in verdicts], "p99_half_width": half_width,
                         "verdict": ["pass" if v == "pass" else "fail" for v in verdicts]})  # fmt: skip


def test_trust_pools_every_validation_in_a_folder(tmp_path):
    from simqos.outputs import mark
    from simqos.validate.trust import trust_validations

    for name, table in (("calm-1", _prediction("calm", "static L0", ["pass", "p99"])),
                        ("deeper/fluct-1", _prediction("fluct", "greedy", ["pass", "miss", "pass", "pass"], 0.3))):
        folder = tmp_path / "vals" / name
        folder.mkdir(parents=True)
        mark(folder, "validate")
        table.to_csv(folder / "prediction.csv", index=False)
    (tmp_path / "vals" / "theirs").mkdir()  # not a validation: not read
    _prediction("x", "y", ["fail"]).to_csv(tmp_path / "vals" / "theirs" / "prediction.csv", index=False)
    trust = trust_validations(tmp_path / "vals")
    assert len(trust.runs) == 6 and set(trust.runs["validation"]) == {"calm-1", "deeper/fluct-1"}
    summary = trust.summary.set_index(["scenario", "policy"])
    assert summary.loc[("calm", "static L0"), "percentiles_pass"] == 0.5 and summary.loc[("fluct", "greedy"), "miss_inside"] == 0.75
    assert summary.loc[("all", "all"), "passed"] == pytest.approx(4 / 6) and summary.loc[("all", "all"), "runs"] == 6
    assert summary.loc[("all", "all"), "median_p99_half_width"] == pytest.approx(0.3)
    assert (tmp_path / "vals" / "trust" / "trust.png").stat().st_size > 10_000


def test_trust_says_what_it_needs_when_a_folder_holds_no_validation(tmp_path):
    from simqos.errors import SimqosError
    from simqos.validate.trust import trust_validations

    with pytest.raises(SimqosError, match="holds no validation with an out-of-sample prediction"):
        trust_validations(tmp_path)
    assert not (tmp_path / "trust").exists()
