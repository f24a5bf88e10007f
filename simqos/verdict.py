"""The verdict: which policy to deploy for the scenario's objective, by how much it beats a
baseline (a paired interval), and how much of the gap to the upper bound it closes.

**Objectives** (``objective:`` in a scenario): ``accuracy_at_deadline`` (default) — the mean
over requests of the route's accuracy if the request met its deadline, 0 if it missed or was
dropped; or ``nines`` — the most nines of QoS among the policies whose mean accuracy (served
requests) is at least ``accuracy_floor``.

**Candidates** are the deployable policies (not the clairvoyant reference). The **baseline**
is the policy the scenario names (``objective.baseline``, a label), else the best static level
for the objective. **Chosen on validation, reported on test**: the best policy, the best static
level, those above an accuracy floor, and whether the best beats the baseline beyond its
interval (the *gate*; else the baseline is deployed) are decided with each route's
validation-split accuracy (:func:`validation_scores`, from the routes each policy served and
met, batch by batch); the values, differences and intervals reported are the test split's, so
the verdict is not judged on the numbers it was chosen on.

**Paired differences.** Every policy of a replication is served the same arrivals, latency
draws and device (common random numbers), so the per-request difference of two policies'
scores is what varies; its mean gets a batch-means interval (each replication cut into the
same contiguous batches as the summary's, Student's t on batches - 1 degrees of freedom),
which holds when misses cluster. That is the simulation's noise. The route accuracies are
measured too, on a finite test set: where the profile has every route's per-sample outcomes
(``route_outcomes.npz``), the paired sampling error of the two policies' route mixes over the
same test samples (:func:`simqos.sim.tally.accuracy_sampling_half_width`) is added in quadrature,
and both intervals are given; ties are judged on the wider. For ``nines`` the difference is in
miss rate (points), and the nines of both are given.

**Gap closed**: (policy - baseline) / (bound - baseline) on accuracy-at-deadline, or on the
share of requests met, with the bound of :mod:`simqos.bound` (pooled over replications); its
interval is the paired difference's over the same room (the bound taken as fixed), at most 1.
Where the bound is not exact, the optimum is given as the range it lies in: from the best
schedule known (any policy's, or the bound's own search over real schedules) to the bound.
Beside it, the clairvoyant reference's share of the gap: it knows each request's own future,
so what it does not close takes hindsight across requests (or is an inexact bound's slack).

**What rerouting is worth** (``rerouting``): the deployed policy — or, when the baseline is
deployed, the best deployable policy that reroutes (chosen on validation) — against its start-only ablation
(:func:`simqos.policies.start_only`: its first decision held for the whole request), served the
same requests; with the share of its served requests whose route changes level after the first
segment. A policy that never reroutes has no such line.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

from simqos.sim.tally import Tally, accuracy_sampling_half_width, paired_difference, pooled, summary_row

__all__ = ["NOT_VIABLE_MISS", "plan_rerouting", "plan_verdict", "validation_scores", "verdict", "verdict_lines"]


def _objective_value(row: pd.Series, objective: str) -> float:
    return float(row["accuracy_at_deadline"]) if objective == "accuracy_at_deadline" else 1.0 - float(row["miss_rate"])


NOT_VIABLE_MISS = 0.9
"""When every deployable policy misses more than this share of requests, the verdict deploys
none: a "best" policy that meets a few percent is not an answer."""


def verdict(summary: pd.DataFrame, tallies: Mapping[str, Tally], objective, deployable: list[str], static: list[str],
            bound: dict | None, validation_accuracy: np.ndarray | None = None,
            outcomes: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> dict:
    """The verdict for ``objective`` (a scenario's :class:`~simqos.scenario.Objective`) among the
    ``deployable`` policy labels, against the named baseline or the best of ``static``;
    ``tallies``: each policy's, pooled over the replications (the paired differences).
    ``validation_accuracy``: every route's validation-split accuracy (by route code) — the
    policies eligible, the best, the baseline and whether the best beats it beyond its interval
    are decided on it, and the values reported are the summary's (test split), so the verdict's
    numbers are not the ones it was chosen on. ``outcomes``: the routes' per-sample test
    outcomes (:attr:`simqos.sim.service.ServiceModel.test_outcomes`), which widen every reported
    accuracy difference by the test set's sampling error."""
    kind, table = objective.kind, summary.set_index("policy")
    validation = None if validation_accuracy is None else validation_scores(validation_accuracy, tallies)
    chosen_on = table if validation is None else table.assign(**validation.set_index("policy")[["accuracy_at_deadline", "mean_accuracy"]])
    eligible, why_none = _eligible(table, chosen_on, objective, deployable)
    if why_none:
        return {"objective": kind, "note": why_none}
    value = {p: _objective_value(table.loc[p], kind) for p in eligible}
    choice = {p: _objective_value(chosen_on.loc[p], kind) for p in eligible}
    best = max(eligible, key=lambda p: choice[p])
    pool = [p for p in static if p in value] or eligible
    baseline = objective.baseline or max(pool, key=lambda p: choice[p])
    if baseline not in table.index:
        return {"objective": kind, "note": f"objective.baseline {baseline!r} is not one of the policies {list(table.index)}"}
    sampling, sampling_label = _sampling(tallies, outcomes, kind)
    differences = {p: _difference(tallies, p, baseline, kind, sampling) for p in table.index if p != baseline}
    best, out_best = _gated(tallies, best, baseline, kind, validation_accuracy, differences)
    point, low, high = differences[best]["simulation"] if best != baseline else (0.0, 0.0, 0.0)
    out = {
        "objective": kind,
        "deploy": best,
        "value": value.get(best, _objective_value(table.loc[best], kind)),
        "baseline": baseline,
        "baseline_value": _objective_value(table.loc[baseline], kind),
        "difference": point, "difference_low": low, "difference_high": high,
        "differences": {p: d["simulation"] for p, d in differences.items()},
        "differences_full": {p: d["full"] for p, d in differences.items() if "full" in d},
        **({"difference_full": differences[best]["full"]} if best != baseline and "full" in differences[best] else {}),
        "chosen_on": "test" if validation is None else "validation",
        "accuracy_sampling": sampling_label,
        "ties": _ties(tallies, best, [p for p in eligible if p != best], kind, sampling),
        **out_best,
    }
    if out["ties"] and "decision_ms" in table and (table.loc[[best, *out["ties"]], "decision_ms"] > 0).all():
        out["cheapest"] = _cheapest(table.loc[[best, *out["ties"]], "decision_ms"])  # ties: the cheapest to run
    if bound is not None:
        out |= _against_bound(bound, table, kind, [p for p in table.index if p not in deployable], out, value[best], low, high)
    return out


def _sampling(tallies, outcomes, kind: str):
    """The test set's sampling half-width of two policies' accuracy difference (None where the
    routes' per-sample outcomes are unknown or the objective is not accuracy), and what the
    verdict says of it."""
    if kind != "accuracy_at_deadline":
        return None, "not applicable"
    if outcomes is None:
        return None, "left out"
    return (lambda p, q: accuracy_sampling_half_width(tallies[p], tallies[q], outcomes)), "included"


def _gated(tallies, best: str, baseline: str, kind: str, validation_accuracy, differences: dict) -> tuple[str, dict]:
    """The policy to deploy — ``best``, unless on the split it was chosen on it is not better
    than the baseline beyond its interval (then the baseline) — and what the verdict records of
    that test."""
    if best == baseline:
        return best, {}
    gate = paired_difference(tallies[best], tallies[baseline], kind, accuracy=validation_accuracy)
    if not gate[1] > 0:  # not better beyond its interval where it was chosen: keep the baseline
        return baseline, {"best": best, "best_difference": differences[best]["simulation"], "gate": list(gate)}
    return best, {"gate": list(gate)}


def _cheapest(decision_ms: pd.Series) -> list:
    """[label, ms] of the tied policy whose decisions cost least."""
    return [str(decision_ms.idxmin()), float(decision_ms.min())]


def _eligible(table: pd.DataFrame, chosen_on: pd.DataFrame, objective, deployable: list[str]) -> tuple[list[str], str]:
    """The deployable policies that reach the objective's accuracy floor (judged on
    ``chosen_on``), and why there is no verdict when the profile has no accuracy for an
    accuracy objective, or no policy is eligible or viable ("" if there is one)."""
    kind, floor = objective.kind, objective.accuracy_floor
    if kind == "accuracy_at_deadline" and table["accuracy_at_deadline"].isna().all():
        return [], "accuracy is unavailable for this profile: no accuracy-at-deadline verdict; use objective: {kind: nines}"
    eligible = [p for p in deployable if kind == "accuracy_at_deadline" or floor is None
                or (not pd.isna(chosen_on.loc[p, "mean_accuracy"]) and chosen_on.loc[p, "mean_accuracy"] >= floor)]
    if not eligible:
        return [], f"no deployable policy reaches the accuracy floor {floor:g}"
    if all(table.loc[p, "miss_rate"] > NOT_VIABLE_MISS for p in eligible):
        met = max(eligible, key=lambda p: 1.0 - table.loc[p, "miss_rate"])
        return [], (f"no policy is viable: every deployable policy misses more than {NOT_VIABLE_MISS:.0%} of requests (the best, "
                    f"{met}, meets {1.0 - table.loc[met, 'miss_rate']:.1%}); the deadline is out of reach on this device")
    return eligible, ""


def _against_bound(bound: dict, table: pd.DataFrame, kind: str, references: list[str], out: dict, value: float, low: float,
                   high: float) -> dict:
    """The verdict's gap to the offline optimum: the bound, how much of the room above the
    baseline the deployed policy (``value``, its difference's interval ``low``..``high``) closes,
    where the optimum lies when the bound is not exact, and the clairvoyant reference's share
    (``references``: the policies that see each request's own future)."""
    ceiling = _ceiling(bound, kind)
    room = ceiling - out["baseline_value"]
    share = (lambda d: min(d / room, 1.0)) if room > 1e-12 else (lambda d: math.nan)  # no policy passes the optimum
    gap = {"bound": ceiling, "bound_exact": bound["exact"], "gap_closed": share(value - out["baseline_value"]),
           "gap_closed_low": share(low), "gap_closed_high": share(high)}
    if "difference_full" in out:
        gap["gap_closed_full"] = [share(x) for x in out["difference_full"][1:]]
    if not bound["exact"]:  # the optimum lies between the best real schedule known and the bound
        found = {p: _objective_value(table.loc[p], kind) for p in table.index}
        feasible = _ceiling(bound, kind, "_feasible")
        if _known(feasible):
            found["the bound's own search"] = feasible
        source = max(found, key=found.get)
        gap["bound_low"] = {"value": found[source], "by": source}
    if references:
        ref = max(references, key=lambda p: _objective_value(table.loc[p], kind))
        ref_value = _objective_value(table.loc[ref], kind)
        gap["reference"] = {"policy": ref, "value": ref_value, "gap_closed": share(ref_value - out["baseline_value"])}
    return gap


def _difference(tallies: Mapping[str, Tally], policy: str, baseline: str, kind: str, sampling) -> dict[str, list[float]]:
    """``policy`` minus ``baseline``: ``simulation`` (point, low, high), the batch-means interval,
    and where the routes' per-sample outcomes are known, ``full``: that interval widened by the
    test set's sampling error (half-widths added in quadrature)."""
    point, low, high = paired_difference(tallies[policy], tallies[baseline], kind)
    out = {"simulation": [point, low, high]}
    if sampling is not None and _known(low):
        half = math.hypot((high - low) / 2, sampling(policy, baseline))
        out["full"] = [point, point - half, point + half]
    return out


def _ties(tallies: Mapping[str, Tally], deployed: str, others: list[str], objective: str, sampling=None) -> dict[str, list[float]]:
    """The policies whose paired difference from the deployed one (theirs minus its) has an
    interval that holds 0 — with the test set's sampling error where ``sampling`` gives it: the
    runs (and the test set) cannot tell them apart."""
    out = {}
    for p in others:
        d = _difference(tallies, p, deployed, objective, sampling)
        point, low, high = d.get("full", d["simulation"])
        if _known(low) and low <= 0 <= high:
            out[p] = [point, low, high]
    return out


def _ceiling(bound: dict, objective: str, which: str = "") -> float:
    """A bound (:func:`simqos.bound.plan_bound`) on the objective's scale; ``which="_feasible"``:
    the best real schedule its search found (NaN where it has none)."""
    key = ("accuracy_at_deadline" if objective == "accuracy_at_deadline" else "met") + which
    if key not in bound:
        return math.nan
    return bound[key] if objective == "accuracy_at_deadline" else bound[key] / bound["requests"]


def _points(fraction: float) -> str:
    """A difference in percentage points, signed, with no "-0.00" for a tiny negative."""
    return f"{round(100 * fraction, 2) + 0.0:+.2f}"


def _known(x: float | None) -> bool:
    return x is not None and not math.isnan(x)


def verdict_lines(v: dict | None) -> list[str]:
    """The verdict (as :func:`verdict` returns it, or as read back from summary.json) as
    markdown sentences."""
    if v is None:
        return []
    if "deploy" not in v:
        return [f"**Verdict**: {v['note']}."]
    lines = [_deploy_line(v)]
    if v.get("ties"):
        lines.append(_ties_line(v))
    if v.get("chosen_on") == "validation":
        lines.append("Chosen — the policy, the baseline, and whether it wins beyond its interval — on the routes' "
                     "validation-split accuracies; every value here is the test split's.")
    if "bound" in v:
        lines += _bound_lines(v)
    if "baseline_bound" in v:
        rest = v["bound"] - v["baseline_bound"]
        more = ("." if rest <= 0 else f"; the other {100 * rest:.2f} points need other levels." if v["bound_exact"]
                else f"; up to {100 * rest:.2f} points more may need other levels, or be the bound's slack.")
        lines.append(f"On `{v['baseline']}`'s route alone, choosing only which requests to run (with hindsight), it reaches "
                     f"{v['baseline_bound']:.2%}{more}")
    if "rerouting" in v:
        lines.append(_rerouting_line(v["rerouting"]))
    return lines


def _deploy_line(v: dict) -> str:
    """What to deploy, its value, and its difference from the baseline (or why the baseline stays)."""
    what = "accuracy-at-deadline" if v["objective"] == "accuracy_at_deadline" else "share of requests met"
    interval = (f" [{_points(v['difference_low'])}, {_points(v['difference_high'])}]" if _known(v["difference_low"]) else "")
    if v["deploy"] != v["baseline"]:
        return (f"**Deploy `{v['deploy']}`** for {what}: {v['value']:.2%} against {v['baseline_value']:.2%} for the baseline "
                f"`{v['baseline']}`, a paired difference of {_points(v['difference'])} points{interval} (95 %, the simulation's noise)"
                + _full_interval(v.get("difference_full"), v.get("accuracy_sampling")) + ".")
    line = f"**Deploy `{v['deploy']}`** (the baseline) for {what}: {v['value']:.2%}."
    if "best" in v:
        point, low, high = v["best_difference"]
        gate = v.get("gate")
        where = (f" on the validation split ({_points(gate[0])} points [{_points(gate[1])}, {_points(gate[2])}])"
                 if gate is not None and v.get("chosen_on") == "validation" else "")
        line += (f" No policy beats it beyond the 95 % interval{where}: the best, `{v['best']}`, differs by "
                 f"{_points(point)} points [{_points(low)}, {_points(high)}] on test.")
    return line


def _ties_line(v: dict) -> str:
    """The policies the runs cannot tell from the deployed one, and which costs least to run."""
    tied = ", ".join(f"`{p}` ({_points(d[0])} [{_points(d[1])}, {_points(d[2])}])" for p, d in v["ties"].items())
    noise = "the simulation's noise and the test set's sampling" if v.get("accuracy_sampling") == "included" else "the simulation's noise"
    cheapest = v.get("cheapest")
    advice = (f"; of them, `{cheapest[0]}` costs least to run ({cheapest[1]:.4f} ms a decision, charged)" if cheapest
              else " (charge each its decision time with `decision_ms: measured` to compare)")
    return (f"It ties with {tied} points against it, inside the 95 % interval ({noise}): these runs cannot tell them "
            f"apart, so prefer whichever costs least to run{advice}.")


def _bound_lines(v: dict) -> list[str]:
    """The offline optimum, the share of the gap to it the deployed policy closes, and the
    clairvoyant reference's."""
    deployed = v["deploy"] != v["baseline"] and _known(v["gap_closed"])
    closed = f"; it closes {v['gap_closed']:.0%} of the gap from the baseline to it" if deployed else ""
    if deployed and _known(v.get("gap_closed_low")):
        closed += f" [{v['gap_closed_low']:.0%}, {v['gap_closed_high']:.0%}]"
        if "gap_closed_full" in v:
            closed += f", [{v['gap_closed_full'][0]:.0%}, {v['gap_closed_full'][1]:.0%}] with the test set's sampling"
    if v["bound_exact"]:
        lines = [f"The offline optimum of the same runs (exact) reaches {v['bound']:.2%}{closed}."]
    elif v["bound_low"]["value"] >= v["bound"] - 5e-5:
        lines = [f"The offline optimum of the same runs reaches {v['bound']:.2%} (exact to within 0.005 points: "
                 f"a schedule meets the bound){closed}."]
    else:
        low = v["bound_low"]
        who = f"`{low['by']}`'s" if low["by"] in v.get("differences", {}) or low["by"] == v["baseline"] else "found by its own search"
        lines = [f"The offline optimum of the same runs is not computed exactly: it lies between {low['value']:.2%} "
                 f"(the best schedule known, {who}) and {v['bound']:.2%}, an upper bound at most "
                 f"{100 * (v['bound'] - low['value']):.2f} points above it{closed}."]
    if "reference" in v and _known(v["reference"]["gap_closed"]):
        r = v["reference"]
        share = r["gap_closed"]
        rest = "" if share >= 0.995 else (": what it leaves of the gap takes hindsight across requests, which no deployable policy has"
                                           + ("" if v["bound_exact"] else ", or is the bound's slack"))
        lines.append(f"The reference `{r['policy']}`, which knows each request's own future but not the requests to come, "
                     f"reaches {r['value']:.2%} ("
                     + (f"{min(share, 1.0):.0%} of the gap" if share >= 0 else "below the baseline") + f"){rest}.")
    return lines


def _rerouting_line(r: dict) -> str:
    """What the deployed policy's decisions after the first segment are worth (the ablation)."""
    point, low, high = r.get("difference_full", r["difference"])
    beyond = "beyond" if low > 0 or high < 0 else "within"
    sim_low, sim_high = r["difference"][1:]
    interval = f" [{_points(sim_low)}, {_points(sim_high)}]" if _known(sim_low) else ""
    return (f"Rerouting: `{r['policy']}` switches to another level after the first segment in {r['rerouted_share']:.1%} "
            f"of its served requests; deciding only at the start (its first decision held), it scores "
            f"{r['ablation_value']:.2%}, so its later decisions are worth {_points(point)} points{interval}"
            + _full_interval(r.get("difference_full"), "included" if "difference_full" in r else None, say_zero=False)
            + f", {beyond} the 95 % interval.")


def _full_interval(full: list[float] | None, sampling: str | None, say_zero: bool = True) -> str:
    """The words after a simulation-only interval: the interval with the test set's sampling
    error too (``say_zero``: and whether it holds 0), or that it is left out."""
    if full is not None:
        text = f"; [{_points(full[1])}, {_points(full[2])}] with the test set's sampling error too"
        return text + (", which holds 0: this test set cannot confirm the gain" if say_zero and full[1] <= 0 <= full[2] else "")
    if sampling == "left out":
        return "; the test set's sampling error is left out (the profile has no per-sample route outcomes)"
    return ""


def plan_verdict(plan, summary: pd.DataFrame, run, bound: dict | None) -> dict:
    """:func:`verdict` for a plan's scenario objective, its deployable and static policies;
    with a bound and a static baseline, also the offline optimum on the baseline's route alone
    (``baseline_bound``: what choosing which requests to run, with hindsight, adds to that level)."""
    from simqos.bound import plan_bound
    from simqos.sim.replication import plan_tallies
    from simqos.policies import Static

    policies = dict(zip(plan.labels, (factory() for factory in plan.policy_factories)))
    deployable = [label for label, p in policies.items() if not p.clairvoyant]
    static = [label for label, p in policies.items() if isinstance(p, Static)]
    tallies = pooled(plan_tallies(plan, run))
    model = plan.model
    validation_accuracy = model.accuracy_by_code("validation") if model.has_accuracy else None
    out = verdict(summary, tallies, plan.scenario.objective, deployable, static, bound, validation_accuracy, model.test_outcomes)
    if "bound" in out and out["baseline"] in static:
        level = policies[out["baseline"]].params.level
        alone = plan_bound(plan, routes=[(level,) * model.n_segments])
        out["baseline_bound"] = _ceiling(alone, out["objective"])
    if "deploy" in out:
        rerouting = plan_rerouting(plan, summary, tallies, out["deploy"], deployable, validation_accuracy)
        if rerouting is not None:
            out["rerouting"] = rerouting
    return out


def validation_scores(accuracy: np.ndarray, tallies: Mapping[str, Tally]) -> pd.DataFrame:
    """Each policy's accuracy-at-deadline and mean accuracy of served requests scored with
    ``accuracy`` (every route's, by route code: the validation split's), from the routes each
    served and met."""
    accuracy = np.nan_to_num(accuracy)
    rows = [{"policy": p, "accuracy_at_deadline": float(t.routes_met @ accuracy) / max(t.requests, 1),
             "mean_accuracy": float(t.routes_served @ accuracy) / max(int(t.routes_served.sum()), 1)} for p, t in tallies.items()]
    return pd.DataFrame(rows)


def plan_rerouting(plan, summary: pd.DataFrame, tallies: Mapping[str, Tally], deployed: str, deployable: list[str],
                   validation_accuracy: np.ndarray | None = None) -> dict | None:
    """What rerouting is worth (module docstring): ``deployed`` if it reroutes, else the best
    of ``deployable`` that does (chosen on ``validation_accuracy`` where given), against its
    start-only ablation served on the same replications. None when no deployable policy reroutes."""
    import dataclasses

    from simqos.sim.execution import simulate
    from simqos.sim.replication import NO_RECORDS
    from simqos.policies import start_only

    kind = plan.scenario.objective.kind
    table = summary.set_index("policy")
    rerouting = [p for p in deployable if table.loc[p, "rerouted_share"] > 0]
    if not rerouting:
        return None
    chosen_on = table if validation_accuracy is None else validation_scores(validation_accuracy, tallies).set_index("policy")
    policy = deployed if deployed in rerouting else max(rerouting, key=lambda p: _objective_value(chosen_on.loc[p], kind))
    factory = plan.policy_factories[plan.labels.index(policy)]
    label = f"{policy} (start only)"
    ablated = dataclasses.replace(plan, policy_factories=(lambda: start_only(factory(), label),), labels=(label,))
    ablation = pooled(simulate(ablated, records=NO_RECORDS).tallies)[label]
    both = {policy: tallies[policy], label: ablation}
    outcomes = plan.model.test_outcomes
    sampling = (lambda p, q: accuracy_sampling_half_width(both[p], both[q], outcomes)) \
        if outcomes is not None and kind == "accuracy_at_deadline" else None
    difference = _difference(both, policy, label, kind, sampling)
    row = summary_row(ablation, percentile_intervals=False)
    return {"policy": policy, "ablation": label, "rerouted_share": float(table.loc[policy, "rerouted_share"]),
            "ablation_value": _objective_value(pd.Series(row), kind), "difference": difference["simulation"],
            **({"difference_full": difference["full"]} if "full" in difference else {})}
