"""``lookahead``: model-predictive rerouting over the device's speed process and the queue."""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np
from pydantic import Field

from simqos.policies.base import Policy, Setting, offsets
from simqos.policies.decisions import speed_state
from simqos.policies.planning.device_model import SpeedModel, capacity_probability, capacity_table, speed_model
from simqos.policies.planning.goals import longest_deadline_s, typical_deadline_s
from simqos.policies.registry import register_policy
from simqos.sim.serving import Decision, decide_jit
from simqos.sim.workload import planning_rate_hz

__all__ = ["Lookahead", "lookahead_decide"]


class Header(NamedTuple):
    """``params`` of :func:`lookahead_decide`, first: the speed states, the capacity table's time
    grid and step (s), work quantiles, requests considered behind this one, back-up (0/1),
    segments, persistent (0/1), mean arrival rate (Hz), typical relative deadline (s), the
    capacity table's work step (ms); then each state's speed, the remaining-work quantiles (level
    x segment+1 x quantile, profiled ms), and the decision accuracy of each (head level,
    segment, tail level) route."""

    n_states: float
    grid: float
    step_s: float
    quantiles: float
    queue: float
    back_up: float
    segments: float
    persistent: float
    rate_hz: float
    deadline_s: float
    work_step_ms: float


AT = offsets(Header)
HEADER_SIZE = len(Header._fields)


@decide_jit
def lookahead_decide(state: Decision, params: np.ndarray, table: np.ndarray) -> int:
    """Model-predictive rerouting (see :class:`simqos.policies.Lookahead`): the level for the
    rest of the request that maximises the expected accuracy-at-deadline of this request, of
    those queued behind it, and of those expected to arrive while the device works through
    them, over the device's future speed (``table``: the capacity table)."""
    n_states, grid, step = int(params[AT.n_states]), int(params[AT.grid]), params[AT.step_s]
    n_q, max_queue, back_up = int(params[AT.quantiles]), int(params[AT.queue]), params[AT.back_up]
    n_segments, persistent = int(params[AT.segments]), params[AT.persistent]
    rate_hz, relative_deadline_s, work_step = params[AT.rate_hz], params[AT.deadline_s], params[AT.work_step_ms]
    k_levels = state.n_levels
    speeds_at = HEADER_SIZE
    work_at = speeds_at + n_states
    acc_at = work_at + k_levels * (n_segments + 1) * n_q
    block = speed_state(params, speeds_at, n_states, state.speed)
    scale = state.speed if persistent != 0.0 else 1.0  # a persistent model's draws are at speed 1
    floor = state.min_resident_level
    if state.current_level >= 0 and back_up == 0.0:
        floor = max(floor, state.current_level)
    floor = min(floor, k_levels - 1)
    if floor == k_levels - 1:
        return floor  # one level left to choose: nothing to score
    head = state.current_level
    sparsest = k_levels - 1
    queue_work = params[work_at + (sparsest * (n_segments + 1)) * n_q + n_q // 2]
    queue_acc = params[acc_at + (sparsest * n_segments + 0) * k_levels + sparsest]
    best, best_value = sparsest, -1.0
    for level in range(floor, k_levels):
        first = level if head < 0 else head
        accuracy = params[acc_at + (first * n_segments + state.segment) * k_levels + level]
        own = 0.0
        for p in range(n_q):
            work = params[work_at + (level * (n_segments + 1) + state.segment) * n_q + p] * state.idle_factor[level]
            own += capacity_probability(table, block, grid, step, work_step, state.deadline_s - state.now_s, work / scale)
        value = accuracy * own / n_q
        behind = params[work_at + (level * (n_segments + 1) + state.segment) * n_q + n_q // 2] * state.idle_factor[level]
        queued = min(max_queue, len(state.queued_deadlines_s))
        for j in range(queued):
            behind += queue_work
            tau = state.queued_deadlines_s[j] - state.now_s
            value += queue_acc * capacity_probability(table, block, grid, step, work_step, tau, behind / scale)
        # requests still to come while the device works through this backlog: the k-th at
        # k / rate from now, each at the sparsest level after everything before it
        busy_s = behind / (state.speed * 1e3)
        for k in range(1, max_queue - queued + 1):
            arrival = k / rate_hz
            if arrival >= busy_s:
                break
            behind += queue_work
            value += queue_acc * capacity_probability(table, block, grid, step, work_step, arrival + relative_deadline_s, behind / scale)
        if value >= best_value:  # ties go to the sparser level: it frees the device sooner
            best, best_value = level, value
    return best


@register_policy("lookahead")
class Lookahead(Policy):
    """Model-predictive rerouting. At the start and at each reroute point it scores every
    resident level for the rest of the request by the expected accuracy-at-deadline of this
    request — the route's accuracy (validation split) times the chance that the device does the
    remaining work by the deadline — plus that of up to ``queue`` requests behind it: those
    waiting, then those expected to arrive (at the workload's mean rate, with its median
    deadline) while the device is still busy with them, each assumed to run at the sparsest
    level after the ones before it. The chance comes from the
    device's speed *process* as the scenario describes it (:mod:`simqos.policies.planning.device_model`: never
    the realised trace) and from the distribution of the remaining work (``quantiles`` points
    of it, from the profile's samples). It picks the best level; a tie goes to the sparser.
    Without ``back_up`` a request never returns to a less sparse level."""

    class Params(Policy.Params):
        quantiles: int = Field(default=5, ge=1, le=50)
        queue: int = Field(default=8, ge=0, le=1000)
        back_up: bool = False
        samples: int = Field(default=512, ge=16, le=100_000)
        grid: int = Field(default=64, ge=2, le=10_000)

    decide = staticmethod(lookahead_decide)

    def label(self) -> str:
        return "lookahead" + (" (back-up)" if self.params.back_up else "")

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        p, model = self.params, self.model
        speed = speed_model(self.scenario.device.speed)
        table, step, work_step = _capacity(speed, longest_deadline_s(self.scenario, model, speed, p.queue + 2), p.grid, p.samples)
        points = (np.arange(p.quantiles) + 0.5) / p.quantiles
        work = model.remaining_work_quantiles_ms(points)  # (levels, segments + 1, quantiles)
        k, s = model.n_levels, model.n_segments
        accuracy = np.ones((k, s, k))
        if model.has_accuracy:
            for first in range(k):
                for seg in range(s):
                    for level in range(k):
                        route = (first,) * seg + (level,) * (s - seg)
                        accuracy[first, seg, level] = model.decision_accuracy.get(route, model.decision_accuracy[(level,) * s])
        header = Header(n_states=len(speed.speeds), grid=p.grid, step_s=step, quantiles=p.quantiles, queue=p.queue,
                        back_up=p.back_up, segments=s, persistent=speed.persistent,
                        rate_hz=planning_rate_hz(self.scenario.workload.arrival, "lookahead"),
                        deadline_s=typical_deadline_s(self.scenario), work_step_ms=work_step)
        return np.concatenate([np.array(header, dtype=float), speed.speeds, work.ravel(), accuracy.ravel()]), table

    @classmethod
    def frontier(cls, scenario, n_levels: int) -> list[Setting]:
        """A point, at its default parameters."""
        return [Setting("lookahead", 0.0, {"kind": "lookahead"})]


@functools.lru_cache(maxsize=32)
def _capacity_cached(speeds: tuple, dwell: tuple, jumps: tuple, persistent: bool, horizon_s: float, grid: int,
                     samples: int) -> tuple[np.ndarray, float, float]:
    model = SpeedModel(speeds, dwell, [list(row) for row in jumps], persistent)
    return capacity_table(model, horizon_s, grid, samples)


def _capacity(model: SpeedModel, horizon_s: float, grid: int, samples: int) -> tuple[np.ndarray, float, float]:
    """:func:`capacity_table`, computed once per device model (every replication reuses it)."""
    return _capacity_cached(tuple(model.speeds), tuple(model.mean_dwell_s), tuple(map(tuple, model.jumps)),
                            model.persistent, horizon_s, grid, samples)
