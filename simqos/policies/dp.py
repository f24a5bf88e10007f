"""``dp``: the per-request optimum over the device's speed process, by dynamic programming."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from pydantic import Field

from simqos.policies.base import Policy, Setting, offsets
from simqos.policies.decisions import speed_state
from simqos.policies.planning.device_model import speed_model
from simqos.policies.planning.dp import solve
from simqos.policies.planning.goals import longest_deadline_s, route_values
from simqos.policies.registry import register_policy
from simqos.sim.serving import Decision, decide_jit, node_index

__all__ = ["Dp", "dp_decide"]


class Header(NamedTuple):
    """``params`` of :func:`dp_decide`, first: the speed states, the table's time grid and step
    (s), segments, persistent (0/1), count queue (0/1), the sparsest level's median work
    (profiled ms), route prefixes; then each state's speed and each measured idle gap's factors
    (gap x level)."""

    n_states: float
    grid: float
    step_s: float
    segments: float
    persistent: float
    count_queue: float
    sparsest_median_ms: float
    n_nodes: float


AT = offsets(Header)
HEADER_SIZE = len(Header._fields)


@decide_jit
def dp_decide(state: Decision, params: np.ndarray, table: np.ndarray) -> int:
    """The per-request optimum (:mod:`simqos.policies.planning.dp`, :class:`Dp`): one lookup in
    the table of best levels by idle gap, resident floor, route so far, speed state and time
    left."""
    n_states, grid, step = int(params[AT.n_states]), int(params[AT.grid]), params[AT.step_s]
    persistent, count_queue = params[AT.persistent], params[AT.count_queue]
    sparsest_ms, n_nodes = params[AT.sparsest_median_ms], int(params[AT.n_nodes])
    n_levels = state.n_levels
    floor = min(state.min_resident_level, n_levels - 1)
    if floor == n_levels - 1:
        return floor  # one level left to choose
    s = speed_state(params, HEADER_SIZE, n_states, state.speed)
    gaps_at = HEADER_SIZE + n_states
    n_gaps = (len(params) - gaps_at) // n_levels
    gap, distance = 0, math.inf
    for g in range(n_gaps - 1, -1, -1):  # the measured idle gap whose factors are nearest this request's
        d = 0.0
        for k in range(n_levels):
            d += abs(params[gaps_at + g * n_levels + k] - state.idle_factor[k])
            if d >= distance:
                break
        if d < distance:
            gap, distance = g, d
            if d == 0.0:  # idle past the longest gap (from the last), or busy: exact
                break
    effective = state.deadline_s
    if count_queue != 0.0:
        sparsest_s = sparsest_ms / state.speed / 1e3
        for k in range(len(state.queued_deadlines_s)):
            effective = min(effective, state.queued_deadlines_s[k] - (k + 1) * sparsest_s)
    tau = (effective - state.now_s) * (state.speed if persistent != 0.0 else 1.0)  # a persistent model is at speed 1
    if tau < 0.0:
        return n_levels - 1  # the deadline is lost: free the device soonest
    g = int(min(tau / step, grid - 1.0))  # clamped before the cast (a huge float does not fit an int64)
    node = node_index(n_levels, state.segment, state.route_code)
    choices = table.view(np.uint8)  # the levels are bytes, eight to a float64 (simqos.policies.planning.dp.solve)
    return int(choices[((gap * n_levels + floor) * n_nodes + node) * n_states + s, g])


@register_policy("dp")
class Dp(Policy):
    """The per-request optimum for the scenario's speed *process*, by dynamic programming
    (:mod:`simqos.policies.planning.dp`): a table, computed once, of the best level at every reroute point for
    each route so far, speed state, time left (``grid`` steps), resident floor and idle gap;
    each decision is one lookup. It maximises the expected accuracy-at-deadline of the request
    (for ``objective: {kind: nines}``, or a profile without accuracy, the chance of meeting the
    deadline) over ``samples`` paths of the speed process and ``quantiles`` points of each
    segment's work. It leaves the queue out: with ``count_queue`` the time budget also keeps
    every queued request able to meet its deadline at the sparsest level's median work, as
    ``deadline_aware``'s does. The speed process is the scenario's (``markov``, ``periodic``
    as a two-state chain, ``constant``); for a ``trace`` the speed observed now is taken to
    persist."""

    class Params(Policy.Params):
        grid: int = Field(default=96, ge=4, le=2000)
        samples: int = Field(default=256, ge=16, le=20_000)
        quantiles: int = Field(default=16, ge=1, le=200)
        count_queue: bool = True

    decide = staticmethod(dp_decide)

    def label(self) -> str:
        return "dp" + ("" if self.params.count_queue else " (no queue)")

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        p, model = self.params, self.model
        speed = speed_model(self.scenario.device.speed)
        values = route_values(self.scenario, model)
        table, step = _solved(model, speed, values, longest_deadline_s(self.scenario, model, speed, 2), p.grid, p.samples, p.quantiles)
        header = Header(n_states=len(speed.speeds), grid=p.grid, step_s=step, segments=model.n_segments,
                        persistent=speed.persistent, count_queue=p.count_queue, sparsest_median_ms=model.sparsest_median_ms,
                        n_nodes=node_index(model.n_levels, model.n_segments + 1, 0))
        factors = [model.idle_factors_at(float(gap)) for gap in model.idle_ms]
        return np.concatenate([np.array(header, dtype=float), speed.speeds, np.ravel(factors)]), table

    @classmethod
    def frontier(cls, scenario, n_levels: int) -> list[Setting]:
        """A point, at its default parameters."""
        return [Setting("dp", 0.0, {"kind": "dp"})]


_SOLVED: dict[tuple, tuple[np.ndarray, float]] = {}


def _solved(model, speed, values, horizon_s, grid, samples, quantiles) -> tuple[np.ndarray, float]:
    """:func:`simqos.policies.planning.dp.solve`, once per model (by its work), device and parameters: every
    replication, and every run of a sweep that changes neither, reuses it."""
    key = (model.work_digest, tuple(speed.speeds), tuple(speed.mean_dwell_s), speed.jumps.tobytes(), speed.persistent,
           tuple(sorted(values.items())), horizon_s, grid, samples, quantiles)
    if key not in _SOLVED:
        while len(_SOLVED) >= 16:
            del _SOLVED[next(iter(_SOLVED))]
        _SOLVED[key] = solve(model, speed, values, horizon_s, grid, samples, quantiles)
    return _SOLVED[key]
