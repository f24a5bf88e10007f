"""Intervals on nines, percentiles and accuracy (batch means, bootstrap over batches), the
per-replication table, and the stopping rule."""

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bundles import scenario_dict
from simqos.sim.execution import run_plan
from simqos.sim.plan import build_plan
from simqos.sim.replication import summarize_plan
from simqos.errors import SimqosError
from simqos.sim.metrics import PERCENTILES, design_effect, nines, wilson_interval
from simqos.sim.serving import MET
from simqos.sim.tally import Tally, TallyBuilder, percentile_intervals_ms, percentiles_ms
from simqos.sim.stopping import nines_half_width, run_to_precision
from simqos.scenario import parse_scenario


def test_design_effect_by_hand():
    # Batch means 1 and 0: variance 0.5 (ddof 1) x batch size 2 / variance of the values 0.25.
    assert design_effect(np.array([1, 1, 0, 0]), np.array([0, 0, 1, 1])) == pytest.approx(4.0)
    # Alternating values: the batches agree, so no inflation (floored at 1).
    assert design_effect(np.array([1, 0, 1, 0]), np.array([0, 0, 1, 1])) == 1.0
    assert design_effect(np.zeros(6), np.array([0, 0, 1, 1, 2, 2])) == 1.0  # no spread
    assert design_effect(np.array([1.0, 0.0]), np.array([0, 0])) == 1.0  # one batch


def test_design_effect_divides_the_sample_size():
    # 50 of 400 with d = 4 is the interval of a proportion 0.125 from 100 draws.
    z = 1.959963984540054
    p, n = 0.125, 100
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert wilson_interval(50, 400, design_effect=4.0) == pytest.approx((centre - half, centre + half))
    with pytest.raises(ValueError, match="design_effect"):
        wilson_interval(5, 10, design_effect=0.5)


def test_batches_are_contiguous_and_near_equal_per_replication():
    tallies = []
    for replication, n in ((0, 25), (1, 5)):
        builder = TallyBuilder(replication, n, 1, 1, np.array([1.0]))
        zeros = np.zeros(n, dtype=np.int64)
        for chunk in np.array_split(np.arange(n), 3):  # in chunks: the batches do not depend on them
            builder.add(np.full(len(chunk), MET), np.ones(len(chunk)), zeros[: len(chunk)], zeros[: len(chunk)])
        tallies.append(builder.finish())
    pooled = Tally.pool(tallies)
    assert list(pooled.counts[:10, 0]) == [3, 2, 3, 2, 3, 2, 3, 2, 3, 2]
    assert list(pooled.counts[10:, 0]) == [1] * 5  # fewer requests than batches: one each
    assert list(pooled.replication) == [0] * 10 + [1] * 5


def _tally(latency_ms: np.ndarray, replications: int) -> Tally:
    """Every request met, ``latency_ms`` cut evenly into ``replications``."""
    parts = []
    for r, part in enumerate(np.split(latency_ms, replications)):
        builder = TallyBuilder(r, len(part), 1, 1, np.array([1.0]))
        zeros = np.zeros(len(part), dtype=np.int64)
        builder.add(np.full(len(part), MET), part, zeros, zeros)
        parts.append(builder.finish())
    return Tally.pool(parts)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.integers(2, 6), st.floats(0.1, 2.0))
def test_percentiles_read_from_the_histogram_are_the_exact_ones_and_their_intervals_hold_them(seed, replications, sigma):
    rng = np.random.default_rng(seed)
    latency = rng.lognormal(0.0, sigma, 400 * replications)
    tally = _tally(latency, replications)
    points, ends = percentiles_ms(tally), percentile_intervals_ms(tally)
    for p, exact in zip(PERCENTILES, np.percentile(latency, PERCENTILES)):
        name = f"p{p:g}_ms"
        assert points[name] == pytest.approx(exact, rel=1e-4)  # bins are 1.15e-4 wide in log
        assert ends[f"{name}_low"] <= exact <= ends[f"{name}_high"]


def test_percentiles_by_hand():
    points = percentiles_ms(_tally(np.array([10.0, 20.0, 30.0, 40.0]), 2))
    assert points["p50_ms"] == pytest.approx(25.0, rel=1e-4)  # between the 2nd and 3rd, numpy's 'linear'
    assert points["p99.99_ms"] == pytest.approx(40.0 - 3e-4 * 10.0, rel=1e-4)
    single = percentiles_ms(_tally(np.full(10, 7.5), 2))
    assert all(v == 7.5 for v in single.values())  # clamped to the exact extremes


def test_percentile_intervals_narrow_with_more_batches_and_are_reproducible():
    rng = np.random.default_rng(3)
    small, large = rng.exponential(1.0, 2_000), rng.exponential(1.0, 200_000)
    a = percentile_intervals_ms(_tally(small, 2))
    b = percentile_intervals_ms(_tally(large, 20))
    assert b["p99_ms_high"] - b["p99_ms_low"] < (a["p99_ms_high"] - a["p99_ms_low"]) / 3
    assert percentile_intervals_ms(_tally(small, 2)) == a
    one = TallyBuilder(0, 1, 1, 1, np.array([1.0]))
    one.add(np.full(1, MET), np.ones(1), np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64))
    assert math.isnan(percentile_intervals_ms(one.finish())["p50_ms_low"])  # one batch


CLUSTERED = {"speed": {"kind": "markov", "states": [{"speed": 1.0, "mean_dwell_s": 2.0}, {"speed": 0.3, "mean_dwell_s": 0.5}]}}
"""A device whose slow spells span tens of requests: misses come in clusters."""


def test_batch_means_intervals_cover_where_independent_draws_do_not(two_level):
    """Each replication's own interval is checked against the miss rate of all 40 pooled: the
    batch-means intervals must cover it about 95 % of the time, Wilson's on raw counts far less."""
    plan = build_plan(parse_scenario(scenario_dict(
        two_level, requests=4000, replications=40, device=CLUSTERED,
        workload={"arrival": {"kind": "poisson", "rate_hz": 150}, "deadline": {"kind": "constant", "ms": 9}},
        policies=[{"kind": "static", "level": 0}, {"kind": "deadline_aware", "quantile": 0.9}],
    )))
    records = run_plan(plan)
    pooled = summarize_plan(plan, records, percentile_intervals=False).set_index("policy")
    per = summarize_plan(plan, records, by_replication=True)
    for policy, g in per.groupby("policy"):
        truth = -math.log10(pooled.loc[policy, "miss_rate"])
        covered = ((g["nines_low"] <= truth) & (g["nines_high"].fillna(np.inf) >= truth)).mean()
        naive = np.mean([
            lo <= truth <= (math.inf if hi is None else hi)
            for _, lo, hi in (nines(int(r.requests - r.met), int(r.requests)) for r in g.itertuples())
        ])
        assert g["miss_design_effect"].median() > 2, policy  # the clustering is there, and measured
        assert covered >= 0.85, (policy, covered)
        assert naive < covered - 0.15, (policy, naive, covered)


def test_accuracy_interval_holds_the_test_set_uncertainty(two_level):
    plan = build_plan(parse_scenario(scenario_dict(two_level, replications=2, policies=[{"kind": "static", "level": 1}])))
    records = run_plan(plan)
    row = summarize_plan(plan, records).iloc[0]
    low, high = wilson_interval(920, 1000)  # route 1-1: 92 % of 1000 test samples
    assert row["mean_accuracy"] == pytest.approx(0.92)
    assert row["mean_accuracy_low"] == pytest.approx(low) and row["mean_accuracy_high"] == pytest.approx(high)
    from simqos.sim.replication import plan_tallies
    from simqos.sim.tally import summarize

    sim_only = summarize(plan_tallies(plan, records)).iloc[0]  # no route intervals: one route, no spread
    assert sim_only["mean_accuracy_low"] == pytest.approx(0.92) and sim_only["mean_accuracy_high"] == pytest.approx(0.92)


def test_per_replication_rows_beside_the_pooled_ones(two_level):
    plan = build_plan(parse_scenario(scenario_dict(two_level, replications=3, device=CLUSTERED, policies=[{"kind": "greedy"}])))
    records = run_plan(plan)
    per = summarize_plan(plan, records, by_replication=True)
    pooled = summarize_plan(plan, records).iloc[0]
    assert list(per["replication"]) == [0, 1, 2] and per["requests"].sum() == pooled["requests"]
    assert per["missed"].sum() + per["dropped"].sum() == pooled["missed"] + pooled["dropped"]
    assert (per["nines_high"].fillna(np.inf) - per["nines_low"] > 0).all()


def _precise(profile, **extra):
    return build_plan(parse_scenario(scenario_dict(profile, **{
        "requests": 2000, "replications": 2, "device": CLUSTERED,
        "workload": {"arrival": {"kind": "poisson", "rate_hz": 150}, "deadline": {"kind": "constant", "ms": 8}},
        "policies": [{"kind": "greedy"}], **extra,
    })))


def test_stopping_rule_stops_when_precise_with_the_records_of_a_fixed_run(two_level):
    outcome = run_to_precision(_precise(two_level, precision={"nines_half_width": 0.15, "max_replications": 40}))
    assert outcome.stopped == "precise"
    reps = outcome.plan.scenario.replications
    assert 2 < reps < 40 and reps % 2 == 0  # rounds of the scenario's 2 replications
    assert (nines_half_width(outcome.summary) <= 0.15).all()
    fixed = run_plan(_precise(two_level, replications=reps))
    pd.testing.assert_frame_equal(outcome.records, fixed)
    shorter = summarize_plan(outcome.plan, fixed[fixed["replication"] < reps - 2])
    assert (nines_half_width(shorter) > 0.15).any()  # it did not stop too late


def test_stopping_rule_spends_its_budget_and_says_so(two_level):
    outcome = run_to_precision(_precise(two_level, precision={"nines_half_width": 0.001, "max_replications": 5}))
    assert outcome.stopped == "budget" and outcome.plan.scenario.replications == 5
    assert outcome.stopping()["widest_nines_half_width"] > 0.001
    assert sorted(outcome.records["replication"].unique()) == [0, 1, 2, 3, 4]


def test_stopping_rule_budget_must_cover_the_first_round(two_level):
    with pytest.raises(SimqosError, match=r"precision.max_replications \(1\) must be >= replications \(2\)"):
        _precise(two_level, precision={"nines_half_width": 0.1, "max_replications": 1})
