"""The experiments a run's figures need, run with the run and kept in its folder
(``experiments/``), so that ``simqos report`` only reads and draws: the accuracy frontier (every
policy family at its frontier settings, :func:`frontier_table`) and nines of QoS against the
deadline and against the load (small in-process sweeps around the scenario's own values, when
its deadline is constant and its arrivals have one rate)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from simqos.overrides import vary
from simqos.policies import frontier_settings
from simqos.scenario import Scenario, override
from simqos.sim.execution import simulate
from simqos.sim.plan import build_plan
from simqos.sim.replication import NO_RECORDS, summarize_plan

__all__ = ["DEADLINE_FACTORS", "EXPERIMENTS", "LOAD_FACTORS", "SWEEP_REQUESTS", "frontier_table", "load_field", "read_experiment",
           "run_experiments"]

EXPERIMENTS = "experiments"
"""The folder, inside a results folder, that holds them (one CSV each)."""

DEADLINE_FACTORS = (0.5, 0.75, 1.0, 1.5, 2.0, 3.0)
LOAD_FACTORS = (0.5, 0.75, 1.0, 1.25, 1.5)
SWEEP_REQUESTS = 20_000
"""Requests per replication in the report's sweeps (fewer if the scenario has fewer)."""


def load_field(scenario: Scenario) -> tuple[str, float, str] | None:
    """The field that sets the load (a dotted path), its value and its label; None when the
    arrivals have no single rate to scale."""
    arrival = scenario.workload.arrival
    if arrival.kind == "poisson":
        return "workload.arrival.rate_hz", arrival.rate_hz, "arrival rate (requests/s)"
    if arrival.kind == "periodic":
        return "workload.arrival.fps", arrival.fps, "frame rate (frames/s)"
    return None



def frontier_table(scenario: Scenario) -> pd.DataFrame:
    """One run with every registered policy family at its frontier settings
    (:func:`simqos.policies.frontier_settings`: for the built-ins, static at each level, greedy
    and deadline_aware at several quantiles, lookahead and dp at their defaults, queue_dp when
    the scenario lists it, the clairvoyant reference at several planning margins; any other
    policy as the scenario lists it)."""
    plan = build_plan(scenario)  # imports the scenario's plugins, whose policies then register
    settings = frontier_settings(scenario, plan.model.n_levels)
    policies = [{**s.spec, "label": f"{s.family} {s.knob:g}"} for s in settings]  # distinct at any scale
    plan = build_plan(override(scenario, "policies", policies))
    summary = summarize_plan(plan, simulate(plan, records=NO_RECORDS), percentile_intervals=False)
    summary["family"] = [s.family for s in settings]
    summary["knob"] = [s.knob for s in settings]
    summary["style"] = [s.style for s in settings]
    return summary


def run_experiments(folder: Path, scenario: Scenario, progress: Callable[[str], None] | None = None) -> list[str]:
    """Run the experiments ``scenario``'s figures need, on a copy of at most
    :data:`SWEEP_REQUESTS` requests per replication, and write each into ``folder/experiments/``;
    returns their names."""
    small = override(scenario, "requests", min(scenario.requests, SWEEP_REQUESTS)) if scenario.requests else scenario
    tables = {}
    if progress:
        progress("accuracy frontier")
    tables["frontier"] = frontier_table(small)
    deadline = scenario.workload.deadline
    if deadline.fixed_ms is not None:
        if progress:
            progress("nines vs deadline")
        tables["nines_vs_deadline"] = vary(small, "workload.deadline.ms", [deadline.fixed_ms * f for f in DEADLINE_FACTORS])
    load = load_field(scenario)
    if load is not None:
        if progress:
            progress("nines vs load")
        path, value, _ = load
        tables["nines_vs_load"] = vary(small, path, [value * f for f in LOAD_FACTORS])
    (folder / EXPERIMENTS).mkdir(exist_ok=True)
    for name, table in tables.items():
        table.to_csv(folder / EXPERIMENTS / f"{name}.csv", index=False)
    return list(tables)


def read_experiment(folder: Path, name: str) -> pd.DataFrame | None:
    """Experiment ``name`` of a results folder, or None if the run did not make it."""
    path = folder / EXPERIMENTS / f"{name}.csv"
    return pd.read_csv(path) if path.exists() else None
