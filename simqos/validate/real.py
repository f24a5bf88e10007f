"""Serve a scenario's requests for real: the trained nested model on its profiled kernels, on
one core of this CPU, in real time, with the policy deciding at each reroute point from the
real clock.

:func:`real_model` builds the model the profile measured — every prunable layer replaced by a
switch holding the layer's kernel at each level (the kernel the profile chose). A request's
level for a segment is decided when the segment's first layer is called, by a callback that
reads the clock then: that is the reroute point. :func:`serve` plays one policy over a list of
arrivals (first come, first served, one request at a time, the scenario's queue rules), and
:func:`calibrate` measures the speed factor each load state actually delivers.

The queue rules and the policy's decisions are the serving core's (:mod:`simqos.serving`), as
in the simulator, and the same :class:`~simqos.serving.Decision` reaches the policy: the speed
is the calibrated factor of the load state in force, every level is resident (no memory
process is played), and a clairvoyant policy, which needs the future, cannot run here.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from simqos import serving
from simqos.engine import Plan, records_table
from simqos.kernels import BuiltKernel, build_kernel
from simqos.nested.network import NestedNetwork, PrunableLayer
from simqos.serving import DROPPED, MET, MISSED, Decision
from simqos.profiler.measure import layer_weights, swap_layers
from simqos.profiler.timer import wait_until

__all__ = ["RealModel", "calibrate", "collector_paused", "real_model", "serve"]


class _Router:
    """The levels of the request in flight, decided segment by segment on first use."""

    def __init__(self) -> None:
        self.levels: list[int] = []
        self.decide: Callable[[int], int] = lambda _segment: 0

    def level(self, segment: int) -> int:
        while len(self.levels) <= segment:  # segments are entered in order
            self.levels.append(int(self.decide(len(self.levels))))
        return self.levels[segment]


class _Switch(nn.Module):
    """Stands in for a prunable layer: runs its kernel at the level of its segment."""

    def __init__(self, kernels: list[BuiltKernel], segment: int, router: _Router) -> None:
        super().__init__()
        self.kernels, self.segment, self.router = kernels, segment, router

    def forward(self, *args, **kwargs):
        return self.kernels[self.router.level(self.segment)].fn(*args, **kwargs)


@dataclass
class RealModel:
    """The profiled model, runnable one request at a time along decided levels."""

    model: nn.Module
    x: torch.Tensor
    router: _Router
    n_segments: int

    def infer(self, decide: Callable[[int], int]) -> tuple[int, ...]:
        """One inference; ``decide(segment)`` is called at each segment's start; returns the route."""
        self.router.levels = []
        self.router.decide = decide
        with torch.no_grad():
            self.model(self.x)
        self.router.level(self.n_segments - 1)  # a segment the model skipped still gets a level
        return tuple(self.router.levels)


def real_model(net: NestedNetwork, kernels: dict[tuple[str, int], str], x: torch.Tensor) -> RealModel:
    """``net`` with each layer on the kernel the profile chose for it at each level (``kernels``
    maps (layer, level) to a kernel name), fed the input ``x``."""
    router = _Router()

    def switch(layer: PrunableLayer) -> nn.Module:
        module = net.module.get_submodule(layer.name)
        built = [build_kernel(kernels[(layer.name, k)], module, layer_weights(net, layer, k)) for k in range(net.n_levels)]
        return _Switch(built, layer.segment, router)

    return RealModel(swap_layers(net, switch), x, router, net.n_segments)


def calibrate(
    real: RealModel,
    apply: Callable[[float], None],
    speeds: list[float],
    probes: int,
    mean_gap_s: float,
    predicted_ms: Callable[[float], float],
    seed: int = 0,
    clock: Callable[[], float] = time.perf_counter,
) -> pd.DataFrame:
    """The speed factor each load state delivers to request-like work, against the profile.

    Each state (switched on by ``apply(speed)``) gets ``probes`` level-0 inferences arriving as
    a Poisson stream with mean gap ``mean_gap_s``, as requests come: a probe finds the device
    idle or, behind others, busy — and under competing load, which of the two decides how much
    of the core it gets (a woken thread is favoured; a busy one gets its fair share). ``predicted_ms(idle_ms)``
    is what the profile says a level-0 inference takes after that much idle time (its mean
    whole-model time, times its idle slowdown); a state's measured speed is the sum of those
    predictions over the probes' actual idle gaps, over the sum of the probes' service times. A first
    row times back-to-back inferences with no load: against the profile, the machine's drift
    since it was profiled.

    One row per state: target speed, gaps (``none`` or the mean gap in ms), probes, mean and
    p90 ms, measured speed.
    """
    rng = np.random.default_rng(seed)
    rows = []
    order = [(1.0, 0.0)] + [(s, mean_gap_s) for s in sorted({1.0, *speeds}, reverse=True)]
    for speed, gap_s in order:
        apply(speed)
        time.sleep(0.05)  # let the scheduler settle on the new set of runnable processes
        times_ms, predicted = [], []
        last_end = t0 = clock()
        for arrival in np.cumsum(rng.exponential(gap_s, probes)) if gap_s else np.zeros(probes):
            wait_until(t0 + arrival, clock)  # a Poisson stream: a probe that falls behind queues
            begin = clock()
            real.infer(lambda _segment: 0)
            end = clock()
            times_ms.append((end - begin) * 1e3)
            predicted.append(predicted_ms((begin - last_end) * 1e3))
            last_end = end
        rows.append({"target_speed": speed, "gaps": f"{gap_s * 1e3:.3g} ms" if gap_s else "none", "probes": probes,
                     "mean_ms": float(np.mean(times_ms)), "p90_ms": float(np.percentile(times_ms, 90)),
                     "predicted_mean_ms": float(np.mean(predicted)), "measured_speed": float(np.sum(predicted) / np.sum(times_ms))})
    return pd.DataFrame(rows)


@contextmanager
def collector_paused() -> Iterator[None]:
    """Collect garbage now, then none until the block ends: a collection inside a request would
    be the collector's latency, not the model's."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def serve(
    real: RealModel,
    plan: Plan,
    policy_index: int,
    arrivals_s: np.ndarray,
    deadlines_s: np.ndarray,
    speed_now: Callable[[], float],
    t0: float,
    clock: Callable[[], float] = time.perf_counter,
    wait: Callable[[float], None] | None = None,
    replication: int = 0,
) -> pd.DataFrame:
    """Serve every arrival (seconds after ``t0``, a ``clock`` reading) in real time under the
    plan's policy ``policy_index``; ``speed_now()`` is the speed factor in force. The queue
    rules and the policy's decisions are the serving core's (:mod:`simqos.serving`), read off
    this clock; ``wait(t)`` idles until the clock reads ``t`` (default: :func:`wait_until`). The
    records have the simulator's columns, ``replication`` the real run's index."""
    policy = plan.policy_factories[policy_index]()
    if policy.clairvoyant:
        raise RuntimeError(f"policy {plan.labels[policy_index]} needs the future; it cannot run on a real device")
    queue = plan.scenario.workload.queue
    capacity = -1 if queue.capacity is None else queue.capacity
    model = plan.model
    n = len(arrivals_s)
    start = np.full(n, np.nan)
    finish = np.full(n, np.nan)
    route_code = np.full(n, -1, dtype=np.int64)
    reroutes = np.zeros(n, dtype=np.int64)
    outcome = np.full(n, DROPPED, dtype=np.int8)
    left = np.empty(n)
    n_left = 0
    busy_until = 0.0
    no_future = np.zeros(0)
    wait = wait or (lambda t: wait_until(t, clock))
    for i, arrival in enumerate(arrivals_s.tolist()):
        wait(t0 + arrival)
        now = clock() - t0
        if not serving.admits(serving.waiting_at(left, n_left, arrival), capacity, busy_until <= arrival):
            continue
        deadline = float(deadlines_s[i])
        left[n_left] = now
        n_left += 1
        start[i] = now
        if queue.late == "drop" and serving.too_late(now, deadline, model.sparsest_median_ms, speed_now()):
            continue
        queued = deadlines_s[i + 1 : max(serving.bisect_right(arrivals_s, now, n), i + 1)]
        factors = np.array(model.idle_factors_at((now - busy_until) * 1e3))

        def decide(segment: int, i=i, arrival=arrival, deadline=deadline, queued=queued, factors=factors) -> int:
            levels = real.router.levels
            state = Decision(i, clock() - t0, arrival, deadline, segment, levels[-1] if levels else -1,
                             serving.route_code(levels, model.n_levels), speed_now(),
                             0, model.n_levels, queued, factors, no_future)
            chosen = int(policy.choose(state))
            if not 0 <= chosen < model.n_levels:
                raise RuntimeError(f"policy {plan.labels[policy_index]} chose level {chosen}")
            return chosen

        route = real.infer(decide)
        finish[i] = busy_until = clock() - t0
        route_code[i] = serving.route_code(route, model.n_levels)
        reroutes[i] = sum(a != b for a, b in zip(route, route[1:]))
        outcome[i] = MET if finish[i] <= deadline else MISSED
    return records_table(plan, policy_index, replication, arrivals_s, deadlines_s, start, finish, route_code, reroutes, outcome)

