"""Vary one field of a scenario and collect the per-policy summaries: the in-process sweep
behind "nines vs deadline" and "nines vs load" (a dotted path names the field)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pandas as pd

from simqos.sim.execution import simulate
from simqos.sim.plan import build_plan
from simqos.sim.replication import NO_RECORDS, summarize_plan
from simqos.scenario import Scenario, override

__all__ = ["vary"]


def vary(
    scenario: Scenario,
    dotted: str,
    values: Sequence[object],
    progress: Callable[[int, int], None] | None = None,
) -> pd.DataFrame:
    """One summary row per value x policy (see :func:`simqos.sim.tally.summarize`), with the
    value in a column named ``dotted`` (as a sweep's results name it, e.g. ``workload.deadline.ms``)."""
    column = dotted
    frames = []
    for i, value in enumerate(values):
        plan = build_plan(override(scenario, dotted, value))
        frames.append(summarize_plan(plan, simulate(plan, records=NO_RECORDS), percentile_intervals=False).assign(**{column: value}))
        if progress:
            progress(i + 1, len(values))
    return pd.concat(frames, ignore_index=True)
