"""One replication's exogenous inputs, drawn from the scenario seed: arrivals, deadlines, each
segment's work at each level, and the device's speed, memory and resident-level traces.

Every input stream has its own ``SeedSequence`` child (:func:`_seeds`), so every policy of a
replication is served the same inputs (common random numbers), adding a policy or a
replication changes no other's, and the inputs are the same drawn at once
(:func:`sample_inputs`) or in chunks (:class:`RequestStream`, :func:`device_window`).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from simqos.errors import SimqosError
from simqos.scenario import Scenario
from simqos.sim.device import (
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
from simqos.sim.serving import DeviceArrays
from simqos.sim.workload import ArrivalStream

if TYPE_CHECKING:
    from simqos.sim.plan import Plan

__all__ = ["CHUNK_REQUESTS", "DEVICE_AHEAD_S", "DeviceInputs", "ReplicationInputs", "RequestStream", "arrival_span",
           "check_trace_ends", "device_inputs", "ending_traces", "device_window", "sample_inputs", "until_covered"]


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
        """The share the time-slicing reads (:mod:`simqos.sim.timeslice`): ``share``, or the speed
        trace itself when there is no noise to leave out."""
        return self.speed.trace if self.share is None else self.share

    def device_arrays(self) -> DeviceArrays:
        """The whole device as the serving step reads it."""
        share = self.share_trace
        return DeviceArrays.of(self.speed.trace.times_s, self.speed.trace.values, self.speed.cum_work_ms, self.resident.times_s,
                               self.resident.values, share.times_s, share.values)


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
        deadlines = arrivals + self.plan.scenario.workload.deadline.draw(n, self.deadline_rng) / 1e3
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
    check_trace_ends(plan.scenario, last_arrival_s, f"replication {replication}'s arrivals run to")
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


def ending_traces(scenario: Scenario) -> list[tuple[str, Any, str]]:
    """The device's trace files that must last the run (``after_end: error``)."""
    return [p for p in scenario.device.processes() if p[1].kind == "trace" and p[1].after_end == "error"]


def check_trace_ends(scenario: Scenario, until_s: float, what: str) -> None:
    """A device trace file with ``after_end: error`` must last until ``until_s``."""
    for field, spec, column in ending_traces(scenario):
        end_s = float(read_trace_csv(spec.path, column).times_s[-1])
        if until_s > end_s:
            raise SimqosError(
                f"{field}: {spec.path} ends at {end_s:g} s, but {what} {until_s:g} s; give a trace that lasts the "
                f"run, or set {field}.after_end: hold (its last value stays) or repeat (replayed end to end)"
            )


def until_covered(plan: Plan, replication: int, run: Callable[[ReplicationInputs], tuple[Any, float]]) -> Any:
    """``run(inputs)`` returns a result and the latest time it used the device; while that is
    past the horizon its device traces were sampled to, sample them further (the same traces,
    longer) and run again: no part of a run sees a device frozen at a hidden horizon."""
    inputs = sample_inputs(plan, replication)
    while True:
        result, latest_s = run(inputs)
        check_trace_ends(plan.scenario, latest_s, f"replication {replication} uses the device until")
        if not latest_s > inputs.horizon_s:
            return result
        inputs = sample_inputs(plan, replication, 2.0 * latest_s)


def device_window(plan: Plan, replication: int, last_arrival_s: float) -> DeviceWindow:
    """Replication ``replication``'s device, to be sampled in windows (:func:`device_inputs`'
    very traces: the same processes on the same seeds), with the whole-run path's horizon as
    the cap on waiting for a level."""
    speed, memory, residency, share = _device_processes(plan, replication)
    return DeviceWindow(speed, memory, residency, cap_s=2.0 * last_arrival_s + 60.0, share=share)
