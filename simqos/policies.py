"""Rerouting policies: one required method and a name registry.

At every decision point of a request — its start and each reroute point — the driver builds a
:class:`~simqos.serving.Decision` and asks the policy which level runs the next segment. A
policy sees time, deadline, the current level, the device's current speed and least sparse
resident level, the queue behind the request, and the profile (through :class:`ServiceModel`)
and the scenario it was built for. Decisions depend only on time and resources, never on the
input's content.

A policy is a subclass of :class:`Policy` with a pydantic ``Params`` model (its YAML
parameters), registered with :func:`register_policy` and named by ``kind:`` in a scenario (its
module listed under ``plugins:``). It writes its rule in one of two forms:

- **compiled**: ``decide = staticmethod(fn)`` where ``fn`` is a ``numba.njit`` function
  ``fn(state: Decision, params: float64[:], table: float64[:, :]) -> int``, and ``arrays()``
  returns the ``(params, table)`` it reads (prepared once, in Python, from the YAML
  parameters, the profile and the scenario). It then runs on the compiled fast path, about
  twenty times faster than SimPy; the built-in policies are written so.
- **Python**: ``choose(state: Decision) -> int``, any Python. It runs on the SimPy engine.

Built in: ``static`` (one level), ``greedy`` (decides once, at the start), ``deadline_aware``
(the paper's rerouting), ``lookahead`` (model-predictive: the expected accuracy-at-deadline of
this request and those queued behind it, over the device's speed process), ``dp`` (the
per-request optimum over the device's speed process, by dynamic programming: a table lookup per
decision), ``queue_dp`` (the stationary optimum over the request in service, the queue behind it
and the device's speed process, by value iteration), and ``clairvoyant`` (per request, it sees the exact finish of every route with the realised
future: not deployable, a reference).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from simqos.devicemodel import SpeedModel, capacity_table, speed_model
from simqos.dp import solve
from simqos.errors import SimqosError
from simqos.queuedp import QueueModel, solve_queue
from simqos.workload import planning_rate_hz
from simqos.serving import (
    DP_HEADER,
    LOOKAHEAD_HEADER,
    QUEUE_DP_HEADER,
    Decision,
    clairvoyant_decide,
    deadline_aware_decide,
    dp_decide,
    greedy_decide,
    held_level,
    lookahead_decide,
    node_index,
    queue_dp_decide,
    static_decide,
)
from simqos.service import ServiceModel

__all__ = [
    "POLICIES",
    "Clairvoyant",
    "DeadlineAware",
    "Decision",
    "Dp",
    "Greedy",
    "Lookahead",
    "Policy",
    "QueueDp",
    "Static",
    "register_policy",
    "start_only",
]

_NO_PARAMS, _NO_TABLE = np.zeros(0), np.zeros((0, 0))


class Policy:
    """Base class: set ``Params``, and ``decide`` with ``arrays`` (compiled) or ``choose``
    (Python); see the module docstring."""

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    kind: ClassVar[str] = ""
    decide: ClassVar[Callable[[Decision, np.ndarray, np.ndarray], int] | None] = None
    """A ``numba.njit`` function ``(state, params, table) -> level``, or None (Python only)."""
    clairvoyant: ClassVar[bool] = False
    """True for a reference that sees the realised future: it cannot run on a real device."""
    decision_ms: float = 0.0
    """Device time (profiled ms) charged for each decision: the scenario's ``decision_ms``
    (:class:`simqos.scenario.PolicySpec`), set on the policy by :func:`simqos.engine.build_plan`."""

    def __init__(self, params: BaseModel, model: ServiceModel, scenario: object = None) -> None:
        self.params = params
        self.model = model
        self.scenario = scenario
        self._arrays: tuple[np.ndarray, np.ndarray] | None = None

    @classmethod
    def compiled(cls) -> bool:
        """True if the policy has a compiled ``decide`` (it runs on the fast path)."""
        return cls.decide is not None

    def label(self) -> str:
        """Default name of this policy in tables and plots."""
        return self.kind

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """``(params, table)``: what ``decide`` reads, as float64 arrays (1-D and 2-D)."""
        return _NO_PARAMS, _NO_TABLE

    def candidates(self) -> np.ndarray:
        """Routes (int64, one per row) whose exact finish a clairvoyant policy sees in
        ``state.route_finish_s``; none for a deployable policy."""
        return np.zeros((0, self.model.n_segments), dtype=np.int64)

    def prepared(self) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`arrays`, made once and kept."""
        if self._arrays is None:
            params, table = self.arrays()
            self._arrays = (np.ascontiguousarray(params, dtype=float), np.ascontiguousarray(table, dtype=float))
        return self._arrays

    def choose(self, state: Decision) -> int:
        """The level of the next segment (a compiled policy calls its ``decide``)."""
        decide = type(self).decide
        if decide is None:  # pragma: no cover - a subclass gives one of the two
            raise NotImplementedError(f"policy {self.kind!r} defines neither decide nor choose")
        return int(decide(state, *self.prepared()))


POLICIES: dict[str, type[Policy]] = {}
"""Registered policies by ``kind``."""


def register_policy(kind: str) -> Callable[[type[Policy]], type[Policy]]:
    """Class decorator: make a Policy subclass usable as ``kind:`` in scenarios."""

    def register(cls: type[Policy]) -> type[Policy]:
        cls.kind = kind
        POLICIES[kind] = cls
        return cls

    return register


def start_only(policy: Policy, label: str | None = None) -> Policy:
    """The ablation of ``policy`` that decides only at a request's start: its first decision —
    the policy's own, made as if it could still reroute — holds for the rest of the request,
    except that a level evicted meanwhile gives way to the least sparse resident one, as
    ``greedy``'s does (waiting for the evicted level to be read back would measure the storage,
    not the decisions). What ``policy`` gains over it on the same requests is what its
    decisions after the start are worth. The ablation runs where ``policy`` runs: compiled
    when it is, on SimPy otherwise. Its label: ``label``, else the policy's with " (start
    only)"."""
    cls = type(policy)
    ablation = _start_only_class(cls)
    made = ablation(policy.params, policy.model, policy.scenario)
    made._label = label or f"{policy.label()} (start only)"
    made.decision_ms = policy.decision_ms
    return made


@functools.cache
def _start_only_class(cls: type[Policy]) -> type[Policy]:
    attributes = {"label": lambda self: self._label, "kind": cls.kind}
    if cls.decide is not None:
        attributes["decide"] = staticmethod(_held(cls.decide))
    else:
        inner_choose = cls.choose
        attributes["choose"] = lambda self, state: held_level(state) if state.current_level >= 0 else inner_choose(self, state)
    return type(f"{cls.__name__}StartOnly", (cls,), attributes)


@functools.cache
def _held(decide: Callable) -> Callable:
    """``decide`` at a request's start, its level after. Compiled without numba's disk cache
    (a closure over another compiled function cannot be cached): about a second, once per
    policy kind and process."""
    import numba

    @numba.njit(_nrt=False)
    def held(state: Decision, params: np.ndarray, table: np.ndarray) -> int:
        if state.current_level >= 0:
            return held_level(state)
        return decide(state, params, table)

    return held


@register_policy("static")
class Static(Policy):
    """Every segment of every request at ``level``; waits for it to be resident if evicted."""

    class Params(Policy.Params):
        level: int = Field(ge=0)

    decide = staticmethod(static_decide)

    def label(self) -> str:
        return f"static L{self.params.level}"

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return np.array([self.params.level], dtype=float), _NO_TABLE


@register_policy("greedy")
class Greedy(Policy):
    """At the start: the least sparse resident level whose predicted latency (the ``quantile``
    of each layer's samples, at the current speed) fits the time left; then no rerouting
    (unless that level is evicted, when it moves to the least sparse resident one)."""

    class Params(Policy.Params):
        quantile: float = Field(default=0.5, gt=0, lt=1)

    decide = staticmethod(greedy_decide)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return _NO_PARAMS, self.model.remaining_quantile_ms(self.params.quantile)


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
        return np.array([p.slack_ms, p.back_up, p.count_queue], dtype=float), self.model.remaining_quantile_ms(p.quantile)


@register_policy("clairvoyant")
class Clairvoyant(Policy):
    """Clairvoyant per request: at its start it sees the exact finish of every route (every
    measured one, most accurate on the validation split first; or every monotone one, least
    sparse first, when accuracy is unavailable) with this request's own draws and the realised
    device, and follows the first that meets the deadline — or, if none does, the one that
    finishes first. Not deployable, and not an upper bound on the aggregate either: it ignores
    the requests queued behind (see the ``bound``). ``margin_ms`` plans to finish that much
    before the deadline: raising it trades accuracy for latency, and traces its frontier."""

    class Params(Policy.Params):
        margin_ms: float = Field(default=0.0, ge=0)

    decide = staticmethod(clairvoyant_decide)
    clairvoyant = True

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return np.array([self.params.margin_ms], dtype=float), self.candidates().astype(float)

    def candidates(self) -> np.ndarray:
        return np.array(self.model.routes_by_preference(), dtype=np.int64)


@register_policy("lookahead")
class Lookahead(Policy):
    """Model-predictive rerouting. At the start and at each reroute point it scores every
    resident level for the rest of the request by the expected accuracy-at-deadline of this
    request — the route's accuracy (validation split) times the chance that the device does the
    remaining work by the deadline — plus that of up to ``queue`` requests behind it: those
    waiting, then those expected to arrive (at the workload's mean rate, with its median
    deadline) while the device is still busy with them, each assumed to run at the sparsest
    level after the ones before it. The chance comes from the
    device's speed *process* as the scenario describes it (:mod:`simqos.devicemodel`: never
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
        table, step, work_step = _capacity(speed, _longest_deadline_s(self.scenario, model, speed, p.queue + 2), p.grid, p.samples)
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
        header = [len(speed.speeds), p.grid, step, p.quantiles, p.queue, p.back_up, s, speed.persistent,
                  planning_rate_hz(self.scenario.workload.arrival, "lookahead"), _typical_deadline_s(self.scenario), work_step]
        assert len(header) == LOOKAHEAD_HEADER
        return np.concatenate([header, speed.speeds, work.ravel(), accuracy.ravel()]), table


@register_policy("dp")
class Dp(Policy):
    """The per-request optimum for the scenario's speed *process*, by dynamic programming
    (:mod:`simqos.dp`): a table, computed once, of the best level at every reroute point for
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
        values = _route_values(self.scenario, model)
        table, step = _solved(model, speed, values, _longest_deadline_s(self.scenario, model, speed, 2), p.grid, p.samples, p.quantiles)
        header = [len(speed.speeds), p.grid, step, model.n_segments, speed.persistent, p.count_queue,
                  model.sparsest_median_ms, node_index(model.n_levels, model.n_segments + 1, 0)]
        assert len(header) == DP_HEADER
        factors = [model.idle_factors_at(float(gap)) for gap in model.idle_ms]
        return np.concatenate([header, speed.speeds, np.ravel(factors)]), table


@register_policy("queue_dp")
class QueueDp(Policy):
    """The queue-aware optimum for the scenario's speed *process* (:mod:`simqos.queuedp`): a
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

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        p, model, scenario = self.params, self.model, self.scenario
        speed = speed_model(scenario.device.speed)
        if speed.persistent:
            raise SimqosError("policies: queue_dp plans over the device's speed process, and device.speed is a replayed "
                              "trace; use lookahead or dp there (they take the observed speed to persist)")
        values = _route_values(scenario, model)
        queue = scenario.workload.queue
        capacity = -1 if queue.capacity is None else queue.capacity
        late_drop = queue.late == "drop"
        key = (model.work_digest, tuple(speed.speeds), tuple(speed.mean_dwell_s), speed.jumps.tobytes(), tuple(sorted(values.items())),
               planning_rate_hz(scenario.workload.arrival, "queue_dp"), _typical_deadline_s(scenario), capacity, late_drop, p)
        if key not in _SOLVED_QUEUE:
            horizon = _longest_deadline_s(scenario, model, speed, 2)
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
        header = [n_states, n_fine - 1, solved["step_s"], solved["ratio"], solved["coarse"], solved["n_max"], n_nodes]
        assert len(header) == QUEUE_DP_HEADER
        return np.concatenate([header, speed.speeds, solved["node_of"]]), packed.view(np.float64)


_SOLVED_QUEUE: dict[tuple, dict] = {}


_SOLVED: dict[tuple, tuple[np.ndarray, float]] = {}


def _solved(model, speed, values, horizon_s, grid, samples, quantiles) -> tuple[np.ndarray, float]:
    """:func:`simqos.dp.solve`, once per model (by its work), device and parameters: every
    replication, and every run of a sweep that changes neither, reuses it."""
    key = (model.work_digest, tuple(speed.speeds), tuple(speed.mean_dwell_s), speed.jumps.tobytes(), speed.persistent,
           tuple(sorted(values.items())), horizon_s, grid, samples, quantiles)
    if key not in _SOLVED:
        while len(_SOLVED) >= 16:
            del _SOLVED[next(iter(_SOLVED))]
        _SOLVED[key] = solve(model, speed, values, horizon_s, grid, samples, quantiles)
    return _SOLVED[key]


@functools.lru_cache(maxsize=32)
def _capacity_cached(speeds: tuple, dwell: tuple, jumps: tuple, persistent: bool, horizon_s: float, grid: int,
                     samples: int) -> tuple[np.ndarray, float, float]:
    model = SpeedModel(speeds, dwell, [list(row) for row in jumps], persistent)
    return capacity_table(model, horizon_s, grid, samples)


def _capacity(model: SpeedModel, horizon_s: float, grid: int, samples: int) -> tuple[np.ndarray, float, float]:
    """:func:`capacity_table`, computed once per device model (every replication reuses it)."""
    return _capacity_cached(tuple(model.speeds), tuple(model.mean_dwell_s), tuple(map(tuple, model.jumps)),
                            model.persistent, horizon_s, grid, samples)


def _route_values(scenario, model: ServiceModel) -> dict[tuple[int, ...], float]:
    """What a full route is worth to the dp tables: its decision accuracy (validation split), or
    1 for ``objective: {kind: nines}`` or a profile without accuracy (meeting the deadline is all)."""
    nines = scenario.objective.kind == "nines"
    return {r: (1.0 if nines or not model.has_accuracy else model.decision_accuracy[r]) for r in model.routes_by_preference()}


def _typical_deadline_s(scenario) -> float:
    """The median relative deadline (s)."""
    d = scenario.workload.deadline
    return {"constant": lambda: d.ms, "uniform": lambda: (d.low_ms + d.high_ms) / 2, "lognormal": lambda: d.median_ms}[d.kind]() / 1e3


def _longest_deadline_s(scenario, model: ServiceModel, speed: SpeedModel, requests: int) -> float:
    """How far ahead a policy's tables look (s): the longest relative deadline the scenario's
    requests get, but no longer than a hundred times what ``requests`` requests of the most work
    a request can have take at the slowest speed (long past that every deadline is as good as
    met; a deadline slipped into years would otherwise make tables of the process over years)."""
    d = scenario.workload.deadline
    longest = d.ms if d.kind == "constant" else d.high_ms if d.kind == "uniform" else d.median_ms * float(np.exp(3.5 * d.sigma))
    most_ms = float(model.remaining_quantile_ms(1.0)[:, 0].max() * model.idle_factor.max())
    slowest = 1.0 if speed.persistent else min(speed.speeds)  # a persistent model is at speed 1, scaled when used
    return min(longest, 100 * requests * most_ms / slowest) / 1e3
