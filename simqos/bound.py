"""The offline optimum: an upper bound on what any policy can achieve on a realised run.

Knowing the whole replication — arrivals, every request's latency draws, the speed and memory
traces — the best schedule is a choice of route (or of no service) for each request, in
arrival order, first come first served. :func:`replication_bound` finds the best total value
by dynamic programming over requests. The value of a request is its route's accuracy (test
split) if it meets its deadline — the accuracy-at-deadline objective — or 1 if it meets it
(the most requests met: nines).

**States.** A state is an interval ``[low, high]`` of times at which the device becomes free
and a value: it stands for every partial schedule whose free time lies in the interval and
whose value is no larger. A request arriving at ``a`` starts at ``max(a, t)`` and, if it finds
the device idle for ``gap = a - t``, its work at each level is multiplied by that level's idle
factor at ``gap`` (the profile's ``idle.csv``). From a state, each route gives the successor
``[finish from max(a, low) with each level's smallest factor over the state's gaps, finish
from max(a, high) with the largest]``, and its value counts the request as met when the
earlier end meets the deadline: every real schedule's successor lies inside, with no more
value. Starting from the point state ``[0, 0]`` with value 0 the DP is therefore an upper bound,
and it is exact while every state is a point.

Because a device that idled longer can be slower, an earlier free time is not always better,
so states are pruned only when one *covers* another (its interval contains the other's and its
value is no smaller) — exact. Above ``max_states`` states two steps trade exactness for size,
each clearing ``exact``: a state free no later with no less value absorbs another, its interval
widened to cover both — only within a band of the idle gap the next arrival would find (busy, or
between two measured gaps), so that a widened state does not pair one free time's value with
another's much smaller idle slowdown (on iot.yaml 0.22 points tighter than absorbing across
bands, at the same cost); then neighbours (by ``low``) are merged into their union with the
larger value.

**Time-slicing.** With ``device.slice_ms`` a request's work is
stretched by the competitors' turns it waits out (:mod:`simqos.sim.timeslice`), which depends on
whether it found the device idle and, if it queued, on the slice its predecessor left — a
state the DP does not carry. So each state's range of factors is widened to every case its
schedules may be in (woken at the arrival's share with a whole slice; queued at any share of
its possible starts with any slice left), and a point state whose range is not a point is no
longer exact. An earlier free time is then not always better (a later one may let the next
request start with a whole slice), and the stretch, taken in proportion per level, breaks the route dominance that the
pruning reads: with time-slicing the states are never pruned by dominance, only merged.

All states the next arrival finds idle for at least the profile's longest measured gap (beyond
it the factor is constant) have the same future, so they collapse into one, exactly. With no
idle slowdown in the profile (each level's factor the same at every gap) an earlier free time
is never worse, and a state is its ``low`` alone: the DP keeps the Pareto frontier of (free
time, value), exactly, merging neighbours optimistically above ``max_states``.

Queue rules: with an unbounded queue and ``late: run`` they are followed exactly (every
request is served); with a bounded queue or ``late: drop`` any request may be dropped (a
relaxation: whether a queue is full, or a request too late, depends on the schedule, and the
late rule reads the speed at the start, so a later start is not always worse under it — which
is also why the rule cannot be enforced here: the pruning keeps the earliest free time).

**How loose it is.** Where it is not exact, the same search is run again over real schedules
only (``feasible``): every state a point (a schedule's own free time and value), successors at
the factor of their own gap, and states dropped — never widened or merged — above
``max_states`` (those free later with no more value, then all but ``max_states`` spread along
the frontier). Its best value is met by a schedule, so the optimum lies between it and the
bound; :mod:`simqos.verdict` also takes the policies' own values, each a schedule of the same
runs, as lower ends. (Not under time-slicing, whose slices the states do not carry.)

The two objectives are solved apart, and the accuracy bound is also at most the most requests
met times the largest accuracy of a route (a tighter bound where merging loosened the first).
``routes`` restricts the schedules to some routes: with one level's route it is the best any
policy running that level alone can do (which requests to run, knowing each one's latency) —
the part of the gap a choice of levels cannot be credited with.

It is a bound, not a policy: warm-up requests are scheduled but add no value, and reported
accuracy comes from the test split: a number for the report, never a decision.
"""

from __future__ import annotations

import concurrent.futures
import math
import os

import numpy as np

from simqos.jit import njit
from simqos.sim.serving import Rules, bisect_right, idle_factors, jit, require_modelled, segment_end, value_at
from simqos.sim.timeslice import level_work, sliced_work, wake_waited

__all__ = ["MAX_REQUESTS", "MAX_STATES", "MODELLED_RULES", "plan_bound", "replication_bound"]

MODELLED_RULES = ("capacity", "late_drop", "sparsest_median_ms", "idle_ms", "idle_factor", "slice_ms", "wake_wait")
"""The serving rules (:class:`~simqos.sim.serving.Rules`) the bound models: a bounded queue and
the late rule by letting any request drop, the idle and slicing factors over each state's range
(module doc). It refuses to bound a run under any other rule in force."""

MAX_STATES = 16
"""States kept per request before neighbours are merged (optimistically)."""

MAX_REQUESTS = 50_000
"""The most requests per replication :func:`plan_bound` is computed for by ``simqos run``: it
holds a whole replication's inputs and searches it (about 70 s at 10^5 on iot.yaml, minutes at 10^6)."""


@jit
def _factor_range(idle_ms, idle_factor, gap_lo_ms, gap_hi_ms, lo, hi):
    """Each level's smallest and largest idle factor over gaps in ``[gap_lo_ms, gap_hi_ms]``
    (piecewise linear: the ends and the measured gaps between them), into ``lo`` and ``hi``."""
    idle_factors(idle_ms, idle_factor, gap_lo_ms, lo)
    idle_factors(idle_ms, idle_factor, gap_hi_ms, hi)
    for k in range(len(lo)):
        lo[k], hi[k] = min(lo[k], hi[k]), max(lo[k], hi[k])
        for j in range(len(idle_ms)):
            if gap_lo_ms < idle_ms[j] < gap_hi_ms:
                lo[k] = min(lo[k], idle_factor[k, j])
                hi[k] = max(hi[k], idle_factor[k, j])


@jit
def _share_range(times, values, t1, t2) -> tuple[float, float]:
    """The smallest and largest value a piecewise-constant trace takes on ``[t1, t2]``."""
    i = bisect_right(times, t1, len(times)) - 1
    low = high = values[i]
    for j in range(i + 1, len(times)):
        if times[j] > t2:
            break
        low, high = min(low, values[j]), max(high, values[j])
    return low, high


@jit
def _sliced_range(lo, hi, work_i, arrival, start_lo, start_hi, woken, queued, share_times, shares, slice_ms, wake_wait):
    """Each level's smallest and largest factor (``lo``, ``hi``, in place: the idle slowdown's
    range) once the time-slicing stretches it (module doc): a woken request's first run is a
    whole slice after its wake wait (known: it starts at its arrival), at the share at its
    arrival; a queued one's anything from 0 to a whole slice,
    at any share between its earliest and latest start. The sliced work is nondecreasing in the
    work, nonincreasing in the first run and linear in the share below 1 (the work itself from
    1 on): its extremes are at the ends of each range."""
    s_arrival = value_at(share_times, shares, arrival)
    s_low, s_high = _share_range(share_times, shares, start_lo, start_hi)
    for k in range(len(lo)):
        raw = level_work(work_i, k)
        if raw <= 0.0:
            continue
        best, worst = math.inf, -math.inf
        if woken:
            woke_ms = wake_waited(arrival, s_arrival, slice_ms, wake_wait)
            best = min(best, sliced_work(raw * lo[k], s_arrival, slice_ms, slice_ms, woke_ms))
            worst = max(worst, sliced_work(raw * hi[k], s_arrival, slice_ms, slice_ms, woke_ms))
        if queued:
            for share in (s_low, s_high):
                best = min(best, sliced_work(raw * lo[k], share, slice_ms, slice_ms))
                worst = max(worst, sliced_work(raw * hi[k], share, 0.0, slice_ms))
        lo[k], hi[k] = best / raw, worst / raw


@jit
def _prune(low, high, value, count, monotone) -> int:
    """Sort the states ``[:count]`` by ``low`` and keep, in place, those no other covers (see
    the module doc; ``monotone``: no other is free no later with no less value); returns how
    many remain."""
    order = np.argsort(low[:count], kind="mergesort")
    lo, hi, v = low[order].copy(), high[order].copy(), value[order].copy()
    kept = 0
    for k in range(count):
        covered = False
        for j in range(kept):
            if value[j] >= v[k] and low[j] <= lo[k] and (monotone or high[j] >= hi[k]):
                covered = True
                break
        if not covered:
            j = 0
            for q in range(kept):  # drop the kept states this one covers
                if not (v[k] >= value[q] and lo[k] <= low[q] and (monotone or hi[k] >= high[q])):
                    low[j], high[j], value[j] = low[q], high[q], value[q]
                    j += 1
            low[j], high[j], value[j] = lo[k], hi[k], v[k]
            kept = j + 1
    return kept


@jit
def _absorb_banded(low, high, value, count, next_arrival, idle_ms) -> int:
    """Sort the states ``[:count]`` by ``low`` and, within each band of the idle gap the next
    arrival (at ``next_arrival``) would find by a state's ``low`` — busy, or between two measured
    gaps ``idle_ms`` — keep, in place, those whose value exceeds every earlier one's in the band:
    each other state is absorbed by the last kept in its band (free no later, no less value),
    whose ``high`` widens to cover it. Returns how many remain."""
    order = np.argsort(low[:count], kind="mergesort")
    lo, hi, v = low[order].copy(), high[order].copy(), value[order].copy()
    n_bands = len(idle_ms) + 1
    last = np.full(n_bands, -1)
    kept = 0
    for k in range(count):
        gap_ms = (next_arrival - lo[k]) * 1e3
        band = 0
        if gap_ms > 0.0:
            band = 1
            while band < n_bands - 1 and idle_ms[band] <= gap_ms:
                band += 1
        j = last[band]
        if j >= 0 and v[k] <= value[j]:
            high[j] = max(high[j], hi[k])
        else:
            low[kept], high[kept], value[kept] = lo[k], hi[k], v[k]
            last[band] = kept
            kept += 1
    return kept


@jit
def _thin(low, high, value, count, keep) -> int:
    """Keep ``keep`` of the ``count`` states (sorted by ``low``, values rising: a Pareto
    frontier), evenly spaced, the first and the last (the most value) among them; in place."""
    for q in range(keep):
        k = (q * (count - 1)) // (keep - 1) if keep > 1 else count - 1
        low[q], high[q], value[q] = low[k], high[k], value[k]
    return keep


def _dominance(routes: np.ndarray, gains: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each route ``r``, the routes that may dominate it (module doc): as sparse or sparser at
    every segment, not the same route, value no smaller. CSR form: ``index[start[r]:start[r+1]]``."""
    start, index = [0], []
    for r in range(len(routes)):
        for d in range(len(routes)):
            if d != r and (routes[d] >= routes[r]).all() and gains[d] >= gains[r]:
                index.append(d)
        start.append(len(index))
    return np.array(start, dtype=np.int64), np.array(index, dtype=np.int64)


@jit
def _dominance_masks(work_i, idle_factor, routes, dom_start, dom_index, prefix, masks) -> None:
    """For this request (``work_i``: its (level, segment) draws) and each candidate pair of
    :func:`_dominance` (``dom_index[k]`` may dominate ``r``), write into ``masks[k]`` the
    measured idle gaps (bit ``g``) at which the candidate's cumulative work is no larger after
    every segment. ``prefix``: scratch (routes x segments x gaps)."""
    n_routes, n_segments = routes.shape
    n_gaps = idle_factor.shape[1]
    for r in range(n_routes):
        for g in range(n_gaps):
            acc = 0.0
            for seg in range(n_segments):
                level = routes[r, seg]
                acc += work_i[level, seg] * idle_factor[level, g]
                prefix[r, seg, g] = acc
    for r in range(n_routes):
        for k in range(dom_start[r], dom_start[r + 1]):
            d = dom_index[k]
            mask = 0
            for g in range(n_gaps):
                below = True
                for seg in range(n_segments):
                    if prefix[d, seg, g] > prefix[r, seg, g]:
                        below = False
                        break
                if below:
                    mask |= 1 << g
            masks[k] = mask


@jit
def _dominated_in(need, masks, routes, dom_start, dom_index, by, levels_used, absorbs) -> None:
    """Where the gaps may be any between the measured ones marked in ``need`` (the factors are
    linear between them, so dominance at those is dominance throughout): ``by[r]``, an
    undominated route that dominates ``r`` (-1 if none); ``levels_used[d, segment, level]``,
    whether ``d`` or a route it stands for runs ``level`` there; ``absorbs[d]``, whether it
    stands for any."""
    n_routes, n_segments = routes.shape
    for r in range(n_routes):
        by[r] = -1
        for k in range(dom_start[r], dom_start[r + 1]):
            if masks[k] & need == need:
                by[r] = dom_index[k]
                break
    for r in range(n_routes):  # follow each chain to its undominated end (dominance is a partial order)
        d = by[r]
        while d >= 0 and by[d] >= 0:
            d = by[d]
        by[r] = d
    levels_used[:] = False
    absorbs[:] = False
    for r in range(n_routes):
        d = by[r] if by[r] >= 0 else r
        absorbs[d] = absorbs[d] or by[r] >= 0
        for seg in range(n_segments):
            levels_used[d, seg, routes[r, seg]] = True


@jit
def _gap_span(idle_ms, gap_lo_ms, gap_hi_ms) -> tuple[int, int]:
    """The measured gaps whose factors span every gap in ``[gap_lo_ms, gap_hi_ms]``: indices from
    the last at or below the low end to the first at or above the high end."""
    n = len(idle_ms)
    first = 0
    while first + 1 < n and idle_ms[first + 1] <= gap_lo_ms:
        first += 1
    last = first
    while last + 1 < n and idle_ms[last] < gap_hi_ms:
        last += 1
    return first, last


@jit
def _envelope_finish(levels_used, start_s, work_i, factors, times, speeds, cum, res_times, res_levels) -> float:
    """No route using, at each segment, only levels marked in ``levels_used[segment]`` finishes
    later than this from ``start_s`` or earlier with factors no larger: each segment waits for
    the least sparse marked level and runs the most work any marked level needs."""
    t = start_s
    for seg in range(levels_used.shape[0]):
        least, most = -1, 0.0
        for level in range(levels_used.shape[1]):
            if levels_used[seg, level]:
                least = level if least < 0 else least
                most = max(most, work_i[level, seg] * factors[level])
        t = segment_end(t, least, most, times, speeds, cum, res_times, res_levels)
    return t


@njit(nogil=True)  # replications and objectives run in threads (plan_bound)
def _bound(arrivals, deadlines, work, rules, device, routes, lex, gains, counted, max_states, monotone, dom_start, dom_index, feasible):
    times, speeds, cum = device.speed_times_s, device.speeds, device.cum_work_ms
    res_times, res_levels, share_times, shares = device.resident_times_s, device.resident_levels, device.share_times_s, device.shares
    idle_ms, idle_factor, slice_ms = rules.idle_ms, rules.idle_factor, rules.slice_ms
    free_drops = rules.capacity >= 0 or rules.late_drop  # a relaxation: any request may be dropped
    n_routes, n_segments = routes.shape
    n_levels = idle_factor.shape[0]
    n = len(arrivals)
    sliced = slice_ms > 0.0
    saturated_s = idle_ms[len(idle_ms) - 1] / 1e3
    cap = max_states * (n_routes + 1) + 1
    low, high, value = np.zeros(cap), np.zeros(cap), np.zeros(cap)
    size = 1
    exact = True
    latest = 0.0  # the latest finite time any state reached: how far into the device's traces it looked
    new_low, new_high, new_value = np.empty(cap), np.empty(cap), np.empty(cap)
    f_lo, f_hi = np.empty(n_levels), np.empty(n_levels)
    n_gaps = len(idle_ms)
    prefix = np.empty((n_routes, n_segments, n_gaps))
    masks = np.zeros(len(dom_index), dtype=np.int64)
    spans = n_gaps * n_gaps  # route dominance per span of gaps (first, last), once per request;
    by = np.full((spans + 1, n_routes), -1, dtype=np.int64)  # and a last row where none is dominated
    levels_used = np.zeros((spans + 1, n_routes, n_segments, n_levels), dtype=np.bool_)
    absorbs = np.zeros((spans + 1, n_routes), dtype=np.bool_)
    ready = np.zeros(spans + 1, dtype=np.bool_)
    path_lo, path_hi = np.empty(n_segments + 1), np.empty(n_segments + 1)
    for i in range(n):
        arrival, deadline = arrivals[i], deadlines[i]
        # lossy with idle slowdown: only when needed; never with time-slicing (module doc)
        pruning = (monotone or size * n_routes > max_states) and not sliced
        if pruning:
            _dominance_masks(work[i], idle_factor, routes, dom_start, dom_index, prefix, masks)
            ready[:] = False
        m = 0
        for s in range(size):
            t_lo, t_hi, v = low[s], high[s], value[s]
            gap_lo_ms, gap_hi_ms = max(0.0, arrival - t_hi) * 1e3, max(0.0, arrival - t_lo) * 1e3
            _factor_range(idle_ms, idle_factor, gap_lo_ms, gap_hi_ms, f_lo, f_hi)
            if sliced:
                _sliced_range(f_lo, f_hi, work[i], arrival, max(arrival, t_lo), max(arrival, t_hi), gap_hi_ms > 0.0,
                              gap_lo_ms <= 0.0, share_times, shares, slice_ms, rules.wake_wait)  # fmt: skip
            span = spans  # not pruning: the row where no route is dominated
            if pruning:
                g_first, g_last = (0, 0) if monotone else _gap_span(idle_ms, gap_lo_ms, gap_hi_ms)
                span = g_first * n_gaps + g_last
                if not ready[span]:
                    need = ((1 << (g_last + 1)) - 1) ^ ((1 << g_first) - 1)
                    _dominated_in(need, masks, routes, dom_start, dom_index, by[span], levels_used[span], absorbs[span])
                    ready[span] = True
            point = t_lo == t_hi  # then the factors are one vector and both ends are the same ...
            if point and sliced and (f_lo != f_hi).any():  # ... unless the slice left is not known: a range
                point, exact = False, False
            path_lo[0], path_hi[0] = max(arrival, t_lo), max(arrival, t_hi)
            dropped = free_drops
            previous = -1
            for r in lex:  # routes sharing a first part share its times
                if by[span, r] >= 0:
                    continue
                common = 0
                while previous >= 0 and common < n_segments and routes[r, common] == routes[previous, common]:
                    common += 1
                previous = r
                for seg in range(common, n_segments):
                    level = routes[r, seg]
                    path_lo[seg + 1] = segment_end(path_lo[seg], level, work[i, level, seg] * f_lo[level], times, speeds, cum, res_times, res_levels)
                    if not point:
                        path_hi[seg + 1] = segment_end(path_hi[seg], level, work[i, level, seg] * f_hi[level], times, speeds, cum, res_times, res_levels)
                end_lo = path_lo[n_segments]
                if math.isinf(end_lo):  # its level never returns: the request is dropped
                    dropped = True
                    continue
                end_hi = end_lo if point else path_hi[n_segments]
                if not monotone and not feasible:
                    if absorbs[span, r]:  # it stands for the routes it dominates: cover their ends too
                        envelope = _envelope_finish(levels_used[span, r], path_hi[0], work[i], f_hi, times, speeds, cum, res_times, res_levels)
                        if envelope > end_hi:
                            end_hi = envelope
                            exact = False
                    if math.isinf(end_hi):  # from some of the state's times it is dropped
                        dropped = True
                        exact = False
                new_low[m], new_high[m] = end_lo, end_hi
                latest = max(latest, end_lo if math.isinf(end_hi) else end_hi)
                new_value[m] = v + (gains[r] if counted[i] and end_lo <= deadline else 0.0)
                m += 1
            if dropped:
                new_low[m], new_high[m], new_value[m] = t_lo, t_hi, v
                m += 1
        if not monotone and i + 1 < n:  # idle past the longest measured gap: one future
            horizon = arrivals[i + 1] - saturated_s
            j, best, first, last, saturated_end = 0, -1.0, math.inf, -math.inf, 0.0
            for k in range(m):
                if new_high[k] <= horizon:
                    if new_value[k] > best:
                        best, saturated_end = new_value[k], new_low[k]
                    first, last = min(first, new_low[k]), max(last, new_high[k])
                else:
                    new_low[j], new_high[j], new_value[j] = new_low[k], new_high[k], new_value[k]
                    j += 1
            if best >= 0.0:
                if feasible:  # the best of them, as it is: one real schedule
                    first = last = saturated_end
                new_low[j], new_high[j], new_value[j] = first, last, best
                j += 1
            m = j
        if feasible:  # real schedules only: drop, never widen (module doc)
            size = _prune(new_low, new_high, new_value, m, True)
            if size > max_states:
                size = _thin(new_low, new_high, new_value, size, max_states)
            low[:size], high[:size], value[:size] = new_low[:size], new_high[:size], new_value[:size]
            continue
        if m > max_states and not monotone:  # too many to compare pairwise: the widened frontier, band by band
            m = _absorb_banded(new_low, new_high, new_value, m, arrivals[i + 1] if i + 1 < n else math.inf, idle_ms)
            exact = False
        size = _prune(new_low, new_high, new_value, m, monotone)
        while size > max_states:  # merge neighbours into their union: still a bound
            exact = False
            half = 0
            for k in range(0, size, 2):
                other = min(k + 1, size - 1)
                new_low[half] = new_low[k]
                new_high[half] = max(new_high[k], new_high[other])
                new_value[half] = max(new_value[k], new_value[other])
                half += 1
            size = half
        low[:size], high[:size], value[:size] = new_low[:size], new_high[:size], new_value[:size]
    return value[:size].max(), exact, latest


def replication_bound(plan, inputs, max_states: int = MAX_STATES, routes: list[tuple[int, ...]] | None = None,
                      ) -> dict[str, float | bool | int]:
    """The offline optimum of one replication (module doc): ``accuracy_at_deadline`` (the
    best total accuracy of met requests over the counted ones; NaN without accuracy),
    ``met`` (the most requests that can meet their deadline), ``requests`` counted (after
    warm-up), and ``exact``; without time-slicing also ``accuracy_at_deadline_feasible`` and
    ``met_feasible``: the best real schedules found (lower ends). ``routes``: the routes it may choose (default: every route)."""
    return _pooled([_resolved(_objectives(plan, inputs, max_states, routes))], plan)


def plan_bound(plan, replications: range | None = None, routes: list[tuple[int, ...]] | None = None,
               ) -> dict[str, float | bool | int]:
    """:func:`replication_bound` of every replication (default: the scenario's), pooled:
    requests and met summed, accuracy-at-deadline weighted by requests, exact if all are. The
    replications' objectives run in threads, one per core (the DP releases the GIL)."""
    from simqos.sim.inputs import until_covered

    todo = range(plan.scenario.replications) if replications is None else replications
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, min(os.cpu_count() or 1, 2))) as pool:
        def run(inputs) -> tuple[dict, float]:
            part = _resolved(_objectives(plan, inputs, MAX_STATES, routes, pool))
            return part, part["latest_s"]

        parts = [until_covered(plan, r, run) for r in todo]  # the objectives in parallel, a replication at a time
    return _pooled(parts, plan)


def _objectives(plan, inputs, max_states: int, routes: list[tuple[int, ...]] | None = None, pool=None) -> dict:
    """Futures (or, without ``pool``, values) of the two objectives' ``(value, exact, latest
    time)`` for one replication: requests met, and total accuracy of met requests (when the
    profile has it), with the largest accuracy of a route (``best_accuracy``)."""
    model, scenario = plan.model, plan.scenario
    rules = Rules.of(scenario, model)
    require_modelled(rules, MODELLED_RULES, "the offline optimum (the bound)", "the run leaves the bound out")
    routes = np.array(model.routes_by_preference() if routes is None else routes, dtype=np.int64)
    n = len(inputs.arrivals_s)
    counted = np.arange(n) >= scenario.warmup_requests
    common = (inputs.arrivals_s, inputs.deadlines_s, np.ascontiguousarray(inputs.work_ms), rules, inputs.device_arrays(), routes,
              np.lexsort(routes.T[::-1]))  # fmt: skip
    monotone = bool((rules.idle_factor == rules.idle_factor[:, :1]).all()) and rules.slice_ms <= 0.0
    gains = {"met": np.ones(len(routes))}
    if model.has_accuracy:
        gains["accuracy"] = np.array([model.accuracy(tuple(r)) for r in routes])
    run = (lambda *a: pool.submit(_bound, *a)) if pool is not None else _bound
    out = {name: run(*common, g, counted, max_states, monotone, *_dominance(routes, g), False) for name, g in gains.items()}
    if rules.slice_ms <= 0.0:  # real schedules (a lower bound on the optimum): how loose the bound can be
        out |= {f"{name}_feasible": run(*common, g, counted, max_states, monotone, *_dominance(routes, g), True)
                for name, g in gains.items()}
    out["requests"] = int(counted.sum())
    out["best_accuracy"] = float(gains["accuracy"].max()) if model.has_accuracy else math.nan
    return out


def _resolved(part: dict) -> dict:
    """One replication's objectives (:func:`_objectives`) as ``(value, exact)`` once computed,
    with ``latest_s``, the latest time either looked at."""
    done = {k: v.result() if isinstance(v, concurrent.futures.Future) else v for k, v in part.items()}
    objectives = [k for k in ("met", "accuracy", "met_feasible", "accuracy_feasible") if k in done]
    done["latest_s"] = max(done[k][2] for k in objectives)
    return done | {k: done[k][:2] for k in objectives}


def _pooled(parts: list[dict], plan) -> dict[str, float | bool | int]:
    """Sum the replications' objectives (module doc of :func:`plan_bound`)."""
    n = sum(p["requests"] for p in parts)
    met = [p["met"] for p in parts]
    out: dict[str, float | bool | int] = {"requests": n, "met": float(sum(v for v, _ in met))}
    exact = all(e for _, e in met)
    if plan.model.has_accuracy:
        accuracy = [p["accuracy"] for p in parts]
        # both are bounds: no schedule meets more than `met` requests, each worth its route's accuracy at most
        total = sum(min(v, m * p["best_accuracy"]) for (v, _), (m, _), p in zip(accuracy, met, parts))
        out["accuracy_at_deadline"] = float(total) / max(n, 1)
        exact = exact and all(e for _, e in accuracy)
    else:
        out["accuracy_at_deadline"] = math.nan
    out["exact"] = bool(exact)
    if all("met_feasible" in p for p in parts):  # the best real schedules found: the optimum lies between
        out["met_feasible"] = float(sum(p["met_feasible"][0] for p in parts))
        if plan.model.has_accuracy:
            out["accuracy_at_deadline_feasible"] = float(sum(p["accuracy_feasible"][0] for p in parts)) / max(n, 1)
    return out
