"""The SimPy model: one replication of a scenario under one policy -> per-request records.

Describe, then run: :func:`build_plan` validates everything a run needs (the profile, the
policies and their parameters, trace files) into an inert :class:`Plan`; :func:`sample_inputs`
draws one replication's exogenous inputs (arrivals, deadlines, speed and memory traces, latency
draws) from its own ``SeedSequence`` child; :func:`run_policy` serves them under one policy.
Every policy of a replication is served the same inputs (common random numbers), and adding a
policy changes no other policy's records.

The device serves one request at a time, first come first served, under the queue rules of
the serving core (:mod:`simqos.serving`). A SimPy event happens when the idle device waits for
the next arrival and when a request completes. The policy decides at the request's start and
at each reroute point, at their exact simulated times: a segment's end (including any wait for
evicted weights to return) is computed from the speed and residency traces
(:func:`simqos.serving.finish_time`), so no event is needed per layer, per speed change, or
per reroute point. The simulated time unit is the second. A request that finds the device idle
has its work at each level scaled by that level's idle slowdown for the time the device has
been idle (:meth:`simqos.service.ServiceModel.idle_factors_at`; 1 when the profile has no
``idle.csv``).

This SimPy model is the reference and serves any policy. For a policy with a compiled
``decide`` (every built-in one) a scenario's ``engine: auto`` (the default) runs the compiled
driver in :mod:`simqos.fastpath` instead, which gives the same records bit for bit (tested)
tens of times faster; the run's summary says which engine served each policy.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import simpy
from pydantic import ValidationError

from simqos.device import SpeedTrace, Trace, constant_trace, read_trace_csv, resident_trace, sampled_to_horizon, trace_from_spec
from simqos.errors import SimqosError
from simqos import serving
from simqos.fastpath import serve_fast
from simqos.metrics import per_replication, summarize
from simqos.plausible import implausible
from simqos.policies import POLICIES, Policy
from simqos.serving import DROPPED, MET, MISSED, OUTCOMES, Decision
from simqos.bundle import load_profile
from simqos.scenario import Scenario
from simqos.service import ServiceModel
from simqos.workload import arrivals_from_spec, deadlines_from_spec, mean_rate_hz, read_arrivals_csv

__all__ = ["OUTCOMES", "Plan", "engines", "ReplicationInputs", "build_plan", "decisions", "records_table", "run_plan", "run_policy", "sample_inputs", "summarize_plan"]



@dataclass(frozen=True)
class Plan:
    """A validated scenario, ready to run: the model, and per policy entry a factory that makes
    a fresh policy (policies may keep per-run state) and its label."""

    scenario: Scenario
    model: ServiceModel
    policy_factories: tuple[Callable[[], Policy], ...]
    labels: tuple[str, ...]
    warnings: tuple[str, ...] = ()  # values that are legal but most likely a slip of units (simqos.plausible)


def build_plan(scenario: Scenario, source: str = "scenario") -> Plan:
    """Load the profile and build the policies; raises SimqosError naming the field."""
    _import_plugins(scenario, source)
    if not scenario.profile.is_dir():
        raise SimqosError(f"{source}: profile: {scenario.profile.resolve()} is not a profile folder; a relative path is "
                          "taken from the scenario file's folder (the shipped profiles are in profiles/)")
    model = ServiceModel.from_profile(load_profile(scenario.profile))
    _check_trace_files(scenario, source)
    _check_memory(scenario, model, source)
    _check_size(scenario, model, source)
    _check_trace_lengths(scenario, source)
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
            what = err["msg"]
            if err["type"] == "extra_forbidden":
                known = sorted(cls.Params.model_fields)
                close = difflib.get_close_matches(field, known, n=1)
                what = "unknown key" + (f" — did you mean {close[0]!r}?" if close else
                                        f"; {spec.kind} takes {', '.join(known) if known else 'no parameters'}")
            got = "" if err["type"] in ("extra_forbidden", "missing") else f" (got {err.get('input')!r})"
            raise SimqosError(f"{where}.{field}: {what}{got}") from None
        level = getattr(params, "level", None)
        if level is not None and level >= model.n_levels:
            raise SimqosError(
                f"{where}.level: {level}, but the profile {scenario.profile} has levels 0..{model.n_levels - 1}"
            )
        factory = functools.partial(cls, params, model, scenario)
        factories.append(factory)
        labels.append(spec.label or factory().label())
    duplicated = {lab for lab in labels if labels.count(lab) > 1}
    if duplicated:
        raise SimqosError(f"{source}: policies: labels {sorted(duplicated)} repeat; give each a distinct 'label'")
    return Plan(scenario, model, tuple(factories), tuple(labels), tuple(implausible(scenario, model)))


def _import_plugins(scenario: Scenario, source: str) -> None:
    """Import the scenario's plugins, from its ``plugin_path`` folders (default: the scenario
    file's own) before the Python path."""
    saved = list(sys.path)
    sys.path[:0] = [str(folder) for folder in scenario.plugin_path]
    try:
        for i, module in enumerate(scenario.plugins):
            if not module or module.startswith(".") or not all(part.isidentifier() for part in module.split(".")):
                raise SimqosError(f"{source}: plugins[{i}]: {module!r} is not a module name; give an importable one, e.g. my_policies")
            try:
                importlib.import_module(module)
            except Exception as exc:  # a user's module may fail in any way while importing
                first = str(exc).splitlines()[0] if str(exc) else ""
                where = ", ".join(map(str, scenario.plugin_path)) or "nowhere but the Python path"
                raise SimqosError(f"{source}: plugins[{i}]: importing {module!r} failed ({type(exc).__name__}: {first}); "
                                  f"looked in {where}, then the Python path") from None
    finally:
        sys.path[:] = saved


MAX_BREAKPOINTS = 10**8
"""Changes of a sampled device process a run may need; beyond it the run is refused up front."""


def _check_size(scenario: Scenario, model: ServiceModel, source: str) -> None:
    """Refuse, before anything is allocated, a run that would not fit in this machine's memory
    or whose device traces would need more than MAX_BREAKPOINTS changes, saying how much."""
    rate = mean_rate_hz(scenario.workload.arrival)
    if scenario.workload.arrival.kind == "trace" and scenario.duration_s is not None:
        times = read_arrivals_csv(scenario.workload.arrival.path)
        if times[-1] <= times[0]:
            raise SimqosError(f"{source}: workload.arrival: {scenario.workload.arrival.path} spans no time, so it cannot be "
                              "repeated to fill duration_s; give requests instead, or arrivals spread over time")
    n = scenario.requests if scenario.requests is not None else scenario.duration_s * rate
    per_request = model.n_levels * model.n_segments * 8 + len(model.sorted_samples_ms) * 8 + 130 * len(scenario.policies)
    need = n * per_request * (scenario.precision.max_replications if scenario.precision else scenario.replications)
    have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if need > 0.8 * have:
        raise SimqosError(
            f"{source}: {n:,.0f} requests per replication would need about {need / 2**30:,.1f} GiB for inputs and "
            f"records; this machine has {have / 2**30:,.1f} GiB. Lower requests (or duration_s) or replications"
        )
    horizon_s = 2.0 * n / rate + 60.0
    for field, spec in (("device.speed", scenario.device.speed), ("device.memory", scenario.device.memory)):
        if spec is None or spec.kind in ("constant", "trace"):
            continue
        shortest = min(s.mean_dwell_s for s in spec.states) if spec.kind == "markov" else spec.period_s / 2
        if horizon_s / shortest > MAX_BREAKPOINTS:
            raise SimqosError(
                f"{source}: {field}: over the run's {horizon_s:,.3g} s ({n:,.0f} requests at {rate:g}/s) the process would "
                f"change about {horizon_s / shortest:,.3g} times, more than {MAX_BREAKPOINTS:,}; fewer requests or a faster arrival rate"
            )


def _check_trace_files(scenario: Scenario, source: str) -> None:
    """Read every replayed trace once, so a bad file fails before the run starts."""
    arrival = scenario.workload.arrival
    if arrival.kind == "trace":
        times = read_arrivals_csv(arrival.path)
        short = (f"asks for {scenario.requests} requests" if scenario.requests is not None and scenario.requests > len(times)
                 else f"lasts duration_s: {scenario.duration_s:g} s" if scenario.duration_s is not None and scenario.duration_s > times[-1]
                 else None)
        if short and arrival.after_end == "error":
            raise SimqosError(
                f"{source}: workload.arrival: {arrival.path} has {len(times)} arrivals until {times[-1]:g} s, but the run "
                f"{short}; ask for fewer, or set workload.arrival.after_end: repeat (replayed end to end)"
            )
    for _, spec, column in scenario.device.processes():
        if spec.kind == "trace":
            trace = read_trace_csv(spec.path, column)
            if column == "speed" and (trace.values <= 0).any():
                raise SimqosError(f"{source}: device.speed: {spec.path} has speed factors <= 0; they must be > 0")
            if (trace.values < 0).any():
                raise SimqosError(f"{source}: device.memory: {spec.path} has negative memory_mb")


def _check_memory(scenario: Scenario, model: ServiceModel, source: str) -> None:
    """Refuse a device whose memory never holds even the sparsest level: every request would be
    dropped, and a table of nothing but drops answers no question."""
    spec = scenario.device.memory
    if spec is None:
        return
    most_mb = {
        "constant": lambda: spec.memory_mb,
        "markov": lambda: max(state.memory_mb for state in spec.states),
        "periodic": lambda: max(spec.high, spec.low),
        "trace": lambda: float(read_trace_csv(spec.path, "memory_mb").values.max()),
    }[spec.kind]()
    need_mb = model.level_bytes[-1] / 1e6
    if most_mb < need_mb:
        raise SimqosError(
            f"{source}: device.memory: at most {most_mb:g} MB, but the sparsest level of {scenario.profile.name} "
            f"needs {need_mb:.3g} MB resident, so every request would be dropped; give memory_mb >= {need_mb:.3g}"
        )


@dataclass(frozen=True)
class ReplicationInputs:
    """One replication's exogenous inputs; every policy is served these same ones."""

    arrivals_s: np.ndarray
    deadlines_s: np.ndarray  # absolute
    work_ms: np.ndarray  # (n, n_levels, n_segments) profiled ms of each segment at each level
    speed: SpeedTrace
    memory_mb: Trace
    resident: Trace  # least sparse resident level over time (n_levels: none)
    horizon_s: float  # the device's processes are sampled (repeated traces replayed) until here


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


def sample_inputs(plan: Plan, replication: int, horizon_s: float | None = None) -> ReplicationInputs:
    """Draw replication ``replication``'s inputs from the scenario seed: its SeedSequence child
    (``SeedSequence(seed).spawn(n)[replication]`` for any n > replication, so adding
    replications leaves the earlier ones' inputs unchanged). The device's processes are
    sampled until twice the last arrival plus a minute, or ``horizon_s`` if later; a longer
    horizon extends the same traces (their first part does not depend on it), which is how
    :func:`until_covered` serves a run that outlasts it."""
    scenario, model = plan.scenario, plan.model
    streams = np.random.SeedSequence(scenario.seed, spawn_key=(replication,)).spawn(5)
    arrivals = _arrivals(scenario, streams[0])
    n = len(arrivals)
    deadlines = arrivals + deadlines_from_spec(scenario.workload.deadline, n, np.random.default_rng(streams[1])) / 1e3
    horizon = max(2.0 * float(arrivals[-1]) + 60.0, horizon_s or 0.0)
    _check_trace_ends(scenario, float(arrivals[-1]), f"replication {replication}'s arrivals run to")
    speed = SpeedTrace(trace_from_spec(scenario.device.speed, "speed", horizon, np.random.default_rng(streams[2])))
    memory = (
        constant_trace(math.inf)
        if scenario.device.memory is None
        else trace_from_spec(scenario.device.memory, "memory_mb", horizon, np.random.default_rng(streams[3]))
    )
    resident = resident_trace(memory, model.level_bytes, scenario.device.storage_bandwidth_mb_s)
    uniforms = np.random.default_rng(streams[4]).random((n, len(model.sorted_samples_ms)))
    sampled = any(sampled_to_horizon(spec) for _, spec, _ in scenario.device.processes())
    return ReplicationInputs(arrivals, deadlines, model.segment_work_ms(uniforms), speed, memory, resident,
                             horizon if sampled else math.inf)


def _ending_traces(scenario: Scenario) -> list[tuple[str, Any, str]]:
    """The device's trace files that must last the run (``after_end: error``)."""
    return [p for p in scenario.device.processes() if p[1].kind == "trace" and p[1].after_end == "error"]


def _check_trace_ends(scenario: Scenario, until_s: float, what: str) -> None:
    """A device trace file with ``after_end: error`` must last until ``until_s``."""
    for field, spec, column in _ending_traces(scenario):
        end_s = float(read_trace_csv(spec.path, column).times_s[-1])
        if until_s > end_s:
            raise SimqosError(
                f"{field}: {spec.path} ends at {end_s:g} s, but {what} {until_s:g} s; give a trace that lasts the "
                f"run, or set {field}.after_end: hold (its last value stays) or repeat (replayed end to end)"
            )


def _check_trace_lengths(scenario: Scenario, source: str) -> None:
    """Before any work: every replication's arrivals end within each device trace file that
    must not end first (``after_end: error``); the arrivals are drawn as the run will draw them."""
    if not _ending_traces(scenario):
        return
    for replication in range(scenario.replications):
        stream = np.random.SeedSequence(scenario.seed, spawn_key=(replication,)).spawn(5)[0]
        try:
            _check_trace_ends(scenario, float(_arrivals(scenario, stream)[-1]), f"replication {replication}'s arrivals run to")
        except SimqosError as exc:
            raise SimqosError(f"{source}: {exc}") from None


def until_covered(plan: Plan, replication: int, run: Callable[[ReplicationInputs], tuple[Any, float]]) -> Any:
    """``run(inputs)`` returns a result and the latest time it used the device; while that is
    past the horizon its device traces were sampled to, sample them further (the same traces,
    longer) and run again: no part of a run sees a device frozen at a hidden horizon."""
    inputs = sample_inputs(plan, replication)
    while True:
        result, latest_s = run(inputs)
        _check_trace_ends(plan.scenario, latest_s, f"replication {replication} uses the device until")
        if not latest_s > inputs.horizon_s:
            return result
        inputs = sample_inputs(plan, replication, 2.0 * latest_s)


def latest_s(records: list[pd.DataFrame]) -> float:
    """The latest start or finish in records (0 if none): how long a run used the device."""
    times = [np.nanmax(r[c].to_numpy(), initial=0.0) for r in records for c in ("start_s", "finish_s")]
    return float(max(times, default=0.0))


class _Server:
    """The device of one replication under one policy; :meth:`process` is the SimPy process.

    The SimPy driver of the serving core (:mod:`simqos.serving`), run as plain Python (the
    core's ``py_func``), so that any policy — compiled or Python — can decide. A request's
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
        queue = self.plan.scenario.workload.queue
        capacity = -1 if queue.capacity is None else queue.capacity
        trace = inputs.speed.trace
        times, speeds, cum = trace.times_s, trace.values.astype(float), inputs.speed.cum_work_ms
        res_times, res_levels = inputs.resident.times_s, inputs.resident.values.astype(np.int64)
        arrivals, deadlines = inputs.arrivals_s, inputs.deadlines_s
        params, table = policy.prepared() if policy.compiled() else (np.zeros(0), np.zeros((0, 0)))
        candidates = np.ascontiguousarray(policy.candidates())
        n = len(arrivals)
        left = np.empty(n)  # when each admitted request left the queue
        n_left = 0
        factors = np.ones(model.n_levels)
        busy_until = 0.0
        for i in range(n):
            arrival = float(arrivals[i])
            if env.now < arrival:
                yield env.timeout(arrival - env.now)
            now = env.now
            if not serving.admits(serving.waiting_at(left, n_left, arrival), capacity, busy_until <= arrival):
                continue  # the queue was full when it arrived: dropped
            deadline = float(deadlines[i])
            left[n_left] = now
            n_left += 1
            self.start_s[i] = now
            if queue.late == "drop" and serving.too_late(now, deadline, model.sparsest_median_ms, serving.value_at(times, speeds, now)):
                continue  # dropped late: no finish
            q_end = max(serving.bisect_right(arrivals, now, n), i + 1)
            serving.idle_factors(model.idle_ms, model.idle_factor, (now - busy_until) * 1e3, factors)
            t, code, changes = serving.serve_request.py_func(
                i, now, arrival, deadline, inputs.work_ms[i], factors, times, speeds, cum, res_times, res_levels,
                deadlines[i + 1 : q_end], _choose(policy), params, table, candidates,
            )
            if math.isinf(t):
                continue  # its level never returns: dropped
            yield env.timeout(t - now)
            busy_until = t
            self.finish_s[i] = t
            self.route_code[i] = code
            self.reroutes[i] = changes
            self.outcome[i] = MET if t <= deadline else MISSED


def _choose(policy: Policy) -> Callable[[Decision, np.ndarray, np.ndarray], int]:
    """The policy as the core's ``decide``: its ``choose``, checked to return a level."""

    def decide(state: Decision, _params: np.ndarray, _table: np.ndarray) -> int:
        chosen = policy.choose(state)
        if not 0 <= chosen < state.n_levels:
            raise RuntimeError(f"policy {policy.label()} chose level {chosen}; levels are 0..{state.n_levels - 1}")
        return int(chosen)

    return decide


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
    if (engine or plan.scenario.engine) == "auto" and policy.compiled():
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
        super().__init__(inner.params, inner.model, inner.scenario)
        self.inner, self.request, self.rows = inner, request, []

    def candidates(self) -> np.ndarray:
        return self.inner.candidates()

    def choose(self, state: Decision) -> int:
        level = self.inner.choose(state)
        if state.request == self.request:
            self.rows.append({**state._asdict(), "chosen": level})
        return level


def decisions(plan: Plan, inputs: ReplicationInputs, policy_index: int, request: int) -> pd.DataFrame:
    """Every decision the policy made for ``request`` (SimPy reference): the state it saw
    (time, segment, speed, least sparse resident level, how many requests queued behind it)
    and the level it chose."""
    recorder = _Recorder(plan.policy_factories[policy_index](), request)
    server = _Server(plan, inputs, recorder)
    env = simpy.Environment()
    env.process(server.process(env))
    env.run()
    table = pd.DataFrame(recorder.rows).drop(columns=["route_finish_s", "idle_factor", "n_levels"])
    table["queued"] = table.pop("queued_deadlines_s").map(len)
    return table


def _replication(plan: Plan, replication: int) -> list[pd.DataFrame]:
    def run(inputs: ReplicationInputs) -> tuple[list[pd.DataFrame], float]:
        records = [run_policy(plan, inputs, p, replication) for p in range(len(plan.policy_factories))]
        return records, latest_s(records)

    return until_covered(plan, replication, run)


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
    if workers < 1:
        raise SimqosError(f"--workers: {workers} must be >= 1")
    if workers > 1 and n > 1:
        from concurrent.futures import as_completed

        from simqos.workers import pool

        scenario_json = plan.scenario.model_dump(mode="json")
        with pool(min(workers, n)) as processes:
            futures = {processes.submit(_replication_in_worker, scenario_json, plan.scenario.name, r): r for r in todo}
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
    with the plan's levels and its routes' measured accuracy intervals, and an ``engine``
    column: which engine served each policy (``compiled`` or ``simpy``)."""
    if by_replication:
        summary = per_replication(records, plan.model.n_levels, plan.model.route_accuracy_interval)
    else:
        summary = summarize(records, plan.model.n_levels, plan.model.route_accuracy_interval, percentile_intervals)
    summary["engine"] = summary["policy"].map(dict(zip(plan.labels, engines(plan))))
    return summary


def engines(plan: Plan) -> list[str]:
    """Which engine serves each policy of ``plan``: ``compiled`` (a compiled ``decide`` under
    ``engine: auto``) or ``simpy``."""
    auto = plan.scenario.engine == "auto"
    return ["compiled" if auto and factory().compiled() else "simpy" for factory in plan.policy_factories]

