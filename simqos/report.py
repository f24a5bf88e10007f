"""``simqos report``: the figures a results folder supports, and a short markdown summary.

Figures (in ``plots/``): the latency CCDF per policy, accuracy vs latency percentile, the
accuracy frontier and nines of QoS vs deadline and vs load (each from the experiments the run
kept in ``experiments/``, :mod:`simqos.experiments`: this module only reads and draws), a
timeline of the device and the requests around a miss (its traces re-drawn from the seed), and
two views of the profile (per layer x level latency and speedup; sum of layers vs whole model).
``report.md`` has the per-policy table and each policy's change against the static baseline.

A sweep folder (``simqos sweep``) gets nines against each field the sweep varies instead.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import yaml

from simqos import plots
from simqos.experiments import load_field, read_experiment
from simqos.sim.inputs import device_inputs
from simqos.sim.plan import build_plan
from simqos.sim.metrics import nines
from simqos.errors import SimqosError
from simqos.outputs import owned
from simqos.bundle import load_profile
from simqos.results import read_results
from simqos.scenario import Scenario, parse_scenario
from simqos.verdict import verdict_lines

__all__ = ["pooled_over_seeds", "rising_with_load", "write_report", "write_sweep_report"]

def _fmt(value: object, pattern: str) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, pattern)


def _nines_text(row: pd.Series) -> str:
    """``2.33 [2.28, 2.39]``; with zero misses only the lower bound, ``≥ 3.10``."""
    if pd.isna(row["nines"]):
        return f"≥ {row['nines_low']:.2f}"
    return f"{row['nines']:.2f} [{row['nines_low']:.2f}, {_fmt(row['nines_high'], '.2f')}]"


def rising_with_load(table: pd.DataFrame, x: str, idle: bool) -> str | None:
    """A note when some policy keeps more nines at the highest load of a load sweep (``table``:
    :func:`simqos.sweep.vary`'s, ``x`` the load column) than at the lowest, beyond both
    intervals — more load, fewer misses, which needs a reason; None otherwise."""
    risen = []
    for policy, t in table.groupby("policy", sort=False):
        t = t.sort_values(x)
        first, last = t.iloc[0], t.iloc[-1]
        if pd.notna(last["nines_low"]) and pd.notna(first["nines_high"]) and last["nines_low"] > first["nines_high"]:
            risen.append(f"`{policy}` ({first['nines']:.2f} → {_nines_text(last)} from {first[x]:g} to {last[x]:g})")
    if not risen:
        return None
    why = ("the profile's idle table (idle.csv) makes a request that finds the device idle run slower — cold caches, "
           "a lower clock — and the busier the device, the fewer requests find it idle" if idle else
           "with no idle slowdown in the profile, look at the queue's rules (a bounded queue or late drops turn load into "
           "drops, not misses) and the device's traces")
    return f"nines rise with load for {', '.join(risen)}: {why}"


def _markdown(scenario: Scenario, summary: pd.DataFrame, notes: list[str], verdict: dict | None, bound: dict | None) -> str:
    differences = (verdict or {}).get("differences", {})
    full = (verdict or {}).get("differences_full", {})
    baseline = (verdict or {}).get("baseline")
    objective = scenario.objective.kind
    unit = "accuracy-at-deadline" if objective == "accuracy_at_deadline" else "share met"
    lines = [
        f"# {scenario.name}",
        "",
        f"{int(summary['requests'].iloc[0])} requests per policy after warm-up, {scenario.replications} replication{'s' if scenario.replications != 1 else ''}, "
        f"seed {scenario.seed}, profile `{scenario.profile.name}`; objective: {objective.replace('_', '-')}.",
        f"The device: {scenario.device.describe()} (a speed factor of 1 runs as profiled).",
        "",
        *verdict_lines(verdict),
        "",
        "| policy | engine | nines [95 % CI] | miss % | p50 ms | p99 ms [CI] | p99.9 ms | accuracy [CI] | at deadline | "
        f"Δ {unit} vs {baseline or 'baseline'}, points [95 % CI{'; with the test set' if full else ''}] |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [_policy_row(row, differences.get(row["policy"]), full.get(row["policy"]), row["policy"] == baseline)
              for _, row in summary.iterrows()]
    if bound is not None:
        lines.append(_bound_row(bound))
    lines += [
        "",
        "Intervals are 95 %. Nines: Wilson on the effective sample size (requests / design effect "
        "`miss_design_effect`, the clustering of misses measured by batch means); p99: bootstrap over batches; "
        "accuracy: the routes' test-set intervals and the simulation's, in quadrature. Δ: the paired difference "
        "from the baseline over the same requests (common random numbers), with a batch-means interval. The offline "
        "optimum knows the whole realised run (`simqos.bound`): no policy can beat it. Per-replication rows: "
        "`replications.csv`; how the intervals are made: scenarios/README.md.",
    ]
    lines += [""] + [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


def _policy_row(row: pd.Series, d: list | None, full: list | None, is_baseline: bool) -> str:
    """A policy's row of the report's table; ``d`` (``full``): its difference from the baseline,
    the simulation's interval (with the test set's sampling)."""
    p99 = f"{row['p99_ms']:.2f} [{_fmt(row.get('p99_ms_low'), '.2f')}, {_fmt(row.get('p99_ms_high'), '.2f')}]"
    accuracy = "—" if pd.isna(row["mean_accuracy"]) else (
        f"{row['mean_accuracy']:.2%} [{row['mean_accuracy_low']:.1%}, {row['mean_accuracy_high']:.1%}]"
    )
    delta = "baseline" if is_baseline else ("—" if d is None else
             f"{100 * d[0]:+.2f}" + (f" [{100 * d[1]:+.2f}, {100 * d[2]:+.2f}]" if d[1] is not None else "")
             + (f"; [{100 * full[1]:+.2f}, {100 * full[2]:+.2f}]" if full is not None else ""))
    return (f"| {row['policy']} | {row.get('engine', '—')} | {_nines_text(row)} | {100 * row['miss_rate']:.3f} | "
            f"{row['p50_ms']:.2f} | {p99} | {row['p99.9_ms']:.2f} | {accuracy} | "
            f"{_fmt(row['accuracy_at_deadline'], '.2%')} | {delta} |")


def _bound_row(bound: dict) -> str:
    """The offline optimum's row of the report's table."""
    met = bound["met"] / bound["requests"]
    return (f"| offline optimum ({'exact' if bound['exact'] else 'upper bound'}) | — | "
            f"{_fmt(-math.log10(1 - met), '.2f') + ' (at most)' if met < 1 else '∞ (every request can meet it)'} | "
            f"{100 * (1 - met):.3f} (at least) | — | — | — | — | "
            f"{_fmt(bound['accuracy_at_deadline'], '.2%')} (at most) | — |")


TIMELINE_WINDOW_S = 1.0
TIMELINE_REQUESTS = 50_000
"""The timeline looks for its moment among replication 0's first requests (its records are read
no further)."""


def _timeline(scenario: Scenario, records: pd.DataFrame, deploy: str | None):
    """Replication 0 under the policy the verdict deploys (if it is not static; else
    deadline_aware, else the first policy that is not static, else the first), around its first
    rerouted request (the mechanism), else its first miss, among its first
    :data:`TIMELINE_REQUESTS`; traces re-drawn from the seed."""
    plan = build_plan(scenario)
    rep0 = records[(records["replication"] == 0) & ~records["warmup"]]
    seen_s = float(records.loc[records["replication"] == 0, "arrival_s"].max())
    device = device_inputs(plan, 0, seen_s)  # the traces the run saw, as far as the records go
    dynamic = [p for p in plan.labels if not p.startswith("static")]
    policy = deploy if deploy in dynamic else next((p for p in dynamic if p.startswith("deadline_aware")),
                                                   dynamic[0] if dynamic else plan.labels[0])
    mine = rep0[rep0["policy"] == policy]
    picked = mine[mine["reroutes"] > 0]
    if picked.empty:
        picked = mine[mine["outcome"] != "met"]
    centre = float(picked["arrival_s"].iloc[0]) if len(picked) else float(rep0["arrival_s"].iloc[0])
    deadline = scenario.workload.deadline
    return plots.timeline(
        rep0,
        policy,
        (device.speed.trace.times_s, device.speed.trace.values),
        (device.resident.times_s, device.resident.values),
        max(float(rep0["arrival_s"].min()), centre - TIMELINE_WINDOW_S / 2),  # after warm-up: no empty half
        TIMELINE_WINDOW_S,
        deadline.fixed_ms,
    )


def write_report(folder: Path, progress: Callable[[str], None] | None = None) -> list[str]:
    """Write ``plots/*.png`` and ``report.md`` into a results folder (of ``simqos run``, or of
    ``simqos sweep``: see :func:`write_sweep_report`); returns the figure names."""
    folder = Path(folder)
    if owned(folder) == "sweep":
        return write_sweep_report(folder)
    # The timeline's records: replication 0's first requests (the CCDF has every request).
    summary_json, summary, records = read_results(folder, replication=0, rows=TIMELINE_REQUESTS)
    try:
        scenario = parse_scenario(yaml.safe_load((folder / "scenario.yaml").read_text()), str(folder / "scenario.yaml"))
    except FileNotFoundError:
        raise SimqosError(f"{folder}: not a results folder (no scenario.yaml)") from None
    (folder / "plots").mkdir(exist_ok=True)
    figures: dict[str, object] = {}
    notes: list[str] = []
    deadline = scenario.workload.deadline
    if (folder / "latency_ccdf.csv").exists():
        figures["latency_ccdf"] = plots.latency_ccdf(pd.read_csv(folder / "latency_ccdf.csv"),
                                                     deadline.fixed_ms)
    figures["accuracy_vs_percentile"] = plots.accuracy_vs_percentile(summary)
    if progress:
        progress("figures")
    _experiment_figures(folder, scenario, summary_json.get("bound"), figures, notes)
    if records is not None:
        figures["timeline"] = _timeline(scenario, records, (summary_json.get("verdict") or {}).get("deploy"))
    else:
        notes.append("timeline: skipped, the run kept no records (outputs.records: none)")
    profile = load_profile(scenario.profile)
    figures["profile_layers"] = plots.profile_layers(profile.layers, profile.kernels, profile.layer_names)
    figures["profile_gap"] = plots.profile_gap(profile.end_to_end_gap(), profile.dense_end_to_end_ms)
    for name, fig in figures.items():
        plots.save(fig, folder / "plots" / f"{name}.png")
    notes.insert(0, "figures: " + ", ".join(f"`plots/{name}.png`" for name in figures))
    notes[:0] = [f"**warning**: {w}" for w in summary_json.get("warnings", [])]
    (folder / "report.md").write_text(_markdown(scenario, summary, notes, summary_json.get("verdict"), summary_json.get("bound")))
    return list(figures)


def _experiment_figures(folder: Path, scenario: Scenario, bound: dict | None, figures: dict, notes: list[str]) -> None:
    """The figures drawn from the run's experiments/ (the accuracy frontier, nines against the
    deadline and the load) into ``figures``, or into ``notes`` why one is not drawn."""
    missing = ("not in this folder: its run had outputs.plots: false, so it ran none of the experiments/ the figure needs; "
               "run the scenario with plots: true to draw it" if not scenario.outputs.plots else
               "not in this folder: its run kept no experiments/ (an older simqos); run the scenario again to draw it")
    if (table := read_experiment(folder, "frontier")) is not None:
        figures["accuracy_frontier"] = plots.accuracy_frontier(table, bound)
    else:
        notes.append(f"accuracy frontier: {missing}")
    deadline = scenario.workload.deadline
    if deadline.fixed_ms is None:
        notes.append("nines vs deadline: skipped, the scenario's deadline is not constant")
    elif (table := read_experiment(folder, "nines_vs_deadline")) is not None:
        column = "workload.deadline.ms" if "workload.deadline.ms" in table else "ms"  # "ms": a run of an older simqos
        figures["nines_vs_deadline"] = plots.nines_vs(table, column, "deadline (ms)", "Nines of QoS vs deadline", deadline.ms)
    else:
        notes.append(f"nines vs deadline: {missing}")
    load = load_field(scenario)
    if load is None:
        notes.append("nines vs load: skipped, the arrival process has no single rate to scale")
    elif (table := read_experiment(folder, "nines_vs_load")) is not None:
        path, value, label = load
        column = path if path in table else path.rsplit(".", 1)[-1]  # the last part: a run of an older simqos
        rising = rising_with_load(table, column, idle=len(load_profile(scenario.profile).idle_factors()[0]) > 1)
        figures["nines_vs_load"] = plots.nines_vs(table, column, label, "Nines of QoS vs load", value, note=rising)
        if rising:
            notes.append(rising)
    else:
        notes.append(f"nines vs load: {missing}")


def pooled_over_seeds(results: pd.DataFrame, fields: list[str]) -> pd.DataFrame:
    """A sweep's rows pooled over seeds: per ``fields`` x policy, the requests and misses
    summed and the nines recomputed, with the largest design effect of the pooled cells; the
    accuracy-at-deadline weighted by requests (NaN where a cell has none: no accuracy)."""
    rows = []
    for key, g in results.groupby([*fields, "policy"], sort=False):
        n = int(g["requests"].sum())
        misses = n - int(g["met"].sum())
        point, low, high = nines(misses, n, design_effect=float(g["miss_design_effect"].max()) if misses else 1.0)
        at_deadline = g["accuracy_at_deadline"] if "accuracy_at_deadline" in g else pd.Series(math.nan, index=g.index)
        rows.append({**dict(zip([*fields, "policy"], key)), "requests": n, "miss_rate": misses / n,
                     "nines": point, "nines_low": low, "nines_high": high, "seeds": len(g),
                     "accuracy_at_deadline": float((at_deadline * g["requests"]).sum() / n) if at_deadline.notna().all() else math.nan})
    return pd.DataFrame(rows)


def write_sweep_report(folder: Path) -> list[str]:
    """A sweep folder's figures: nines per policy against each field the sweep varies (seeds
    pooled), one panel per value of the next varied field; and ``report.md`` with the table."""
    design = json.loads((folder / "design.json").read_text())
    try:
        results = pd.read_csv(folder / "results.csv")
    except (FileNotFoundError, pd.errors.EmptyDataError):
        raise SimqosError(f"{folder}: the sweep has no results.csv yet; run simqos sweep to finish it") from None
    keys = list(dict.fromkeys(k for cell in design["cells"] for k in cell if k != "seed"))
    columns = [f"scenario.{k}" if f"scenario.{k}" in results else k for k in keys]
    varied = [c for c in columns if c in results and results[c].nunique() > 1]
    table = pooled_over_seeds(results, varied)
    (folder / "plots").mkdir(exist_ok=True)
    names = []
    for x in varied:
        facet = next((f for f in varied if f != x), None)
        name = "nines_vs_" + x.replace(".", "_")
        plots.save(plots.nines_facets(table, x, facet, f"{design['base']}: nines of QoS vs {plots.field_label(x)}"),
                   folder / "plots" / f"{name}.png")
        names.append(name)
    lines = [
        f"# sweep of {design['base']}",
        "",
        f"{len(design['cells'])} cells ({results['cell'].nunique()} finished), seeds pooled per setting; "
        "nines with their 95 % interval (Wilson on the effective sample size); accuracy-at-deadline (a miss counts as "
        "wrong) weighted by requests.",
        "",
        "| " + " | ".join([*varied, "policy", "nines [95 % CI]", "miss %", "at deadline", "requests"]) + " |",
        "|" + "---|" * (len(varied) + 5),
    ]
    for _, row in table.iterrows():
        cells = [f"{row[k]:g}" if isinstance(row[k], float) else str(row[k]) for k in varied]
        lines.append("| " + " | ".join([*cells, row["policy"], _nines_text(row), f"{100 * row['miss_rate']:.3f}",
                                        _fmt(row["accuracy_at_deadline"], ".2%"), f"{row['requests']:,}"]) + " |")
    lines += ["", "- figures: " + ", ".join(f"`plots/{n}.png`" for n in names)]
    (folder / "report.md").write_text("\n".join(lines) + "\n")
    return names
