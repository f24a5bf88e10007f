"""The serving core: queue rules, outcome codes, the device's clock arithmetic and the built-in
policies' decisions, written once as plain functions over plain values.

numba compiles every function here for the fast path (:mod:`simqos.fastpath`); the SimPy
engine (:mod:`simqos.engine`) runs the very same source through ``.py_func``, and the real
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

from simqos.compiled import borrow, njit
from simqos.service import idle_factor_at

__all__ = [
    "DECIDE_TYPE",
    "DROPPED",
    "MET",
    "MISSED",
    "OUTCOMES",
    "LOOKAHEAD_HEADER",
    "Decision",
    "admits",
    "capacity_probability",
    "advance",
    "bisect_from",
    "bisect_right",
    "clairvoyant_decide",
    "DP_HEADER",
    "QUEUE_DP_HEADER",
    "deadline_aware_decide",
    "decide_jit",
    "dp_decide",
    "finish_time",
    "greedy_decide",
    "held_level",
    "idle_factors",
    "least_sparse_fitting",
    "lookahead_decide",
    "node_index",
    "queue_dp_decide",
    "resident_from",
    "route_code",
    "route_finish_time",
    "route_text",
    "segment_end",
    "serve_request",
    "speed_state",
    "static_decide",
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
the driver passing borrowed views, :func:`simqos.compiled.borrow`), a request of seven segments
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


_idle_factor_at = jit(idle_factor_at)


@jit
def idle_factors(idle_ms: np.ndarray, idle_factor: np.ndarray, gap_ms: float, out: np.ndarray) -> np.ndarray:
    """Each level's work multiplier after the device idled ``gap_ms``, written into ``out``."""
    for k in range(len(out)):
        out[k] = _idle_factor_at(idle_ms, idle_factor[k], gap_ms)
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


# --- the built-in policies' decisions (see simqos.policies for their parameters) -------------


@decide_jit
def least_sparse_fitting(table: np.ndarray, segment: int, floor: int, budget_s: float, speed: float, n_levels: int) -> int:
    """Least sparse level >= ``floor`` whose predicted remaining work (``table[level,
    segment]``, profiled ms) fits ``budget_s`` at ``speed``; the sparsest if none does."""
    budget_ms = budget_s * speed * 1e3
    for level in range(floor, n_levels):
        if table[level, segment] <= budget_ms:
            return level
    return n_levels - 1


@decide_jit
def static_decide(state: Decision, params: np.ndarray, table: np.ndarray) -> int:
    """``params[0]``: the level, for every segment (waiting for it when evicted)."""
    return int(params[0])


@decide_jit
def held_level(state: Decision) -> int:
    """The level a request already runs, or, if it is evicted, the least sparse resident one
    (when nothing is resident, the sparsest, waited for)."""
    return min(max(state.current_level, state.min_resident_level), state.n_levels - 1)


@decide_jit
def greedy_decide(state: Decision, params: np.ndarray, table: np.ndarray) -> int:
    """At the start, the least sparse resident level whose predicted remaining work (``table``)
    fits the time left; then that level (or, if it is evicted, the least sparse resident one;
    when nothing is resident, the sparsest, waited for)."""
    last = state.n_levels - 1
    if state.current_level >= 0:
        return held_level(state)
    floor = min(state.min_resident_level, last)
    return least_sparse_fitting(table, 0, floor, state.deadline_s - state.now_s, state.speed, state.n_levels)


@decide_jit
def deadline_aware_decide(state: Decision, params: np.ndarray, table: np.ndarray) -> int:
    """The paper's rerouting: the least sparse resident level whose predicted remaining work
    (``table``) fits the deadline minus ``params[0]`` ms of slack. ``params[1]``: may go back
    to a less sparse level; ``params[2]``: the budget also keeps every queued request able to
    meet its deadline at the sparsest level."""
    n = state.n_levels
    effective = state.deadline_s - params[0] / 1e3
    if params[2] != 0.0:
        sparsest_s = table[n - 1, 0] / state.speed / 1e3
        for k in range(len(state.queued_deadlines_s)):
            effective = min(effective, state.queued_deadlines_s[k] - (k + 1) * sparsest_s)
    floor = state.min_resident_level
    if state.current_level >= 0 and params[1] == 0.0:
        floor = max(floor, state.current_level)
    floor = min(floor, n - 1)
    return least_sparse_fitting(table, state.segment, floor, effective - state.now_s, state.speed, n)


@decide_jit
def clairvoyant_decide(state: Decision, params: np.ndarray, table: np.ndarray) -> int:
    """Clairvoyant per request: the first candidate route (``table``, most preferred first)
    whose exact finish (``state.route_finish_s``) is ``params[0]`` ms before the deadline, else
    the one that finishes first; the same route at every segment of the request."""
    target = state.deadline_s - params[0] / 1e3
    best, best_finish = 0, math.inf
    for r in range(len(state.route_finish_s)):
        if state.route_finish_s[r] <= target:
            best = r
            break
        if state.route_finish_s[r] < best_finish:
            best, best_finish = r, state.route_finish_s[r]
    return int(table[best, state.segment])


@decide_jit
def speed_state(params: np.ndarray, at: int, n_states: int, speed: float) -> int:
    """The state of a device model (speeds ``params[at:at + n_states]``) whose speed is nearest
    the one seen now (read in place: no slice, no allocation per decision)."""
    best, distance = 0, math.inf
    for k in range(n_states):
        if abs(params[at + k] - speed) < distance:
            best, distance = k, abs(params[at + k] - speed)
    return best


@decide_jit
def capacity_probability(table: np.ndarray, block: int, grid: int, step_s: float, work_step_ms: float, tau_s: float,
                         work_ms: float) -> float:
    """P(the device does ``work_ms`` of profiled work within ``tau_s``), from the Monte Carlo
    table of :func:`simqos.devicemodel.capacity_table` for a start in state ``block``: bilinear
    between its grid points (τ rows, work columns), the last row beyond them."""
    if work_ms <= 0.0:
        return 1.0
    if tau_s <= 0.0:
        return 0.0
    x = tau_s / step_s
    g = int(min(x, grid - 2.0))  # clamped before the cast: a huge float does not fit an int64
    w = min(x - g, 1.0)
    y = work_ms / work_step_ms
    k = int(min(y, table.shape[1] - 2.0))
    v = min(y - k, 1.0)
    row = block * grid + g
    p0 = (1.0 - v) * table[row, k] + v * table[row, k + 1]
    p1 = (1.0 - v) * table[row + 1, k] + v * table[row + 1, k + 1]
    return (1.0 - w) * p0 + w * p1


LOOKAHEAD_HEADER = 11
"""``params`` of :func:`lookahead_decide`: states, grid, step (s), work quantiles, requests
considered behind this one, back-up (0/1), segments, persistent (0/1), mean arrival rate (Hz),
typical relative deadline (s), the capacity table's work step (ms); then each state's speed,
the remaining-work quantiles (level x segment+1 x quantile, profiled ms), and the decision
accuracy of each (head level, segment, tail level) route."""


@decide_jit
def lookahead_decide(state: Decision, params: np.ndarray, table: np.ndarray) -> int:
    """Model-predictive rerouting (see :class:`simqos.policies.Lookahead`): the level for the
    rest of the request that maximises the expected accuracy-at-deadline of this request, of
    those queued behind it, and of those expected to arrive while the device works through
    them, over the device's future speed (``table``: the capacity table)."""
    n_states, grid, step = int(params[0]), int(params[1]), params[2]
    n_q, max_queue, back_up, n_segments, persistent = int(params[3]), int(params[4]), params[5], int(params[6]), params[7]
    rate_hz, relative_deadline_s, work_step = params[8], params[9], params[10]
    k_levels = state.n_levels
    speeds_at = LOOKAHEAD_HEADER
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


DP_HEADER = 8
"""``params`` of :func:`dp_decide`: states, grid, step (s), segments, persistent (0/1), count
queue (0/1), the sparsest level's median work (profiled ms), route prefixes; then each state's
speed and each measured idle gap's factors (gap x level)."""


@decide_jit
def dp_decide(state: Decision, params: np.ndarray, table: np.ndarray) -> int:
    """The per-request optimum (:mod:`simqos.dp`, :class:`simqos.policies.Dp`): one lookup in
    the table of best levels by idle gap, resident floor, route so far, speed state and time
    left."""
    n_states, grid, step = int(params[0]), int(params[1]), params[2]
    persistent, count_queue, sparsest_ms, n_nodes = params[4], params[5], params[6], int(params[7])
    n_levels = state.n_levels
    floor = min(state.min_resident_level, n_levels - 1)
    if floor == n_levels - 1:
        return floor  # one level left to choose
    s = speed_state(params, DP_HEADER, n_states, state.speed)
    gaps_at = DP_HEADER + n_states
    n_gaps = (len(params) - gaps_at) // n_levels
    gap, distance = 0, math.inf
    for g in range(n_gaps - 1, -1, -1):  # the measured idle gap whose factors are nearest this request's
        d = 0.0
        for k in range(n_levels):
            d += abs(params[gaps_at + g * n_levels + k] - state.idle_factor[k])
            if d >= distance:
                break
        if d < distance:
            gap, distance = g, d
            if d == 0.0:  # idle past the longest gap (from the last), or busy: exact
                break
    effective = state.deadline_s
    if count_queue != 0.0:
        sparsest_s = sparsest_ms / state.speed / 1e3
        for k in range(len(state.queued_deadlines_s)):
            effective = min(effective, state.queued_deadlines_s[k] - (k + 1) * sparsest_s)
    tau = (effective - state.now_s) * (state.speed if persistent != 0.0 else 1.0)  # a persistent model is at speed 1
    if tau < 0.0:
        return n_levels - 1  # the deadline is lost: free the device soonest
    g = int(min(tau / step, grid - 1.0))  # clamped before the cast (a huge float does not fit an int64)
    node = node_index(n_levels, state.segment, state.route_code)
    choices = table.view(np.uint8)  # the levels are bytes, eight to a float64 (simqos.dp.solve)
    return int(choices[((gap * n_levels + floor) * n_nodes + node) * n_states + s, g])


QUEUE_DP_HEADER = 7
"""``params`` of :func:`queue_dp_decide`: states, fine grid steps, fine step (s), fine steps per
coarse step, coarse steps, most requests waiting counted, monotone route prefixes; then each
state's speed and, by :func:`node_index`, each route prefix's row (-1: not monotone)."""


@decide_jit
def queue_dp_decide(state: Decision, params: np.ndarray, table: np.ndarray) -> int:
    """The queue-aware optimum (:mod:`simqos.queuedp`, :class:`simqos.policies.QueueDp`): one
    lookup by resident floor, whether the request found the device idle, route so far, speed
    state, time left, the number waiting and the time left of the first of them."""
    n_states, grid, step = int(params[0]), int(params[1]), params[2]
    ratio, coarse, n_max, n_nodes = int(params[3]), int(params[4]), int(params[5]), int(params[6])
    n_levels = state.n_levels
    floor = max(state.min_resident_level, state.current_level)  # never back to a less sparse level
    floor = min(floor, n_levels - 1)
    left = (state.deadline_s - state.now_s) / step
    if floor == n_levels - 1 or left < 0.0:
        return n_levels - 1  # one level left, or the deadline is lost: free the device soonest
    s = speed_state(params, QUEUE_DP_HEADER, n_states, state.speed)
    node = int(params[QUEUE_DP_HEADER + n_states + node_index(n_levels, state.segment, state.route_code)])
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
