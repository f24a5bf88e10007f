"""What the planning policies plan for, from the scenario: each route's value, the typical
deadline and how far ahead to look."""

from __future__ import annotations

from simqos.policies.planning.device_model import SpeedModel
from simqos.sim.service import ServiceModel

__all__ = ["longest_deadline_s", "route_values", "typical_deadline_s"]


def route_values(scenario, model: ServiceModel) -> dict[tuple[int, ...], float]:
    """What a full route is worth to the dp tables: its decision accuracy (validation split), or
    1 for ``objective: {kind: nines}`` or a profile without accuracy (meeting the deadline is all)."""
    nines = scenario.objective.kind == "nines"
    return {r: (1.0 if nines or not model.has_accuracy else model.decision_accuracy[r]) for r in model.routes_by_preference()}


def typical_deadline_s(scenario) -> float:
    """The median relative deadline (s)."""
    return scenario.workload.deadline.median_ms / 1e3


def longest_deadline_s(scenario, model: ServiceModel, speed: SpeedModel, requests: int) -> float:
    """How far ahead a policy's tables look (s): the longest relative deadline the scenario's
    requests get, but no longer than a hundred times what ``requests`` requests of the most work
    a request can have take at the slowest speed (long past that every deadline is as good as
    met; a deadline slipped into years would otherwise make tables of the process over years)."""
    longest = scenario.workload.deadline.longest_ms
    most_ms = float(model.remaining_quantile_ms(1.0)[:, 0].max() * model.idle_factor.max())
    slowest = 1.0 if speed.persistent else min(speed.speeds)  # a persistent model is at speed 1, scaled when used
    return min(longest, 100 * requests * most_ms / slowest) / 1e3
