"""The queue-aware value iteration behind the ``queue_dp`` policy: a hand-computable choice that
the queue changes, and a policy that gains from it in simulation."""

from __future__ import annotations

import numpy as np
import pytest

from bundles import scenario_dict, write_bundle
from simqos.sim.inputs import sample_inputs
from simqos.sim.plan import build_plan
from simqos.sim.replication import run_policy
from simqos.errors import SimqosError
from simqos.scenario import parse_scenario
from simqos.policies.queue_dp import queue_dp_decide
from simqos.sim.serving import Decision


def _decision(deadline_s: float, queued_s: list[float], idle_factor=(1.0, 1.0)) -> Decision:
    return Decision(request=0, now_s=0.0, arrival_s=0.0, deadline_s=deadline_s, segment=0, current_level=-1, route_code=0,
                    speed=1.0, min_resident_level=0, n_levels=2, queued_deadlines_s=np.array(queued_s, dtype=float),
                    idle_factor=np.array(idle_factor), route_finish_s=np.zeros(0))


def _one_segment(folder, idle_factor=None):
    """One segment; level 0 takes 6 ms and is right 100 % of the time, level 1 takes 2 ms and
    is right 70 %; a 10 ms deadline, a constant speed, and arrivals too rare to matter."""
    bundle = write_bundle(folder, {("a", 0): [6.0] * 5, ("a", 1): [2.0] * 5}, {"a": 0}, accuracy={"0": 1.0, "1": 0.7},
                          idle_factor=idle_factor)
    workload = {"arrival": {"kind": "poisson", "rate_hz": 0.01}, "deadline": {"kind": "constant", "ms": 10},
                "queue": {"capacity": 4, "late": "run"}}
    plan = build_plan(parse_scenario(scenario_dict(bundle, workload=workload, policies=[{"kind": "queue_dp"}])))
    return plan.policy_factories[0]()


@pytest.fixture
def one_segment(tmp_path):
    return _one_segment(tmp_path / "b")


def test_a_waiting_request_changes_the_choice(one_segment):
    """Alone, the head runs level 0 (1.0 against 0.7). With one request waiting whose deadline
    is 5 ms away, level 0 leaves it -1 ms (lost: 1.0 in all) while level 1 leaves it 3 ms, enough
    for its own level 1: 0.7 + 0.9 x 0.7 = 1.33 with the default discount of 0.9 per request."""
    params, table = one_segment.prepared()
    assert queue_dp_decide(_decision(0.010, []), params, table) == 0
    assert queue_dp_decide(_decision(0.010, [0.005]), params, table) == 1
    assert queue_dp_decide(_decision(0.001, []), params, table) == 1  # nothing fits: free the device soonest


def test_a_cold_start_changes_the_choice(tmp_path):
    """After an idle gap (every arrival here: they are 100 s apart) level 0 works twice as long
    (12 ms: too late) and level 1 2.5 times (5 ms): a request that found the device idle runs
    level 1, one that waited runs level 0."""
    policy = _one_segment(tmp_path / "b", idle_factor={0.0: 1.0, 1.0: 2.0})
    params, table = policy.prepared()
    assert queue_dp_decide(_decision(0.010, [], idle_factor=(2.0, 2.5)), params, table) == 1
    assert queue_dp_decide(_decision(0.010, []), params, table) == 0


def test_a_replayed_speed_trace_is_refused(two_level, tmp_path):
    trace = tmp_path / "speed.csv"
    trace.write_text("time_s,speed\n0,1.0\n1000,0.5\n")
    scenario = parse_scenario(scenario_dict(two_level, device={"speed": {"kind": "trace", "path": str(trace)}},
                                            policies=[{"kind": "greedy"}, {"kind": "queue_dp"}]))
    with pytest.raises(SimqosError, match=r"^scenario: policies\[1\]: queue_dp plans over the device's speed process"):
        build_plan(scenario)


def test_queue_dp_gains_where_the_queue_decides(tmp_path):
    """Two segments; level 0 (95 % right) takes about twice level 1's time (80 %); mixed routes
    in between. Loaded (150 requests/s against a 10 ms deadline) on a device whose speed halves
    now and then: the queue-aware table beats both static levels by far and is not below the
    per-request optimum, which does not see the queue (measured on these draws: queue_dp 83.9 %,
    dp 83.4 %, lookahead 83.2 %, static L1 77.8 %, L0 63.7 %)."""
    rng = np.random.default_rng(0)
    samples = {("a", 0): list(rng.uniform(1.0, 3.0, 50)), ("b", 0): list(rng.uniform(1.0, 3.0, 50)),
               ("a", 1): list(rng.uniform(0.5, 1.5, 50)), ("b", 1): list(rng.uniform(0.5, 1.5, 50))}
    bundle = write_bundle(tmp_path / "b", samples, {"a": 0, "b": 1}, accuracy={"0-0": 0.95, "0-1": 0.88, "1-0": 0.87, "1-1": 0.80})
    workload = {"arrival": {"kind": "poisson", "rate_hz": 150}, "deadline": {"kind": "constant", "ms": 10.0},
                "queue": {"capacity": 6, "late": "drop"}}
    device = {"speed": {"kind": "markov", "states": [{"speed": 1.0, "mean_dwell_s": 0.05}, {"speed": 0.5, "mean_dwell_s": 0.02}]}}
    policies = [{"kind": "static", "level": 0}, {"kind": "static", "level": 1}, {"kind": "dp"},
                {"kind": "queue_dp", "grid": 32, "queue_grid": 8}]
    plan = build_plan(parse_scenario(scenario_dict(bundle, requests=4000, warmup_requests=0, workload=workload,
                                                   device=device, policies=policies)))
    inputs = sample_inputs(plan, 0)
    at_deadline, first = {}, {}
    for index, label in enumerate(plan.labels):
        records = run_policy(plan, inputs, index, 0)
        at_deadline[label] = np.where(records["outcome"] == "met", records["accuracy"], 0.0).mean()
        first[label] = records["route"].dropna().str[0].value_counts(normalize=True)
    assert at_deadline["queue_dp"] > max(at_deadline["static L0"], at_deadline["static L1"]) + 0.05
    assert at_deadline["queue_dp"] >= at_deadline["dp"] - 0.002
    assert 0.1 < first["queue_dp"].get("0", 0.0) < 0.9  # both levels start requests


def test_the_accuracy_frontier_shows_queue_dp_only_when_listed(two_level):
    from simqos.experiments import frontier_table

    small = {"kind": "queue_dp", "grid": 12, "queue_grid": 3, "max_queue": 2, "samples": 16, "quantiles": 2}
    listed = parse_scenario(scenario_dict(two_level, requests=300, policies=[{"kind": "static", "level": 0}, small]))
    families = list(frontier_table(listed)["family"])
    assert families.count("queue_dp") == 1 and {"static", "lookahead", "dp", "clairvoyant"} <= set(families)
    assert "queue_dp" not in set(frontier_table(parse_scenario(scenario_dict(two_level, requests=300)))["family"])


def test_the_accuracy_frontier_shows_a_users_own_policy(two_level):
    from simqos.experiments import frontier_table

    scenario = scenario_dict(two_level, requests=300, plugins=["user_policies"],
                             policies=[{"kind": "static", "level": 0}, {"kind": "sparsest_after", "segments": 1, "label": "mine"}])
    table = frontier_table(parse_scenario(scenario))
    assert list(table["family"]).count("mine") == 1 and table.loc[table["family"] == "mine", "requests"].iloc[0] > 0
