"""The compiled driver of the serving core (numba): a replication in one compiled loop.

:mod:`simqos.sim.serving` holds the queue rules, the clock arithmetic and the policies'
decisions; this module only walks the arrivals in order with a simulated clock — the same walk
as the SimPy engine (:mod:`simqos.sim.simpy_model`), including SimPy's clock updates
(``now + (t - now)``), so the records are equal bit for bit (tested). Any policy with a
compiled ``decide`` (every built-in one, and a user's written in that form) runs here; a
replication of 10^6 requests takes about a second.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from numba import types

from simqos.jit import njit
from simqos.sim.device import DeviceView, whole_view
from simqos.policies import Policy
from simqos.sim.timeslice import route_work, slice_left_after, sliced_factors
from simqos.sim.serving import (
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

__all__ = ["FastServer", "serve_fast"]


_t8, _ti8 = types.float64[::1], types.int64[::1]
_f8 = functools.partial(np.require, dtype=np.float64, requirements="CW")  # the compiled types: writable, C order


@njit(nogil=True)
def _beyond(t, known_s, cap_s):
    """A finish past the device's window, or never (inf) while the window ends before the cap."""
    return t >= known_s if not math.isinf(t) else known_s < cap_s


@njit(nogil=True)
def _beyond_any(finishes, known_s, cap_s):
    for t in finishes:
        if _beyond(t, known_s, cap_s):
            return True
    return False


@njit((
    _t8, _t8, types.float64[:, :, ::1], _t8, _t8, _t8, _t8, _ti8,  # arrivals .. resident levels
    types.int64, types.boolean, types.float64, _t8, types.float64[:, ::1],  # capacity .. idle factor
    DECIDE_TYPE, _t8, types.float64[:, ::1], types.int64[:, ::1],  # decide, params, table, candidates
    types.int64, types.int64, types.boolean, _t8, _t8,  # first request, begin, final, clock, waiting
    types.float64, types.float64,  # the device known until, the residency cap
    _t8, _t8, types.float64,  # share breakpoints, shares, slice
), nogil=True)
def _serve(
    arrivals, deadlines, work, times, speeds, cum, res_times, res_levels,
    capacity, late_drop, sparsest_median_ms, idle_ms, idle_factor, decide, params, table, candidates,
    first, begin, final, clock, waiting_left, known_s, cap_s, share_times, shares, slice_ms,
):  # fmt: skip
    """Serve requests ``begin``, ``begin`` + 1, ... of the window ``arrivals`` (request ``first``
    of the replication and on, with their
    deadlines and work) from the state ``clock`` = (now, busy until) and ``waiting_left`` (when
    the admitted requests still waiting leave the queue). Unless ``final``, it stops before a
    request whose queue could hold arrivals beyond the window (the clock has reached the
    window's last arrival): the caller serves it with the next chunk appended. Returns the
    index it stopped at, the served requests' arrays, and the new ``waiting_left``; ``clock``
    (now, busy until, the server's slice left: :mod:`simqos.sim.timeslice`) is updated in place."""
    n = len(arrivals)
    m = n - begin
    n_levels = work.shape[1]
    start_s = np.full(m, np.nan)
    finish_s = np.full(m, np.nan)
    codes = np.full(m, -1, dtype=np.int64)
    reroutes = np.zeros(m, dtype=np.int64)
    outcome = np.full(m, DROPPED, dtype=np.int8)
    left = np.empty(len(waiting_left) + m)  # when each admitted request left the queue
    left[: len(waiting_left)] = waiting_left
    n_left = len(waiting_left)
    factors = np.ones(n_levels)
    route_finish = np.empty(candidates.shape[0])  # the clairvoyant's view, reused
    now, busy_until, slice_left = clock[0], clock[1], clock[2]
    sliced = slice_ms > 0.0
    on_factors = np.ones(n_levels)  # the work at the whole core, before the slicing
    run_first = 0.0
    gone, i_speed, i_res, i_share, q_end = 0, 0, 0, 0, begin  # search hints: the clock only moves forward
    stop, short = n, False
    for i in range(begin, n):
        arrival = arrivals[i]
        if not final and arrivals[n - 1] <= max(now, arrival):
            stop = i
            break
        if max(now, arrival) >= known_s:
            stop, short = i, True
            break
        j = i - begin
        if now < arrival:
            now = now + (arrival - now)
        waiting = waiting_at(left, n_left, arrival, gone)
        gone = n_left - waiting
        if not admits(waiting, capacity, busy_until <= arrival):
            continue
        deadline = deadlines[i]
        left[n_left] = now
        n_left += 1
        start_s[j] = now
        i_speed = bisect_from(times, now, len(times), i_speed + 1) - 1
        if late_drop and too_late(now, deadline, sparsest_median_ms, speeds[i_speed]):
            continue
        q_end = max(bisect_from(arrivals, now, n, q_end), i + 1)
        i_res = bisect_from(res_times, now, len(res_times), i_res + 1) - 1
        idle_factors(idle_ms, idle_factor, (now - busy_until) * 1e3, factors)
        if sliced:  # a woken request (it found the device idle) runs a whole slice first; a queued one the slice left
            i_share = bisect_from(share_times, now, len(share_times), i_share + 1) - 1
            run_first = slice_ms if arrival > busy_until else slice_left
            on_factors[:] = factors
            sliced_factors(factors, work[i], shares[i_share], run_first, slice_ms)
        t, code, changes = serve_request(
            first + i, now, arrival, deadline, work[i], factors, on_factors if sliced else factors, times, speeds, cum, res_times, res_levels,
            deadlines[i + 1 : q_end], decide, params, table, candidates, route_finish, i_speed, i_res,
        )  # fmt: skip
        if _beyond(t, known_s, cap_s) or _beyond_any(route_finish, known_s, cap_s):
            n_left -= 1  # not served in this window: undone
            stop, short = i, True
            break
        if math.isinf(t):
            continue  # its level never returns: dropped
        now = now + (t - now)
        if sliced:
            slice_left = slice_left_after(run_first, route_work(code, work[i], on_factors), slice_ms)
        busy_until = t
        finish_s[j] = t
        codes[j] = code
        reroutes[j] = changes
        outcome[j] = MET if t <= deadline else MISSED
    clock[0], clock[1], clock[2] = now, busy_until, slice_left
    k = stop - begin
    # Later arrivals come at or after the stop's: only who leaves the queue after it still counts.
    gone = n_left - waiting_at(left, n_left, arrivals[stop], gone) if stop < n else n_left
    return stop, short, start_s[:k], finish_s[:k], codes[:k], reroutes[:k], outcome[:k], left[gone:n_left].copy()


class FastServer:
    """One policy's compiled server over a replication's inputs given in chunks
    (:meth:`serve`): the queue and the clock carry from chunk to chunk, so the records do not
    depend on the chunk sizes (tested)."""

    def __init__(self, plan, policy: Policy) -> None:
        model, queue = plan.model, plan.scenario.workload.queue
        self.policy = policy
        self.params, self.table = policy.prepared()
        self.candidates = np.require(policy.candidates(), np.int64, "CW")
        self.rules = (-1 if queue.capacity is None else queue.capacity, queue.late == "drop", float(model.sparsest_median_ms),
                      _f8(model.idle_ms), _f8(model.idle_factor))  # fmt: skip
        self.slice_ms = float(plan.scenario.device.slice_ms)
        self.clock = np.zeros(3)
        self.waiting = np.empty(0)

    @property
    def now_s(self) -> float:
        """The server's clock: no later request reads the device before it."""
        return float(self.clock[0])

    def serve(self, arrivals_s, deadlines_s, work_ms, first: int, begin: int, final: bool,
              device: DeviceView) -> tuple[int, bool, tuple[np.ndarray, ...]]:  # fmt: skip
        """Serve the window's requests from ``begin`` (the window starts at request ``first``)
        on ``device``: (where it stopped, whether for the device, (start_s, finish_s, route
        codes, reroutes, outcome codes) of requests ``begin`` .. stop - 1). Unless ``final``, the
        requests from the stop on are to be served with the next chunk appended; after a stop
        for the device, with the device sampled further."""
        charged = work_ms + self.policy.decision_ms if self.policy.decision_ms > 0 else work_ms  # each segment follows a decision
        stop, short, *served, self.waiting = _serve(
            _f8(arrivals_s), _f8(deadlines_s), _f8(charged), *(_f8(a) for a in device.arrays[:4]),
            np.require(device.arrays[4], np.int64, "CW"),
            *self.rules, type(self.policy).decide, self.params, self.table, self.candidates,
            first, begin, final, self.clock, self.waiting, device.known_s, device.cap_s,
            _f8(device.arrays[5]), _f8(device.arrays[6]), self.slice_ms,
        )  # fmt: skip
        return stop, short, tuple(served)


def serve_fast(plan, inputs, policy: Policy) -> tuple[np.ndarray, ...]:
    """(start_s, finish_s, route codes, reroutes, outcome codes) of ``inputs`` under a policy
    with a compiled ``decide``, exactly as :class:`simqos.sim.simpy_model.Server` computes them."""
    server = FastServer(plan, policy)
    return server.serve(inputs.arrivals_s, inputs.deadlines_s, inputs.work_ms, 0, 0, True, whole_view(inputs.speed, inputs.resident, inputs.share_trace))[2]
