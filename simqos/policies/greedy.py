"""``greedy``: decides once, at the start, the least sparse level predicted to fit."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from simqos.policies.base import NO_PARAMS, Policy, Setting
from simqos.policies.decisions import held_level, least_sparse_fitting
from simqos.policies.registry import register_policy
from simqos.sim.serving import Decision, decide_jit

__all__ = ["QUANTILES", "Greedy", "greedy_decide"]

QUANTILES = (0.3, 0.5, 0.7, 0.9, 0.99)
"""The quantiles the accuracy frontier runs greedy and deadline_aware at."""


@decide_jit
def greedy_decide(state: Decision, params: np.ndarray, table: np.ndarray) -> int:
    """At the start, the least sparse resident level whose predicted remaining work (``table``)
    fits the time left; then that level (or, if it is evicted, the least sparse resident one;
    when nothing is resident, the sparsest, waited for)."""
    last = state.n_levels - 1
    if state.current_level >= 0:
        return held_level(state)
    floor = min(state.min_resident_level, last)
    return least_sparse_fitting(table, 0, floor, state.deadline_s - state.now_s, state.speed, state.n_levels)


@register_policy("greedy")
class Greedy(Policy):
    """At the start: the least sparse resident level whose predicted latency (the ``quantile``
    of each layer's samples, at the current speed) fits the time left; then no rerouting
    (unless that level is evicted, when it moves to the least sparse resident one)."""

    class Params(Policy.Params):
        quantile: float = Field(default=0.5, gt=0, lt=1)

    decide = staticmethod(greedy_decide)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return NO_PARAMS, self.model.remaining_quantile_ms(self.params.quantile)

    @classmethod
    def frontier(cls, scenario, n_levels: int) -> list[Setting]:
        """A line through :data:`QUANTILES`."""
        return [Setting("greedy", q, {"kind": "greedy", "quantile": q}) for q in QUANTILES]
