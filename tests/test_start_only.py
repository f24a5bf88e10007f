"""The start-only ablation of a policy (simqos.policies.start_only): its first decision is the
policy's own and holds for the whole request; compiled and SimPy agree; the verdict reports what
the later decisions are worth against it, on the same requests."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from bundles import scenario_dict
from simqos.sim.execution import simulate
from simqos.sim.inputs import sample_inputs
from simqos.sim.plan import build_plan
from simqos.sim.replication import serve, summarize_plan
from simqos.policies import start_only
from simqos.scenario import parse_scenario
from simqos.verdict import plan_verdict, verdict_lines

SPEED = {"kind": "markov", "states": [{"speed": 1.0, "mean_dwell_s": 0.005}, {"speed": 0.4, "mean_dwell_s": 0.005}]}


def _plan(bundle, rate_hz: float, policy: dict, requests: int = 600):
    workload = {"arrival": {"kind": "poisson", "rate_hz": rate_hz}, "deadline": {"kind": "constant", "ms": 10}}
    plan = build_plan(parse_scenario(scenario_dict(bundle, requests=requests, warmup_requests=0, workload=workload,
                                                   device={"speed": SPEED}, policies=[policy])))
    factory = plan.policy_factories[0]
    return dataclasses.replace(plan, policy_factories=(factory, lambda: start_only(factory())),
                               labels=(plan.labels[0], start_only(factory()).label()))


def _first_level(code: np.ndarray, n_levels: int, n_segments: int) -> np.ndarray:
    return code // n_levels ** (n_segments - 1)


@pytest.mark.parametrize("policy", [{"kind": "deadline_aware"}, {"kind": "lookahead"}, {"kind": "dp"}])
def test_the_ablation_keeps_the_first_decision_for_the_whole_request(two_level, policy):
    """At 5 requests/s nearly every request finds the device idle, so both start it at the same
    instant in the same state: their first levels agree there, and the ablation never switches."""
    plan = _plan(two_level, 5, policy)
    inputs = sample_inputs(plan, 0)
    full, held = serve(plan, inputs, 0), serve(plan, inputs, 1)
    assert full.reroutes.sum() > 0, "the scenario must make the policy reroute"
    assert held.reroutes.sum() == 0
    k, s = plan.model.n_levels, plan.model.n_segments
    same = (full.route_code >= 0) & (held.route_code >= 0) & (full.start_s == held.start_s)
    assert same.mean() > 0.9
    assert np.array_equal(_first_level(full.route_code[same], k, s), _first_level(held.route_code[same], k, s))


def test_the_ablation_runs_the_same_on_both_engines(two_level):
    plan = _plan(two_level, 300, {"kind": "deadline_aware"})
    inputs = sample_inputs(plan, 0)
    fast, reference = serve(plan, inputs, 1, engine="auto"), serve(plan, inputs, 1, engine="simpy")
    assert plan.policy_factories[1]().compiled()
    assert np.array_equal(fast.route_code, reference.route_code)
    assert np.array_equal(fast.outcome, reference.outcome)
    np.testing.assert_array_equal(fast.finish_s, reference.finish_s)


def test_the_verdict_says_what_rerouting_is_worth(two_level):
    plan = _plan(two_level, 300, {"kind": "deadline_aware"}, requests=800)
    plan = dataclasses.replace(plan, scenario=plan.scenario.model_copy(update={"replications": 2}),
                               policy_factories=plan.policy_factories[:1], labels=plan.labels[:1])
    static = build_plan(parse_scenario(scenario_dict(plan.scenario.profile, policies=[{"kind": "static", "level": 1}])))
    plan = dataclasses.replace(plan, policy_factories=plan.policy_factories + static.policy_factories,
                               labels=plan.labels + static.labels)
    run = simulate(plan)
    summary = summarize_plan(plan, run)
    v = plan_verdict(plan, summary, run, None)
    r = v["rerouting"]
    assert r["policy"] == "deadline_aware (q0.9)" and r["ablation"] == "deadline_aware (q0.9) (start only)"
    share = summary.set_index("policy").loc[r["policy"], "rerouted_share"]
    assert r["rerouted_share"] == share > 0
    held = simulate(dataclasses.replace(plan, policy_factories=(lambda: start_only(plan.policy_factories[0]()),),
                                        labels=(r["ablation"],)))
    mine, theirs = run.pooled()[r["policy"]], held.pooled()[r["ablation"]]
    by_hand = (mine.sums[:, 2].sum() - theirs.sums[:, 2].sum()) / mine.counts[:, 0].sum()
    assert r["difference"][0] == pytest.approx(by_hand)
    assert r["difference"][1] <= r["difference"][0] <= r["difference"][2]
    assert any(line.startswith("Rerouting: `deadline_aware (q0.9)` switches") for line in verdict_lines(v))


@pytest.mark.parametrize("kind", ["sparsest_after", "sparsest_after_compiled"])
def test_a_users_policy_in_either_form_gets_its_ablation(two_level, kind):
    """A user's policy that always switches after the first segment: held to its first
    decision it runs that level throughout, in Python (SimPy) as compiled."""
    raw = scenario_dict(two_level, requests=200, warmup_requests=0, plugins=["user_policies"],
                        policies=[{"kind": kind, "segments": 1}])
    plan = build_plan(parse_scenario(raw))
    factory = plan.policy_factories[0]
    plan = dataclasses.replace(plan, policy_factories=(factory, lambda: start_only(factory())), labels=("own", "held"))
    assert plan.policy_factories[1]().compiled() == (kind == "sparsest_after_compiled")
    inputs = sample_inputs(plan, 0)
    own, held = serve(plan, inputs, 0), serve(plan, inputs, 1)
    assert (own.reroutes[own.route_code >= 0] == 1).all()
    assert held.reroutes.sum() == 0 and set(held.route_code[held.route_code >= 0]) == {0}  # route 0-0
