"""The serving core: one step of the server (:func:`serve_step`), over the rules
(:class:`Rules`), the device (:class:`DeviceArrays`), the policy (:class:`PolicyArrays`) and the
server's state (:class:`ServerState`), with the queue rules, outcome codes, the device's clock
arithmetic and what a policy's decision sees (the built-in decisions are in
:mod:`simqos.policies`).

Every driver takes this step: the compiled one (:mod:`simqos.sim.compiled`) as numba compiles
it, the SimPy model (:mod:`simqos.sim.simpy_model`) as the interpreter runs the same source
(:data:`serve_step_py`), and the real server (:mod:`simqos.validate.server`) its queue rules
(:func:`join_queue`) against the wall clock. So they differ only in their clock, and a rule
changes here and in :class:`Rules` alone; the planners that model the rules themselves (the
bound, ``queue_dp``) refuse a rule they do not know (:func:`require_modelled`).

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

import functools
import math
from typing import NamedTuple

import numpy as np
from numba import types

from simqos.errors import SimqosError
from simqos.jit import borrow, interpreted, njit
from simqos.sim.timeslice import route_work, slice_left_after, sliced_factors, wake_waited

__all__ = [
    "BEYOND",
    "BUSY_UNTIL",
    "DECIDE_TYPE",
    "DROPPED",
    "DROPPED_LATE",
    "Decision",
    "DeviceArrays",
    "GONE",
    "MET",
    "MISSED",
    "N_LEFT",
    "OUTCOMES",
    "PolicyArrays",
    "Rules",
    "STARTS",
    "ServerState",
    "TURNED_AWAY",
    "UnmodelledRule",
    "admits",
    "advance",
    "bisect_from",
    "bisect_right",
    "decide_jit",
    "finish_time",
    "idle_factor_at",
    "idle_factors",
    "in_force",
    "join_queue",
    "node_index",
    "require_modelled",
    "resident_from",
    "route_code",
    "route_finish_time",
    "route_text",
    "segment_end",
    "serve_request",
    "serve_step",
    "serve_step_py",
    "server_state",
    "too_late",
    "value_at",
    "waiting_at",
    "with_room",
]

MET, MISSED, DROPPED = 0, 1, 2
OUTCOMES = ("met", "missed", "dropped")
"""Request outcomes by code: finished by the deadline, finished late, or never served."""

jit = njit()
inlined = njit(inline="always")  # into the compiled driver's loop, as if written there
_f8 = functools.partial(np.require, dtype=np.float64, requirements="CW")  # the compiled types: writable, C order
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
def idle_factors(idle_ms: np.ndarray, idle_factor: np.ndarray, gap_ms: float, out: np.ndarray) -> None:
    """Each level's work multiplier after the device idled ``gap_ms``, written into ``out``."""
    for k in range(len(out)):
        out[k] = idle_factor_at(idle_ms, idle_factor[k], gap_ms)


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


# --- one step of the server ---------------------------------------------------------------


class Rules(NamedTuple):
    """How the device serves requests, besides its traces: the queue rules (``capacity``,
    negative: unbounded; ``late_drop`` with the work it checks, ``sparsest_median_ms``, 0 without
    the rule), a woken
    request's slowdown (``idle_factor[level, j]`` after ``idle_ms[j]`` idle) and the
    time-slicing (``slice_ms``, 0: none; ``wake_wait``, the fraction of a competitor's slice a
    woken request waits by the number of competitors, 0: none). Each default is the rule switched off; a planner that
    models only some rules refuses the others when they are in force (:func:`require_modelled`),
    so a new field here reaches every planner as "not modelled" until it says otherwise."""

    capacity: int = -1
    late_drop: bool = False
    sparsest_median_ms: float = 0.0
    idle_ms: np.ndarray = np.zeros(1)
    idle_factor: np.ndarray = np.ones((1, 1))
    slice_ms: float = 0.0
    wake_wait: np.ndarray = np.zeros(1)

    @classmethod
    def of(cls, scenario, model) -> Rules:
        """The rules of a scenario (its queue and device) served with a service model."""
        queue = scenario.workload.queue
        late_drop = queue.late == "drop"
        return cls(-1 if queue.capacity is None else int(queue.capacity), late_drop, float(model.sparsest_median_ms) if late_drop else 0.0,
                   _f8(model.idle_ms), _f8(model.idle_factor), float(scenario.device.slice_ms),
                   _f8(scenario.device.wake_wait or [0.0]))  # fmt: skip


class UnmodelledRule(SimqosError):
    """A planner was asked to plan under a rule it does not model."""


def in_force(rules: Rules) -> list[str]:
    """The rules that change how requests are served: the fields off their defaults (of
    :class:`Rules`, or of any named tuple that gives each field a default)."""
    return [name for name, off in rules._field_defaults.items()
            if not np.array_equal(np.broadcast_to(off, np.shape(getattr(rules, name))), getattr(rules, name))]  # fmt: skip


def require_modelled(rules: Rules, modelled: tuple[str, ...], who: str, fix: str) -> None:
    """Refuse, naming each rule in force that ``who`` does not model (``modelled``: the fields
    of :class:`Rules` it handles), rather than plan for a device that serves otherwise."""
    missing = [name for name in in_force(rules) if name not in modelled]
    if missing:
        got = ", ".join(f"{name} = {getattr(rules, name)}" for name in missing)
        raise UnmodelledRule(f"{who} does not model the serving rule{'s' if len(missing) > 1 else ''} in force here ({got}); {fix}")


class DeviceArrays(NamedTuple):
    """The device as the serving step reads it: the speed trace (breakpoints, speeds, the
    cumulative work C in ms at each), the least sparse resident level's trace, and the share of
    the core that competing processes leave (what the time-slicing reads), exact until
    ``known_s``; a level not resident by ``cap_s`` never returns."""

    speed_times_s: np.ndarray
    speeds: np.ndarray
    cum_work_ms: np.ndarray
    resident_times_s: np.ndarray
    resident_levels: np.ndarray
    share_times_s: np.ndarray
    shares: np.ndarray
    known_s: float = math.inf
    cap_s: float = math.inf

    @classmethod
    def of(cls, speed_times_s, speeds, cum_work_ms, resident_times_s, resident_levels, share_times_s, shares,
           known_s: float = math.inf, cap_s: float = math.inf) -> DeviceArrays:  # fmt: skip
        """The arrays as the compiled step takes them (float64 and int64, C order)."""
        return cls(_f8(speed_times_s), _f8(speeds), _f8(cum_work_ms), _f8(resident_times_s),
                   np.require(resident_levels, np.int64, "CW"), _f8(share_times_s), _f8(shares), float(known_s), float(cap_s))


class PolicyArrays(NamedTuple):
    """What a policy prepared for its ``decide`` (``params``, ``table``) and the routes whose
    exact finish a clairvoyant policy is shown (``candidates``, one per row; none for the rest)."""

    params: np.ndarray
    table: np.ndarray
    candidates: np.ndarray

    @classmethod
    def of(cls, policy) -> PolicyArrays:
        """A policy's arrays (a Python policy's ``params`` and ``table`` are empty)."""
        params, table = policy.prepared() if policy.compiled() else (np.zeros(0), np.zeros((0, 0)))
        return cls(_f8(params), np.require(table, np.float64, "CW"), np.require(policy.candidates(), np.int64, "CW"))


BUSY_UNTIL, SLICE_LEFT = 0, 1
"""Indices of :attr:`ServerState.busy`."""
N_LEFT, GONE, QUEUE_END, AT_SPEED, AT_RESIDENT, AT_SHARE = range(6)
"""Indices of :attr:`ServerState.counts`: how many admitted requests have left the queue, and
where the searches found their last answers (hints: the server's clock only moves forward)."""
TURNED_AWAY, DROPPED_LATE, STARTS = range(3)
"""What :func:`join_queue` makes of an arrival."""
BEYOND = -1
""":func:`serve_step`'s outcome when the device is not known far enough to serve the request:
nothing changed, serve it again on a longer window."""


class ServerState(NamedTuple):
    """What the server carries from request to request, updated in place by
    :func:`serve_step`: ``busy`` (when the device is next free, s; the slice the last request
    left, ms), ``left_s`` (when each admitted request left the queue: its start or its late drop,
    the first ``counts[N_LEFT]`` in use), ``counts`` (see :data:`N_LEFT`) and scratch arrays."""

    busy: np.ndarray
    left_s: np.ndarray
    counts: np.ndarray
    factors: np.ndarray
    on_factors: np.ndarray
    route_finish: np.ndarray


def server_state(n_levels: int, n_candidates: int, capacity: int) -> ServerState:
    """A fresh server: idle since 0, room in ``left_s`` for ``capacity`` admitted requests."""
    return ServerState(np.zeros(2), np.empty(capacity), np.zeros(6, dtype=np.int64), np.ones(n_levels), np.ones(n_levels),
                       np.empty(n_candidates))  # fmt: skip


def with_room(state: ServerState, more: int) -> ServerState:
    """``state`` with the requests still waiting (those from ``counts[GONE]`` on) first in
    ``left_s`` and room for ``more``, its search hints reset (a new window of the device)."""
    waiting = state.left_s[state.counts[GONE] : state.counts[N_LEFT]]
    left = np.empty(len(waiting) + more)
    left[: len(waiting)] = waiting
    counts = np.zeros(6, dtype=np.int64)
    counts[N_LEFT] = len(waiting)
    return state._replace(left_s=left, counts=counts)


@inlined
def join_queue(rules, state, arrival_s, now_s, deadline_s, speed) -> int:
    """The queue rules for an arrival at ``arrival_s`` that the server reaches at ``now_s``: 
    :data:`TURNED_AWAY` (the queue was full when it arrived), :data:`DROPPED_LATE` (it joined the
    queue and leaves it now, too late to run) or :data:`STARTS` (it starts now). All three
    drivers' one admission: the SimPy model's, the compiled one's and the real server's."""
    c = state.counts
    waiting = waiting_at(state.left_s, c[N_LEFT], arrival_s, c[GONE])
    c[GONE] = c[N_LEFT] - waiting
    if not admits(waiting, rules.capacity, state.busy[BUSY_UNTIL] <= arrival_s):
        return TURNED_AWAY
    state.left_s[c[N_LEFT]] = now_s
    c[N_LEFT] += 1
    if rules.late_drop and too_late(now_s, deadline_s, rules.sparsest_median_ms, speed):
        return DROPPED_LATE
    return STARTS


@jit
def _beyond(t, known_s, cap_s):
    """A finish past the device's window, or never (inf) while the window ends before the cap."""
    return t >= known_s if not math.isinf(t) else known_s < cap_s


@jit
def _beyond_any(finishes, known_s, cap_s):
    for t in finishes:
        if _beyond(t, known_s, cap_s):
            return True
    return False


@inlined
def serve_step(request, i, now_s, arrivals_s, deadlines_s, work_ms, rules, device, policy, decide, state):
    """Serve arrival ``i`` (request number ``request``) of ``arrivals_s`` when the server
    reaches it at ``now_s`` (its arrival, or the previous request's finish): the queue rules
    (:func:`join_queue`), the work's idle and time-slicing factors, the policy's decisions and
    the segments on the device (:func:`serve_request`). Returns ``(outcome, start_s, finish_s,
    route code, reroutes)`` (NaN, NaN, -1, 0 for what it does not have) and updates ``state``;
    ``BEYOND`` (and no change) when the request would run past ``device.known_s``. The compiled
    driver passes its tuples borrowed (:func:`simqos.jit.borrow`): counting references to their
    18 arrays on each call and each field read was a third of a request's cost."""
    c, busy = state.counts, state.busy
    arrival, deadline = arrivals_s[i], deadlines_s[i]
    c[AT_SPEED] = bisect_from(device.speed_times_s, now_s, len(device.speed_times_s), c[AT_SPEED] + 1) - 1
    joined = join_queue(rules, state, arrival, now_s, deadline, device.speeds[c[AT_SPEED]])
    if joined != STARTS:
        return DROPPED, (math.nan if joined == TURNED_AWAY else now_s), math.nan, -1, 0
    c[QUEUE_END] = max(bisect_from(arrivals_s, now_s, len(arrivals_s), c[QUEUE_END]), i + 1)
    c[AT_RESIDENT] = bisect_from(device.resident_times_s, now_s, len(device.resident_times_s), c[AT_RESIDENT] + 1) - 1
    factors = seen = state.factors
    idle_factors(rules.idle_ms, rules.idle_factor, (now_s - busy[BUSY_UNTIL]) * 1e3, factors)
    run_first = 0.0
    if rules.slice_ms > 0.0:  # a woken request runs a whole slice first (after its wake wait); a queued one the slice left
        c[AT_SHARE] = bisect_from(device.share_times_s, now_s, len(device.share_times_s), c[AT_SHARE] + 1) - 1
        woken = arrival > busy[BUSY_UNTIL]
        run_first = rules.slice_ms if woken else busy[SLICE_LEFT]
        share = device.shares[c[AT_SHARE]]
        woke_ms = wake_waited(now_s, share, rules.slice_ms, rules.wake_wait) if woken else 0.0
        state.on_factors[:] = factors
        seen = state.on_factors  # the policy sees the work at the whole core
        sliced_factors(factors, work_ms[i], share, run_first, rules.slice_ms, woke_ms)
    t, code, changes = serve_request(
        request, now_s, arrival, deadline, work_ms[i], factors, seen, device.speed_times_s, device.speeds, device.cum_work_ms,
        device.resident_times_s, device.resident_levels, deadlines_s[i + 1 : c[QUEUE_END]], decide, policy.params, policy.table,
        policy.candidates, state.route_finish, c[AT_SPEED], c[AT_RESIDENT],
    )  # fmt: skip
    if _beyond(t, device.known_s, device.cap_s) or _beyond_any(state.route_finish, device.known_s, device.cap_s):
        c[N_LEFT] -= 1  # not served on this window: undone
        return BEYOND, math.nan, math.nan, -1, 0
    if math.isinf(t):
        return DROPPED, now_s, math.nan, -1, 0  # its level never returns: dropped
    if rules.slice_ms > 0.0:
        busy[SLICE_LEFT] = slice_left_after(run_first, route_work(code, work_ms[i], state.on_factors), rules.slice_ms)
    busy[BUSY_UNTIL] = t
    return (MET if t <= deadline else MISSED), now_s, t, code, changes


serve_step_py = interpreted(serve_step, serve_request)
""":func:`serve_step` run by the interpreter (with :func:`serve_request`, which calls the
policy), so that a Python policy decides: the SimPy model's step."""
