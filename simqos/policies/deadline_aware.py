"""``deadline_aware``: the paper's rerouting, the least sparse level predicted to fit, at every
reroute point."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from pydantic import Field

from simqos.policies.base import Policy, Setting, offsets
from simqos.policies.decisions import least_sparse_fitting
from simqos.policies.greedy import QUANTILES
from simqos.policies.registry import register_policy
from simqos.sim.serving import Decision, decide_jit

__all__ = ["DeadlineAware", "deadline_aware_decide"]


class Header(NamedTuple):
    """``params`` of :func:`deadline_aware_decide`."""

    slack_ms: float
    back_up: float
    count_queue: float


AT = offsets(Header)


@decide_jit
def deadline_aware_decide(state: Decision, params: np.ndarray, table: np.ndarray) -> int:
    """The paper's rerouting: the least sparse resident level whose predicted remaining work
    (``table``) fits the deadline minus ``slack_ms``. ``back_up``: may go back to a less sparse
    level; ``count_queue``: the budget also keeps every queued request able to meet its deadline
    at the sparsest level (``params``: :class:`Header`)."""
    n = state.n_levels
    effective = state.deadline_s - params[AT.slack_ms] / 1e3
    if params[AT.count_queue] != 0.0:
        sparsest_s = table[n - 1, 0] / state.speed / 1e3
        for k in range(len(state.queued_deadlines_s)):
            effective = min(effective, state.queued_deadlines_s[k] - (k + 1) * sparsest_s)
    floor = state.min_resident_level
    if state.current_level >= 0 and params[AT.back_up] == 0.0:
        floor = max(floor, state.current_level)
    floor = min(floor, n - 1)
    return least_sparse_fitting(table, state.segment, floor, effective - state.now_s, state.speed, n)


@register_policy("deadline_aware")
class DeadlineAware(Policy):
    """The paper's rerouting: at the start and at each reroute point, predict the remaining
    time at each level (the ``quantile`` of each remaining layer's samples at the current
    speed) and run the least sparse resident level that still meets the deadline minus
    ``slack_ms``; the sparsest if none does. Without ``back_up`` a request never returns to a
    less sparse level. With ``count_queue`` the budget also keeps the queued requests able to
    meet their deadlines on the sparsest route."""

    class Params(Policy.Params):
        quantile: float = Field(default=0.9, gt=0, lt=1)
        slack_ms: float = Field(default=0.0, ge=0)
        back_up: bool = False
        count_queue: bool = False

    decide = staticmethod(deadline_aware_decide)

    def label(self) -> str:
        p = self.params
        extras = [f"q{p.quantile:g}"] + (["back-up"] if p.back_up else []) + (["queue"] if p.count_queue else [])
        return f"deadline_aware ({', '.join(extras)})"

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        p = self.params
        header = Header(slack_ms=p.slack_ms, back_up=p.back_up, count_queue=p.count_queue)
        return np.array(header, dtype=float), self.model.remaining_quantile_ms(p.quantile)

    @classmethod
    def frontier(cls, scenario, n_levels: int) -> list[Setting]:
        """A line through :data:`~simqos.policies.greedy.QUANTILES`, with the scenario's other
        parameters (its first listing's)."""
        listed = next((p.params for p in scenario.policies if p.kind == "deadline_aware"), {})
        others = {k: v for k, v in listed.items() if k != "quantile"}
        return [Setting("deadline_aware", q, {"kind": "deadline_aware", **others, "quantile": q}) for q in QUANTILES]
