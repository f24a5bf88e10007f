"""The offline optimum is exact where it says so (against brute force over every schedule) and
no policy ever beats it."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bundles import scenario_dict, write_bundle
from simqos.bound import replication_bound
from simqos.sim.inputs import sample_inputs
from simqos.sim.plan import build_plan
from simqos.sim.replication import run_policy
from simqos.scenario import parse_scenario
from simqos.sim.serving import finish_time, resident_from, route_code, too_late, value_at
from simqos.sim.timeslice import route_work, slice_left_after, sliced_factors, wake_waited

POLICIES = [
    {"kind": "static", "level": 0},
    {"kind": "static", "level": 1},
    {"kind": "greedy"},
    {"kind": "deadline_aware"},
    {"kind": "deadline_aware", "count_queue": True, "label": "da-queue"},
    {"kind": "lookahead"},
    {"kind": "dp"},
    {"kind": "queue_dp", "grid": 12, "queue_grid": 3, "max_queue": 2, "samples": 16, "quantiles": 2},
    {"kind": "clairvoyant"},
]


def _brute_force(plan, inputs, free_drops: bool, late_drop: bool, values: dict, routes: list | None = None) -> float:
    """The best total value over every choice of route (of ``routes``, default all; or drop)
    for every request, in order."""
    model = plan.model
    routes = routes or model.routes_by_preference()
    trace = inputs.speed.trace
    times, speeds, cum = trace.times_s, trace.values.astype(float), inputs.speed.cum_work_ms
    res_t, res_l = inputs.resident.times_s, inputs.resident.values.astype(np.int64)
    n = len(inputs.arrivals_s)
    options = [None, *routes] if free_drops else routes
    best = 0.0
    device = plan.scenario.device
    for choice in itertools.product(options, repeat=n):
        free, total, left = 0.0, 0.0, 0.0
        for i, route in enumerate(choice):
            start = max(inputs.arrivals_s[i], free)
            factor = np.array(model.idle_factors_at((start - free) * 1e3))
            idle = factor.copy()
            woken = inputs.arrivals_s[i] > free
            first = device.slice_ms if woken else left  # woken: a whole slice (after its wake wait); queued: the slice left
            if device.slice_ms > 0.0:
                share = value_at(times, speeds, start)
                woke = wake_waited(start, share, device.slice_ms, np.array(device.wake_wait or [0.0])) if woken else 0.0
                sliced_factors(factor, inputs.work_ms[i], share, first, device.slice_ms, woke)
            if late_drop and too_late(start, inputs.deadlines_s[i], model.sparsest_median_ms, value_at(times, speeds, start)):
                continue  # dropped by the rule, whatever was chosen
            if route is None:
                continue
            t = start
            for seg, level in enumerate(route):
                t = resident_from(res_t, res_l, level, t)
                if math.isinf(t):
                    break
                t = finish_time(times, speeds, cum, t, inputs.work_ms[i, level, seg] * factor[level])
            if math.isinf(t):
                continue
            free = t
            if device.slice_ms > 0.0:
                left = slice_left_after(first, route_work(route_code(route, model.n_levels), inputs.work_ms[i], idle), device.slice_ms)
            total += values[route] if t <= inputs.deadlines_s[i] and i >= plan.scenario.warmup_requests else 0.0
        best = max(best, total)
    return best


@pytest.fixture(scope="module")
def two_level_idle(tmp_path_factory):
    """Like ``two_level``, and slower after the device idled (level 1 more so): an earlier free
    device is not always better."""
    rng = np.random.default_rng(0)
    samples = {(layer, level): list(rng.uniform(1.0, 3.0, 50) / (1 + level)) for layer in "ab" for level in (0, 1)}
    accuracy = {"0-0": 0.95, "0-1": 0.93, "1-0": 0.90, "1-1": 0.92}
    return write_bundle(tmp_path_factory.mktemp("b") / "idle", samples, {"a": 0, "b": 1}, accuracy=accuracy,
                        idle_factor={0.0: 1.0, 1.0: 1.3, 4.0: 1.8})


@pytest.fixture(params=["two_level", "two_level_idle"])
def bundle(request):
    return request.getfixturevalue(request.param)


@pytest.mark.parametrize("capacity, late", [(None, "run"), (None, "drop"), (2, "run")])
def test_exact_on_small_runs(bundle, capacity, late):
    workload = {"arrival": {"kind": "poisson", "rate_hz": 600}, "deadline": {"kind": "constant", "ms": 3.5},
                "queue": {"capacity": capacity, "late": late}}
    device = {"speed": {"kind": "markov", "states": [{"speed": 1.0, "mean_dwell_s": 0.004}, {"speed": 0.4, "mean_dwell_s": 0.003}]}}
    plan = build_plan(parse_scenario(scenario_dict(bundle, requests=6, warmup_requests=1, workload=workload, device=device)))
    for replication in range(3):
        inputs = sample_inputs(plan, replication)
        bound = replication_bound(plan, inputs, max_states=5**6)  # room for every schedule: no merges
        assert bound["exact"]
        values = {r: plan.model.accuracy(r) for r in plan.model.routes_by_preference()}
        relaxed = capacity is not None or late == "drop"  # any request may be dropped (the module doc)
        expected = _brute_force(plan, inputs, relaxed, False, values)
        assert bound["accuracy_at_deadline"] * bound["requests"] == pytest.approx(expected, abs=1e-9)
        met = _brute_force(plan, inputs, relaxed, False, dict.fromkeys(values, 1.0))
        assert bound["met"] == pytest.approx(met)
        # the best real schedule its search found: never above the optimum; with no idle slowdown and room for every
        # state, the optimum itself (an earlier free time is then never worse)
        feasible = bound["accuracy_at_deadline_feasible"] * bound["requests"]
        assert feasible <= expected + 1e-9 and bound["met_feasible"] <= met
        if bundle.name == "two":
            assert feasible == pytest.approx(expected, abs=1e-9) and bound["met_feasible"] == met
        if late == "drop":  # and the schedules the late rule allows are among those it searched
            assert bound["accuracy_at_deadline"] * bound["requests"] >= _brute_force(plan, inputs, False, True, values) - 1e-9
        alone = [(1, 1)]  # one level's route: which requests to run is all that is left to choose
        one = replication_bound(plan, inputs, max_states=5**6, routes=alone)
        assert one["exact"]
        assert one["accuracy_at_deadline"] * one["requests"] == pytest.approx(
            _brute_force(plan, inputs, relaxed, False, values, alone), abs=1e-9)


@pytest.mark.parametrize("capacity, late, slice_ms, wake_wait", [(None, "run", 0.4, []), (1, "drop", 0.7, [1.0]), (None, "run", 1.1, [0.5]),
                                                              (2, "run", 2.5, [0.8, 0.0])])  # fmt: skip
def test_the_bound_holds_under_time_slicing(bundle, capacity, late, slice_ms, wake_wait):
    """Against brute force over every schedule, each carrying the slice it leaves: the bound is
    never below it, and equal where it says it is exact (woken requests only, with no slice
    left to guess)."""
    workload = {"arrival": {"kind": "poisson", "rate_hz": 600}, "deadline": {"kind": "constant", "ms": 3.5},
                "queue": {"capacity": capacity, "late": late}}
    device = {"speed": {"kind": "markov", "states": [{"speed": 1.0, "mean_dwell_s": 0.004}, {"speed": 0.4, "mean_dwell_s": 0.003}]},
              "slice_ms": slice_ms, "wake_wait": wake_wait}
    plan = build_plan(parse_scenario(scenario_dict(bundle, requests=6, warmup_requests=1, workload=workload, device=device)))
    relaxed = capacity is not None or late == "drop"
    values = {r: plan.model.accuracy(r) for r in plan.model.routes_by_preference()}
    for replication in range(4):
        inputs = sample_inputs(plan, replication)
        bound = replication_bound(plan, inputs, max_states=5**6)
        best = _brute_force(plan, inputs, relaxed, False, values)
        assert bound["accuracy_at_deadline"] * bound["requests"] >= best - 1e-9
        met = _brute_force(plan, inputs, relaxed, False, dict.fromkeys(values, 1.0))
        assert bound["met"] >= met - 1e-9
        if bound["exact"]:
            assert bound["accuracy_at_deadline"] * bound["requests"] == pytest.approx(best, abs=1e-9)
            assert bound["met"] == pytest.approx(met)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@example(seed=0, rate=150.0, deadline_ms=4.0, capacity=None, late="drop", slow=0.125, idle=False, slice_ms=0.0, wake=0.0)  # a new user's run
@given(seed=st.integers(0, 2**31), rate=st.floats(150, 900), deadline_ms=st.floats(1.5, 8),
       capacity=st.one_of(st.none(), st.integers(0, 6)), late=st.sampled_from(["run", "drop"]), slow=st.floats(0.1, 1.0),
       idle=st.booleans(), slice_ms=st.sampled_from([0.0, 0.3, 1.2]), wake=st.sampled_from([0.0, 0.7]))
def test_no_policy_beats_the_bound(two_level, two_level_idle, seed, rate, deadline_ms, capacity, late, slow, idle, slice_ms, wake):
    workload = {"arrival": {"kind": "poisson", "rate_hz": rate}, "deadline": {"kind": "constant", "ms": deadline_ms},
                "queue": {"capacity": capacity, "late": late}}
    device = {"speed": {"kind": "markov", "states": [{"speed": 1.0, "mean_dwell_s": 0.01}, {"speed": slow, "mean_dwell_s": 0.005}]},
              "slice_ms": slice_ms, "wake_wait": [wake] if slice_ms else []}
    plan = build_plan(parse_scenario(scenario_dict(two_level_idle if idle else two_level, seed=seed, requests=300, warmup_requests=20, workload=workload,
                                                   device=device, policies=POLICIES)))
    inputs = sample_inputs(plan, 0)
    bound = replication_bound(plan, inputs, max_states=16)  # small: merges happen, and it must still hold
    if slice_ms == 0.0:  # the best real schedule found lies below the bound
        assert bound["met_feasible"] <= bound["met"] and bound["accuracy_at_deadline_feasible"] <= bound["accuracy_at_deadline"] + 1e-12
    for index in range(len(POLICIES)):
        records = run_policy(plan, inputs, index, 0)
        kept = records[~records["warmup"]]
        met = kept["outcome"] == "met"
        assert met.sum() <= bound["met"] + 1e-9
        assert np.where(met, kept["accuracy"], 0.0).mean() <= bound["accuracy_at_deadline"] + 1e-12
        level = POLICIES[index].get("level")
        if level is not None:  # a static level never beats the optimum of its own route
            alone = replication_bound(plan, inputs, max_states=16, routes=[(level, level)])
            assert met.sum() <= alone["met"] + 1e-9
            assert np.where(met, kept["accuracy"], 0.0).mean() <= alone["accuracy_at_deadline"] + 1e-12


def test_a_camera_scenario_gets_a_bound_within_2x_of_the_clairvoyant_or_its_slack(two_level_idle):
    """Periodic frames, so every request finds the device idle (and slower), and a deadline few
    requests meet: the bound is within 2x of what the clairvoyant reference meets, or the
    verdict says it is inexact and how far above the best schedule known it can be."""
    from simqos.bound import plan_bound
    from simqos.sim.execution import run_plan
    from simqos.sim.replication import summarize_plan
    from simqos.verdict import plan_verdict, verdict_lines

    workload = {"arrival": {"kind": "periodic", "fps": 100}, "deadline": {"kind": "constant", "ms": 3.4}, "queue": {"late": "drop"}}
    device = {"speed": {"kind": "constant", "speed": 1.0}}
    policies = [{"kind": "static", "level": 0}, {"kind": "static", "level": 1}, {"kind": "lookahead"}, {"kind": "clairvoyant"}]
    plan = build_plan(parse_scenario(scenario_dict(two_level_idle, requests=600, warmup_requests=20, replications=2,
                                                   workload=workload, device=device, policies=policies)))
    run = run_plan(plan)
    summary = summarize_plan(plan, run).set_index("policy")
    reference = summary.loc["clairvoyant", "accuracy_at_deadline"]
    assert 0.0 < reference < 0.5  # few requests can meet it
    bound = plan_bound(plan)
    v = plan_verdict(plan, summary.reset_index(), run, bound)
    assert bound["accuracy_at_deadline"] >= reference
    text = " ".join(verdict_lines(v))
    if not bound["exact"]:
        low = v["bound_low"]["value"]
        assert reference <= low <= bound["accuracy_at_deadline"] and "not computed exactly: it lies between" in text
    assert bound["accuracy_at_deadline"] <= 2 * reference or "not computed exactly" in text


def test_a_profile_without_accuracy_bounds_nines_only(tmp_path):
    bundle = write_bundle(tmp_path / "b", {("a", 0): [1.0, 2.0], ("a", 1): [0.5, 1.0]}, {"a": 0})
    plan = build_plan(parse_scenario(scenario_dict(bundle, requests=200)))
    bound = replication_bound(plan, sample_inputs(plan, 0))
    assert math.isnan(bound["accuracy_at_deadline"]) and 0 < bound["met"] <= 200


def test_states_are_widened_only_over_free_times_whose_idle_gap_is_alike():
    """The next request arrives at 10 ms; the idle table is measured at 0, 1 and 5 ms. States
    free at 0 ms (a 10 ms gap) and 1 ms (9 ms) are in one band: the later, worth less, is
    absorbed (the first widens to cover it). States free at 9 and 9.5 ms (1 and 0.5 ms gaps) are
    in bands of their own: a state worth more but idle 10 ms must not stand for them (it would
    pair its value with their small slowdown)."""
    from simqos.bound import _absorb_banded

    low = np.array([0.0, 0.001, 0.009, 0.0095])
    high, value = low.copy(), np.array([3.0, 2.0, 1.0, 2.5])
    kept = _absorb_banded(low, high, value, 4, 0.010, np.array([0.0, 1.0, 5.0]))
    assert kept == 3
    assert low[:3].tolist() == [0.0, 0.009, 0.0095] and high[:3].tolist() == [0.001, 0.009, 0.0095]
    assert value[:3].tolist() == [3.0, 1.0, 2.5]
