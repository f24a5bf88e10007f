"""The device's fluctuation as exogenous, piecewise-constant traces.

A :class:`Trace` holds breakpoints ``times_s`` (the first is 0) and the value that holds from
each breakpoint to the next; the last value holds forever. Traces are sampled from a
:class:`Process` (``constant``, ``markov``, ``periodic``, or a replayed ``trace`` CSV, held or
repeated after its end) as far as asked, with a ``numpy.random.Generator`` passed in — never
global random state; sampling further extends the same trace. The whole-run path samples a
replication's device to a horizon (:func:`simqos.sim.inputs.until_covered` samples further while a
run outlasts it); the streamed path holds a :class:`DeviceWindow` that moves with the chunks.

Compute speed is a factor: 1.0 runs layers as fast as when profiled, 0.5 twice as slow. Work W
(profiled milliseconds) started at t finishes where the cumulative work function
``C(t) = ∫ speed`` reaches ``C(t) + W`` (:meth:`SpeedTrace.finish_time_s`): exact, one binary
search, so a change mid-layer slows the rest of that layer.

Memory is the megabytes available to the model's weights. Under nested storage level k needs
``bytes_k`` resident, and a sparser level needs fewer, so the resident levels at any time are
``k >= k_min(t)``. :func:`resident_trace` (:class:`Residency`, fed in parts) turns a memory
trace into ``k_min(t)``: a drop evicts at once; a rise reloads the missing bytes at
``storage_bandwidth_mb_s``, so the level becomes usable only when its reload completes (and a
further drop cancels it).

A scenario's ``device.noise`` is a second speed process multiplied onto ``device.speed``
(:class:`ProductProcess`): the machine's own wander and rare stalls, which no policy plans
with (``simqos validate`` measures this machine's and writes it as such a process).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from simqos.jit import njit
from simqos.userfiles import read_numeric_columns
from simqos.errors import SimqosError
from simqos.markov import embedded_stationary, transition_matrix
from simqos.sim.serving import DeviceArrays

__all__ = [
    "SpeedTrace",
    "Trace",
    "ConstantProcess",
    "DeviceWindow",
    "MarkovProcess",
    "PeriodicProcess",
    "Process",
    "ProductProcess",
    "ReplayedProcess",
    "Residency",
    "constant_trace",
    "fits",
    "cumulative_work_s",
    "embedded_stationary",
    "markov_trace",
    "periodic_trace",
    "process_from_spec",
    "read_trace_csv",
    "repeated_trace",
    "resident_trace",
    "sampled",
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
        self.cum_work_ms = cumulative_work_s(trace.times_s, trace.values) * 1e3  # C at each breakpoint
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


def cumulative_work_s(times_s: np.ndarray, speeds: np.ndarray, before: tuple[float, float, float] | None = None) -> np.ndarray:
    """C at each breakpoint in profiled seconds of work (times 1e3: milliseconds): the running
    sum of each piece's length times its speed. ``before``: the (breakpoint, speed, C) that
    precedes ``times_s[0]`` when these breakpoints extend a trace; the sum is taken in the same
    order, so a trace extended piece by piece has the very C of the trace sampled at once."""
    if before is None:
        return np.concatenate([[0.0], np.cumsum(np.diff(times_s) * speeds[:-1])])
    t0, v0, c0 = before
    steps = np.diff(np.concatenate([[t0], times_s])) * np.concatenate([[v0], speeds[:-1]])
    return np.cumsum(np.concatenate([[c0], steps]))[1:]


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
    return sampled(MarkovProcess(values, mean_dwell_s, transitions, rng, initial), horizon_s)


class Process:
    """A device process sampled on demand: each :meth:`extend` returns the breakpoints (times,
    values) that make the trace exact on ``[0, until_s]``, after those returned before. The
    pieces do not depend on the steps they are drawn in. ``final``: the trace is complete (its
    last value holds forever)."""

    final = False

    def extend(self, until_s: float) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - each kind has one
        raise NotImplementedError


class ConstantProcess(Process):
    final = True

    def __init__(self, value: float) -> None:
        self.value, self.started = float(value), False

    def extend(self, until_s: float) -> tuple[np.ndarray, np.ndarray]:
        first, self.started = not self.started, True
        return (np.array([0.0]), np.array([self.value])) if first else (np.empty(0), np.empty(0))


class MarkovProcess(Process):
    """:func:`markov_trace`'s chain, drawn as far as asked (:func:`_markov_walk` resumed)."""

    def __init__(self, values, mean_dwell_s, transitions: np.ndarray, rng: np.random.Generator, initial: int | None) -> None:
        self.values = np.asarray(values, dtype=float)
        self.dwell = np.asarray(mean_dwell_s, dtype=float)
        self.cdf, self.rng = jump_cdf(transitions), rng
        if initial is None:
            stationary = embedded_stationary(transitions) * self.dwell
            initial = int(rng.choice(len(self.values), p=stationary / stationary.sum()))
        self.initial = initial
        self.t, self.state, self.started = 0.0, initial, False

    def extend(self, until_s: float) -> tuple[np.ndarray, np.ndarray]:
        times, states = _markov_walk(self.rng, self.dwell, self.cdf, self.t, self.state, float(until_s))
        if len(times):
            self.t, self.state = float(times[-1]), int(states[-1])
        if not self.started:
            self.started = True
            times, states = np.concatenate([[0.0], times]), np.concatenate([[self.initial], states])
        return times, self.values[states]


def jump_cdf(transitions: np.ndarray) -> np.ndarray:
    """Each row of a jump matrix as the cumulative distribution ``Generator.choice(n, p=row)``
    searches (normalised as it normalises): a compiled walk that draws ``rng.random()`` and
    searches it there makes the very jumps ``choice`` would."""
    cdf = np.cumsum(transitions, axis=1)
    return cdf / cdf[:, -1:]


@njit()
def _markov_walk(rng: np.random.Generator, dwell: np.ndarray, cdf: np.ndarray, t: float, state: int,
                 horizon_s: float) -> tuple[np.ndarray, np.ndarray]:
    """The chain's jumps after time ``t`` in ``state``, until one reaches ``horizon_s``
    (times and new states), compiled. Each dwell draws ``rng.exponential`` and each jump
    ``rng.random()`` searched in its row of ``cdf``: the very draws, in the same order, that
    ``Generator.choice(n, p=row)`` makes, so the trace is the one an uncompiled loop gives for
    the same seed (numba's Generator runs NumPy's algorithms on the same bit generator), about a
    hundred times faster. A walk resumed from its last jump continues with the very draws it
    would have made: the trace does not depend on the horizons it was drawn in."""
    n = cdf.shape[0]
    times = np.empty(64)
    states = np.empty(64, dtype=np.int64)
    m = 0
    while t < horizon_s:
        t += rng.exponential(dwell[state])
        if n > 1:
            state = np.searchsorted(cdf[state], rng.random(), side="right")
        if m == len(times):
            times = np.concatenate((times, np.empty(m)))
            states = np.concatenate((states, np.empty(m, dtype=np.int64)))
        times[m], states[m] = t, state
        m += 1
    return times[:m].copy(), states[:m].copy()


def periodic_trace(
    high: float, low: float, period_s: float, duty: float, horizon_s: float, phase_s: float = 0.0
) -> Trace:
    """A co-running app's duty cycle: ``low`` for ``duty`` of each period, ``high`` otherwise.

    The low part of each period starts at ``phase_s`` into it.
    """
    return sampled(PeriodicProcess(high, low, period_s, duty, phase_s), horizon_s)


class PeriodicProcess(Process):
    """:func:`periodic_trace`'s duty cycle, as far as asked: period k's low part starts at
    ``first + k * period_s`` (``first``: the start of the period that holds time 0)."""

    def __init__(self, high: float, low: float, period_s: float, duty: float, phase_s: float = 0.0) -> None:
        self.high, self.low, self.period_s, self.duty = float(high), float(low), float(period_s), float(duty)
        self.first_s = phase_s % period_s - period_s
        self.next, self.last_s = 0, -math.inf  # the next period to give, the last breakpoint given

    def extend(self, until_s: float) -> tuple[np.ndarray, np.ndarray]:
        end = max(self.next, int(math.floor((until_s - self.first_s) / self.period_s)) + 1)
        starts = self.first_s + self.period_s * np.arange(self.next, end)
        times = np.column_stack((starts, starts + self.duty * self.period_s)).ravel()
        values = np.tile([self.low, self.high], end - self.next)
        if self.next == 0:  # the value at 0 is the last change at or before it
            before = times <= 0.0
            first = values[before][-1] if before.any() else self.high
            times, values = np.concatenate([[0.0], times[~before]]), np.concatenate([[first], values[~before]])
        keep = times > np.maximum.accumulate(np.concatenate([[self.last_s], times[:-1]]))
        times, values = times[keep], values[keep]
        self.next = end
        if len(times):
            self.last_s = float(times[-1])
        return times, values


class ReplayedProcess(Process):
    """A trace file, held after its end (``final``) or replayed end to end (:func:`repeated_trace`)."""

    def __init__(self, trace: Trace, repeat: bool) -> None:
        self.trace = trace
        self.final = not repeat or len(trace.times_s) == 1  # one value: the same forever
        self.period_s = trace.times_s[-1] + trace.times_s[-1] / max(len(trace.times_s) - 1, 1)
        self.next = 0  # the next copy to give

    def extend(self, until_s: float) -> tuple[np.ndarray, np.ndarray]:
        end = 1 if self.final else max(self.next, int(math.floor(until_s / self.period_s)) + 1)
        copies = np.arange(self.next, end)
        self.next = max(self.next, end)
        times = (self.trace.times_s[None, :] + self.period_s * copies[:, None]).reshape(-1)
        return times, np.tile(self.trace.values, len(copies))


class ProductProcess(Process):
    """Two speed processes multiplied: ``device.speed`` times ``device.noise``. Each factor is
    extended as far as asked; a factor's trace is exact until its last breakpoint given (or
    the time asked, if later), so the product gives the breakpoints of both up to the earlier
    of the two and keeps the rest for the next call: the pieces do not depend on the steps."""

    def __init__(self, first: Process, second: Process) -> None:
        self.factors = (first, second)
        self.final = first.final and second.final
        self.pending = [(np.empty(0), np.empty(0)), (np.empty(0), np.empty(0))]  # given by a factor, not yet multiplied
        self.current = [math.nan, math.nan]  # each factor's value at the last breakpoint given

    def extend(self, until_s: float) -> tuple[np.ndarray, np.ndarray]:
        known = []
        for k, factor in enumerate(self.factors):
            times, values = factor.extend(until_s)
            self.pending[k] = (np.concatenate([self.pending[k][0], times]), np.concatenate([self.pending[k][1], values]))
            last = self.pending[k][0][-1] if len(self.pending[k][0]) else -math.inf
            known.append(math.inf if factor.final else max(until_s, last))
        upto = min(known)
        cut = [int(np.searchsorted(times, upto, side="right")) for times, _ in self.pending]
        now = [(times[:c], values[:c]) for (times, values), c in zip(self.pending, cut)]
        self.pending = [(times[c:], values[c:]) for (times, values), c in zip(self.pending, cut)]
        merged = np.union1d(now[0][0], now[1][0])
        if not len(merged):
            return merged, merged
        value = []
        for k, (times, values) in enumerate(now):  # each factor at every merged breakpoint
            if not len(values):
                value.append(np.full(len(merged), self.current[k]))
                continue
            at = np.searchsorted(times, merged, side="right") - 1
            value.append(np.where(at >= 0, values[np.maximum(at, 0)], self.current[k]))
            self.current[k] = float(values[-1])
        return merged, value[0] * value[1]


def sampled(process: Process, horizon_s: float) -> Trace:
    """``process``'s trace, exact until ``horizon_s``."""
    return Trace(*process.extend(horizon_s))


def resident_trace(memory_mb: Trace, level_bytes: Sequence[int], bandwidth_mb_s: float) -> Trace:
    """``k_min(t)``, the least sparse resident level, from available memory (see module doc).

    ``level_bytes[k]`` is the resident weight bytes of level k (non-increasing in k). While
    even the sparsest level does not fit, ``k_min`` is ``K`` (no level resident). At time 0
    whatever fits is resident (the model was loaded before the run).
    """
    return Trace(*Residency(level_bytes, bandwidth_mb_s).extend(memory_mb.times_s, memory_mb.values, final=True))


class Residency:
    """:func:`resident_trace` fed the memory trace in parts (:meth:`extend`): a memory piece is
    turned into residency once its end is known (the next piece's start), so after each part
    the resident trace is exact until ``until_s``; the breakpoints do not depend on the parts."""

    def __init__(self, level_bytes: Sequence[int], bandwidth_mb_s: float) -> None:
        self.sizes_mb = np.asarray(level_bytes, dtype=float) / 1e6
        self.bandwidth_mb_s = float(bandwidth_mb_s)
        self.pending = (np.empty(0), np.empty(0))  # the memory piece whose end is not known yet
        self.last: tuple[float, int] | None = None  # the last resident breakpoint given
        self.until_s = 0.0

    def extend(self, memory_times: np.ndarray, memory_mb: np.ndarray, final: bool) -> tuple[np.ndarray, np.ndarray]:
        """The resident breakpoints (times, levels as floats) that the next part of the memory
        trace settles; ``final``: it is the last part (its last value holds forever)."""
        times = np.concatenate([self.pending[0], memory_times])
        mb = np.concatenate([self.pending[1], memory_mb])
        settled = len(times) if final else len(times) - 1
        self.pending = (times[settled:], mb[settled:])
        self.until_s = math.inf if final else (float(times[-1]) if len(times) else self.until_s)
        if settled == 0:
            return np.empty(0), np.empty(0)
        end = math.inf if final else float(times[settled])
        previous = (-1.0, -1) if self.last is None else self.last
        out_t, out_k = _resident_walk(np.ascontiguousarray(times[:settled], dtype=float), np.ascontiguousarray(mb[:settled], dtype=float),
                                      end, self.sizes_mb, self.bandwidth_mb_s, previous[0], previous[1])  # fmt: skip
        if len(out_t):
            self.last = (float(out_t[-1]), int(out_k[-1]))
        return out_t, out_k.astype(float)


@njit()
def fits(sizes_mb: np.ndarray, mb: float) -> int:
    """Least sparse level whose weights fit in ``mb`` (``len(sizes_mb)`` if none)."""
    for level in range(len(sizes_mb)):
        if sizes_mb[level] <= mb:
            return level
    return len(sizes_mb)


@njit()
def _resident_walk(memory_times: np.ndarray, memory_mb: np.ndarray, end_s: float, sizes_mb: np.ndarray,
                   bandwidth_mb_s: float, last_time: float, last_level: int) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """:func:`resident_trace`'s breakpoints over memory pieces ``memory_times`` (the last one
    ends at ``end_s``), compiled: an eviction at once, a reload one level at a time (least sparse
    last) until the memory changes again; a change to the level already there, or two at one
    time, is merged. ``last_level`` < 0: these are the first pieces (at time 0 whatever fits is
    resident); else the walk goes on from the breakpoint (``last_time``, ``last_level``), which
    it does not return again."""
    k = len(sizes_mb)
    n = len(memory_times)
    cap = 2 * n + 2
    times = np.empty(cap)
    levels = np.empty(cap, dtype=np.int64)
    first = last_level < 0
    if first:
        times[0], levels[0] = 0.0, fits(sizes_mb, memory_mb[0])
    else:
        times[0], levels[0] = last_time, last_level
    m = 1
    for i in range(n):
        target = fits(sizes_mb, memory_mb[i])
        end = memory_times[i + 1] if i + 1 < n else end_s
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
    skip = 0 if first else 1
    return times[skip:m].copy(), levels[skip:m].copy()


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


class DeviceWindow:
    """A replication's device as the fast path reads it, over a window of time that moves
    forward (:mod:`simqos.sim.compiled`): the speed trace with its C and the least sparse resident
    level, exact until ``known_s``. :meth:`ensure` samples the processes further, and
    :meth:`forget` drops the pieces before a time, so a long run holds a window of the device,
    not its whole history. ``cap_s``: a level not resident by then is taken never to return
    (a request that waits for it is dropped) — the whole-run path's horizon, twice the last
    arrival plus a minute."""

    def __init__(self, speed: Process, memory: Process, residency: Residency, cap_s: float = math.inf,
                 share: Process | None = None) -> None:  # fmt: skip
        self.speed, self.memory, self.residency, self.cap_s, self.share = speed, memory, residency, cap_s, share
        self.times_s, self.speeds, self.work_s = np.empty(0), np.empty(0), np.empty(0)
        self.res_times_s, self.res_levels = np.empty(0), np.empty(0, dtype=np.int64)
        self.share_times_s, self.shares = np.empty(0), np.empty(0)
        self.until_s, self.known_s = -math.inf, -math.inf

    def arrays(self) -> tuple[np.ndarray, ...]:
        """(breakpoints, speeds, C in ms, resident breakpoints, resident levels, share
        breakpoints, shares): what the fast path reads. ``share``: the speed process without the
        noise; None: the speed itself."""
        shared = (self.share_times_s, self.shares) if self.share is not None else (self.times_s, self.speeds)
        return self.times_s, self.speeds, self.work_s * 1e3, self.res_times_s, self.res_levels, *shared

    def view(self) -> DeviceArrays:
        """The window as the serving step reads it now."""
        return DeviceArrays.of(*self.arrays(), self.known_s, self.cap_s)

    def ensure(self, t_s: float) -> None:
        """Sample until the window is exact at least until ``t_s``."""
        step = 1.0
        while self.known_s < t_s:
            target = max(t_s, self.until_s + step)
            self._extend(target)
            step *= 2.0

    def _extend(self, until_s: float) -> None:
        times, speeds = self.speed.extend(until_s)
        if len(times):
            before = (self.times_s[-1], self.speeds[-1], self.work_s[-1]) if len(self.times_s) else None
            self.work_s = np.concatenate([self.work_s, cumulative_work_s(times, speeds, before)])
            self.times_s, self.speeds = np.concatenate([self.times_s, times]), np.concatenate([self.speeds, speeds])
        if self.share is not None:
            times, shares = self.share.extend(until_s)
            self.share_times_s, self.shares = np.concatenate([self.share_times_s, times]), np.concatenate([self.shares, shares])
        res_times, levels = self.residency.extend(*self.memory.extend(until_s), final=self.memory.final)
        self.res_times_s = np.concatenate([self.res_times_s, res_times])
        self.res_levels = np.concatenate([self.res_levels, levels.astype(np.int64)])
        self.until_s = until_s
        self.known_s = min(math.inf if self.speed.final else until_s, self.residency.until_s)

    def forget(self, before_s: float) -> None:
        """Drop the pieces that end before ``before_s`` (the window then starts with the piece
        that holds it): nothing later reads them."""
        i = max(int(np.searchsorted(self.times_s, before_s, side="right")) - 1, 0)
        j = max(int(np.searchsorted(self.res_times_s, before_s, side="right")) - 1, 0)
        if i > len(self.times_s) // 2:  # copied when most of it goes, so the arrays do not hold the rest
            self.times_s, self.speeds, self.work_s = self.times_s[i:].copy(), self.speeds[i:].copy(), self.work_s[i:].copy()
        if j > len(self.res_times_s) // 2:
            self.res_times_s, self.res_levels = self.res_times_s[j:].copy(), self.res_levels[j:].copy()
        k = max(int(np.searchsorted(self.share_times_s, before_s, side="right")) - 1, 0)
        if k > len(self.share_times_s) // 2:
            self.share_times_s, self.shares = self.share_times_s[k:].copy(), self.shares[k:].copy()


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


def process_from_spec(spec: Any, field: str, rng: np.random.Generator) -> Process:
    """The process described by a scenario's ``device.speed`` or ``device.memory``, to sample."""
    if spec.kind == "constant":
        return ConstantProcess(getattr(spec, field))
    if spec.kind == "markov":
        names = [s.name for s in spec.states]
        return MarkovProcess(
            [getattr(s, field) for s in spec.states],
            [s.mean_dwell_s for s in spec.states],
            transition_matrix(spec.transitions, len(spec.states)),
            rng,
            initial=None if spec.initial is None else names.index(spec.initial),
        )
    if spec.kind == "periodic":
        return PeriodicProcess(spec.high, spec.low, spec.period_s, spec.duty, spec.phase_s)
    return ReplayedProcess(read_trace_csv(spec.path, field), repeat=spec.after_end == "repeat")


def repeated_trace(trace: Trace, horizon_s: float) -> Trace:
    """``trace`` replayed end to end until ``horizon_s``: each replay starts one mean interval
    after the previous one's last breakpoint (so its last value holds that long), as replayed
    arrivals do."""
    return sampled(ReplayedProcess(trace, repeat=True), horizon_s)
