"""Serve a scenario's requests for real: the trained nested model on its profiled kernels, on
one core of this CPU, in real time, with the policy deciding at each reroute point from the
real clock (the serving loop is :mod:`simqos.validate.server`).

:func:`real_model` builds the model the profile measured: on the nested runtime when the profile
deployed it (:mod:`simqos.kernels.runtime`: a segment is one compiled call), else every prunable layer
replaced by a switch holding the layer's kernel at each level (the kernel the profile chose). A request's
level for a segment is decided when the segment's first layer is called, by a callback that
reads the clock then: that is the reroute point. :func:`calibrate` measures the speed factor
each load state actually delivers.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from simqos.kernels import BuiltKernel, build_kernel
from simqos.nested.network import NestedNetwork, PrunableLayer
from simqos.profiler.measure import layer_weights, swap_layers
from simqos.realtime import wait_until
from simqos.kernels.runtime import RUNTIME, CompiledNetwork, compile_network

__all__ = ["ANCHOR_PROBES", "RealModel", "anchor_speed", "calibrate", "calibration_table", "real_model"]


class _Router:
    """The levels of the request in flight, decided segment by segment on first use; a
    segment's kernels are taken when it is decided, so a level evicted while it runs is dropped
    for the segments after it (as the simulator has it)."""

    def __init__(self) -> None:
        self.levels: list[int] = []
        self.decide: Callable[[int], int] = lambda _segment: 0
        self.switches: dict[int, list[_Switch]] = {}  # by segment
        self.taken: dict[int, Callable] = {}  # by id of the switch: the kernel its segment runs

    def level(self, segment: int) -> int:
        while len(self.levels) <= segment:  # segments are entered in order
            entered = len(self.levels)
            level = int(self.decide(entered))
            self.levels.append(level)
            for switch in self.switches.get(entered, ()):
                self.taken[id(switch)] = switch.kernels[level].fn
        return self.levels[segment]

    def kernel(self, switch: _Switch) -> Callable:
        self.level(switch.segment)
        return self.taken[id(switch)]


class _Switch(nn.Module):
    """Stands in for a prunable layer: runs its kernel at the level of its segment. ``kernels``
    holds one built kernel per level, None where the level is not resident."""

    def __init__(self, layer: PrunableLayer, kernels: list[BuiltKernel | None], router: _Router) -> None:
        super().__init__()
        self.layer, self.kernels, self.segment = layer, kernels, layer.segment
        self.router = router
        router.switches.setdefault(layer.segment, []).append(self)

    def forward(self, *args, **kwargs):
        return self.router.kernel(self)(*args, **kwargs)


@dataclass
class RealModel:
    """The profiled model, runnable one request at a time along decided levels: on torch, each
    layer a switch over its kernels (``model``), or on the nested runtime (``compiled``), one
    compiled call per segment."""

    model: nn.Module | None
    x: torch.Tensor
    router: _Router
    n_segments: int
    kernel_names: dict[tuple[str, int], str]  # (layer, level) -> the kernel the profile chose
    compiled: CompiledNetwork | None = None

    @property
    def switches(self) -> list[_Switch]:
        return [switch for segment in sorted(self.router.switches) for switch in self.router.switches[segment]]

    def infer(self, decide: Callable[[int], int]) -> tuple[int, ...]:
        """One inference; ``decide(segment)`` is called at each segment's start; returns the route."""
        self.router.levels = []
        self.router.decide = decide
        if self.compiled is not None:
            batch = self.compiled.load(self._xn)
            for segment in range(self.n_segments):
                self.router.level(segment)  # the reroute point: decided now, from the clock now
                # the ops of a segment read the route up to it only: the rest is a placeholder
                levels = self.router.levels
                self.compiled.run_segment(segment, (*levels, *[levels[-1]] * (self.n_segments - len(levels))), batch)
            return tuple(self.router.levels)
        with torch.no_grad():
            self.model(self.x)
        self.router.level(self.n_segments - 1)  # a segment the model skipped still gets a level
        return tuple(self.router.levels)

    @functools.cached_property
    def _xn(self) -> np.ndarray:
        return np.ascontiguousarray(self.x.detach().cpu().numpy(), dtype=np.float32)


def real_model(net: NestedNetwork, kernels: dict[tuple[str, int], str], x: torch.Tensor) -> RealModel:
    """``net`` as the profile deployed it, fed the input ``x``: on the nested runtime where the
    profile chose it for every layer (``kernels`` maps (layer, level) to the chosen kernel), else
    with each layer on its chosen torch kernel at each level."""
    router = _Router()
    if set(kernels.values()) == {RUNTIME}:
        return RealModel(None, x, router, net.n_segments, kernels, compile_network(net, x))

    def switch(layer: PrunableLayer) -> nn.Module:
        module = net.module.get_submodule(layer.name)
        built = [build_kernel(kernels[(layer.name, k)], module, layer_weights(net, layer, k)) for k in range(net.n_levels)]
        return _Switch(layer, built, router)

    return RealModel(swap_layers(net, switch), x, router, net.n_segments, kernels)


def calibrate(
    real: RealModel,
    apply: Callable[[float], None],
    speeds: list[float],
    probes: int,
    mean_gap_s: float,
    predicted_ms: Callable[[float, int], float],
    levels: int = 1,
    seed: int = 0,
    clock: Callable[[], float] = time.perf_counter,
    idle_seconds: float = 0.0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The speed factor each load state delivers to request-like work at each level, against
    the profile.

    Each state (switched on by ``apply(speed)``) gets ``probes`` inferences per level, the
    levels taken in turn (a probe runs every segment at its level), arriving as a Poisson
    stream with mean gap ``mean_gap_s``, as requests come: a probe finds the device idle or,
    behind others, busy — and under competing load, which of the two decides how much of the
    core it gets (a woken thread is favoured; a busy one gets its fair share), and how long it
    runs decides how many of the competitors' slices it waits out, so the share differs by
    level. ``predicted_ms(idle_ms, level)`` is what the profile says an inference at ``level``
    takes after that much idle time (its mean whole-model time, times its idle slowdown); a
    state's measured speed at a level is the sum of those predictions over the probes' actual
    idle gaps, over the sum of the probes' service times. A first state times back-to-back
    inferences with no load: against the profile, the machine's drift since it was profiled.

    The state with no load and the scenario's gaps runs for at least ``idle_seconds``: its
    probes are also what the machine's own noise is fitted from (:mod:`simqos.validate.noise`).

    Returns one row per state and level — target speed, gaps (``none`` or the mean gap in ms),
    level, probes, mean and p90 ms, measured speed (:func:`calibration_table`) — and one per
    probe: target speed, gaps, level, begin (seconds after the state's start), idle ms before it,
    whether it found the device idle (woken), took and predicted ms.
    """
    rng = np.random.default_rng(seed)
    every = []
    order = [(1.0, 0.0)] + [(s, mean_gap_s) for s in sorted({1.0, *speeds}, reverse=True)]
    for speed, gap_s in order:
        apply(speed)
        time.sleep(0.05)  # let the scheduler settle on the new set of runnable processes
        count = levels * (max(probes, math.ceil(idle_seconds / gap_s / levels)) if gap_s and speed == 1.0 else probes)
        every.append(_probe(real, gap_s, count, levels, rng, clock))
        every[-1].insert(0, "target_speed", speed)
    probed = pd.concat(every, ignore_index=True)
    return calibration_table(probed, predicted_ms), probed


def anchor_speed(real: RealModel, gap_s: float, seconds: float, predicted_ms: Callable[[float, int], float], seed: int,
                 clock: Callable[[], float] = time.perf_counter) -> float:  # fmt: skip
    """Level 0's speed against the profile right now, with no load, at the scenario's gaps
    (``gap_s``, mean), over about ``seconds`` (at least :data:`ANCHOR_PROBES` probes): the
    calibration's measurement of that state, taken again just before a real run, so that the
    prediction of the run starts from where the machine has drifted to (:mod:`simqos.validate.predict`)."""
    count = max(ANCHOR_PROBES, math.ceil(seconds / gap_s)) if gap_s else ANCHOR_PROBES
    probes = _probe(real, gap_s, count, 1, np.random.default_rng(seed), clock).assign(target_speed=1.0)
    return float(calibration_table(probes, predicted_ms)["measured_speed"].iloc[0])


ANCHOR_PROBES = 20
"""The fewest probes an anchor takes."""


def _probe(real: RealModel, gap_s: float, count: int, levels: int, rng: np.random.Generator,
           clock: Callable[[], float]) -> pd.DataFrame:  # fmt: skip
    """``count`` inferences, the levels in turn, arriving as a Poisson stream of mean gap
    ``gap_s`` (0: back to back): one row each (:func:`calibrate`'s probe table, without the state)."""
    begins, times_ms, idle_ms, woken = [], [], [], []
    last_end = t0 = clock()
    for j, arrival in enumerate(np.cumsum(rng.exponential(gap_s, count)) if gap_s else np.zeros(count)):
        wait_until(t0 + arrival, clock)  # a Poisson stream: a probe that falls behind queues
        level = j % levels
        begin = clock()
        real.infer(lambda _segment, level=level: level)
        end = clock()
        begins.append(begin - t0)
        times_ms.append((end - begin) * 1e3)
        idle_ms.append((begin - last_end) * 1e3)
        woken.append(t0 + arrival > last_end)  # it found the device idle, as the simulator's rule has it
        last_end = end
    return pd.DataFrame({"gaps": f"{gap_s * 1e3:.3g} ms" if gap_s else "none", "level": np.arange(count) % levels,
                         "begin_s": begins, "idle_ms": idle_ms, "woken": woken, "took_ms": times_ms})


def calibration_table(probes: pd.DataFrame, predicted_ms: Callable[[float, int], float]) -> pd.DataFrame:
    """One row per load state and level of the probes (:func:`calibrate`): the measured speed
    against ``predicted_ms(idle_ms, level)``, which is also set as the probes' ``predicted_ms``
    column (so a calibration can be read again against another model of the idle slowdown)."""
    probes["predicted_ms"] = [predicted_ms(gap, int(level)) for gap, level in zip(probes["idle_ms"], probes["level"])]
    rows = [{"target_speed": speed, "gaps": gaps, "level": level, "probes": len(g), "mean_ms": float(g["took_ms"].mean()),
             "p90_ms": float(np.percentile(g["took_ms"], 90)), "predicted_mean_ms": float(g["predicted_ms"].mean()),
             "measured_speed": float(g["predicted_ms"].sum() / g["took_ms"].sum())}
            for (speed, gaps, level), g in probes.groupby(["target_speed", "gaps", "level"], sort=False)]  # fmt: skip
    return pd.DataFrame(rows)
