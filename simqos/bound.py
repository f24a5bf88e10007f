"""The offline optimum: an upper bound on what any policy can achieve on a realised run.

Knowing the whole replication — arrivals, every request's latency draws, the speed and memory
traces — the best schedule is a choice of route (or of no service) for each request, in
arrival order, first come first served. :func:`replication_bound` finds the best total value
by dynamic programming over requests: a state is (when the device is free, value so far), and
of two states the one free no later with no less value dominates, so only the Pareto frontier
is kept. The value of a request is its route's accuracy (test split) if it meets its deadline
— the accuracy-at-deadline objective — or 1 if it meets it (the most requests met: nines).

It is a bound, not a policy: no deployable policy can beat it, because every schedule a policy
can produce under the scenario's queue rules is one the optimum considers:

- with an unbounded queue and ``late: run`` the rules are followed exactly (every request is
  served); with a bounded queue or ``late: drop`` any request may be dropped (a relaxation:
  whether a queue is full, or a request too late, depends on the schedule, and the late rule
  reads the speed at the start, so a later start is not always worse under it);
- the work of a request that finds the device idle is multiplied by the smallest idle factor
  the profile has for each level, never more (a relaxation: with it, an earlier free device
  is never worse, so the frontier is exact);
- the frontier is capped at ``max_states`` states by merging neighbours optimistically (the
  earlier free time with the larger value): the result is then still a bound, and
  ``exact`` says whether any merge happened.

Routes that cannot matter are skipped, exactly: route ``d`` dominates route ``r`` for a request
when ``d`` is at every segment as sparse as ``r`` or sparser (so resident whenever ``r``'s level
is: residency is nested), its value is no smaller, and its cumulative work is no larger after
every segment (this request's own draws) — then from any start ``d`` finishes every segment no
later, and ``r`` adds no state the frontier would keep. On a trained model most mixed routes lose
accuracy and are dominated by always-sparsest, so the search runs over a handful of routes.

Warm-up requests are scheduled but add no value. Reported accuracy comes from the test split:
the bound is a number for the report, never a decision.
"""

from __future__ import annotations

import math

import numpy as np

from simqos.serving import jit, route_finish_time

__all__ = ["MAX_STATES", "plan_bound", "replication_bound"]

MAX_STATES = 64
"""Pareto states kept per request before neighbours are merged (optimistically)."""


@jit
def _frontier(times: np.ndarray, values: np.ndarray, count: int) -> int:
    """Sort ``(times, values)[:count]`` by time and keep, in place, only the states no other
    dominates (strictly larger value than every earlier one); returns how many remain."""
    order = np.argsort(times[:count], kind="mergesort")
    t_sorted, v_sorted = times[order].copy(), values[order].copy()
    kept, best = 0, -1.0
    for k in range(count):
        if v_sorted[k] > best:
            if kept > 0 and t_sorted[k] == times[kept - 1]:
                kept -= 1  # same free time, larger value: replaces the previous one
            times[kept], values[kept] = t_sorted[k], v_sorted[k]
            best = v_sorted[k]
            kept += 1
    return kept


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
def _undominated(work_i, factor, routes, dom_start, dom_index, prefix, active) -> int:
    """Mark in ``active`` the routes no other dominates for this request (``work_i``: its
    (level, segment) draws); returns how many. ``prefix``: scratch (routes x segments)."""
    n_routes, n_segments = routes.shape
    for r in range(n_routes):
        acc = 0.0
        for seg in range(n_segments):
            level = routes[r, seg]
            acc += work_i[level, seg] * factor[level]
            prefix[r, seg] = acc
    count = 0
    for r in range(n_routes):
        active[r] = True
        for k in range(dom_start[r], dom_start[r + 1]):
            d = dom_index[k]
            dominated = True
            for seg in range(n_segments):
                if prefix[d, seg] > prefix[r, seg]:
                    dominated = False
                    break
            if dominated:
                active[r] = False
                break
        count += active[r]
    return count


@jit
def _bound(
    arrivals, deadlines, work, times, speeds, cum, res_times, res_levels, free_drops,
    factor, routes, gains, counted, max_states, dom_start, dom_index,
):  # fmt: skip
    n_routes, n_segments = routes.shape
    cap = max_states * (n_routes + 1)
    free = np.zeros(cap)
    value = np.zeros(cap)
    size = 1
    exact = True
    new_free = np.empty(cap)
    new_value = np.empty(cap)
    prefix = np.empty((n_routes, n_segments))
    active = np.empty(n_routes, dtype=np.bool_)
    for i in range(len(arrivals)):
        arrival, deadline = arrivals[i], deadlines[i]
        _undominated(work[i], factor, routes, dom_start, dom_index, prefix, active)
        m = 0
        for s in range(size):
            t_free, v = free[s], value[s]
            start = max(arrival, t_free)
            if free_drops:
                new_free[m], new_value[m] = t_free, v
                m += 1
            for r in range(n_routes):
                if not active[r]:
                    continue
                t = route_finish_time(routes[r], start, work[i], factor, times, speeds, cum, res_times, res_levels)
                if math.isinf(t):  # its level never returns: the request is dropped
                    new_free[m], new_value[m] = t_free, v
                else:
                    new_free[m], new_value[m] = t, v + (gains[r] if counted[i] and t <= deadline else 0.0)
                m += 1
        size = _frontier(new_free, new_value, m)
        while size > max_states:  # merge neighbours optimistically: still a bound
            exact = False
            half = 0
            for k in range(0, size, 2):
                new_free[half] = new_free[k]
                new_value[half] = new_value[min(k + 1, size - 1)]
                half += 1
            size = half
        free[:size] = new_free[:size]
        value[:size] = new_value[:size]
    return value[:size].max(), exact


def replication_bound(plan, inputs, max_states: int = MAX_STATES) -> dict[str, float | bool | int]:
    """The offline optimum of one replication (module doc): ``accuracy_at_deadline`` (the
    best total accuracy of met requests over the counted ones; NaN without accuracy),
    ``met`` (the most requests that can meet their deadline), ``requests`` counted (after
    warm-up), and ``exact``."""
    model, scenario = plan.model, plan.scenario
    queue = scenario.workload.queue
    routes = np.array(model.routes_by_preference(), dtype=np.int64)
    n = len(inputs.arrivals_s)
    counted = np.arange(n) >= scenario.warmup_requests
    factor = np.minimum(1.0, model.idle_factor.min(axis=1))
    trace = inputs.speed.trace
    common = (
        inputs.arrivals_s, inputs.deadlines_s, np.ascontiguousarray(inputs.work_ms), trace.times_s,
        trace.values.astype(float), inputs.speed.cum_work_ms, inputs.resident.times_s,
        inputs.resident.values.astype(np.int64), queue.capacity is not None or queue.late == "drop",
        np.ascontiguousarray(factor), routes,
    )
    ones = np.ones(len(routes))
    met, exact_met = _bound(*common, ones, counted, max_states, *_dominance(routes, ones))
    out: dict[str, float | bool | int] = {"requests": int(counted.sum()), "met": float(met)}
    if model.has_accuracy:
        gains = np.array([model.accuracy(tuple(r)) for r in routes])
        best, exact_acc = _bound(*common, gains, counted, max_states, *_dominance(routes, gains))
        out["accuracy_at_deadline"] = float(best) / max(int(counted.sum()), 1)
        out["exact"] = bool(exact_met and exact_acc)
    else:
        out["accuracy_at_deadline"] = math.nan
        out["exact"] = bool(exact_met)
    return out


def plan_bound(plan, replications: range | None = None) -> dict[str, float | bool | int]:
    """:func:`replication_bound` of every replication (default: the scenario's), pooled:
    requests and met summed, accuracy-at-deadline weighted by requests, exact if all are."""
    from simqos.engine import sample_inputs

    todo = range(plan.scenario.replications) if replications is None else replications
    parts = [replication_bound(plan, sample_inputs(plan, r)) for r in todo]
    n = sum(int(p["requests"]) for p in parts)
    return {
        "requests": n,
        "met": float(sum(float(p["met"]) for p in parts)),
        "accuracy_at_deadline": sum(float(p["accuracy_at_deadline"]) * int(p["requests"]) for p in parts) / max(n, 1),
        "exact": all(bool(p["exact"]) for p in parts),
    }
