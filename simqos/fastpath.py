"""The compiled driver of the serving core (numba): a replication in one compiled loop.

:mod:`simqos.serving` holds the queue rules, the clock arithmetic and the policies'
decisions; this module only walks the arrivals in order with a simulated clock — the same walk
as the SimPy engine (:mod:`simqos.engine`), including SimPy's clock updates
(``now + (t - now)``), so the records are equal bit for bit (tested). Any policy with a
compiled ``decide`` (every built-in one, and a user's written in that form) runs here; a
replication of 10^6 requests takes about a second.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from numba import types

from simqos.compiled import njit
from simqos.policies import Policy
from simqos.serving import (
    DECIDE_TYPE,
    DROPPED,
    MET,
    MISSED,
    admits,
    bisect_from,
    idle_factors,
    serve_request,
    too_late,
    waiting_at,
)

__all__ = ["serve_fast"]


_f8, _i8 = types.float64[::1], types.int64[::1]


@njit((
    _f8, _f8, types.float64[:, :, ::1], _f8, _f8, _f8, _f8, _i8,  # arrivals .. resident levels
    types.int64, types.boolean, types.float64, _f8, types.float64[:, ::1],  # capacity .. idle factor
    DECIDE_TYPE, _f8, types.float64[:, ::1], types.int64[:, ::1],  # decide, params, table, candidates
))
def _serve(
    arrivals, deadlines, work, times, speeds, cum, res_times, res_levels,
    capacity, late_drop, sparsest_median_ms, idle_ms, idle_factor, decide, params, table, candidates,
):  # fmt: skip
    n = len(arrivals)
    n_levels = work.shape[1]
    start_s = np.full(n, np.nan)
    finish_s = np.full(n, np.nan)
    codes = np.full(n, -1, dtype=np.int64)
    reroutes = np.zeros(n, dtype=np.int64)
    outcome = np.full(n, DROPPED, dtype=np.int8)
    left = np.empty(n)  # when each admitted request left the queue
    n_left = 0
    factors = np.ones(n_levels)
    now = 0.0
    busy_until = 0.0
    gone, i_speed, q_end = 0, 0, 0  # search hints: the clock only moves forward
    for i in range(n):
        arrival = arrivals[i]
        if now < arrival:
            now = now + (arrival - now)
        waiting = waiting_at(left, n_left, arrival, gone)
        gone = n_left - waiting
        if not admits(waiting, capacity, busy_until <= arrival):
            continue
        deadline = deadlines[i]
        left[n_left] = now
        n_left += 1
        start_s[i] = now
        i_speed = bisect_from(times, now, len(times), i_speed + 1) - 1
        if late_drop and too_late(now, deadline, sparsest_median_ms, speeds[i_speed]):
            continue
        q_end = max(bisect_from(arrivals, now, n, q_end), i + 1)
        idle_factors(idle_ms, idle_factor, (now - busy_until) * 1e3, factors)
        t, code, changes = serve_request(
            i, now, arrival, deadline, work[i], factors, times, speeds, cum, res_times, res_levels,
            deadlines[i + 1 : q_end], decide, params, table, candidates,
        )  # fmt: skip
        if math.isinf(t):
            continue  # its level never returns: dropped
        now = now + (t - now)
        busy_until = t
        finish_s[i] = t
        codes[i] = code
        reroutes[i] = changes
        outcome[i] = MET if t <= deadline else MISSED
    return start_s, finish_s, codes, reroutes, outcome


def serve_fast(plan, inputs, policy: Policy) -> tuple[np.ndarray, ...]:
    """(start_s, finish_s, route codes, reroutes, outcome codes) of ``inputs`` under a policy
    with a compiled ``decide``, exactly as :class:`simqos.engine._Server` computes them."""
    model = plan.model
    queue = plan.scenario.workload.queue
    speed = inputs.speed
    params, table = policy.prepared()
    f8 = functools.partial(np.require, dtype=np.float64, requirements="CW")  # the compiled types: writable, C order
    return _serve(
        f8(inputs.arrivals_s),
        f8(inputs.deadlines_s),
        f8(inputs.work_ms),
        f8(speed.trace.times_s),
        f8(speed.trace.values),
        f8(speed.cum_work_ms),
        f8(inputs.resident.times_s),
        np.require(inputs.resident.values, np.int64, "CW"),
        -1 if queue.capacity is None else queue.capacity,
        queue.late == "drop",
        float(model.sparsest_median_ms),
        f8(model.idle_ms),
        f8(model.idle_factor),
        type(policy).decide,
        params,
        table,
        np.require(policy.candidates(), np.int64, "CW"),
    )
