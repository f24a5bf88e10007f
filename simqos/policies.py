"""Rerouting policies: one required method, ``choose(state) -> level``, and a name registry.

At every decision point of a request — its start and each reroute point — the engine builds a
:class:`DecisionState` and asks the policy which level runs the next segment. A policy sees time,
deadline, the current level, the device's current speed and least sparse resident level, the
queue behind the request, and (through :class:`ServiceModel`) the profile. Decisions depend
only on time and resources, never on the input's content.

Built in: ``static`` (one level), ``greedy`` (decides once, at the start), ``deadline_aware``
(the paper's rerouting) and ``oracle`` (clairvoyant: an upper bound). A user's policy is a
subclass of :class:`Policy` with a pydantic ``Params`` model, registered with
:func:`register_policy` and named by ``kind:`` in a scenario (its module listed under
``plugins:``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar, NamedTuple

from pydantic import BaseModel, ConfigDict, Field

from simqos.service import ServiceModel

__all__ = [
    "POLICIES",
    "DecisionState",
    "DeadlineAware",
    "Greedy",
    "Oracle",
    "Policy",
    "Static",
    "register_policy",
]


class DecisionState(NamedTuple):
    """What a policy knows when it picks the level of segment ``segment``.

    Times in seconds of simulated time. ``current_level`` is None at the request's start.
    ``min_resident_level``: levels below it are not resident now (``n_levels`` if none is).
    ``queued_deadlines_s``: absolute deadlines of the requests waiting behind this one, in
    queue order. (A NamedTuple: immutable, and cheap to make millions of times.)
    ``route_finish_s``: clairvoyance, for the oracle only — the exact finish time of a whole
    route started now with this request's own latency draws and the future device trace.
    """

    request: int
    now_s: float
    arrival_s: float
    deadline_s: float
    segment: int
    current_level: int | None
    speed: float
    min_resident_level: int
    queued_deadlines_s: Sequence[float]
    route_finish_s: Callable[[tuple[int, ...]], float]


class Policy:
    """Base class: set ``Params`` (a pydantic model of the YAML parameters) and ``choose``."""

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid", frozen=True)

    kind: ClassVar[str] = ""

    def __init__(self, params: BaseModel, model: ServiceModel) -> None:
        self.params = params
        self.model = model

    def label(self) -> str:
        """Default name of this policy in tables and plots."""
        return self.kind

    def choose(self, state: DecisionState) -> int:  # pragma: no cover - abstract
        raise NotImplementedError


POLICIES: dict[str, type[Policy]] = {}
"""Registered policies by ``kind``."""


def register_policy(kind: str) -> Callable[[type[Policy]], type[Policy]]:
    """Class decorator: make a Policy subclass usable as ``kind:`` in scenarios."""

    def register(cls: type[Policy]) -> type[Policy]:
        cls.kind = kind
        POLICIES[kind] = cls
        return cls

    return register


def _least_sparse_fitting(
    table_ms: list[list[float]], segment: int, floor: int, budget_s: float, speed: float, n_levels: int
) -> int:
    """Least sparse level >= ``floor`` whose predicted remaining time fits ``budget_s``; the
    sparsest level if none does."""
    budget_ms = budget_s * speed * 1e3
    for level in range(floor, n_levels):
        if table_ms[level][segment] <= budget_ms:
            return level
    return n_levels - 1


@register_policy("static")
class Static(Policy):
    """Every segment of every request at ``level``; waits for it to be resident if evicted."""

    class Params(Policy.Params):
        level: int = Field(ge=0)

    def label(self) -> str:
        return f"static L{self.params.level}"

    def choose(self, state: DecisionState) -> int:
        return self.params.level


@register_policy("greedy")
class Greedy(Policy):
    """At the start: the least sparse resident level whose predicted latency (the ``quantile``
    of each layer's samples, at the current speed) fits the time left; then no rerouting
    (unless that level is evicted, when it moves to the least sparse resident one)."""

    class Params(Policy.Params):
        quantile: float = Field(default=0.5, gt=0, lt=1)

    def __init__(self, params: BaseModel, model: ServiceModel) -> None:
        super().__init__(params, model)
        self.table_ms = model.remaining_quantile_ms(params.quantile).tolist()

    def choose(self, state: DecisionState) -> int:
        last = self.model.n_levels - 1
        if state.current_level is not None:  # when nothing is resident, wait for the sparsest
            return min(max(state.current_level, state.min_resident_level), last)
        floor = min(state.min_resident_level, last)
        budget = state.deadline_s - state.now_s
        return _least_sparse_fitting(self.table_ms, 0, floor, budget, state.speed, self.model.n_levels)


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

    def __init__(self, params: BaseModel, model: ServiceModel) -> None:
        super().__init__(params, model)
        self.table_ms = model.remaining_quantile_ms(params.quantile).tolist()

    def label(self) -> str:
        p = self.params
        extras = [f"q{p.quantile:g}"] + (["back-up"] if p.back_up else []) + (["queue"] if p.count_queue else [])
        return f"deadline_aware ({', '.join(extras)})"

    def choose(self, state: DecisionState) -> int:
        p = self.params
        n = self.model.n_levels
        deadline = state.deadline_s - p.slack_ms / 1e3
        if p.count_queue and state.queued_deadlines_s:
            sparsest_s = self.table_ms[n - 1][0] / state.speed / 1e3
            deadline = min(deadline, *(d - k * sparsest_s for k, d in enumerate(state.queued_deadlines_s, start=1)))
        floor = state.min_resident_level
        if state.current_level is not None and not p.back_up:
            floor = max(floor, state.current_level)
        floor = min(floor, n - 1)
        return _least_sparse_fitting(self.table_ms, state.segment, floor, deadline - state.now_s, state.speed, n)


@register_policy("oracle")
class Oracle(Policy):
    """Clairvoyant per request: at the start it tries every route (every measured one, most
    accurate first; or every monotone one when accuracy is unavailable) with this request's
    own draws and the future device trace, and follows the first that meets the deadline —
    or, if none does, the one that finishes first. An upper bound, not a deployable policy.
    ``margin_ms`` plans to finish that much before the deadline: raising it trades accuracy for
    latency, and traces the oracle's frontier."""

    class Params(Policy.Params):
        margin_ms: float = Field(default=0.0, ge=0)

    def __init__(self, params: BaseModel, model: ServiceModel) -> None:
        super().__init__(params, model)
        self.candidates = model.routes_by_preference()
        self._plan: tuple[int, tuple[int, ...]] = (-1, ())

    def choose(self, state: DecisionState) -> int:
        if self._plan[0] != state.request:
            best, best_finish = self.candidates[0], float("inf")
            target = state.deadline_s - self.params.margin_ms / 1e3
            for route in self.candidates:
                finish = state.route_finish_s(route)
                if finish <= target:
                    best = route
                    break
                if finish < best_finish:
                    best, best_finish = route, finish
            self._plan = (state.request, best)
        return self._plan[1][state.segment]
