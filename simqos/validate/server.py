"""The real server: one policy serving a list of arrivals in real time on a real model
(:class:`simqos.validate.real.RealModel`, or anything with its ``infer`` and ``router``), first
come, first served, under the scenario's queue rules — the serving core's
(:func:`simqos.sim.serving.join_queue`) read off the wall clock — with the policy deciding at
each reroute point from what the clock and the resident levels say then. The same
:class:`~simqos.sim.serving.Decision` as in the simulator reaches the policy: the speed is the
calibrated factor of the load state in force, the resident levels are those a memory schedule
played for real leaves (:mod:`simqos.validate.memory`; all of them without one), and a
clairvoyant policy, which needs the future, cannot run here. It imports no torch: the model's
calls are the only inference here.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Protocol

import numpy as np
import pandas as pd

from simqos.policies import Policy
from simqos.realtime import wait_until
from simqos.sim import serving
from simqos.sim.plan import Plan
from simqos.sim.replication import records_table
from simqos.sim.serving import DROPPED, MET, MISSED, Decision

if TYPE_CHECKING:
    from simqos.validate.real import RealModel

__all__ = ["Residency", "collector_paused", "serve"]


class _NeverResident(Exception):
    """A request's chosen level will not be resident again in this run."""


class Residency(Protocol):
    """What :func:`serve` needs of the levels resident (:class:`simqos.validate.memory.RealResidency`)."""

    def sync(self) -> int: ...

    def wait_for(self, level: int) -> bool: ...


@contextmanager
def collector_paused() -> Iterator[None]:
    """Collect garbage now, then none until the block ends: a collection inside a request would
    be the collector's latency, not the model's."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def serve(
    real: RealModel,
    plan: Plan,
    policy_index: int,
    arrivals_s: np.ndarray,
    deadlines_s: np.ndarray,
    speed_now: Callable[[], float],
    t0: float,
    clock: Callable[[], float] = time.perf_counter,
    wait: Callable[[float], None] | None = None,
    replication: int = 0,
    residency: Residency | None = None,
    policy: Policy | None = None,
) -> pd.DataFrame:
    """Serve every arrival (seconds after ``t0``, a ``clock`` reading) in real time under the
    plan's policy ``policy_index``; ``speed_now()`` is the speed factor in force. The queue
    rules and the policy's decisions are the serving core's (:mod:`simqos.sim.serving`), read off
    this clock; ``wait(t)`` idles until the clock reads ``t`` (default: :func:`wait_until`). The
    records have the simulator's columns, ``replication`` the real run's index, and
    ``overhead_work_ms``: the server's own cost of each request — its bookkeeping from the start
    to the first layer, and the policy's decisions — in profiled milliseconds of work (the
    time it took times the speed factor in force), which the model's kernels do not include.

    ``residency`` (:class:`simqos.validate.memory.RealResidency`, or any object with its
    ``sync`` and ``wait_for``): the levels resident, under a memory schedule being played. At
    each reroute point the policy sees the least sparse resident level; a chosen level that is
    not resident is waited for (the wait is not the server's own cost; ``resident_wait_ms`` in
    the records), and a request whose level will not return is dropped. Without it every
    level is resident. ``policy``: a fresh instance of the plan's policy ``policy_index``, built
    before ``t0`` (default: built here, on the clock)."""
    policy = plan.policy_factories[policy_index]() if policy is None else policy
    if policy.clairvoyant:
        raise RuntimeError(f"policy {plan.labels[policy_index]} needs the future; it cannot run on a real device")
    model = plan.model
    rules = serving.Rules.of(plan.scenario, model)
    n = len(arrivals_s)
    start = np.full(n, np.nan)
    finish = np.full(n, np.nan)
    route_code = np.full(n, -1, dtype=np.int64)
    reroutes = np.zeros(n, dtype=np.int64)
    outcome = np.full(n, DROPPED, dtype=np.int8)
    overhead_work_ms = np.full(n, np.nan)
    resident_wait_ms = np.zeros(n)
    state = serving.server_state(model.n_levels, 0, n)  # the queue and when the device is next free
    no_future = np.zeros(0)
    wait = wait or (lambda t: wait_until(t, clock))
    for i, arrival in enumerate(arrivals_s.tolist()):
        wait(t0 + arrival)
        now = clock() - t0
        deadline = float(deadlines_s[i])
        joined = serving.join_queue(rules, state, arrival, now, deadline, speed_now())
        if joined == serving.TURNED_AWAY:
            continue
        start[i] = now
        if joined == serving.DROPPED_LATE:
            continue
        queued = deadlines_s[i + 1 : max(serving.bisect_right(arrivals_s, now, n), i + 1)]
        factors = np.array(model.idle_factors_at((now - state.busy[serving.BUSY_UNTIL]) * 1e3))
        deciding = [0.0]  # seconds spent in the decisions

        def decide(segment: int, i=i, arrival=arrival, deadline=deadline, queued=queued, factors=factors) -> int:
            entered = clock()
            levels = real.router.levels
            floor = residency.sync() if residency is not None else 0
            state = Decision(i, entered - t0, arrival, deadline, segment, levels[-1] if levels else -1,
                             serving.route_code(levels, model.n_levels), speed_now(),
                             floor, model.n_levels, queued, factors, no_future)
            chosen = int(policy.choose(state))
            if not 0 <= chosen < model.n_levels:
                raise RuntimeError(f"policy {plan.labels[policy_index]} chose level {chosen}")
            waited = 0.0
            if residency is not None and chosen < floor:  # not resident: wait for it
                began = clock()
                if not residency.wait_for(chosen):
                    raise _NeverResident
                waited = clock() - began
                resident_wait_ms[i] += waited * 1e3
            deciding[0] += clock() - entered - waited
            return chosen

        inferring = clock()
        try:
            route = real.infer(decide)
        except _NeverResident:
            continue  # its level never returns: dropped
        finish[i] = state.busy[serving.BUSY_UNTIL] = clock() - t0
        overhead_work_ms[i] = (inferring - t0 - start[i] + deciding[0]) * 1e3 * speed_now()
        route_code[i] = serving.route_code(route, model.n_levels)
        reroutes[i] = sum(a != b for a, b in zip(route, route[1:]))
        outcome[i] = MET if finish[i] <= deadline else MISSED
    records = records_table(plan, policy_index, replication, arrivals_s, deadlines_s, start, finish, route_code, reroutes, outcome)
    records["overhead_work_ms"] = overhead_work_ms
    records["resident_wait_ms"] = resident_wait_ms
    return records

