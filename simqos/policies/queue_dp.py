"""``queue_dp``: the queue-aware stationary optimum over the device's speed process, by value
iteration."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from pydantic import Field

from simqos.errors import SimqosError
from simqos.policies.base import Policy, Setting, offsets
from simqos.policies.decisions import speed_state
from simqos.policies.planning.device_model import speed_model
from simqos.policies.planning.goals import longest_deadline_s, route_values, typical_deadline_s
from simqos.policies.planning.queue_dp import QueueModel, solve_queue
from simqos.policies.registry import register_policy
from simqos.sim.serving import Decision, Rules, decide_jit, node_index, require_modelled
from simqos.sim.workload import planning_rate_hz

__all__ = ["QueueDp", "queue_dp_decide"]


class Header(NamedTuple):
    """``params`` of :func:`queue_dp_decide`, first: the speed states, fine grid steps, fine step
    (s), fine steps per coarse step, coarse steps, most requests waiting counted, monotone route
    prefixes; then each state's speed and, by :func:`~simqos.sim.serving.node_index`, each route
    prefix's row (-1: not monotone)."""

    n_states: float
    grid: float
    step_s: float
    ratio: float
    coarse: float
    n_max: float
    n_nodes: float


AT = offsets(Header)
HEADER_SIZE = len(Header._fields)
MODELLED_RULES = ("capacity", "late_drop", "sparsest_median_ms", "idle_ms", "idle_factor", "slice_ms", "wake_wait")
"""The serving rules (:class:`~simqos.sim.serving.Rules`) the value iteration knows
(:mod:`simqos.policies.planning.queue_dp`): the queue's capacity, the late rule and the idle
slowdown it models; time-slicing and its wake wait it leaves out, as every policy does (no policy is told of it,
:mod:`simqos.sim.timeslice`). It refuses to plan under any other rule in force."""


@decide_jit
def queue_dp_decide(state: Decision, params: np.ndarray, table: np.ndarray) -> int:
    """The queue-aware optimum (:mod:`simqos.policies.planning.queue_dp`, :class:`QueueDp`): one
    lookup by resident floor, whether the request found the device idle, route so far, speed
    state, time left, the number waiting and the time left of the first of them."""
    n_states, grid, step = int(params[AT.n_states]), int(params[AT.grid]), params[AT.step_s]
    ratio, coarse, n_max, n_nodes = int(params[AT.ratio]), int(params[AT.coarse]), int(params[AT.n_max]), int(params[AT.n_nodes])
    n_levels = state.n_levels
    floor = max(state.min_resident_level, state.current_level)  # never back to a less sparse level
    floor = min(floor, n_levels - 1)
    left = (state.deadline_s - state.now_s) / step
    if floor == n_levels - 1 or left < 0.0:
        return n_levels - 1  # one level left, or the deadline is lost: free the device soonest
    s = speed_state(params, HEADER_SIZE, n_states, state.speed)
    node = int(params[HEADER_SIZE + n_states + node_index(n_levels, state.segment, state.route_code)])
    t0 = int(min(left, grid - 1.0))  # clamped before the cast (a huge float does not fit an int64)
    waiting = min(len(state.queued_deadlines_s), n_max)
    column = 0
    if waiting > 0:
        first = (state.queued_deadlines_s[0] - state.now_s) / (step * ratio)
        c = coarse if first < 0.0 else int(min(first, coarse - 1.0))
        column = 1 + (waiting - 1) * (coarse + 1) + c
    cold = 0
    for k in range(n_levels):
        if state.idle_factor[k] != 1.0:  # it found the device idle
            cold = 1
    row = (((floor * 2 + cold) * n_nodes + node) * n_states + s) * (grid + 1) + t0
    return int(table.view(np.uint8)[row, column])


@register_policy("queue_dp")
class QueueDp(Policy):
    """The queue-aware optimum for the scenario's speed *process* (:mod:`simqos.policies.planning.queue_dp`): a
    stationary policy, by relative value iteration, that maximises the long-run mean
    accuracy-at-deadline per request (for ``objective: {kind: nines}``, or a profile without
    accuracy, the share of deadlines met) over the request in service (route so far, time left
    on ``grid`` steps), the queue behind it (up to ``max_queue`` waiting, and the first one's time
    left on ``queue_grid`` steps), the speed state, the resident floor and whether the request found
    the device idle (a cold start, slower by the profile's idle factors), with arrivals taken as
    Poisson at the workload's mean rate, over a horizon of about ``1 / (1 - discount)``
    requests. Routes never return to a less sparse level. Each decision is one lookup; the
    table is solved once per scenario (seconds to a minute: on iot.yaml about 45 s). Needs a speed process (``markov``, ``periodic`` as a two-state chain,
    ``constant``), not a replayed trace."""

    class Params(Policy.Params):
        grid: int = Field(default=48, ge=4, le=400)
        queue_grid: int = Field(default=12, ge=1, le=100)
        max_queue: int = Field(default=6, ge=0, le=32)
        samples: int = Field(default=256, ge=16, le=20_000)
        quantiles: int = Field(default=8, ge=1, le=200)
        discount: float = Field(default=0.9, gt=0, lt=1)

    decide = staticmethod(queue_dp_decide)

    def check(self) -> None:
        if speed_model(self.scenario.device.speed).persistent:
            raise SimqosError("queue_dp plans over the device's speed process, and device.speed is a replayed trace; use "
                              "lookahead or dp there (they take the observed speed to persist)")
        require_modelled(Rules.of(self.scenario, self.model), MODELLED_RULES, "queue_dp",
                         "its table would plan for a device that serves otherwise; use dp or lookahead here, or switch the rule off")

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        self.check()
        p, model, scenario = self.params, self.model, self.scenario
        speed = speed_model(scenario.device.speed)
        values = route_values(scenario, model)
        rules = Rules.of(scenario, model)
        capacity, late_drop = rules.capacity, rules.late_drop
        key = (model.work_digest, tuple(speed.speeds), tuple(speed.mean_dwell_s), speed.jumps.tobytes(), tuple(sorted(values.items())),
               planning_rate_hz(scenario.workload.arrival, "queue_dp"), typical_deadline_s(scenario), capacity, late_drop, p)
        if key not in _SOLVED_QUEUE:
            horizon = longest_deadline_s(scenario, model, speed, 2)
            queue_model = QueueModel(key[5], min(key[6], horizon), horizon, capacity, late_drop)
            _SOLVED_QUEUE.clear()  # one at a time: a table is tens of MB
            _SOLVED_QUEUE[key] = solve_queue(model, speed, queue_model, values, p.grid, p.queue_grid, p.max_queue, p.samples,
                                             p.quantiles, p.discount)
        solved = _SOLVED_QUEUE[key]
        table = solved["table"]
        n_levels, n_cold, n_nodes, n_states, n_fine, n_columns = table.shape
        width = -(-n_columns // 8) * 8
        packed = np.zeros((n_levels * n_cold * n_nodes * n_states * n_fine, width), dtype=np.uint8)
        packed[:, :n_columns] = table.reshape(-1, n_columns)
        header = Header(n_states=n_states, grid=n_fine - 1, step_s=solved["step_s"], ratio=solved["ratio"],
                        coarse=solved["coarse"], n_max=solved["n_max"], n_nodes=n_nodes)
        return np.concatenate([np.array(header, dtype=float), speed.speeds, solved["node_of"]]), packed.view(np.float64)

    @classmethod
    def frontier(cls, scenario, n_levels: int) -> list[Setting]:
        """A point, as the scenario lists it (its first listing), and only then: its table
        takes up to a minute to solve."""
        listed = [p for p in scenario.policies if p.kind == "queue_dp"]
        return [Setting("queue_dp", 0.0, {"kind": "queue_dp", **p.params}) for p in listed[:1]]


_SOLVED_QUEUE: dict[tuple, dict] = {}
