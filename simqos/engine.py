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
``idle.csv``). With ``device.slice_ms`` the work is then stretched by the competitors' turns
the request waits out (:mod:`simqos.timeslice`), from the slice the previous request left.

This SimPy model is the reference and serves any policy. For a policy with a compiled
``decide`` (every built-in one) a scenario's ``engine: auto`` (the default) runs the compiled
driver in :mod:`simqos.fastpath` instead, which gives the same records bit for bit (tested)
tens of times faster; the run's summary says which engine served each policy.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import importlib
import math
import os
import sys
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import simpy
from pydantic import ValidationError

from simqos.compiled import interruptible
from simqos.device import (
    ConstantProcess,
    DeviceWindow,
    Process,
    ProductProcess,
    Residency,
    SpeedTrace,
    Trace,
    process_from_spec,
    read_trace_csv,
    sampled,
)
from simqos.errors import SimqosError
from simqos import serving
from simqos.fastpath import FastServer, serve_fast
from simqos.plausible import implausible
from simqos.policies import POLICIES, Policy
from simqos.serving import DROPPED, MET, MISSED, OUTCOMES, Decision, route_text
from simqos.bundle import load_profile
from simqos.scenario import Scenario
from simqos.service import ServiceModel
from simqos.tally import Tally, TallyBuilder, per_replication, pooled, summarize, tallies_from_records
from simqos.timeslice import route_work, slice_left_after, sliced_factors
from simqos.workload import ArrivalStream, deadlines_from_spec, mean_rate_hz, read_arrivals_csv

__all__ = ["OUTCOMES", "Plan", "ReplicationInputs", "Run", "Served", "build_plan", "decisions", "engines", "plan_tallies", "records_table",
           "run_plan", "run_policy", "sample_inputs", "serve", "simulate", "summarize_plan"]



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
        factory = functools.partial(_charged, cls, params, model, scenario, 0.0 if spec.decision_ms == "measured" else spec.decision_ms)
        factories.append(factory)
        labels.append(spec.label or factory().label())
    _check_size(scenario, model, source, whole=scenario.engine == "simpy" or not all(f().compiled() for f in factories))
    duplicated = {lab for lab in labels if labels.count(lab) > 1}
    if duplicated:
        raise SimqosError(f"{source}: policies: labels {sorted(duplicated)} repeat; give each a distinct 'label'")
    plan = Plan(scenario, model, tuple(factories), tuple(labels), tuple(implausible(scenario, model)))
    measured = [i for i, spec in enumerate(scenario.policies) if spec.decision_ms == "measured"]
    if measured:
        factories = list(plan.policy_factories)
        for i in measured:
            made = factories[i]
            factories[i] = functools.partial(_charged, *made.args[:4], measure_decision_ms(plan, i))
        plan = dataclasses.replace(plan, policy_factories=tuple(factories))
    return plan


def _charged(cls: type[Policy], params, model: ServiceModel, scenario: Scenario, decision_ms: float) -> Policy:
    """A fresh policy charged ``decision_ms`` per decision."""
    policy = cls(params, model, scenario)
    policy.decision_ms = float(decision_ms)
    return policy


MEASURED_REQUESTS = 200
"""Requests of replication 0 whose decisions :func:`measure_decision_ms` times."""


def measure_decision_ms(plan: Plan, index: int, requests: int = MEASURED_REQUESTS) -> float:
    """The median wall time (ms) of policy ``index``'s ``choose``, called from Python as the
    real server calls it, over every decision of the first ``requests`` requests of replication
    0 (served on SimPy, the policy uncharged); a first pass warms it up (compilation, caches)."""
    import time

    class Timed(_Recorder):
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
        env = simpy.Environment()
        env.process(_Server(plan, inputs, timed).process(env))
        env.run()
    return float(np.median(timed.rows)) / 1e6 if timed.rows else 0.0


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
"""Changes of a sampled device process a run may hold at once (its whole run when SimPy serves
it whole, else a window: :func:`_check_size`); beyond it the run is refused up front."""


def _check_size(scenario: Scenario, model: ServiceModel, source: str, whole: bool) -> None:
    """Refuse, before anything is allocated, a replication served at once (``whole``: by SimPy)
    that would not fit in this machine's memory, or whose device traces would need more than
    MAX_BREAKPOINTS changes, saying how much. A streamed replication holds a chunk and a
    window of the device at a time."""
    rate = mean_rate_hz(scenario.workload.arrival)
    if scenario.workload.arrival.kind == "trace" and scenario.duration_s is not None:
        times = read_arrivals_csv(scenario.workload.arrival.path)
        if times[-1] <= times[0]:
            raise SimqosError(f"{source}: workload.arrival: {scenario.workload.arrival.path} spans no time, so it cannot be "
                              "repeated to fill duration_s; give requests instead, or arrivals spread over time")
    n = scenario.requests if scenario.requests is not None else scenario.duration_s * rate
    if n > MAX_REQUESTS:
        field = "requests" if scenario.requests is not None else "duration_s"
        raise SimqosError(
            f"{source}: {field}: {n:,.3g} requests in one replication, more than the {MAX_REQUESTS:,.0e} one replication "
            f"serves (a replication runs on one core, about 10^6 requests/s: {MAX_REQUESTS / 1e6 / 3600:.0f} hours); "
            "split them over replications (replications run in parallel: --workers, --executor dask)"
        )
    if whole:  # SimPy serves a replication at once: its inputs and outputs are in memory together
        per_request = model.n_levels * model.n_segments * 8 + len(model.sorted_samples_ms) * 8 + 130 * len(scenario.policies)
        need = n * per_request
        have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        if need > 0.8 * have:
            raise SimqosError(
                f"{source}: {n:,.0f} requests per replication, served by SimPy (a policy without a compiled decide, or "
                f"engine: simpy), would need about {need / 2**30:,.1f} GiB at once; this machine has {have / 2**30:,.1f} GiB. "
                "Lower requests (or duration_s), or use policies that run on the compiled path (streamed in chunks)"
            )
    # The device's traces held at once: over the whole run when it is served at once; else over
    # a window, about a chunk's span of arrivals plus what is sampled ahead of it.
    held = n if whole else min(n, CHUNK_REQUESTS)
    span_s = 2.0 * held / rate + DEVICE_AHEAD_S
    for field, spec, _ in scenario.device.processes():
        if spec.kind in ("constant", "trace"):
            continue
        shortest = min(s.mean_dwell_s for s in spec.states) if spec.kind == "markov" else spec.period_s / 2
        if span_s / shortest > MAX_BREAKPOINTS:
            what = "the run's" if whole else f"a window of {held:,.0f} requests,"
            raise SimqosError(
                f"{source}: {field}: over {what} {span_s:,.3g} s at {rate:g} requests/s, the process would change about "
                f"{span_s / shortest:,.3g} times, more than the {MAX_BREAKPOINTS:,} held at once; a faster arrival rate, a "
                "slower process, or fewer requests"
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
    for field, spec, column in scenario.device.processes():
        if spec.kind == "trace":
            trace = read_trace_csv(spec.path, column)
            if column == "speed" and (trace.values <= 0).any():
                raise SimqosError(f"{source}: {field}: {spec.path} has speed factors <= 0; they must be > 0")
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
    share: Trace | None = None  # device.speed without the noise (the share the slicing reads); None: the speed trace

    @property
    def share_trace(self) -> Trace:
        """The share the time-slicing reads (:mod:`simqos.timeslice`): ``share``, or the speed
        trace itself when there is no noise to leave out."""
        return self.speed.trace if self.share is None else self.share


MAX_REQUESTS = 10**10
"""The most requests one replication may have (:func:`_check_size`)."""

CHUNK_REQUESTS = 1 << 17
"""Requests per chunk of a streamed replication (:func:`simulate`): the inputs and outputs of
one chunk are what a run holds at a time; the results do not depend on it (tested)."""

DEVICE_AHEAD_S = 60.0
"""How far past a chunk's last arrival its device is sampled before it is served (a request
that needs more stops its server, and the window grows)."""


def _seeds(scenario: Scenario, replication: int) -> list[np.random.SeedSequence]:
    """Replication ``replication``'s six input streams: arrivals, deadlines, speed, memory,
    latency draws and noise (``SeedSequence(seed).spawn(n)[replication]``'s children, for any n >
    replication: adding replications leaves the earlier ones' inputs unchanged; a child does
    not depend on how many are spawned, so the noise's left the first five as they were)."""
    return np.random.SeedSequence(scenario.seed, spawn_key=(replication,)).spawn(6)


def _arrival_stream(scenario: Scenario, seed: np.random.SeedSequence) -> ArrivalStream:
    return ArrivalStream(scenario.workload.arrival, np.random.default_rng(seed), scenario.requests,
                         None if scenario.requests is not None else scenario.duration_s)  # fmt: skip


def arrival_span(scenario: Scenario, replication: int) -> tuple[int, float]:
    """How many requests replication ``replication`` has and when the last arrives (s), drawn
    chunk by chunk and not kept."""
    stream, n, last = _arrival_stream(scenario, _seeds(scenario, replication)[0]), 0, 0.0
    while len(chunk := stream.take(CHUNK_REQUESTS)):
        n, last = n + len(chunk), float(chunk[-1])
    return n, last


class RequestStream:
    """Replication ``replication``'s per-request inputs in chunks (:meth:`take`): arrival
    times (s), absolute deadlines (s) and each segment's work at each level (profiled ms), the
    same whatever the chunk sizes."""

    def __init__(self, plan: Plan, replication: int) -> None:
        seeds = _seeds(plan.scenario, replication)
        self.plan = plan
        self.arrivals = _arrival_stream(plan.scenario, seeds[0])
        self.deadline_rng, self.latency_rng = np.random.default_rng(seeds[1]), np.random.default_rng(seeds[4])

    @property
    def exhausted(self) -> bool:
        return self.arrivals.exhausted

    def take(self, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The next (up to) ``m`` requests' arrivals, deadlines and work."""
        model = self.plan.model
        arrivals = self.arrivals.take(m)
        n = len(arrivals)
        deadlines = arrivals + deadlines_from_spec(self.plan.scenario.workload.deadline, n, self.deadline_rng) / 1e3
        return arrivals, deadlines, model.segment_work_ms(self.latency_rng.random((n, len(model.sorted_samples_ms))))


@dataclass(frozen=True)
class DeviceInputs:
    """One replication's device: its speed, memory and resident-level traces, sampled until
    ``horizon_s`` (inf when no process is sampled: replayed files only)."""

    speed: SpeedTrace
    memory_mb: Trace
    resident: Trace
    horizon_s: float
    share: Trace | None = None  # device.speed without the noise; None: the speed trace


def _device_processes(plan: Plan, replication: int) -> tuple[Process, Process, Residency, Process | None]:
    """Replication ``replication``'s speed (times the noise, when given) and memory processes on
    their seeds, the residency its memory gives, and, with a noise, the speed process alone
    again (the share the slicing reads; the same seed, so the very trace the product has):
    what both the whole run and the window sample."""
    scenario, model = plan.scenario, plan.model
    seeds = _seeds(scenario, replication)
    speed = process_from_spec(scenario.device.speed, "speed", np.random.default_rng(seeds[2]))
    share = None
    if scenario.device.noise is not None:
        speed = ProductProcess(speed, process_from_spec(scenario.device.noise, "speed", np.random.default_rng(seeds[5])))
        share = process_from_spec(scenario.device.speed, "speed", np.random.default_rng(seeds[2]))
    memory = (ConstantProcess(math.inf) if scenario.device.memory is None
              else process_from_spec(scenario.device.memory, "memory_mb", np.random.default_rng(seeds[3])))  # fmt: skip
    return speed, memory, Residency(model.level_bytes, scenario.device.storage_bandwidth_mb_s), share


def device_inputs(plan: Plan, replication: int, last_arrival_s: float, horizon_s: float | None = None) -> DeviceInputs:
    """The device's processes sampled until twice the last arrival plus a minute, or
    ``horizon_s`` if later; a longer horizon extends the same traces (their first part does
    not depend on it), which is how :func:`until_covered` serves a run that outlasts it."""
    horizon = max(2.0 * last_arrival_s + 60.0, horizon_s or 0.0)
    _check_trace_ends(plan.scenario, last_arrival_s, f"replication {replication}'s arrivals run to")
    speed, memory, residency, share = _device_processes(plan, replication)
    memory_mb = sampled(memory, horizon)
    resident = Trace(*residency.extend(memory_mb.times_s, memory_mb.values, final=True))
    return DeviceInputs(SpeedTrace(sampled(speed, horizon)), memory_mb, resident,
                        math.inf if speed.final and memory.final else horizon,
                        None if share is None else sampled(share, horizon))  # fmt: skip


def sample_inputs(plan: Plan, replication: int, horizon_s: float | None = None) -> ReplicationInputs:
    """Replication ``replication``'s inputs, all at once (:class:`RequestStream` and
    :func:`device_inputs`, drawn from the scenario seed)."""
    arrivals, deadlines, work = RequestStream(plan, replication).take(sys.maxsize)
    device = device_inputs(plan, replication, float(arrivals[-1]), horizon_s)
    return ReplicationInputs(arrivals, deadlines, work, device.speed, device.memory_mb, device.resident, device.horizon_s,
                             device.share)  # fmt: skip


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
        try:
            _check_trace_ends(scenario, arrival_span(scenario, replication)[1], f"replication {replication}'s arrivals run to")
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
        share_times, shares = inputs.share_trace.times_s, inputs.share_trace.values.astype(float)
        slice_ms = self.plan.scenario.device.slice_ms
        sliced = slice_ms > 0.0
        on_factors, slice_left = np.ones(model.n_levels), 0.0  # the work at the whole core; the server's slice left
        arrivals, deadlines = inputs.arrivals_s, inputs.deadlines_s
        params, table = policy.prepared() if policy.compiled() else (np.zeros(0), np.zeros((0, 0)))
        candidates = np.ascontiguousarray(policy.candidates())
        n = len(arrivals)
        left = np.empty(n)  # when each admitted request left the queue
        n_left = 0
        factors = np.ones(model.n_levels)
        busy_until = 0.0
        work_ms = inputs.work_ms + policy.decision_ms if policy.decision_ms > 0 else inputs.work_ms  # each segment follows a decision
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
            if sliced:  # a woken request (it found the device idle) runs a whole slice first; a queued one the slice left
                run_first = slice_ms if arrival > busy_until else slice_left
                on_factors[:] = factors
                sliced_factors(factors, work_ms[i], serving.value_at(share_times, shares, now), run_first, slice_ms)
            t, code, changes = serving.serve_request.py_func(
                i, now, arrival, deadline, work_ms[i], factors, on_factors if sliced else factors, times, speeds, cum, res_times, res_levels,
                deadlines[i + 1 : q_end], _choose(policy), params, table, candidates, np.empty(len(candidates)),
                serving.bisect_right(times, now, len(times)) - 1, serving.bisect_right(res_times, now, len(res_times)) - 1,
            )
            if math.isinf(t):
                continue  # its level never returns: dropped
            yield env.timeout(t - now)
            if sliced:
                slice_left = slice_left_after(run_first, route_work(code, work_ms[i], on_factors), slice_ms)
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


def serve(plan: Plan, inputs: ReplicationInputs, policy_index: int, engine: str | None = None) -> Served:
    """Serve ``inputs`` under policy ``policy_index``.

    ``engine`` (default: the scenario's) is ``simpy``, or ``auto``: the compiled fast path
    (:mod:`simqos.fastpath`, equal record for record) for built-in policies, SimPy otherwise.
    """
    policy = plan.policy_factories[policy_index]()
    if (engine or plan.scenario.engine) == "auto" and policy.compiled():
        return Served(*serve_fast(plan, inputs, policy))
    server = _Server(plan, inputs, policy)
    env = simpy.Environment()
    env.process(server.process(env))
    env.run()
    return Served(server.start_s, server.finish_s, server.route_code, server.reroutes, server.outcome)


def run_policy(
    plan: Plan, inputs: ReplicationInputs, policy_index: int, replication: int, engine: str | None = None
) -> pd.DataFrame:
    """Serve ``inputs`` under policy ``policy_index`` (:func:`serve`); one row per request (see results.py)."""
    served = serve(plan, inputs, policy_index, engine)
    return records_table(plan, policy_index, replication, inputs.arrivals_s, inputs.deadlines_s, *served)


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
    first_request: int = 0,
) -> pd.DataFrame:
    """The records of one replication under one policy (columns in results.py) from per-request
    arrays: times in seconds, ``route_code`` the route's levels as base-``n_levels`` digits
    (-1: not served), ``outcome`` an index into :data:`OUTCOMES`; the first row is request
    ``first_request``."""
    model = plan.model
    routes, accuracy = model.record_routes
    n = len(arrivals_s)
    request = first_request + np.arange(n)
    return pd.DataFrame(
        {
            "replication": np.full(n, replication, dtype=np.int64),
            "policy": pd.Categorical.from_codes(np.full(n, policy_index), categories=list(plan.labels)),
            "request": request,
            "warmup": request < plan.scenario.warmup_requests,
            "arrival_s": arrivals_s,
            "start_s": start_s,
            "finish_s": finish_s,
            "deadline_s": deadlines_s,
            "latency_ms": (finish_s - arrivals_s) * 1e3,
            "route": pd.Categorical.from_codes(route_code + 1, categories=routes),
            "reroutes": reroutes,
            "outcome": pd.Categorical.from_codes(outcome, categories=list(OUTCOMES)),
            "accuracy": accuracy[route_code + 1],
        }
    )


class _Recorder(Policy):
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
    recorder = _Recorder(plan.policy_factories[policy_index](), request)
    server = _Server(plan, inputs, recorder)
    env = simpy.Environment()
    env.process(server.process(env))
    env.run()
    table = pd.DataFrame(recorder.rows).drop(columns=["route_finish_s", "idle_factor", "n_levels"])
    table["queued"] = table.pop("queued_deadlines_s").map(len)
    return table


@dataclass(frozen=True)
class Run:
    """What a run of replications produced: per policy label, one :class:`~simqos.tally.Tally`
    per replication in order (what summaries and the verdict are computed from), and the
    records table when they were kept (None otherwise)."""

    tallies: dict[str, list[Tally]]
    records: pd.DataFrame | None
    simulated: int  # requests served, summed over policies and replications (warm-up included)

    def pooled(self) -> dict[str, Tally]:
        """Each policy's tallies pooled over the replications."""
        return pooled(self.tallies)


@dataclass(frozen=True)
class KeptRecords:
    """Which records a run keeps — ``which``: ``all``, ``sample`` (requests before warm-up +
    ``sample_requests`` of each replication) or ``none``, as a scenario's ``outputs`` says — and
    where: written into ``folder`` as the run goes (:class:`simqos.results.RecordsWriter`, in
    ``format``), or, with no folder, returned in memory."""

    which: str = "all"
    sample_requests: int = 10_000
    folder: Path | None = None
    format: str = "parquet"

    @classmethod
    def of(cls, scenario: Scenario, folder: Path | None = None) -> KeptRecords:
        """What ``scenario``'s outputs ask for, written into ``folder``."""
        outputs = scenario.outputs
        return cls(outputs.records, outputs.sample_requests, folder, outputs.records_format)


NO_RECORDS = KeptRecords("none")


class _RecordSink:
    """One replication's records as :class:`KeptRecords` asks: cut to the kept requests, then
    kept in memory or written to the folder."""

    def __init__(self, plan: Plan, replication: int, kept: KeptRecords) -> None:
        self.plan, self.replication, self.kept = plan, replication, kept
        self.end = {"all": sys.maxsize, "none": 0}.get(kept.which, plan.scenario.warmup_requests + kept.sample_requests)
        self.frames: list[list[pd.DataFrame]] = [[] for _ in plan.labels]
        self.writer = None
        if kept.folder is not None and self.end:
            from simqos.results import RecordsWriter

            self.writer = RecordsWriter(kept.folder, kept.format)

    def add(self, policy: int, first: int, arrivals_s: np.ndarray, deadlines_s: np.ndarray, served: Served) -> None:
        """Requests ``first``, ``first`` + 1, ... under policy ``policy``."""
        n = min(len(arrivals_s), self.end - first)
        if n <= 0:
            return
        table = records_table(self.plan, policy, self.replication, arrivals_s[:n], deadlines_s[:n],
                              *(a[:n] for a in served), first_request=first)  # fmt: skip
        if self.writer is not None:
            self.writer.write(self.replication, policy, table)
        else:
            self.frames[policy].append(table)

    def finish(self) -> list[pd.DataFrame]:
        """The records in memory (policy by policy), or none once the files are complete."""
        if self.writer is not None:
            for policy in range(len(self.frames)):
                self.writer.close(self.replication, policy)
            return []
        return [pd.concat(f, ignore_index=True) for f in self.frames if f]

    def abandon(self) -> None:
        """Forget what was added: the replication runs again from its start."""
        if self.writer is not None:
            self.writer.abandon()
        self.frames = [[] for _ in self.plan.labels]


def _replication(plan: Plan, replication: int, kept: KeptRecords,
                 progress: Callable[[int], None] | None = None) -> tuple[list[Tally], list[pd.DataFrame], int]:  # fmt: skip
    """Replication ``replication`` under every policy: a tally per policy, the records kept in
    memory (if any), and how many requests were served (all policies). Streamed in chunks when
    every policy runs on the compiled path; else whole (SimPy serves a Python policy's
    replication at once). ``progress(requests)`` as requests are served."""
    if all(engine == "compiled" for engine in engines(plan)):
        return _streamed_replication(plan, replication, kept, progress=progress)
    model, warmup = plan.model, plan.scenario.warmup_requests
    accuracy = model.accuracy_by_code()
    sink = _RecordSink(plan, replication, kept)

    def run(inputs: ReplicationInputs) -> tuple[tuple[list[Tally], int], float]:
        sink.abandon()
        tallies, latest = [], 0.0
        n_kept = max(len(inputs.arrivals_s) - warmup, 0)
        for p in range(len(plan.policy_factories)):
            served = serve(plan, inputs, p)
            latest = max(latest, served.latest_s())
            builder = TallyBuilder(replication, n_kept, model.n_levels, model.n_segments, accuracy)
            _tally_block(builder, warmup, 0, inputs.arrivals_s, served)
            tallies.append(builder.finish())
            sink.add(p, 0, inputs.arrivals_s, inputs.deadlines_s, served)
        return (tallies, len(inputs.arrivals_s) * len(tallies)), latest

    tallies, simulated = until_covered(plan, replication, run)
    if progress:
        progress(simulated // len(plan.labels))
    return tallies, sink.finish(), simulated


def _tally_block(builder: TallyBuilder, warmup: int, first: int, arrivals_s: np.ndarray, served: Served) -> None:
    """Add requests ``first`` .. (``arrivals_s`` and ``served`` are theirs) past the warm-up."""
    skip = min(max(warmup - first, 0), len(arrivals_s))
    latency_ms = (served.finish_s[skip:] - arrivals_s[skip:]) * 1e3
    if len(latency_ms):
        builder.add(served.outcome[skip:], latency_ms, served.route_code[skip:], served.reroutes[skip:])


def device_window(plan: Plan, replication: int, last_arrival_s: float) -> DeviceWindow:
    """Replication ``replication``'s device, to be sampled in windows (:func:`device_inputs`'
    very traces: the same processes on the same seeds), with the whole-run path's horizon as
    the cap on waiting for a level."""
    speed, memory, residency, share = _device_processes(plan, replication)
    return DeviceWindow(speed, memory, residency, cap_s=2.0 * last_arrival_s + 60.0, share=share)


def _streamed_replication(plan: Plan, replication: int, kept: KeptRecords,
                          chunk: int | None = None, progress: Callable[[int], None] | None = None,
                          ) -> tuple[list[Tally], list[pd.DataFrame], int]:  # fmt: skip
    """:func:`_replication` on the compiled path, its inputs drawn and served ``chunk``
    requests at a time (default :data:`CHUNK_REQUESTS`; the next chunk drawn in a thread while
    this one is served) on a window of the device that moves with them: memory holds a chunk,
    the queue that carries over and the device since the servers' clocks, not the replication.
    ``progress(requests)`` after each chunk, with how many it served."""
    scenario, model = plan.scenario, plan.model
    chunk = chunk or CHUNK_REQUESTS
    n, last = arrival_span(scenario, replication)
    n_kept = max(n - scenario.warmup_requests, 0)
    accuracy = model.accuracy_by_code()
    sink = _RecordSink(plan, replication, kept)
    device = device_window(plan, replication, last)
    servers = [FastServer(plan, factory()) for factory in plan.policy_factories]
    builders = [TallyBuilder(replication, n_kept, model.n_levels, model.n_segments, accuracy) for _ in servers]
    stream = RequestStream(plan, replication)
    window = stream.take(0)
    first, begins, latest = 0, [0] * len(servers), 0.0  # request index of window[0]; each server's next

    def keep(p: int, first_p: int, arrivals_s: np.ndarray, deadlines_s: np.ndarray, served: Served) -> None:
        _tally_block(builders[p], scenario.warmup_requests, first_p, arrivals_s, served)
        sink.add(p, first_p, arrivals_s, deadlines_s, served)

    # A second thread draws the next chunk and tallies and writes the served ones while this
    # thread serves (the compiled parts release the GIL); one thread, so each policy's blocks
    # are kept in order.
    kept_blocks: deque[Future] = deque()
    with ThreadPoolExecutor(1) as helper:
        ahead = helper.submit(stream.take, chunk)
        while True:
            new = ahead.result()
            final = stream.exhausted
            if not final:
                ahead = helper.submit(stream.take, chunk)
            window = tuple(np.concatenate((old, more)) for old, more in zip(window, new))
            arrivals, deadlines, work = window
            if len(arrivals):
                device.ensure(float(arrivals[-1]) + DEVICE_AHEAD_S)
            for p, server in enumerate(servers):
                while True:
                    stop, short, arrays = server.serve(arrivals, deadlines, work, first, begins[p], final, device.view())
                    served = Served(*arrays)
                    latest = max(latest, served.latest_s())
                    block = slice(begins[p], stop)
                    kept_blocks.append(helper.submit(keep, p, first + begins[p], arrivals[block], deadlines[block], served))
                    begins[p] = stop
                    if not short:
                        break
                    further = max(device.known_s - server.now_s, DEVICE_AHEAD_S)  # doubles while one request needs more
                    device.ensure(max(server.now_s, device.known_s) + further)
            device.forget(min(server.now_s for server in servers))
            while kept_blocks and kept_blocks[0].done():
                kept_blocks.popleft().result()  # raises what the helper raised
            lo = min(begins)
            if progress:
                progress(lo)
            if final:
                break
            window, first, begins = tuple(a[lo:] for a in window), first + lo, [b - lo for b in begins]
        for block in kept_blocks:
            block.result()
    _check_trace_ends(scenario, latest, f"replication {replication} uses the device until")
    return [b.finish() for b in builders], sink.finish(), n * len(servers)


def planned_requests(scenario: Scenario) -> int:
    """Requests per replication: the scenario's, or its duration at the mean arrival rate."""
    if scenario.requests is not None:
        return scenario.requests
    return max(1, round(scenario.duration_s * mean_rate_hz(scenario.workload.arrival)))


def run_key(scenario: Scenario) -> str:
    """What a replication's results depend on (the scenario but its replication count and
    stopping rule, and this simqos version), as a hash: a finished replication of an
    interrupted run is taken again only by a run with the same key."""
    import hashlib
    import json

    import simqos

    content = json.dumps(scenario.model_dump(mode="json", exclude={"replications", "precision", "output"}), sort_keys=True)
    return hashlib.sha256(f"{simqos.__version__}\n{content}".encode()).hexdigest()


class _Checkpoints:
    """Finished replications of a run, one file each in ``folder`` (``r0000.pickle``: its
    tallies, the records it kept in memory, and its count), valid for the plan's scenario and
    this simqos version only: a file from another is ignored (and replaced)."""

    def __init__(self, folder: Path, plan: Plan) -> None:
        from simqos.outputs import adopt

        self.folder = adopt(Path(folder), "checkpoints", "checkpoints")  # files are replaced only in a folder of simqos's
        self.key = run_key(plan.scenario)

    def _path(self, replication: int) -> Path:
        return self.folder / f"r{replication:04d}.pickle"

    def load(self, replication: int):
        import pickle

        try:
            key, result = pickle.loads(self._path(replication).read_bytes())
        except (OSError, pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError):
            return None
        return result if key == self.key else None

    def save(self, replication: int, result) -> None:
        import pickle

        tmp = self._path(replication).with_suffix(".partial")
        tmp.write_bytes(pickle.dumps((self.key, result)))
        tmp.replace(self._path(replication))  # on disk whole or not at all


def _replication_in_worker(scenario_json: dict, source: str, replication: int, kept: KeptRecords):
    from simqos.scenario import parse_scenario

    return _replication(build_plan(parse_scenario(scenario_json, source), source), replication, kept)


def simulate(
    plan: Plan,
    progress: Callable[[int], None] | None = None,
    workers: int = 1,
    replications: range | None = None,
    records: KeptRecords = KeptRecords(),
    executor: str = "local",
    scheduler: str | None = None,
    checkpoints: Path | None = None,
) -> Run:
    """Every replication (default: the scenario's ``range(replications)``) under every policy;
    ``progress(requests)`` with how many more requests were served (chunk by chunk in this
    process, replication by replication in others). ``records``: which to keep, and whether in
    memory (``Run.records``) or written to a folder (the default: all, in memory).

    With ``workers > 1`` replications run in that many processes (each rebuilds the plan from
    the scenario), or with ``executor="dask"`` as tasks on a dask.distributed cluster (the
    scheduler at ``scheduler``, else a LocalCluster of ``workers`` processes, default 2); the
    result is the same as in one process, in the same order. ``checkpoints``: a folder where
    each finished replication's tallies are kept, and from which a run started again (the
    same plan) takes them instead of serving it again.
    """
    from simqos.workers import check_execution

    todo = range(plan.scenario.replications) if replications is None else replications
    results: dict[int, tuple[list[Tally], list[pd.DataFrame], int]] = {}
    check_execution(executor, workers, scheduler)
    saved = _Checkpoints(checkpoints, plan) if checkpoints is not None else None
    for r in todo:
        if saved is not None and (done := saved.load(r)) is not None:
            results[r] = done
            if progress:
                progress(done[2] // len(plan.labels))  # served before: counted as done
    left = [r for r in todo if r not in results]

    def finished(r: int, result: tuple[list[Tally], list[pd.DataFrame], int], report: bool) -> None:
        results[r] = result
        if saved is not None:
            saved.save(r, result)
        if progress and report:
            progress(result[2] // len(plan.labels))

    with interruptible():
        _serve_replications(plan, left, finished, workers, records, executor, scheduler, progress)
    tallies = {label: [results[r][0][p] for r in todo] for p, label in enumerate(plan.labels)}
    frames = [frame for r in todo for frame in results[r][1]]
    in_memory = records.folder is None and records.which != "none"
    return Run(tallies, pd.concat(frames, ignore_index=True) if in_memory and frames else None, sum(results[r][2] for r in todo))


def _serve_replications(plan: Plan, left: list[int], finished: Callable, workers: int, records: KeptRecords, executor: str,
                        scheduler: str | None, progress: Callable[[int], None] | None) -> None:  # fmt: skip
    """Serve replications ``left`` in this process, in local processes or on dask, calling
    ``finished(r, result, report)`` as each completes (``report``: count its requests now)."""
    scenario_json = plan.scenario.model_dump(mode="json")  # other processes rebuild the plan from it
    if executor == "dask" and left:
        from dask.distributed import as_completed as dask_completed

        from simqos.workers import dask_client

        with dask_client(scheduler, workers if workers > 1 else 2) as client:
            futures = {client.submit(_replication_in_worker, scenario_json, plan.scenario.name, r, records, pure=False): r
                       for r in left}  # fmt: skip
            for future in dask_completed(futures):
                finished(futures[future], future.result(), True)
    elif workers > 1 and len(left) > 1:
        from concurrent.futures import as_completed

        from simqos.workers import pool

        with pool(min(workers, len(left))) as processes:
            futures = {processes.submit(_replication_in_worker, scenario_json, plan.scenario.name, r, records): r for r in left}
            for future in as_completed(futures):
                finished(futures[future], future.result(), True)
    else:
        for r in left:
            finished(r, _replication(plan, r, records, progress), False)


def run_plan(
    plan: Plan,
    progress: Callable[[int], None] | None = None,
    workers: int = 1,
    replications: range | None = None,
) -> pd.DataFrame:
    """The records of :func:`simulate`."""
    return simulate(plan, progress, workers, replications).records


def plan_tallies(plan: Plan, data: Run | pd.DataFrame) -> dict[str, list[Tally]]:
    """Per policy, a tally per replication: a run's, or made from a records table."""
    if isinstance(data, Run):
        return data.tallies
    model = plan.model
    return tallies_from_records(data, model.n_levels, model.n_segments, model.accuracy_by_code())


def summarize_plan(
    plan: Plan, data: Run | pd.DataFrame, by_replication: bool = False, percentile_intervals: bool = True
) -> pd.DataFrame:
    """:func:`simqos.tally.summarize` of a run (or of a records table), with the routes'
    measured accuracy intervals (or, ``by_replication``, :func:`~simqos.tally.per_replication`),
    an ``engine`` column: which engine served each policy (``compiled`` or ``simpy``), and
    ``decision_ms``: the device time charged for each of its decisions."""
    tallies = plan_tallies(plan, data)
    intervals = plan.model.route_accuracy_interval
    if by_replication:
        summary = per_replication(tallies, intervals)
    else:
        summary = summarize(tallies, intervals, percentile_intervals)
    summary["engine"] = summary["policy"].map(dict(zip(plan.labels, engines(plan))))
    summary["decision_ms"] = summary["policy"].map(dict(zip(plan.labels, (f().decision_ms for f in plan.policy_factories))))
    return summary


def engines(plan: Plan) -> list[str]:
    """Which engine serves each policy of ``plan``: ``compiled`` (a compiled ``decide`` under
    ``engine: auto``) or ``simpy``."""
    auto = plan.scenario.engine == "auto"
    return ["compiled" if auto and factory().compiled() else "simpy" for factory in plan.policy_factories]

