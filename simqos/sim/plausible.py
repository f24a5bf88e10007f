"""Values a scenario may legally hold but that are most likely a slip of units: a speed given in
percent, trace times in milliseconds, a log-normal ``sigma`` given as a spread in ms, a deadline
no route can meet even on the fastest device (back to back, or after the idle gap between
arrivals, when the profile's idle table slows a request that finds the device idle), a memory
in which no level fits, memory that never constrains (written in KB?). Each is a warning
naming the field, the value and what it would mean; the run goes ahead (a user may mean it).
Also a setting that has no
effect: ``outputs.sample_requests`` without ``outputs.records: sample``, a ``device.slice_ms``
with a speed that never drops below 1.

The thresholds: a speed factor above :data:`MOST_SPEED` (a device that many times faster than
the one profiled); a ``sigma`` above :data:`MOST_SIGMA` (its 99th percentile deadline e^(2.33
sigma) times the median); a trace file whose times span more than :data:`MOST_SPAN` times the
run's expected length, or arrivals sparser than one per :data:`MOST_GAP_S` seconds; memory at
least :data:`MOST_MEMORY` times the least sparse level's in every state.
"""

from __future__ import annotations

import math

import numpy as np

from simqos.sim.device import read_trace_csv
from simqos.scenario import Scenario
from simqos.sim.service import ServiceModel
from simqos.userfiles import read_arrivals_csv

__all__ = ["MOST_GAP_S", "MOST_MEMORY", "MOST_SIGMA", "MOST_SPAN", "MOST_SPEED", "implausible"]

MOST_SPEED = 10.0
MOST_SIGMA = 3.0
MOST_SPAN = 100.0
MOST_GAP_S = 60.0
MOST_MEMORY = 1000.0


def _values(spec, field: str, column: str, of_trace) -> dict[str, float]:
    """Every value (``column``: speed or memory_mb) a device process ``spec`` at ``field`` can
    take, by the field that gives it; of a trace file, ``of_trace`` (max or min) of its values."""
    if spec.kind == "constant":
        return {f"{field}.{column}": getattr(spec, column)}
    if spec.kind == "markov":
        return {f"{field}.states[{k}].{column}" + (f" ({s.name})" if s.name else ""): getattr(s, column) for k, s in enumerate(spec.states)}
    if spec.kind == "periodic":
        return {f"{field}.high": spec.high, f"{field}.low": spec.low}
    return {f"{field}: {spec.path}": float(of_trace(read_trace_csv(spec.path, column).values))}


def _memory_warnings(scenario: Scenario, model: ServiceModel) -> list[str]:
    """A memory in which no level fits (its requests wait or drop), and memory that is
    :data:`MOST_MEMORY` times what the model needs in every state (in KB?)."""
    if scenario.device.memory is None:
        return []
    values = _values(scenario.device.memory, "device.memory", "memory_mb", np.min)
    sparsest_mb, whole_mb = model.level_bytes[-1] / 1e6, model.level_bytes[0] / 1e6
    out = [f"{field}: {mb:g} MB holds no level of {scenario.profile.name} (the sparsest needs {sparsest_mb:.3g} MB): "
           "every request that comes while it lasts waits for memory or is dropped" for field, mb in values.items() if mb < sparsest_mb]
    if min(values.values()) >= MOST_MEMORY * whole_mb:
        out.append(f"device.memory: at least {min(values.values()):g} MB in every state, {MOST_MEMORY:g}x or more what the "
                   f"least sparse level of {scenario.profile.name} needs ({whole_mb:.3g} MB), so memory never constrains the "
                   "run; memory is in megabytes (a value in KB reads 1,000 times too large)")
    return out


def implausible(scenario: Scenario, model: ServiceModel) -> list[str]:
    """Warnings for ``scenario`` (module doc), each naming the field, the value and its meaning."""
    by_field = _values(scenario.device.speed, "device.speed", "speed", np.max)
    out = [f"{field}: {speed:g} means a device {speed:g} times faster than the one profiled; speed is a factor "
           "(1.0 = as profiled, 0.5 = half as fast), not a percentage" for field, speed in by_field.items() if speed > MOST_SPEED]
    speeds = list(by_field.values())
    return (out + _deadline_warnings(scenario, model, max(speeds)) + _memory_warnings(scenario, model) + _trace_warnings(scenario)
            + _slicing_warnings(scenario, min(speeds)) + _output_warnings(scenario.outputs))


def _deadline_warnings(scenario: Scenario, model: ServiceModel, top_speed: float) -> list[str]:
    """A lognormal deadline's sigma given as a spread in ms; a deadline no route can meet, even
    at the top speed, back to back or after the idle gap a request finds at the mean rate."""
    out = []
    deadline = scenario.workload.deadline
    if deadline.kind == "lognormal" and deadline.sigma > MOST_SIGMA:
        p99 = deadline.median_ms * math.exp(2.326 * deadline.sigma)
        out.append(f"workload.deadline.sigma: {deadline.sigma:g} puts the 99th-percentile deadline at {p99:.3g} ms "
                   f"(median {deadline.median_ms:g} ms); sigma is the standard deviation of the deadline's logarithm "
                   "(0.3: about ±35 %), not a spread in ms")
    fastest_each = model.remaining_quantile_ms(0.0)[:, 0]  # each level's fastest draw, whole route
    fastest_ms = float(fastest_each.min()) / top_speed
    longest_ms = {"constant": lambda: deadline.ms, "uniform": lambda: deadline.high_ms,
                  "lognormal": lambda: deadline.median_ms}[deadline.kind]()
    what = {"constant": "the deadline", "uniform": "the longest deadline", "lognormal": "the median deadline"}[deadline.kind]
    if longest_ms < fastest_ms:
        out.append(f"workload.deadline: {what} is {longest_ms:g} ms, but the fastest route of {scenario.profile.name} "
                   f"needs {fastest_ms:.3g} ms even at the device's top speed ({top_speed:g}), so "
                   f"{'most requests' if deadline.kind == 'lognormal' else 'every request'} will miss (deadlines are in ms)")
        return out
    spacing_ms = 1e3 / scenario.workload.arrival.mean_rate_hz()
    gap_ms = spacing_ms - fastest_ms  # the idle gap a request finds at the mean spacing
    woken_ms = min(f * factor for f, factor in zip(fastest_each, model.idle_factors_at(max(gap_ms, 0.0)))) / top_speed
    if gap_ms > 0 and longest_ms < woken_ms:
        out.append(f"workload.deadline: {what} is {longest_ms:g} ms; the fastest route of {scenario.profile.name} needs "
                   f"{fastest_ms:.3g} ms at the device's top speed back to back, but requests arriving "
                   f"{spacing_ms:.3g} ms apart find it idle for about {gap_ms:.3g} ms, "
                   f"after which the profile's idle table slows it to {woken_ms:.3g} ms, so most requests will miss")
    return out


def _trace_warnings(scenario: Scenario) -> list[str]:
    """A replayed trace (device or arrivals) whose times look like milliseconds."""
    out = []
    run_s = (scenario.requests / scenario.workload.arrival.mean_rate_hz() if scenario.requests is not None
             else scenario.duration_s)
    for field, spec, column in scenario.device.processes():
        if spec.kind == "trace":
            span_s = float(read_trace_csv(spec.path, column).times_s[-1])
            if span_s > MOST_SPAN * run_s:
                out.append(f"{field}: {spec.path} spans {span_s:g} s, but the run's arrivals last about {run_s:.3g} s; "
                           "are its time_s in milliseconds? (times are in seconds)")
    arrival = scenario.workload.arrival
    if arrival.kind == "trace":
        times = read_arrivals_csv(arrival.path)
        gap_s = (times[-1] - times[0]) / max(len(times) - 1, 1)
        if gap_s > MOST_GAP_S:
            out.append(f"workload.arrival: {arrival.path} has one arrival every {gap_s:g} s on average; are its "
                       "arrival_s in milliseconds? (times are in seconds)")
    return out


def _slicing_warnings(scenario: Scenario, lowest_state_speed: float) -> list[str]:
    """Time-slicing on a device whose speed never drops below 1 (nothing to slice)."""
    spec = scenario.device.speed
    lowest = float(read_trace_csv(spec.path, "speed").values.min()) if spec.kind == "trace" else lowest_state_speed
    if scenario.device.slice_ms > 0.0 and lowest >= 1.0:
        return [f"device.slice_ms: {scenario.device.slice_ms:g} has no effect: device.speed never drops below 1, and "
                "only a speed below 1 is sliced (the share of the core competing processes leave)"]
    return []


def _output_warnings(outputs) -> list[str]:
    """Output settings that have no effect with the records chosen."""
    out = []
    fields = type(outputs).model_fields  # defaults, not model_fields_set: a copied scenario marks every field set
    if outputs.sample_requests != fields["sample_requests"].default and outputs.records != "sample":
        out.append(f"outputs.sample_requests: {outputs.sample_requests} has no effect with outputs.records: {outputs.records}; "
                   "set records: sample to keep that many requests of each replication")
    if outputs.records_format != fields["records_format"].default and outputs.records == "none":
        out.append(f"outputs.records_format: {outputs.records_format} has no effect with outputs.records: none (no records are "
                   "written); set records: all or sample to write them")
    return out
