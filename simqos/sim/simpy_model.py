"""The SimPy model: the device serving one replication's requests under one policy.

Describe, then run: :func:`simqos.sim.plan.build_plan` validates everything a run needs into an
inert plan; :func:`simqos.sim.inputs.sample_inputs` draws one replication's inputs; the
:class:`Server` here serves them under one policy (:func:`simqos.sim.replication.serve` picks
this model or its compiled twin).

The device serves one request at a time, first come first served, under the queue rules of
the serving core (:mod:`simqos.sim.serving`). A SimPy event happens when the idle device waits for
the next arrival and when a request completes. The policy decides at the request's start and
at each reroute point, at their exact simulated times: a segment's end (including any wait for
evicted weights to return) is computed from the speed and residency traces
(:func:`simqos.sim.serving.finish_time`), so no event is needed per layer, per speed change, or
per reroute point. The simulated time unit is the second. A request that finds the device idle
has its work at each level scaled by that level's idle slowdown for the time the device has
been idle (:meth:`simqos.sim.service.ServiceModel.idle_factors_at`; 1 when the profile has no
``idle.csv``). With ``device.slice_ms`` the work is then stretched by the competitors' turns
the request waits out (:mod:`simqos.sim.timeslice`), from the slice the previous request left.

This SimPy model is the reference and serves any policy. For a policy with a compiled
``decide`` (every built-in one) a scenario's ``engine: auto`` (the default) runs the compiled
driver in :mod:`simqos.sim.compiled` instead, which gives the same records bit for bit (tested)
tens of times faster; the run's summary says which engine served each policy.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import pandas as pd
import simpy

from simqos.policies import Policy
from simqos.sim.inputs import ReplicationInputs, sample_inputs
from simqos.sim.serving import DROPPED, Decision, PolicyArrays, Rules, serve_step_py, server_state

if TYPE_CHECKING:
    from simqos.sim.plan import Plan

__all__ = ["MEASURED_REQUESTS", "Recorder", "Served", "Server", "decisions", "measure_decision_ms", "serve_simpy"]


class Server:
    """The device of one replication under one policy; :meth:`process` is the SimPy process.

    The SimPy driver of the serving core: it takes the core's step
    (:func:`simqos.sim.serving.serve_step`) for each arrival, run by the interpreter, so that any
    policy — compiled or Python — can decide. A request's
    decisions are made in line, at their exact simulated times (each reroute point's time
    follows from the speed trace), and the process then waits once, until the request
    completes: nothing else in the model acts at a reroute point, so an event there would
    change no outcome and only cost time.
    """

    def __init__(self, plan: Plan, inputs: ReplicationInputs, policy: Policy) -> None:
        self.plan, self.inputs, self.policy = plan, inputs, policy
        n = len(inputs.arrivals_s)
        self.start_s = np.full(n, np.nan)
        self.finish_s = np.full(n, np.nan)
        self.route_code = np.full(n, -1, dtype=np.int64)
        self.reroutes = np.zeros(n, dtype=np.int64)
        self.outcome = np.full(n, DROPPED, dtype=np.int8)

    def process(self, env: simpy.Environment):
        inputs, model, policy = self.inputs, self.plan.model, self.policy
        arrivals, deadlines = inputs.arrivals_s, inputs.deadlines_s
        work_ms = inputs.work_ms + policy.decision_ms if policy.decision_ms > 0 else inputs.work_ms  # each segment follows a decision
        rules, device, arrays = Rules.of(self.plan.scenario, model), inputs.device_arrays(), PolicyArrays.of(policy)
        state = server_state(model.n_levels, len(arrays.candidates), len(arrivals))
        decide = _choose(policy)
        for i, arrival in enumerate(arrivals.tolist()):
            if env.now < arrival:
                yield env.timeout(arrival - env.now)
            outcome, start, finish, code, changes = serve_step_py(i, i, env.now, arrivals, deadlines, work_ms, rules, device, arrays,
                                                                  decide, state)  # fmt: skip
            self.start_s[i], self.finish_s[i], self.route_code[i], self.reroutes[i], self.outcome[i] = start, finish, code, changes, outcome
            if outcome != DROPPED:
                yield env.timeout(finish - env.now)


def _choose(policy: Policy) -> Callable[[Decision, np.ndarray, np.ndarray], int]:
    """The policy as the core's ``decide``: its ``choose``, checked to return a level."""

    def decide(state: Decision, _params: np.ndarray, _table: np.ndarray) -> int:
        chosen = policy.choose(state)
        if not 0 <= chosen < state.n_levels:
            raise RuntimeError(f"policy {policy.label()} chose level {chosen}; levels are 0..{state.n_levels - 1}")
        return int(chosen)

    return decide


class Served(NamedTuple):
    """Per request of one replication under one policy: when it started and finished (s; NaN
    when it never did), its route code (-1: not served), reroutes and outcome code."""

    start_s: np.ndarray
    finish_s: np.ndarray
    route_code: np.ndarray
    reroutes: np.ndarray
    outcome: np.ndarray

    def latest_s(self) -> float:
        """The latest start or finish (0 if none): how long the run used the device."""
        return float(max(np.nanmax(self.start_s, initial=0.0), np.nanmax(self.finish_s, initial=0.0)))


def serve_simpy(plan: Plan, inputs: ReplicationInputs, policy: Policy) -> Served:
    """Serve ``inputs`` under ``policy`` on the SimPy model."""
    server = Server(plan, inputs, policy)
    env = simpy.Environment()
    env.process(server.process(env))
    env.run()
    return Served(server.start_s, server.finish_s, server.route_code, server.reroutes, server.outcome)


class Recorder(Policy):
    """Wraps a policy and keeps the states and choices of one request's decisions (every
    request's, with ``request`` None)."""

    def __init__(self, inner: Policy, request: int | None) -> None:
        super().__init__(inner.params, inner.model, inner.scenario)
        self.inner, self.request, self.rows = inner, request, []

    def candidates(self) -> np.ndarray:
        return self.inner.candidates()

    def choose(self, state: Decision) -> int:
        level = self.inner.choose(state)
        if self.request is None or state.request == self.request:
            self.rows.append({**state._asdict(), "chosen": level})
        return level


def decisions(plan: Plan, inputs: ReplicationInputs, policy_index: int, request: int) -> pd.DataFrame:
    """Every decision the policy made for ``request`` (SimPy reference): the state it saw
    (time, segment, speed, least sparse resident level, how many requests queued behind it)
    and the level it chose."""
    recorder = Recorder(plan.policy_factories[policy_index](), request)
    serve_simpy(plan, inputs, recorder)
    table = pd.DataFrame(recorder.rows).drop(columns=["route_finish_s", "idle_factor", "n_levels"])
    table["queued"] = table.pop("queued_deadlines_s").map(len)
    return table


MEASURED_REQUESTS = 200
"""Requests of replication 0 whose decisions :func:`measure_decision_ms` times."""


def measure_decision_ms(plan: Plan, index: int, requests: int = MEASURED_REQUESTS) -> float:
    """The median wall time (ms) of policy ``index``'s ``choose``, called from Python as the
    real server calls it, over every decision of the first ``requests`` requests of replication
    0 (served on SimPy, the policy uncharged); a first pass warms it up (compilation, caches)."""
    class Timed(Recorder):
        def choose(self, state: Decision) -> int:
            start = time.perf_counter_ns()
            level = self.inner.choose(state)
            self.rows.append(time.perf_counter_ns() - start)
            return level

    inputs = sample_inputs(plan, 0)
    inputs = dataclasses.replace(inputs, arrivals_s=inputs.arrivals_s[:requests], deadlines_s=inputs.deadlines_s[:requests],
                                 work_ms=inputs.work_ms[:requests])
    timed = Timed(plan.policy_factories[index](), None)
    for _ in range(2):  # the first pass warms up; the second is timed
        timed.rows = []
        serve_simpy(plan, inputs, timed)
    return float(np.median(timed.rows)) / 1e6 if timed.rows else 0.0
