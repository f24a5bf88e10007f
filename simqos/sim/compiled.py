"""The compiled driver of the serving core (numba): a replication in one compiled loop.

:mod:`simqos.sim.serving` holds the serving step (queue rules, the clock arithmetic, the
policies' decisions); this module only walks the arrivals in order with a simulated clock,
one step each — the same walk as the SimPy engine (:mod:`simqos.sim.simpy_model`), including SimPy's clock updates
(``now + (t - now)``), so the records are equal bit for bit (tested). Any policy with a
compiled ``decide`` (every built-in one, and a user's written in that form) runs here; a
replication of 10^6 requests takes about a second.
"""

from __future__ import annotations

import functools

import numpy as np
from numba import types

from simqos.jit import borrow, njit
from simqos.policies import Policy
from simqos.sim.serving import (
    BEYOND,
    DECIDE_TYPE,
    DROPPED,
    GONE,
    N_LEFT,
    DeviceArrays,
    PolicyArrays,
    Rules,
    ServerState,
    serve_step,
    server_state,
    waiting_at,
    with_room,
)

__all__ = ["FastServer", "serve_fast"]


_t8, _ti8 = types.float64[::1], types.int64[::1]
_f8 = functools.partial(np.require, dtype=np.float64, requirements="CW")  # the compiled types: writable, C order
RULES_TYPE = types.NamedTuple([types.int64, types.boolean, types.float64, _t8, types.float64[:, ::1], types.float64, _t8], Rules)
DEVICE_TYPE = types.NamedTuple([_t8, _t8, _t8, _t8, _ti8, _t8, _t8, types.float64, types.float64], DeviceArrays)
POLICY_TYPE = types.NamedTuple([_t8, types.float64[:, ::1], types.int64[:, ::1]], PolicyArrays)
STATE_TYPE = types.NamedTuple([_t8, _t8, _ti8, _t8, _t8, _t8], ServerState)
"""numba types of the serving step's tuples, as the ``of`` constructors make them."""


@njit((_t8, _t8, types.float64[:, :, ::1], RULES_TYPE, DEVICE_TYPE, POLICY_TYPE, DECIDE_TYPE, STATE_TYPE,
       types.int64, types.int64, types.boolean, types.float64), nogil=True)  # fmt: skip
def _serve(arrivals, deadlines, work, rules, device, policy, decide, state, first, begin, final, now):
    """Serve requests ``begin``, ``begin`` + 1, ... of the window ``arrivals`` (request ``first``
    of the replication and on, with their deadlines and work) from the server's ``state`` and
    clock ``now``, one :func:`~simqos.sim.serving.serve_step` each. Unless ``final``, it stops
    before a request whose queue could hold arrivals beyond the window (the clock has reached
    the window's last arrival): the caller serves it with the next chunk appended; it also stops
    where the device is not known further. Returns the index it stopped at, whether for the
    device, the clock, and the served requests' arrays. Its arguments outlive it, so the step
    gets them borrowed (:func:`simqos.jit.borrow`): counting references to the tuples' arrays
    at each call and field read was a third of a request's cost."""
    n = len(arrivals)
    m = n - begin
    start_s = np.full(m, np.nan)
    finish_s = np.full(m, np.nan)
    codes = np.full(m, -1, dtype=np.int64)
    reroutes = np.zeros(m, dtype=np.int64)
    outcome = np.full(m, DROPPED, dtype=np.int8)
    rules, device, policy, state = borrow(rules), borrow(device), borrow(policy), borrow(state)
    arrivals_, deadlines_, work_ = borrow(arrivals), borrow(deadlines), borrow(work)
    stop, short = n, False
    for i in range(begin, n):
        arrival = arrivals[i]
        if not final and arrivals[n - 1] <= max(now, arrival):
            stop = i
            break
        if max(now, arrival) >= device.known_s:
            stop, short = i, True
            break
        if now < arrival:
            now = now + (arrival - now)  # as SimPy's clock moves
        served, start, t, code, changes = serve_step(first + i, i, now, arrivals_, deadlines_, work_, rules, device, policy, decide, state)
        if served == BEYOND:
            stop, short = i, True
            break
        j = i - begin
        start_s[j], finish_s[j], codes[j], reroutes[j], outcome[j] = start, t, code, changes, served
        if served != DROPPED:
            now = now + (t - now)
    k = stop - begin
    return stop, short, now, start_s[:k], finish_s[:k], codes[:k], reroutes[:k], outcome[:k]


class FastServer:
    """One policy's compiled server over a replication's inputs given in chunks
    (:meth:`serve`): the queue and the clock carry from chunk to chunk, so the records do not
    depend on the chunk sizes (tested)."""

    def __init__(self, plan, policy: Policy) -> None:
        self.policy = policy
        self.rules = Rules.of(plan.scenario, plan.model)
        self.arrays = PolicyArrays.of(policy)
        self.state = server_state(plan.model.n_levels, len(self.arrays.candidates), 0)
        self.now_s = 0.0
        """The server's clock: no later request reads the device before it."""

    def serve(self, arrivals_s, deadlines_s, work_ms, first: int, begin: int, final: bool,
              device: DeviceArrays) -> tuple[int, bool, tuple[np.ndarray, ...]]:  # fmt: skip
        """Serve the window's requests from ``begin`` (the window starts at request ``first``)
        on ``device``: (where it stopped, whether for the device, (start_s, finish_s, route
        codes, reroutes, outcome codes) of requests ``begin`` .. stop - 1). Unless ``final``, the
        requests from the stop on are to be served with the next chunk appended; after a stop
        for the device, with the device sampled further."""
        charged = work_ms + self.policy.decision_ms if self.policy.decision_ms > 0 else work_ms  # each segment follows a decision
        state = self.state = with_room(self.state, len(arrivals_s) - begin)
        stop, short, self.now_s, *served = _serve(
            _f8(arrivals_s), _f8(deadlines_s), _f8(charged), self.rules, device, self.arrays, type(self.policy).decide, state,
            first, begin, final, self.now_s,
        )  # fmt: skip
        # Later arrivals come at or after the stop's: only who leaves the queue after it still counts.
        n_left = state.counts[N_LEFT]
        gone = n_left - waiting_at(state.left_s, n_left, arrivals_s[stop], state.counts[GONE]) if stop < len(arrivals_s) else n_left
        state.counts[GONE] = gone
        return stop, short, tuple(served)


def serve_fast(plan, inputs, policy: Policy) -> tuple[np.ndarray, ...]:
    """(start_s, finish_s, route codes, reroutes, outcome codes) of ``inputs`` under a policy
    with a compiled ``decide``, exactly as :class:`simqos.sim.simpy_model.Server` computes them."""
    server = FastServer(plan, policy)
    return server.serve(inputs.arrivals_s, inputs.deadlines_s, inputs.work_ms, 0, 0, True, inputs.device_arrays())[2]
