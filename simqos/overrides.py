"""Vary one field of a scenario and collect the per-policy summaries: the in-process sweep
behind "nines vs deadline" and "nines vs load" (a dotted path names the field)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import pandas as pd

from simqos.engine import NO_RECORDS, build_plan, simulate, summarize_plan
from simqos.errors import SimqosError
from simqos.scenario import Scenario, parse_scenario

__all__ = ["override", "vary"]


def override(scenario: Scenario, dotted: str, value: object) -> Scenario:
    """A copy of ``scenario`` with the field at ``dotted`` (e.g. ``workload.deadline.ms``) set
    to ``value``, validated again; raises SimqosError naming the path if it does not exist."""
    raw = copy.deepcopy(scenario.model_dump(mode="json"))
    node = raw
    *parents, last = dotted.split(".")
    for part in parents:
        if not isinstance(node, dict) or part not in node:
            raise SimqosError(f"{dotted}: {part!r} is not a field here; check the scenario's keys")
        node = node[part]
    if not isinstance(node, dict) or last not in node:
        raise SimqosError(f"{dotted}: {last!r} is not a field here; check the scenario's keys")
    node[last] = value
    return parse_scenario(raw, f"{scenario.name} with {dotted}={value!r}")


def vary(
    scenario: Scenario,
    dotted: str,
    values: Sequence[object],
    progress: Callable[[int, int], None] | None = None,
) -> pd.DataFrame:
    """One summary row per value x policy (see :func:`simqos.tally.summarize`), with the
    value in a column named after the last part of ``dotted``."""
    column = dotted.rsplit(".", 1)[-1]
    frames = []
    for i, value in enumerate(values):
        plan = build_plan(override(scenario, dotted, value))
        frames.append(summarize_plan(plan, simulate(plan, records=NO_RECORDS), percentile_intervals=False).assign(**{column: value}))
        if progress:
            progress(i + 1, len(values))
    return pd.concat(frames, ignore_index=True)
