"""The verdict: hand-computable tallies (which policy, its paired difference and interval, the
gap closed) and, on a simulated scenario, the offline optimum on the baseline's route alone."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bundles import scenario_dict
from simqos.bound import plan_bound
from simqos.sim.execution import run_plan
from simqos.sim.plan import build_plan
from simqos.sim.replication import summarize_plan
from simqos.scenario import Objective, parse_scenario
from simqos.sim.serving import MET, MISSED
from simqos.sim.tally import Tally, TallyBuilder, paired_difference, summary_row
from simqos.verdict import plan_verdict, verdict, verdict_lines

N = 40  # requests per replication: 10 batches of 4


def _tallies(scores: dict[str, tuple[np.ndarray, float]]) -> dict[str, Tally]:
    """Two replications of ``N`` requests; per policy, which requests met (bool array over both
    replications) and the accuracy of its route (one segment; policy i serves every request on
    route i, of as many levels as policies)."""
    out = {}
    accuracy = np.array([a for _, a in scores.values()])
    for i, (policy, (met, _)) in enumerate(scores.items()):
        parts = []
        for r in range(2):
            builder = TallyBuilder(r, N, len(scores), 1, accuracy)
            mine = met[r * N : (r + 1) * N]
            builder.add(np.where(mine, MET, MISSED), np.ones(N), np.full(N, i, dtype=np.int64), np.zeros(N, dtype=np.int64))
            parts.append(builder.finish())
        out[policy] = Tally.pool(parts)
    return out


def _summary(tallies: dict[str, Tally]) -> pd.DataFrame:
    return pd.DataFrame([{"policy": p, **summary_row(t)} for p, t in tallies.items()])


ALL = np.ones(2 * N, dtype=bool)
HALF = np.arange(2 * N) % 2 == 0


def test_a_policy_better_on_every_request_is_deployed_with_its_gap_closed():
    tallies = _tallies({"static L0": (HALF, 0.9), "static L1": (ALL, 0.8), "smart": (ALL, 0.9)})
    v = verdict(_summary(tallies), tallies, Objective(), ["static L0", "static L1", "smart"], ["static L0", "static L1"],
                {"accuracy_at_deadline": 0.95, "met": 2 * N, "requests": 2 * N, "exact": True})
    assert v["baseline"] == "static L1" and v["baseline_value"] == pytest.approx(0.8)  # 0.8 beats 0.45
    assert v["deploy"] == "smart" and v["value"] == pytest.approx(0.9)
    assert v["difference"] == pytest.approx(0.1) and v["difference_low"] == pytest.approx(0.1)  # no spread: no width
    assert v["gap_closed"] == pytest.approx((0.9 - 0.8) / (0.95 - 0.8))
    text = " ".join(verdict_lines(v))
    assert "Deploy `smart`" in text and "+10.00 points" in text and "closes 67%" in text and "(exact)" in text


def test_a_difference_inside_its_interval_keeps_the_baseline():
    better, worse = np.zeros(2 * N, dtype=bool), np.zeros(2 * N, dtype=bool)
    better[::8], worse[4::8] = True, True  # the baseline misses these; smart misses those, one fewer
    worse[4] = False
    tallies = _tallies({"static L1": (~better, 0.8), "smart": (~worse, 0.8)})
    point, low, high = paired_difference(tallies["smart"], tallies["static L1"], "accuracy_at_deadline")
    assert point == pytest.approx(0.8 / (2 * N)) and low < 0 < high  # +0.8 or -0.8 a batch: a wide interval
    v = verdict(_summary(tallies), tallies, Objective(), ["static L1", "smart"], ["static L1"], None)
    assert v["deploy"] == "static L1" and v["best"] == "smart" and v["difference"] == 0.0
    assert "No policy beats it beyond the 95 % interval" in verdict_lines(v)[0]


def test_nines_respects_the_accuracy_floor():
    tallies = _tallies({"static L0": (HALF, 0.95), "static L1": (ALL, 0.7)})
    v = verdict(_summary(tallies), tallies, Objective(kind="nines", accuracy_floor=0.9), ["static L0", "static L1"],
                ["static L0", "static L1"], None)
    assert v["deploy"] == "static L0" and v["value"] == pytest.approx(0.5)  # L1 meets all, but is below the floor


def test_the_bound_on_the_baseline_route_lies_between_the_baseline_and_the_bound(two_level):
    workload = {"arrival": {"kind": "poisson", "rate_hz": 700}, "deadline": {"kind": "constant", "ms": 4},
                "queue": {"late": "drop"}}
    device = {"speed": {"kind": "markov", "states": [{"speed": 1.0, "mean_dwell_s": 0.02}, {"speed": 0.5, "mean_dwell_s": 0.01}]}}
    policies = [{"kind": "static", "level": 0}, {"kind": "static", "level": 1}, {"kind": "lookahead"}]
    plan = build_plan(parse_scenario(scenario_dict(two_level, requests=400, warmup_requests=20, replications=2,
                                                   workload=workload, device=device, policies=policies)))
    records = run_plan(plan)
    bound = plan_bound(plan)
    v = plan_verdict(plan, summarize_plan(plan, records), records, bound)
    assert v["baseline"].startswith("static")
    level = int(v["baseline"][-1])
    alone = plan_bound(plan, routes=[(level, level)])
    assert v["baseline_bound"] == pytest.approx(alone["accuracy_at_deadline"])
    assert v["baseline_value"] - 1e-12 <= v["baseline_bound"] <= v["bound"] + 1e-12
    assert any(f"On `{v['baseline']}`'s route alone" in line for line in verdict_lines(v))


def test_the_choice_is_made_on_validation_accuracy_and_the_values_reported_on_test():
    """On test static L1 (0.8) is the best static level; on validation, where L0's route scores
    0.95 and L1's 0.4, L0 is: the baseline is L0, and the values reported are the test ones."""
    tallies = _tallies({"static L0": (ALL, 0.7), "static L1": (ALL, 0.8), "smart": (ALL, 0.75)})
    validation = np.array([0.95, 0.4, 1.0])  # each policy's route's, in order
    policies = ["static L0", "static L1", "smart"]
    on_test = verdict(_summary(tallies), tallies, Objective(), policies, policies[:2], None)
    assert on_test["baseline"] == "static L1" and on_test["chosen_on"] == "test"
    v = verdict(_summary(tallies), tallies, Objective(), policies, policies[:2], None, validation)
    assert v["baseline"] == "static L0" and v["baseline_value"] == pytest.approx(0.7) and v["chosen_on"] == "validation"
    assert v["deploy"] == "smart" and v["value"] == pytest.approx(0.75) and v["difference"] == pytest.approx(0.05)
    assert "validation-split accuracies" in " ".join(verdict_lines(v))


def test_policies_inside_each_others_interval_are_named_as_ties():
    """smart and twin differ on 2 of 80 requests, one each way: a difference of 0 inside its
    interval, a tie; static L1 is worse on every 8th request, beyond it."""
    twin, base = ALL.copy(), ALL.copy()
    twin[3], base[::8] = False, False
    smart = ALL.copy()
    smart[11] = False
    tallies = _tallies({"static L1": (base, 0.8), "smart": (smart, 0.8), "twin": (twin, 0.8)})
    v = verdict(_summary(tallies), tallies, Objective(), ["static L1", "smart", "twin"], ["static L1"], None)
    assert v["deploy"] in ("smart", "twin") and set(v["ties"]) == {"twin", "smart"} - {v["deploy"]}
    point, low, high = next(iter(v["ties"].values()))
    assert point == pytest.approx(0.0) and low < 0 < high
    assert "ties with" in " ".join(verdict_lines(v))


def test_no_policy_is_deployed_when_every_one_misses_nearly_every_request():
    rare, rarer = np.zeros(2 * N, dtype=bool), np.zeros(2 * N, dtype=bool)
    rare[::20], rarer[::40] = True, True  # 5 % and 2.5 % met
    tallies = _tallies({"static L1": (rarer, 0.8), "smart": (rare, 0.8)})
    v = verdict(_summary(tallies), tallies, Objective(), ["static L1", "smart"], ["static L1"], None)
    assert "deploy" not in v and v["note"].startswith("no policy is viable") and "smart, meets 5.0%" in v["note"]
    assert verdict_lines(v)[0].startswith("**Verdict**: no policy is viable")


def test_the_gap_closed_has_its_interval_and_the_clairvoyant_reference_beside_it():
    smart, oracle = ALL.copy(), ALL.copy()
    smart[::40] = False  # 78 of 80 at 0.95
    tallies = _tallies({"static L1": (ALL, 0.8), "smart": (smart, 0.95), "clairvoyant": (oracle, 0.9)})
    v = verdict(_summary(tallies), tallies, Objective(), ["static L1", "smart"], ["static L1"],
                {"accuracy_at_deadline": 1.0, "met": 2 * N, "requests": 2 * N, "exact": True})
    room = 1.0 - 0.8
    assert v["deploy"] == "smart" and v["gap_closed"] == pytest.approx((0.95 * 78 / 80 - 0.8) / room)
    assert v["gap_closed_low"] == pytest.approx(v["difference_low"] / room) and v["gap_closed_low"] < v["gap_closed"] < v["gap_closed_high"]
    assert v["reference"] == {"policy": "clairvoyant", "value": pytest.approx(0.9), "gap_closed": pytest.approx(0.5)}
    text = " ".join(verdict_lines(v))
    assert "of the gap from the baseline to it [" in text and "The reference `clairvoyant`" in text and "(50% of the gap)" in text


def test_the_test_sets_sampling_error_widens_the_interval_by_its_paired_standard_error():
    """smart meets every request on route 1, the baseline on route 0; the two routes, scored on
    the same 4 samples, differ on two of them: z = (0, +1, -1, 0), so the difference of their
    accuracies (0) has a paired standard error sqrt(4/3 * 2) / 4, not the routes' own."""
    from simqos.sim.tally import accuracy_sampling_half_width

    tallies = _tallies({"static L1": (ALL, 0.5), "smart": (ALL, 0.5)})
    hits = np.array([[1, 0, 1, 0], [1, 1, 0, 0]])
    outcomes = (np.array([0, 1]), hits, np.ones(4, dtype=np.int64))
    half = accuracy_sampling_half_width(tallies["smart"], tallies["static L1"], outcomes)
    assert half == pytest.approx(1.959964 * np.sqrt(4 / 3 * 2) / 4, rel=1e-5)
    assert accuracy_sampling_half_width(tallies["smart"], tallies["smart"], outcomes) == 0.0  # same routes: no error


def test_the_verdict_gives_both_intervals_and_says_which_is_which():
    smart = ALL.copy()
    smart[::40] = False  # 78 of 80 met, at 0.95 against 0.8: +0.1325, the same in every batch but two
    tallies = _tallies({"static L1": (ALL, 0.8), "smart": (smart, 0.95)})
    rng = np.random.default_rng(0)
    base = rng.random(200) < 0.8
    better = base | (rng.random(200) < 0.75)  # right where the baseline is, and on most others
    outcomes = (np.array([0, 1]), np.array([base, better]).astype(np.int64), np.ones(200, dtype=np.int64))
    v = verdict(_summary(tallies), tallies, Objective(), ["static L1", "smart"], ["static L1"], None,
                np.array([0.8, 0.95]), (outcomes[0], outcomes[1], outcomes[2]))
    assert v["deploy"] == "smart" and v["accuracy_sampling"] == "included"
    point, low, high = v["difference_full"]
    assert point == v["difference"] and low < v["difference_low"] and high > v["difference_high"]
    text = " ".join(verdict_lines(v))
    assert "the simulation's noise" in text and "with the test set's sampling error too" in text
    without = verdict(_summary(tallies), tallies, Objective(), ["static L1", "smart"], ["static L1"], None, np.array([0.8, 0.95]))
    assert without["accuracy_sampling"] == "left out" and "difference_full" not in without
    assert "sampling error is left out" in " ".join(verdict_lines(without))


def test_whether_the_best_beats_the_baseline_is_decided_on_validation_not_test():
    """smart misses 2 of 80 requests. On test its route scores 0.9 against 0.8: +7.75 points,
    beyond the interval. On validation it scores 0.83: +0.93 points, the best there, but within
    the interval — no gain established where the choice is made, so the baseline is kept."""
    smart = ALL.copy()
    smart[::40] = False
    tallies = _tallies({"static L1": (ALL, 0.8), "smart": (smart, 0.9)})
    on_test = verdict(_summary(tallies), tallies, Objective(), ["static L1", "smart"], ["static L1"], None)
    assert on_test["deploy"] == "smart" and on_test["difference_low"] > 0
    v = verdict(_summary(tallies), tallies, Objective(), ["static L1", "smart"], ["static L1"], None, np.array([0.8, 0.83]))
    assert v["deploy"] == "static L1" and v["best"] == "smart"
    point, low, high = v["gate"]
    assert point == pytest.approx((78 * 0.83 - 80 * 0.8) / 80) and low < 0 < high
    assert v["best_difference"][0] == pytest.approx((78 * 0.9 - 80 * 0.8) / 80)  # reported on test
    assert "on the validation split" in verdict_lines(v)[0]
