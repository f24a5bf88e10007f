"""The device's fluctuation as exogenous, piecewise-constant traces sampled up front.

A :class:`Trace` holds breakpoints ``times_s`` (the first is 0) and the value that holds from
each breakpoint to the next; the last value holds forever. Traces are sampled from a process
(``constant``, ``markov``, ``periodic``, or a replayed ``trace`` CSV, held or repeated after its
end) over a horizon, with a ``numpy.random.Generator`` passed in — never global random state;
a longer horizon extends the same trace, so the engine samples further while a run outlasts
it (:func:`simqos.engine.until_covered`).

Compute speed is a factor: 1.0 runs layers as fast as when profiled, 0.5 twice as slow. Work W
(profiled milliseconds) started at t finishes where the cumulative work function
``C(t) = ∫ speed`` reaches ``C(t) + W`` (:meth:`SpeedTrace.finish_time_s`): exact, one binary
search, so a change mid-layer slows the rest of that layer.

Memory is the megabytes available to the model's weights. Under nested storage level k needs
``bytes_k`` resident, and a sparser level needs fewer, so the resident levels at any time are
``k >= k_min(t)``. :func:`resident_trace` turns a memory trace into ``k_min(t)``: a drop evicts
at once; a rise reloads the missing bytes at ``storage_bandwidth_mb_s``, so the level becomes
usable only when its reload completes (and a further drop cancels it).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from simqos.compiled import njit
from simqos.userfiles import read_numeric_columns
from simqos.errors import SimqosError

__all__ = [
    "SpeedTrace",
    "Trace",
    "constant_trace",
    "embedded_stationary",
    "markov_trace",
    "periodic_trace",
    "read_trace_csv",
    "repeated_trace",
    "resident_trace",
    "sampled_to_horizon",
    "trace_from_spec",
    "transition_matrix",
]


@dataclass(frozen=True)
class Trace:
    """A piecewise-constant function of time: ``values[i]`` holds on ``[times_s[i], times_s[i+1])``."""

    times_s: np.ndarray
    values: np.ndarray

    def __post_init__(self) -> None:
        if len(self.times_s) != len(self.values) or len(self.times_s) == 0:
            raise ValueError("a trace needs as many values as breakpoints, and at least one")
        if self.times_s[0] != 0.0 or np.any(np.diff(self.times_s) <= 0):
            raise ValueError("trace breakpoints must start at 0 and strictly increase")

    def at(self, t_s: float | np.ndarray) -> np.ndarray | float:
        """Value at time(s) ``t_s``."""
        return self.values[np.searchsorted(self.times_s, t_s, side="right") - 1]

    def next_change_s(self, t_s: float) -> float:
        """First breakpoint after ``t_s`` (``inf`` if none)."""
        i = int(np.searchsorted(self.times_s, t_s, side="right"))
        return float(self.times_s[i]) if i < len(self.times_s) else float("inf")


class SpeedTrace:
    """A speed :class:`Trace` with its cumulative work function, for exact finish times.

    Scalar look-ups use ``bisect`` on Python lists: for one value at a time it is several
    times faster than a numpy call, and the engine makes millions of them.
    """

    def __init__(self, trace: Trace) -> None:
        if np.any(trace.values <= 0):
            raise ValueError("speed factors must be > 0")
        self.trace = trace
        durations = np.diff(trace.times_s)
        # C at each breakpoint, in profiled milliseconds of work
        self.cum_work_ms = np.concatenate([[0.0], np.cumsum(durations * trace.values[:-1]) * 1e3])
        self._times = trace.times_s.tolist()
        self._speeds = trace.values.tolist()
        self._cum = self.cum_work_ms.tolist()

    def work_done_ms(self, t_s: float) -> float:
        """C(t): profiled milliseconds of work the device can do in [0, t]."""
        i = bisect.bisect_right(self._times, t_s) - 1
        return self._cum[i] + (t_s - self._times[i]) * self._speeds[i] * 1e3

    def finish_time_s(self, start_s: float, work_ms: float) -> float:
        """When ``work_ms`` profiled milliseconds of work started at ``start_s`` complete."""
        target = self.work_done_ms(start_s) + work_ms
        i = bisect.bisect_right(self._cum, target) - 1
        end = self._times[i] + (target - self._cum[i]) / (self._speeds[i] * 1e3)
        return max(end, start_s)  # rounding must never end work before it starts

    def speed_at(self, t_s: float) -> float:
        """Speed factor at ``t_s``."""
        return self._speeds[bisect.bisect_right(self._times, t_s) - 1]


def constant_trace(value: float) -> Trace:
    """The same value forever."""
    return Trace(np.array([0.0]), np.array([float(value)]))


def markov_trace(
    values: Sequence[float],
    mean_dwell_s: Sequence[float],
    transitions: np.ndarray,
    horizon_s: float,
    rng: np.random.Generator,
    initial: int | None = None,
) -> Trace:
    """A continuous-time Markov chain over states with the given ``values``.

    Each visit to state i lasts an exponential time of mean ``mean_dwell_s[i]``; the next state
    is drawn from row i of ``transitions`` (zero diagonal, rows summing to 1). The first state is
    ``initial``, or drawn from the stationary distribution (time-weighted). Sampled until
    ``horizon_s``.
    """
    values = np.asarray(values, dtype=float)
    dwell = np.asarray(mean_dwell_s, dtype=float)
    n = len(values)
    if initial is None:
        stationary = embedded_stationary(transitions) * dwell
        initial = int(rng.choice(n, p=stationary / stationary.sum()))
    times, states = _markov_walk(rng, dwell, jump_cdf(transitions), initial, float(horizon_s))
    return Trace(times, values[states])


def jump_cdf(transitions: np.ndarray) -> np.ndarray:
    """Each row of a jump matrix as the cumulative distribution ``Generator.choice(n, p=row)``
    searches (normalised as it normalises): a compiled walk that draws ``rng.random()`` and
    searches it there makes the very jumps ``choice`` would."""
    cdf = np.cumsum(transitions, axis=1)
    return cdf / cdf[:, -1:]


@njit()
def _markov_walk(rng: np.random.Generator, dwell: np.ndarray, cdf: np.ndarray, initial: int,
                 horizon_s: float) -> tuple[np.ndarray, np.ndarray]:
    """The chain's jump times and states until ``horizon_s``, compiled. Each dwell draws
    ``rng.exponential`` and each jump ``rng.random()`` searched in its row of ``cdf``: the very
    draws, in the same order, that ``Generator.choice(n, p=row)`` makes, so the trace is the
    one an uncompiled loop gives for the same seed (numba's Generator runs NumPy's algorithms
    on the same bit generator), about a hundred times faster."""
    n = cdf.shape[0]
    times, states = [0.0], [initial]
    t, state = 0.0, initial
    while t < horizon_s:
        t += rng.exponential(dwell[state])
        if n > 1:
            state = np.searchsorted(cdf[state], rng.random(), side="right")
        times.append(t)
        states.append(state)
    return np.array(times), np.array(states)


def embedded_stationary(transitions: np.ndarray) -> np.ndarray:
    """Stationary distribution of the jump chain (left eigenvector for eigenvalue 1)."""
    n = transitions.shape[0]
    if n == 1:
        return np.ones(1)
    a = np.vstack([transitions.T - np.eye(n), np.ones(n)])
    b = np.concatenate([np.zeros(n), [1.0]])
    pi = np.linalg.lstsq(a, b, rcond=None)[0]
    return np.clip(pi, 0, None)


def periodic_trace(
    high: float, low: float, period_s: float, duty: float, horizon_s: float, phase_s: float = 0.0
) -> Trace:
    """A co-running app's duty cycle: ``low`` for ``duty`` of each period, ``high`` otherwise.

    The low part of each period starts at ``phase_s`` into it.
    """
    times, values = [0.0], [high]
    start = phase_s % period_s - period_s
    while start < horizon_s:
        for t, v in ((start, low), (start + duty * period_s, high)):
            if t > times[-1]:
                times.append(t)
                values.append(v)
            elif t <= 0:
                values[0] = v
        start += period_s
    return Trace(np.array(times), np.array(values))


def resident_trace(memory_mb: Trace, level_bytes: Sequence[int], bandwidth_mb_s: float) -> Trace:
    """``k_min(t)``, the least sparse resident level, from available memory (see module doc).

    ``level_bytes[k]`` is the resident weight bytes of level k (non-increasing in k). While
    even the sparsest level does not fit, ``k_min`` is ``K`` (no level resident). At time 0
    whatever fits is resident (the model was loaded before the run).
    """
    sizes_mb = np.asarray(level_bytes, dtype=float) / 1e6
    times, levels = _resident_walk(np.ascontiguousarray(memory_mb.times_s, dtype=float),
                                   np.ascontiguousarray(memory_mb.values, dtype=float), sizes_mb, float(bandwidth_mb_s))
    return Trace(times, levels.astype(float))


@njit()
def _fits(sizes_mb: np.ndarray, mb: float) -> int:
    """Least sparse level whose weights fit in ``mb`` (``len(sizes_mb)`` if none)."""
    for level in range(len(sizes_mb)):
        if sizes_mb[level] <= mb:
            return level
    return len(sizes_mb)


@njit()
def _resident_walk(memory_times: np.ndarray, memory_mb: np.ndarray, sizes_mb: np.ndarray,
                   bandwidth_mb_s: float) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """:func:`resident_trace`'s breakpoints, compiled: an eviction at once, a reload one level
    at a time (least sparse last) until the memory changes again; a change to the level already
    there, or two at one time, is merged."""
    k = len(sizes_mb)
    n = len(memory_times)
    cap = 2 * n + 2
    times = np.empty(cap)
    levels = np.empty(cap, dtype=np.int64)
    times[0], levels[0] = 0.0, _fits(sizes_mb, memory_mb[0])
    m = 1
    for i in range(n):
        target = _fits(sizes_mb, memory_mb[i])
        end = memory_times[i + 1] if i + 1 < n else np.inf
        current = levels[m - 1]
        if target > current:  # evicted at once
            m = _append(times, levels, m, memory_times[i], target)
            continue
        clock = memory_times[i]
        while current > target:
            freed = sizes_mb[current] if current < k else 0.0
            clock += (sizes_mb[current - 1] - freed) / bandwidth_mb_s
            if clock >= end:
                break
            current -= 1
            if m + 1 >= len(times):  # more reloads than expected: grow
                times = np.concatenate((times, np.empty(len(times))))
                levels = np.concatenate((levels, np.empty(len(levels), dtype=np.int64)))
            m = _append(times, levels, m, clock, current)
    return times[:m].copy(), levels[:m].copy()


@njit()
def _append(times: np.ndarray, values: np.ndarray, m: int, t: float, v: int) -> int:
    """Add the change to ``v`` at ``t`` after the first ``m``; returns the new count."""
    if v == values[m - 1]:
        return m
    if t == times[m - 1]:
        values[m - 1] = v
        if m > 1 and values[m - 2] == v:
            return m - 1
        return m
    times[m] = t
    values[m] = v
    return m + 1


def read_trace_csv(path: Path, column: str) -> Trace:
    """A replayed trace: CSV with columns ``time_s`` and ``column``; the first value also holds
    before the first time. Raises SimqosError naming the file and the problem."""
    data = read_numeric_columns(path, ("time_s", column), "trace")
    times, values = data["time_s"], data[column]
    if np.any(np.diff(times) <= 0):
        raise SimqosError(f"{path}: time_s must strictly increase")
    if times[0] > 0:
        times, values = np.concatenate([[0.0], times]), np.concatenate([[values[0]], values])
    return Trace(times, values)


def trace_from_spec(spec: Any, field: str, horizon_s: float, rng: np.random.Generator) -> Trace:
    """Sample the process described by a scenario's ``device.speed`` or ``device.memory``."""
    if spec.kind == "constant":
        return constant_trace(getattr(spec, field))
    if spec.kind == "markov":
        names = [s.name for s in spec.states]
        return markov_trace(
            [getattr(s, field) for s in spec.states],
            [s.mean_dwell_s for s in spec.states],
            transition_matrix(spec.transitions, len(spec.states)),
            horizon_s,
            rng,
            initial=None if spec.initial is None else names.index(spec.initial),
        )
    if spec.kind == "periodic":
        return periodic_trace(spec.high, spec.low, spec.period_s, spec.duty, horizon_s, spec.phase_s)
    trace = read_trace_csv(spec.path, field)
    return repeated_trace(trace, horizon_s) if spec.after_end == "repeat" else trace


def sampled_to_horizon(spec: Any) -> bool:
    """Whether :func:`trace_from_spec` draws ``spec`` up to its horizon (a Markov or periodic
    process, a repeated trace file), so that a longer run needs a longer horizon."""
    return spec.kind in ("markov", "periodic") or (spec.kind == "trace" and spec.after_end == "repeat")


def repeated_trace(trace: Trace, horizon_s: float) -> Trace:
    """``trace`` replayed end to end until ``horizon_s``: each replay starts one mean interval
    after the previous one's last breakpoint (so its last value holds that long), as replayed
    arrivals do."""
    times = trace.times_s
    if len(times) == 1:
        return trace  # one value: the same forever
    period = times[-1] + times[-1] / (len(times) - 1)
    copies = max(1, int(np.ceil(horizon_s / period)) + 1)
    return Trace((times[None, :] + period * np.arange(copies)[:, None]).reshape(-1), np.tile(trace.values, copies))


def transition_matrix(transitions: list[list[float]] | None, n_states: int) -> np.ndarray:
    """The given jump matrix, or by default a uniform jump to any other state."""
    if transitions is not None:
        return np.asarray(transitions, dtype=float)
    if n_states == 1:
        return np.ones((1, 1))
    m = np.full((n_states, n_states), 1.0 / (n_states - 1))
    np.fill_diagonal(m, 0.0)
    return m
