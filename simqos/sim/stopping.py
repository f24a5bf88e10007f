"""Run a scenario's replications, and with a stopping rule (``precision:``) keep adding
replications until every policy's nines interval is narrow enough or the budget is spent.

Replication ``r``'s inputs depend only on the seed and ``r``
(:func:`simqos.sim.inputs.sample_inputs`), so a run that stopped after R replications holds exactly
the records of a fixed run of R replications: the stopping rule decides how many, never what
they are.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from simqos.sim.execution import simulate
from simqos.sim.plan import Plan
from simqos.sim.replication import KeptRecords, Run, summarize_plan
from simqos.scenario import override

__all__ = ["Outcome", "nines_half_width", "run_to_precision"]


@dataclass(frozen=True)
class Outcome:
    """A finished run: the plan whose scenario says how many replications ran, what they
    produced (tallies, and records when kept), the pooled summary, and why it stopped
    (``fixed``, ``precise`` or ``budget``)."""

    plan: Plan
    run: Run
    summary: pd.DataFrame
    stopped: str

    @property
    def records(self) -> pd.DataFrame | None:
        """The records, when the run kept them."""
        return self.run.records

    def stopping(self) -> dict:
        """What the stopping rule did, for the results' provenance."""
        rule = self.plan.scenario.precision
        widths = nines_half_width(self.summary)
        return {
            "rule": None if rule is None else rule.model_dump(),
            "stopped": self.stopped,
            "replications": self.plan.scenario.replications,
            "widest_nines_half_width": None if widths.isna().any() else float(widths.max()),
        }


def nines_half_width(summary: pd.DataFrame) -> pd.Series:
    """Per policy, the wider side of its nines interval (NaN when unbounded: zero misses)."""
    point = summary["nines"].astype(float)
    return pd.concat([point - summary["nines_low"], summary["nines_high"].astype(float) - point], axis=1).max(axis=1, skipna=False)


def run_to_precision(
    plan: Plan,
    progress: Callable[[int], None] | None = None,
    workers: int = 1,
    records: KeptRecords = KeptRecords(),
    executor: str = "local",
    scheduler: str | None = None,
    checkpoints: Path | None = None,
) -> Outcome:
    """The scenario's replications; then, under a ``precision`` rule, rounds of as many more
    until :func:`nines_half_width` is at most the target for every policy or
    ``max_replications`` have run. ``progress(done, most)`` counts replications."""
    scenario = plan.scenario
    rule = scenario.precision
    step = scenario.replications
    most = step if rule is None else rule.max_replications
    runs: list[Run] = []
    done = 0
    while True:
        batch = range(done, min(done + step, most))
        runs.append(simulate(plan, progress, workers, batch, records, executor, scheduler, checkpoints))
        done = batch.stop
        run = Run({label: [t for r in runs for t in r.tallies[label]] for label in plan.labels},
                  None if runs[0].records is None else pd.concat([r.records for r in runs], ignore_index=True),
                  sum(r.simulated for r in runs))
        summary = summarize_plan(plan, run)
        if rule is None:
            stopped = "fixed"
            break
        if (nines_half_width(summary) <= rule.nines_half_width).all():
            stopped = "precise"
            break
        if done >= most:
            stopped = "budget"
            break
    if done != scenario.replications:
        plan = dataclasses.replace(plan, scenario=override(scenario, "replications", done))
    return Outcome(plan, run, summary, stopped)
