"""The serving core: queue rules, outcome codes, the device's clock arithmetic and what a policy's
decision sees, written once as plain functions over plain values (the built-in decisions are in
:mod:`simqos.policies`).

numba compiles every function here for the fast path (:mod:`simqos.sim.compiled`); the SimPy
engine (:mod:`simqos.sim.simpy_model`) runs the very same source through ``.py_func``, and the real
server (:mod:`simqos.validate.real`) calls the same queue rules and policy decisions against
the wall clock. So the three drivers differ only in their clock, a queue rule changes in one
place, and a compiled policy is one function.

**Queue rules.** One device serves requests first come, first served. An arriving request is
admitted when the device is idle, or when fewer than ``capacity`` admitted requests are
waiting (``capacity`` 0: no waiting room, an M/G/1/1 loss system; negative: unbounded). A
request leaves the queue when its service starts, or when it is dropped late: with
``late: drop``, a request whose turn comes when even the sparsest level's median work at the
current speed cannot end by its deadline is dropped then (its records have no finish and no
latency). Every admitted request counts as waiting until it leaves, whichever way.

**Outcomes.** ``MET`` (finished by its deadline), ``MISSED`` (finished late), ``DROPPED``
(never served: turned away by a full queue, dropped late, or its level never became resident).

**Decisions.** At a request's start and at each reroute point the driver builds a
:class:`Decision` and calls the policy's ``decide(state, params, table) -> level``: ``params``
(float64[:]) and ``table`` (float64[:, :]) are whatever the policy prepared from its YAML
parameters, the profile and the scenario (see :mod:`simqos.policies`). The fast path passes
``decide`` as a numba first-class function of type :data:`DECIDE_TYPE` (a pointer, typed by its
signature rather than by which function it is), so the compiled driver is compiled once and
cached on disk for every policy, built-in or a user's.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import types

from simqos.jit import borrow, njit

__all__ = [
    "DECIDE_TYPE",
    "DROPPED",
    "MET",
    "MISSED",
    "OUTCOMES",
    "Decision",
    "admits",
    "advance",
    "bisect_from",
    "bisect_right",
    "decide_jit",
    "finish_time",
    "idle_factor_at",
    "idle_factors",
    "node_index",
    "resident_from",
    "route_code",
    "route_finish_time",
    "route_text",
    "segment_end",
    "serve_request",
    "too_late",
    "value_at",
    "waiting_at",
]

MET, MISSED, DROPPED = 0, 1, 2
OUTCOMES = ("met", "missed", "dropped")
"""Request outcomes by code: finished by the deadline, finished late, or never served."""

jit = njit()
decide_jit = njit(_nrt=False)
"""How the built-in decisions (and their helpers) are compiled, and how a user's compiled
policy may be: without numba's reference counting (``_nrt=False``), which a function that only
reads arrays and allocates none does not need. With it, each decision counts references to the
five arrays it is passed on entry and exit, about 30 ns of a 45 ns call; without it (and with
the driver passing borrowed views, :func:`simqos.jit.borrow`), a request of seven segments
under ``deadline_aware`` costs about a third less. A plain ``numba.njit`` ``decide`` runs the
same, only slower."""


class Decision(NamedTuple):
    """What a policy knows when it picks the level of segment ``segment`` of request ``request``.

    Times in seconds of simulated (or, on the real server, wall-clock) time. ``current_level``
    is -1 at the request's start; ``route_code`` holds the levels of the segments run so far
    as base-``n_levels`` digits (0 at the start). ``speed``: the device's speed factor now (1.0 = as profiled).
    ``min_resident_level``: levels below it are not resident now (``n_levels`` if none is).
    ``queued_deadlines_s``: absolute deadlines of the requests that have arrived behind this one,
    in queue order. ``idle_factor``: each level's work multiplier for this request (it found the
    device idle that long; 1 when it waited) — never time-slicing's, which would tell the
    request's own drawn work. ``route_finish_s``: clairvoyance, for bounds only —
    the exact finish of each of the policy's candidate routes started now with this request's
    own latency draws and the realised device (empty for every deployable policy).
    """

    request: int
    now_s: float
    arrival_s: float
    deadline_s: float
    segment: int
    current_level: int
    route_code: int
    speed: float
    min_resident_level: int
    n_levels: int
    queued_deadlines_s: np.ndarray
    idle_factor: np.ndarray
    route_finish_s: np.ndarray


DECIDE_TYPE = types.FunctionType(types.int64(
    types.NamedTuple([types.int64, types.float64, types.float64, types.float64, types.int64, types.int64, types.int64,
                      types.float64, types.int64, types.int64, types.float64[::1], types.float64[::1],
                      types.float64[::1]], Decision),
    types.float64[::1],
    types.float64[:, ::1],
))
"""numba type of a compiled ``decide(state, params, table) -> level``: what the fast path calls."""


# --- the device's clock ------------------------------------------------------------------


@jit
def bisect_right(a: np.ndarray, x: float, hi: int, lo: int = 0) -> int:
    """``bisect.bisect_right(a, x, lo, hi)``."""
    while lo < hi:
        mid = (lo + hi) // 2
        if x < a[mid]:
            hi = mid
        else:
            lo = mid + 1
    return lo


@jit
def bisect_from(a: np.ndarray, x: float, hi: int, hint: int) -> int:
    """``bisect.bisect_right(a[:hi], x)`` searched outward from ``hint`` (galloping): the same
    answer for any hint, in O(log distance) steps when the answer is near it. The drivers'
    clock only moves forward, so they pass the last answer and each lookup costs a step or two
    instead of a search over the whole trace."""
    if hint < 1 or hint > hi:
        return bisect_right(a, x, hi)  # no hint: a plain search
    if x < a[hint - 1]:
        return bisect_right(a, x, hint - 1)  # behind the hint
    lo, step = hint, 1  # a[lo - 1] <= x
    while lo + step - 1 < hi and a[lo + step - 1] <= x:
        lo += step
        step *= 2
    return bisect_right(a, x, min(lo + step - 1, hi), lo)


@jit
def value_at(times: np.ndarray, values: np.ndarray, t: float):
    """The value of a piecewise-constant trace at ``t``."""
    return values[bisect_right(times, t, len(times)) - 1]


@jit
def advance(times: np.ndarray, speeds: np.ndarray, cum: np.ndarray, i: int, start: float, work: float) -> tuple[float, int]:
    """``(end, j)``: when ``work`` profiled milliseconds started at ``start`` (in the trace's
    piece ``i``) complete on a speed trace whose cumulative work at each breakpoint is ``cum``
    (exact), and the piece that holds ``end``; both searched outward from ``i``."""
    target = cum[i] + (start - times[i]) * speeds[i] * 1e3 + work
    j = bisect_from(cum, target, len(cum), i + 1) - 1
    end = max(times[j] + (target - cum[j]) / (speeds[j] * 1e3), start)  # rounding must never end work before it starts
    return end, bisect_from(times, end, len(times), j + 1) - 1


@jit
def finish_time(times: np.ndarray, speeds: np.ndarray, cum: np.ndarray, start: float, work: float) -> float:
    """When ``work`` profiled milliseconds started at ``start`` complete (:func:`advance`)."""
    return advance(times, speeds, cum, bisect_right(times, start, len(times)) - 1, start, work)[0]


@jit
def resident_from(res_times: np.ndarray, res_levels: np.ndarray, level: int, t: float) -> float:
    """Earliest time >= ``t`` at which ``level`` is resident (inf if never)."""
    i = bisect_right(res_times, t, len(res_times)) - 1
    if res_levels[i] <= level:
        return t
    for j in range(i + 1, len(res_levels)):
        if res_levels[j] <= level:
            return res_times[j]
    return math.inf


@jit
def idle_factor_at(idle_ms: np.ndarray, factor: np.ndarray, gap_ms: float) -> float:
    """The work multiplier of a request that finds the device idle for ``gap_ms``: linear
    between the measured gaps, the last factor beyond them (the service model's and every
    engine's: one compiled function, so all get the same bits)."""
    n = len(idle_ms)
    if gap_ms >= idle_ms[n - 1]:
        return factor[n - 1]
    if gap_ms <= idle_ms[0]:  # also a gap a rounding error below 0: the device was busy
        return factor[0]
    j = 1
    while idle_ms[j] <= gap_ms:
        j += 1
    w = (gap_ms - idle_ms[j - 1]) / (idle_ms[j] - idle_ms[j - 1])
    return factor[j - 1] + w * (factor[j] - factor[j - 1])


@jit
def idle_factors(idle_ms: np.ndarray, idle_factor: np.ndarray, gap_ms: float, out: np.ndarray) -> np.ndarray:
    """Each level's work multiplier after the device idled ``gap_ms``, written into ``out``."""
    for k in range(len(out)):
        out[k] = idle_factor_at(idle_ms, idle_factor[k], gap_ms)
    return out


# --- queue rules ---------------------------------------------------------------------------


@jit
def waiting_at(left_s: np.ndarray, n_left: int, t: float, hint: int = 0) -> int:
    """Admitted requests still waiting at ``t``: those whose queue-leaving time (service start
    or late drop; ``left_s[:n_left]``, non-decreasing) is after ``t``. ``hint``: where to start
    looking (:func:`bisect_from`); a driver whose ``t`` only grows passes ``n_left`` minus the
    last answer."""
    return n_left - bisect_from(left_s, t, n_left, hint)


@jit
def admits(waiting: int, capacity: int, idle: bool) -> bool:
    """Whether an arrival is admitted: the device is idle, or fewer than ``capacity`` requests
    wait (``capacity`` < 0: unbounded)."""
    return capacity < 0 or idle or waiting < capacity


@jit
def too_late(now_s: float, deadline_s: float, sparsest_median_ms: float, speed: float) -> bool:
    """The late-drop rule: even the sparsest level's median work at the current speed cannot
    end by the deadline."""
    return now_s + sparsest_median_ms / speed / 1e3 > deadline_s


# --- one request -----------------------------------------------------------------------------


def route_code(levels, n_levels: int) -> int:
    """A route (its levels, segment by segment) as base-``n_levels`` digits: how records and
    :class:`Decision` hold it."""
    code = 0
    for level in levels:
        code = code * n_levels + level
    return code


def route_text(code: int, n_levels: int, n_segments: int) -> str:
    """A route code as records write it: its levels joined by ``-`` (``0-0-1``); empty for
    -1 (not served)."""
    if code < 0:
        return ""
    digits = []
    for _ in range(n_segments):
        code, d = divmod(int(code), n_levels)
        digits.append(str(d))
    return "-".join(reversed(digits))


@jit
def node_index(n_levels: int, depth: int, code: int) -> int:
    """Index of the route prefix of ``depth`` segments with levels ``code`` (base-``n_levels``
    digits) among all prefixes ordered by depth, then by code (the ``dp`` policy's table)."""
    offset, width = 0, 1
    for _ in range(depth):
        offset += width
        width *= n_levels
    return offset + code


@jit
def segment_end(start_s, level, work_ms, times, speeds, cum, res_times, res_levels) -> float:
    """When a segment at ``level`` with ``work_ms`` of profiled work, started at ``start_s``,
    ends: it waits for its level to be resident, then runs on the speed trace (inf if the level
    never becomes resident, as from an inf start)."""
    t = resident_from(res_times, res_levels, level, start_s) if not math.isinf(start_s) else start_s
    return t if math.isinf(t) else finish_time(times, speeds, cum, t, work_ms)


@jit
def route_finish_time(route, start_s, work, factors, times, speeds, cum, res_times, res_levels) -> float:
    """When a request started at ``start_s`` on ``route`` (its level per segment) finishes: each
    segment waits for its level to be resident, then runs ``work[level, segment] *
    factors[level]`` on the speed trace; inf when a level never becomes resident."""
    t = start_s
    for seg in range(len(route)):
        level = route[seg]
        t = segment_end(t, level, work[level, seg] * factors[level], times, speeds, cum, res_times, res_levels)
        if math.isinf(t):
            return t
    return t


@jit
def serve_request(
    request, start_s, arrival_s, deadline_s, work, factors, seen, times, speeds, cum, res_times, res_levels,
    queued, decide, params, table, candidates, route_finish, speed_piece, resident_piece,
):  # fmt: skip
    """Serve one request started at ``start_s``: at its start and at each reroute point ask
    ``decide`` for the next segment's level, wait for that level to be resident, and run the
    segment's ``work[level, segment] * factors[level]`` on the speed trace. The policy is shown
    ``seen`` as the request's work factors: what a deployed system knows before it runs (the
    idle gap's factors), where ``factors`` may hold more (time-slicing's, which depend on the
    request's own drawn work; the drivers pass the same array when there is no slicing). Returns
    ``(finish_s, route code, reroutes)``: the route's levels as base-``n_levels`` digits, and
    ``finish_s`` inf when a chosen level never becomes resident (the request is dropped).
    ``candidates`` (int64[:, :], one route per row) are the routes whose exact finish a
    clairvoyant policy sees; empty for the others; ``route_finish`` (float64[len(candidates)])
    receives their finishes (the driver's, reused). ``speed_piece`` and ``resident_piece``: the
    pieces of the speed and residency traces that hold ``start_s`` (a driver follows them
    forward; a search from the start of a long trace per request was most of a request's cost)."""
    n_levels, n_segments = work.shape[0], work.shape[1]
    for r in range(candidates.shape[0]):
        route_finish[r] = route_finish_time(candidates[r], start_s, work, factors, times, speeds, cum, res_times, res_levels)
    t = start_s
    level = -1
    code = 0
    changes = 0
    i_speed, i_res = speed_piece, resident_piece  # the traces' pieces at t, followed forward
    for seg in range(n_segments):
        state = Decision(
            request, t, arrival_s, deadline_s, seg, level, code, speeds[i_speed],
            res_levels[i_res], n_levels, borrow(queued), borrow(seen), borrow(route_finish),
        )
        chosen = decide(state, borrow(params), borrow(table))
        if chosen < 0 or chosen >= n_levels:
            raise ValueError("a policy chose a level outside 0..n_levels-1")
        if res_levels[i_res] > chosen:  # not resident now: wait for it
            t = resident_from(res_times, res_levels, chosen, t)
            if math.isinf(t):
                return math.inf, code, changes
            i_speed = bisect_from(times, t, len(times), i_speed + 1) - 1
        t, i_speed = advance(times, speeds, cum, i_speed, t, work[chosen, seg] * factors[chosen])
        i_res = bisect_from(res_times, t, len(res_times), i_res + 1) - 1
        if level >= 0 and chosen != level:
            changes += 1
        level = chosen
        code = code * n_levels + chosen
    return t, code, changes
