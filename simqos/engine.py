"""The SimPy model: one replication of a scenario under one policy -> per-request records.

Describe, then run: :func:`build_plan` validates everything a run needs (the profile, the
policies and their parameters, trace files) into an inert :class:`Plan`; :func:`sample_inputs`
draws one replication's exogenous inputs (arrivals, deadlines, speed and memory traces, latency
draws) from its own ``SeedSequence`` child; :func:`run_policy` serves them under one policy.
Every policy of a replication is served the same inputs (common random numbers), and adding a
policy changes no other policy's records.

The device serves one request at a time, first come first served. A SimPy event happens when
the idle device waits for the next arrival and when a request completes. The policy decides at
the request's start and at each reroute point, at their exact simulated times: a segment's end
(including any wait for evicted weights to return) is computed from the speed and residency
traces (:meth:`simqos.device.SpeedTrace.finish_time_s`), so no event is needed per layer, per
speed change, or per reroute point. The simulated time unit is the second. A request that finds
the device idle has its work at each level scaled by that level's idle slowdown for the time
the device has been idle (:meth:`simqos.service.ServiceModel.idle_factors_at`; 1 when the
profile has no ``idle.csv``).

This SimPy model is the reference and serves any policy. For the built-in policies a scenario's
``engine: auto`` (the default) runs the compiled twin in :mod:`simqos.fastpath` instead, which
gives the same records bit for bit (tested) about a hundred times faster.
"""

from __future__ import annotations

import bisect
import functools
import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import simpy
from pydantic import ValidationError

from simqos.device import SpeedTrace, Trace, constant_trace, read_trace_csv, resident_trace, trace_from_spec
from simqos.errors import SimqosError
from simqos.fastpath import serve_fast, supports
from simqos.metrics import per_replication, summarize
from simqos.policies import POLICIES, DecisionState, Policy
from simqos.profile import load_profile
from simqos.scenario import Scenario
from simqos.service import ServiceModel
from simqos.workload import arrivals_from_spec, deadlines_from_spec, read_arrivals_csv

__all__ = ["OUTCOMES", "Plan", "ReplicationInputs", "build_plan", "decisions", "records_table", "run_plan", "run_policy", "sample_inputs", "summarize_plan"]

OUTCOMES = ("met", "missed", "dropped")
"""Request outcomes: finished by the deadline, finished late, or never served."""

_MET, _MISSED, _DROPPED = range(3)


@dataclass(frozen=True)
class Plan:
    """A validated scenario, ready to run: the model, and per policy entry a factory that makes
    a fresh policy (policies may keep per-run state) and its label."""

    scenario: Scenario
    model: ServiceModel
    policy_factories: tuple[Callable[[], Policy], ...]
    labels: tuple[str, ...]


def build_plan(scenario: Scenario, source: str = "scenario") -> Plan:
    """Load the profile and build the policies; raises SimqosError naming the field."""
    for module in scenario.plugins:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise SimqosError(f"{source}: plugins: cannot import {module!r} ({exc})") from None
    model = ServiceModel.from_profile(load_profile(scenario.profile))
    _check_trace_files(scenario, source)
    factories, labels = [], []
    for i, spec in enumerate(scenario.policies):
        where = f"{source}: policies[{i}]"
        cls = POLICIES.get(spec.kind)
        if cls is None:
            raise SimqosError(
                f"{where}.kind: {spec.kind!r} is not a registered policy; choose among {sorted(POLICIES)} "
                "or register your own (see simqos.policies.register_policy)"
            )
        try:
            params = cls.Params.model_validate(spec.params)
        except ValidationError as exc:
            err = exc.errors()[0]
            field = ".".join(str(p) for p in err["loc"])
            what = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
            got = "" if err["type"] in ("extra_forbidden", "missing") else f" (got {err.get('input')!r})"
            raise SimqosError(f"{where}.{field}: {what}{got}") from None
        level = getattr(params, "level", None)
        if level is not None and level >= model.n_levels:
            raise SimqosError(
                f"{where}.level: {level}, but the profile {scenario.profile} has levels 0..{model.n_levels - 1}"
            )
        factory = functools.partial(cls, params, model)
        factories.append(factory)
        labels.append(spec.label or factory().label())
    duplicated = {lab for lab in labels if labels.count(lab) > 1}
    if duplicated:
        raise SimqosError(f"{source}: policies: labels {sorted(duplicated)} repeat; give each a distinct 'label'")
    return Plan(scenario, model, tuple(factories), tuple(labels))


def _check_trace_files(scenario: Scenario, source: str) -> None:
    """Read every replayed trace once, so a bad file fails before the run starts."""
    if scenario.workload.arrival.kind == "trace":
        read_arrivals_csv(scenario.workload.arrival.path)
    for field, spec in (("speed", scenario.device.speed), ("memory_mb", scenario.device.memory)):
        if spec is not None and spec.kind == "trace":
            trace = read_trace_csv(spec.path, field)
            if field == "speed" and (trace.values <= 0).any():
                raise SimqosError(f"{source}: device.speed: {spec.path} has speed factors <= 0; they must be > 0")
            if (trace.values < 0).any():
                raise SimqosError(f"{source}: device.memory: {spec.path} has negative memory_mb")


@dataclass(frozen=True)
class ReplicationInputs:
    """One replication's exogenous inputs; every policy is served these same ones."""

    arrivals_s: np.ndarray
    deadlines_s: np.ndarray  # absolute
    work_ms: np.ndarray  # (n, n_levels, n_segments) profiled ms of each segment at each level
    speed: SpeedTrace
    memory_mb: Trace
    resident: Trace  # least sparse resident level over time (n_levels: none)


def _arrivals(scenario: Scenario, rng_seed: np.random.SeedSequence) -> np.ndarray:
    spec = scenario.workload.arrival
    if scenario.requests is not None:
        return arrivals_from_spec(spec, scenario.requests, np.random.default_rng(rng_seed))
    n = 1024
    while True:  # same seed each time: the first n arrivals do not depend on n
        times = arrivals_from_spec(spec, n, np.random.default_rng(rng_seed))
        if times[-1] >= scenario.duration_s:
            return times[times < scenario.duration_s]
        n *= 2


def sample_inputs(plan: Plan, replication: int) -> ReplicationInputs:
    """Draw replication ``replication``'s inputs from the scenario seed: its SeedSequence child
    (``SeedSequence(seed).spawn(n)[replication]`` for any n > replication, so adding
    replications leaves the earlier ones' inputs unchanged)."""
    scenario, model = plan.scenario, plan.model
    streams = np.random.SeedSequence(scenario.seed, spawn_key=(replication,)).spawn(5)
    arrivals = _arrivals(scenario, streams[0])
    n = len(arrivals)
    deadlines = arrivals + deadlines_from_spec(scenario.workload.deadline, n, np.random.default_rng(streams[1])) / 1e3
    horizon = 2.0 * float(arrivals[-1]) + 60.0
    speed = SpeedTrace(trace_from_spec(scenario.device.speed, "speed", horizon, np.random.default_rng(streams[2])))
    memory = (
        constant_trace(math.inf)
        if scenario.device.memory is None
        else trace_from_spec(scenario.device.memory, "memory_mb", horizon, np.random.default_rng(streams[3]))
    )
    resident = resident_trace(memory, model.level_bytes, scenario.device.storage_bandwidth_mb_s)
    uniforms = np.random.default_rng(streams[4]).random((n, len(model.sorted_samples_ms)))
    return ReplicationInputs(arrivals, deadlines, model.segment_work_ms(uniforms), speed, memory, resident)


class _Server:
    """The device of one replication under one policy; :meth:`process` is the SimPy process.

    A request's decisions are made in line, at their exact simulated times (each reroute
    point's time follows from the speed trace), and the process then waits once, until the
    request completes: nothing else in the model acts at a reroute point, so an event there
    would change no outcome and only cost time.
    """

    def __init__(self, plan: Plan, inputs: ReplicationInputs, policy: Policy) -> None:
        self.plan, self.inputs, self.policy = plan, inputs, policy
        self.model = plan.model
        n = len(inputs.arrivals_s)
        self.start_s = np.full(n, np.nan)
        self.finish_s = np.full(n, np.nan)
        self.route_code = np.full(n, -1, dtype=np.int64)
        self.reroutes = np.zeros(n, dtype=np.int64)
        self.outcome = np.full(n, _DROPPED, dtype=np.int8)
        self.sparsest_median_ms = self.model.sparsest_median_ms
        self._resident_times = inputs.resident.times_s.tolist()
        self._resident_levels = [int(v) for v in inputs.resident.values]

    def min_resident(self, t_s: float) -> int:
        """Least sparse level resident at ``t_s`` (``n_levels`` if none)."""
        return self._resident_levels[bisect.bisect_right(self._resident_times, t_s) - 1]

    def resident_from_s(self, level: int, t_s: float) -> float:
        """Earliest time >= ``t_s`` at which ``level`` is resident (inf if never)."""
        i = bisect.bisect_right(self._resident_times, t_s) - 1
        if self._resident_levels[i] <= level:
            return t_s
        for j in range(i + 1, len(self._resident_levels)):
            if self._resident_levels[j] <= level:
                return self._resident_times[j]
        return math.inf

    def route_finish_s(self, request: int, route: tuple[int, ...], start_s: float, idle_factors: list[float]) -> float:
        """Exact finish of ``route`` for ``request`` started at ``start_s`` (the oracle's view)."""
        t = start_s
        work = self.inputs.work_ms[request]
        for segment, level in enumerate(route):
            t = self.resident_from_s(level, t)
            if math.isinf(t):
                return t
            t = self.inputs.speed.finish_time_s(t, float(work[level, segment]) * idle_factors[level])
        return t

    def process(self, env: simpy.Environment):
        inputs, model, policy = self.inputs, self.model, self.policy
        queue = self.plan.scenario.workload.queue
        speed = inputs.speed
        arrivals, deadlines = inputs.arrivals_s.tolist(), inputs.deadlines_s.tolist()
        n_levels, n_segments = model.n_levels, model.n_segments
        started: list[float] = []  # start times of served requests, increasing
        idle_since = 0.0  # the last served request's finish
        for i, arrival in enumerate(arrivals):
            if env.now < arrival:
                yield env.timeout(arrival - env.now)
            now = env.now
            if queue.capacity is not None and len(started) - bisect.bisect_right(started, arrival) >= queue.capacity:
                continue  # the queue was full when it arrived: dropped
            deadline = deadlines[i]
            if queue.late == "drop" and now + self.sparsest_median_ms / speed.speed_at(now) / 1e3 > deadline:
                self.start_s[i] = self.finish_s[i] = now
                continue
            started.append(now)
            self.start_s[i] = now
            queued = deadlines[i + 1 : max(bisect.bisect_right(arrivals, now), i + 1)]
            factors = model.idle_factors_at((now - idle_since) * 1e3)
            work = inputs.work_ms[i].tolist()
            clairvoyance = functools.partial(self.route_finish_s, i, start_s=now, idle_factors=factors)
            t, level, code, changes = now, None, 0, 0
            for segment in range(n_segments):
                chosen = int(
                    policy.choose(
                        DecisionState(
                            request=i,
                            now_s=t,
                            arrival_s=arrival,
                            deadline_s=deadline,
                            segment=segment,
                            current_level=level,
                            speed=speed.speed_at(t),
                            min_resident_level=self.min_resident(t),
                            queued_deadlines_s=queued,
                            route_finish_s=clairvoyance,
                        )
                    )
                )
                if not 0 <= chosen < n_levels:
                    raise RuntimeError(f"policy {policy.label()} chose level {chosen}; levels are 0..{n_levels - 1}")
                t = self.resident_from_s(chosen, t)
                if math.isinf(t):
                    break  # its level never returns: dropped
                t = speed.finish_time_s(t, work[chosen][segment] * factors[chosen])
                changes += level is not None and chosen != level
                level = chosen
                code = code * n_levels + chosen
            else:
                yield env.timeout(t - now)
                idle_since = t
                self.finish_s[i] = t
                self.route_code[i] = code
                self.reroutes[i] = changes
                self.outcome[i] = _MET if t <= deadline else _MISSED


def _route_text(code: int, n_levels: int, n_segments: int) -> str:
    if code < 0:
        return ""
    digits = []
    for _ in range(n_segments):
        code, d = divmod(code, n_levels)
        digits.append(str(d))
    return "-".join(reversed(digits))


def run_policy(
    plan: Plan, inputs: ReplicationInputs, policy_index: int, replication: int, engine: str | None = None
) -> pd.DataFrame:
    """Serve ``inputs`` under policy ``policy_index``; one row per request (see results.py).

    ``engine`` (default: the scenario's) is ``simpy``, or ``auto``: the compiled fast path
    (:mod:`simqos.fastpath`, equal record for record) for built-in policies, SimPy otherwise.
    """
    policy = plan.policy_factories[policy_index]()
    if (engine or plan.scenario.engine) == "auto" and supports(policy):
        start_s, finish_s, route_code, reroutes, outcome = serve_fast(plan, inputs, policy)
    else:
        server = _Server(plan, inputs, policy)
        env = simpy.Environment()
        env.process(server.process(env))
        env.run()
        start_s, finish_s = server.start_s, server.finish_s
        route_code, reroutes, outcome = server.route_code, server.reroutes, server.outcome
    return records_table(
        plan, policy_index, replication, inputs.arrivals_s, inputs.deadlines_s, start_s, finish_s, route_code, reroutes, outcome
    )


def records_table(
    plan: Plan,
    policy_index: int,
    replication: int,
    arrivals_s: np.ndarray,
    deadlines_s: np.ndarray,
    start_s: np.ndarray,
    finish_s: np.ndarray,
    route_code: np.ndarray,
    reroutes: np.ndarray,
    outcome: np.ndarray,
) -> pd.DataFrame:
    """The records of one replication under one policy (columns in results.py) from per-request
    arrays: times in seconds, ``route_code`` the route's levels as base-``n_levels`` digits
    (-1: not served), ``outcome`` an index into :data:`OUTCOMES`."""
    model = plan.model
    codes = np.unique(route_code)
    text = {c: _route_text(int(c), model.n_levels, model.n_segments) for c in codes}
    accuracy = {c: (model.accuracy(tuple(int(p) for p in text[c].split("-"))) if c >= 0 else math.nan) for c in codes}
    n = len(arrivals_s)
    return pd.DataFrame(
        {
            "replication": np.full(n, replication, dtype=np.int64),
            "policy": plan.labels[policy_index],
            "request": np.arange(n),
            "warmup": np.arange(n) < plan.scenario.warmup_requests,
            "arrival_s": arrivals_s,
            "start_s": start_s,
            "finish_s": finish_s,
            "deadline_s": deadlines_s,
            "latency_ms": (finish_s - arrivals_s) * 1e3,
            "route": pd.Series(route_code).map(text).to_numpy(),
            "reroutes": reroutes,
            "outcome": np.array(OUTCOMES)[outcome],
            "accuracy": pd.Series(route_code).map(accuracy).to_numpy(dtype=float),
        }
    )


class _Recorder(Policy):
    """Wraps a policy and keeps the states and choices of one request's decisions."""

    def __init__(self, inner: Policy, request: int) -> None:
        super().__init__(inner.params, inner.model)
        self.inner, self.request, self.rows = inner, request, []

    def choose(self, state: DecisionState) -> int:
        level = self.inner.choose(state)
        if state.request == self.request:
            self.rows.append({**state._asdict(), "chosen": level})
        return level


def decisions(plan: Plan, inputs: ReplicationInputs, policy_index: int, request: int) -> pd.DataFrame:
    """Every decision the policy made for ``request`` (SimPy reference): the state it saw
    (time, segment, speed, least sparse resident level, queue behind it) and the level it chose."""
    recorder = _Recorder(plan.policy_factories[policy_index](), request)
    server = _Server(plan, inputs, recorder)
    env = simpy.Environment()
    env.process(server.process(env))
    env.run()
    table = pd.DataFrame(recorder.rows).drop(columns=["route_finish_s"])
    table["queued"] = table.pop("queued_deadlines_s").map(len)
    return table


def _replication(plan: Plan, replication: int) -> list[pd.DataFrame]:
    inputs = sample_inputs(plan, replication)
    return [run_policy(plan, inputs, p, replication) for p in range(len(plan.policy_factories))]


def _replication_in_worker(scenario_json: dict, source: str, replication: int) -> list[pd.DataFrame]:
    from simqos.scenario import parse_scenario

    return _replication(build_plan(parse_scenario(scenario_json, source), source), replication)


def run_plan(
    plan: Plan,
    progress: Callable[[int, int], None] | None = None,
    workers: int = 1,
    replications: range | None = None,
) -> pd.DataFrame:
    """Every replication (default: the scenario's ``range(replications)``) under every policy;
    ``progress(done, total)`` after each replication.

    With ``workers > 1`` replications run in that many processes (each rebuilds the plan from
    the scenario); the records are the same as with one, in the same order.
    """
    todo = range(plan.scenario.replications) if replications is None else replications
    n = len(todo)
    results: dict[int, list[pd.DataFrame]] = {}
    if workers > 1 and n > 1:
        from concurrent.futures import ProcessPoolExecutor, as_completed

        scenario_json = plan.scenario.model_dump(mode="json")
        with ProcessPoolExecutor(max_workers=min(workers, n)) as pool:
            futures = {pool.submit(_replication_in_worker, scenario_json, plan.scenario.name, r): r for r in todo}
            for future in as_completed(futures):
                results[futures[future]] = future.result()
                if progress:
                    progress(len(results), n)
    else:
        for r in todo:
            results[r] = _replication(plan, r)
            if progress:
                progress(len(results), n)
    return pd.concat([frame for r in todo for frame in results[r]], ignore_index=True)


def summarize_plan(
    plan: Plan, records: pd.DataFrame, by_replication: bool = False, percentile_intervals: bool = True
) -> pd.DataFrame:
    """:func:`simqos.metrics.summarize` (or, ``by_replication``, :func:`~simqos.metrics.per_replication`)
    with the plan's levels and its routes' measured accuracy intervals."""
    if by_replication:
        return per_replication(records, plan.model.n_levels, plan.model.route_accuracy_interval)
    return summarize(records, plan.model.n_levels, plan.model.route_accuracy_interval, percentile_intervals)

