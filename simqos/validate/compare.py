"""The simulator's side of a validation, and the comparison (no torch here).

:func:`simulate_like` replays what really happened through the simulator: the same arrivals
and deadlines, the load schedule as it was really applied (each state at the speed the run's
own requests were served at, :func:`served_speeds`), the memory as it was applied, and the
machine's own noise as measured. It does so ``replications`` times, with fresh latency draws
(and noise) from the profile, each request charged the real server's mean cost of its own
(bookkeeping and decisions, measured in the real run). :func:`compare` sets each policy's real
records against the simulated ones, and measures the floor: how much the real runs of the
same arrivals and schedule differ from each other.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import ks_2samp

from simqos.sim.device import (ProductProcess, ReplayedProcess, SpeedTrace, Trace, constant_trace, process_from_spec, resident_trace,
                           sampled)
from simqos.sim.inputs import ReplicationInputs
from simqos.sim.plan import Plan
from simqos.sim.replication import run_policy, summarize_plan
from simqos.sim.timeslice import waited_ms as turns_waited_ms, wake_wait_ms

__all__ = ["MIN_SERVED", "TOLERANCE", "compare", "floor_text", "mean_overhead_ms", "real_floor", "served_speeds", "shares", "simulate_like", "within"]

TOLERANCE = 0.10
"""Largest relative error of p50 and p99 that passes."""

MIN_SERVED = 20
"""A load state needs this many requests served in it for a run's own speed in it to be read;
with fewer, the calibration's stands."""


def _states(applied: pd.DataFrame, times_s: np.ndarray, by_level: dict[float, np.ndarray] | None,
            n_levels: int) -> tuple[np.ndarray, np.ndarray]:
    """The load state (``applied``'s target_speed) in force at each of ``times_s``, and each
    level's speed relative to level 0's in it (``by_level``; all 1 without it): (n,), (n, n_levels)."""
    state = Trace(applied["t_s"].to_numpy(dtype=float), applied["target_speed"].to_numpy(dtype=float)).at(times_s)
    relative = np.stack([by_level[float(v)] for v in state]) if by_level else np.ones((len(times_s), n_levels))
    return state, relative


def served_speeds(
    plan: Plan, real: pd.DataFrame, applied: pd.DataFrame, by_level: dict[float, np.ndarray] | None = None
) -> dict[float, float]:
    """The speed each load state delivered to one real run's own served requests, level 0's as
    the schedule carries it: the work the profile predicts for them over the time they took,
    by the state in force when each started (``applied``: columns t_s, target_speed).

    A request's predicted work is its route's mean work segment by segment
    (:attr:`~simqos.sim.service.ServiceModel.mean_segment_work_ms`) times each level's idle
    slowdown after the request's real idle gap, each level's divided by its speed relative to
    level 0's in that state (``by_level``, from the calibration); the server's own cost as
    measured (``overhead_work_ms``) is spread over the segments and slowed with them, as
    :func:`simulate_like` charges it. The machine's speed drifts over minutes — by 15 % between
    runs a minute apart on a shared VM — so a calibration minutes earlier cannot stand for it;
    this is what the simulation is given instead, and it leaves the queueing, the tails and
    the policies' decisions for the comparison to test. Time a request waited for an evicted
    level (``resident_wait_ms``) is not service and is left out. States with fewer than
    :data:`MIN_SERVED` requests are left out of the result.

    With time-slicing (the plan's ``device.slice_ms``, :mod:`simqos.sim.timeslice`) a loaded
    state's speed ``s`` is the share ``a`` of the core the competitors left times the quiet
    state's speed (the run's own at target 1), as the simulation replays it (:func:`shares`),
    and a request's work ``W`` takes ``(a * W + (1 - a) * T) / s``, where ``T`` is the slices
    it waited out (the model knows which requests found the server idle — they arrived after
    the one before finished — and carries the slice left from one to the next), plus, for a woken
    one, its wake wait ``K`` (``device.wake_wait``, its competitors counted from the state's
    target speed, where the simulation counts them from the share it replays): ``a`` solves that
    summed over the state's requests (a state as fast as the quiet one keeps its plain speed)."""
    served = real[real["start_s"].notna() & real["finish_s"].notna()].sort_values("start_s")
    start, finish = served["start_s"].to_numpy(dtype=float), served["finish_s"].to_numpy(dtype=float)
    state, work_ms = _predicted_work_ms(plan.model, served, applied, by_level)
    took_ms = (finish - start) * 1e3
    if "resident_wait_ms" in served:  # waiting for an evicted level is not service
        took_ms = took_ms - served["resident_wait_ms"].fillna(0.0).to_numpy(dtype=float)
    woken = served["arrival_s"].to_numpy(dtype=float) > np.concatenate(([0.0], finish[:-1]))
    device = plan.scenario.device
    sliced = device.slice_ms > 0.0
    wake = np.asarray(device.wake_wait or [0.0], dtype=float)
    woke_ms = np.array([wake_wait_ms(t, v, device.slice_ms, wake) if w and sliced else 0.0 for t, v, w in zip(start, state, woken)])
    waited_ms = turns_waited_ms(work_ms, woken, device.slice_ms, np.zeros(len(served))) if sliced else np.zeros(len(served))
    sums = {float(v): (work_ms[state == v].sum(), waited_ms[state == v].sum(), took_ms[state == v].sum(), woke_ms[state == v].sum())
            for v in np.unique(state) if (state == v).sum() >= MIN_SERVED}  # fmt: skip
    speeds = {v: float(work / took) for v, (work, _, took, _) in sums.items()}
    quiet = speeds.get(1.0, 1.0)
    for v, (work, waited, took, woke) in sums.items():
        # the share a solving took = (a W + (1 - a) T + a K) / (a quiet), K the woken requests' waits; none below 1 when
        # the state ran as fast as the quiet one
        if sliced and v < 1.0 and waited > 0.0 and took * quiet > work + woke:
            speeds[v] = quiet * float(waited / (took * quiet - work - woke + waited))
    return speeds


def _predicted_work_ms(model, served: pd.DataFrame, applied: pd.DataFrame,
                       by_level: dict[float, np.ndarray] | None) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """The load state each served request (sorted by start) started in, and the work the profile
    predicts for it at level 0's speed there (:func:`served_speeds`)."""
    start, finish = served["start_s"].to_numpy(dtype=float), served["finish_s"].to_numpy(dtype=float)
    idle_ms = np.maximum(start - np.concatenate(([0.0], finish[:-1])), 0.0) * 1e3
    routes = [[int(k) for k in str(route).split("-")] for route in served["route"]]
    levels = np.array(routes, dtype=np.int64).reshape(len(served), model.n_segments)
    factors = np.array([model.idle_factors_at(float(g)) for g in idle_ms]).reshape(len(served), model.n_levels)
    state, relative = _states(applied, start, by_level, model.n_levels)
    rows = np.arange(len(served))[:, None]
    segments = np.arange(model.n_segments)[None, :]
    own_ms = served["overhead_work_ms"].fillna(0.0).to_numpy(dtype=float) if "overhead_work_ms" in served else np.zeros(len(served))
    per_segment_ms = model.mean_segment_work_ms[levels, segments] + own_ms[:, None] / model.n_segments
    return state, (per_segment_ms * factors[rows, levels] / relative[rows, levels]).sum(axis=1)


def shares(applied: pd.DataFrame) -> Trace:
    """The share of the core the competitors left, over time (``applied``: columns t_s,
    target_speed, served_speed): each loaded state's served speed over the quiet state's
    (target 1, whose share is 1; without one, over 1), at most 1 — what the simulator's
    time-slicing reads (:mod:`simqos.sim.timeslice`)."""
    target, served = applied["target_speed"].to_numpy(dtype=float), applied["served_speed"].to_numpy(dtype=float)
    quiet = served[target >= 1.0][0] if (target >= 1.0).any() else 1.0
    return Trace(applied["t_s"].to_numpy(dtype=float), np.where(target >= 1.0, 1.0, np.minimum(served / quiet, 1.0)))


def simulate_like(
    plan: Plan,
    policy_index: int,
    real: pd.DataFrame,
    applied: pd.DataFrame,
    replications: int,
    seed: int,
    first_replication: int = 0,
    noise: Any = None,
    by_level: dict[float, np.ndarray] | None = None,
    memory: pd.DataFrame | None = None,
    overhead_ms: float = 0.0,
) -> pd.DataFrame:
    """Simulated records of policy ``policy_index`` on the real run's arrivals and deadlines
    (``real``) under its applied schedule (``applied``: columns t_s, target_speed, and
    served_speed: what each state delivered, :func:`served_speeds`), times the
    machine's ``noise`` (a ``device.noise`` process, :mod:`simqos.validate.noise`) when given:
    replications ``first_replication`` .. of the seed's latency draws, each with its own noise.
    ``overhead_ms``, the real server's own cost per request (:func:`mean_overhead_ms` of a run),
    is charged to every request as work spread over its segments. ``by_level``: for each load
    state (``applied``'s target_speed), each level's measured speed relative to level 0's (the
    schedule's): a request's work at a level is divided by it for the state in force at its
    arrival, so that a short request under competitors gets the share it was measured to get.
    ``memory``: the memory schedule as the real run applied it (columns t_s, memory_mb, the first
    at 0), the levels resident following it as the simulator's model has them
    (:func:`~simqos.sim.device.resident_trace`, at the scenario's storage bandwidth); without it
    every level is resident."""
    arrivals = real["arrival_s"].to_numpy()
    deadlines = real["deadline_s"].to_numpy()
    schedule = Trace(applied["t_s"].to_numpy(dtype=float), applied["served_speed"].to_numpy(dtype=float))
    share = shares(applied)
    memory_mb, resident = _memory_traces(plan, memory)
    horizon_s = 2.0 * float(arrivals[-1]) + 60.0 if noise is not None else math.inf  # as the engine samples a device
    model = plan.model
    _, relative = _states(applied, arrivals, by_level, model.n_levels)
    frames = []
    streams = np.random.SeedSequence(seed).spawn(first_replication + replications)[first_replication:]
    for r, stream in enumerate(streams, start=first_replication):
        uniforms = np.random.default_rng(stream).random((len(arrivals), len(model.sorted_samples_ms)))
        work_ms = (model.segment_work_ms(uniforms) + overhead_ms / model.n_segments) / relative[:, :, None]  # decides at each segment
        speed = schedule if noise is None else sampled(
            ProductProcess(ReplayedProcess(schedule, repeat=False),
                           process_from_spec(noise, "speed", np.random.default_rng(stream.spawn(1)[0]))), horizon_s)  # fmt: skip
        inputs = ReplicationInputs(arrivals, deadlines, work_ms, SpeedTrace(speed), memory_mb, resident, horizon_s,
                                   share)  # the measured schedules, their last values held  # fmt: skip
        frames.append(run_policy(plan, inputs, policy_index, r))
    return pd.concat(frames, ignore_index=True)


def mean_overhead_ms(real: pd.DataFrame) -> float:
    """A real run's server cost per request (its ``overhead_work_ms``), mean; 0 without one."""
    if "overhead_work_ms" not in real or not real["overhead_work_ms"].notna().any():
        return 0.0
    return float(real["overhead_work_ms"].mean())


def _memory_traces(plan: Plan, memory: pd.DataFrame | None) -> tuple[Trace, Trace]:
    """The memory a real run applied (columns t_s, memory_mb) and the least sparse level
    resident under it, as the simulator's model has them; without it, every level resident."""
    if memory is None:
        return constant_trace(math.inf), constant_trace(0.0)
    memory_mb = Trace(memory["t_s"].to_numpy(dtype=float), memory["memory_mb"].to_numpy(dtype=float))
    return memory_mb, resident_trace(memory_mb, plan.model.level_bytes, plan.scenario.device.storage_bandwidth_mb_s)


def _relative(simulated: float, real: float) -> float:
    return (simulated - real) / real if real else math.nan


def real_floor(real: pd.DataFrame, policy: str, q: float, pooled_ms: float) -> float:
    """How far the percentile ``q`` of one real run of ``policy`` (records by ``replication``)
    lies from the pooled real value, relative, the largest over the runs: what the machine
    itself varies from run to run, which no simulator can be asked to beat (0 with one run)."""
    mine = real[(real["policy"] == policy) & ~real["warmup"]]
    by_run = [np.percentile(run, q) for _, g in mine.groupby("replication") if len(run := g["latency_ms"].dropna())]
    if len(by_run) < 2 or not pooled_ms:
        return 0.0
    return float(max(abs(v - pooled_ms) / pooled_ms for v in by_run))


def floor_text(floor: float, real_runs: int) -> str:
    """A percentile's floor as the tables show it: none is measured from one real run."""
    return f"floor {floor:.0%}" if real_runs > 1 else "no floor: one real run"


def within(error: float, floor: float) -> bool:
    """A relative error passes within :data:`TOLERANCE`, or within the real runs' own floor
    when that is larger."""
    return abs(error) <= max(TOLERANCE, floor)


def compare(plan: Plan, real: pd.DataFrame, simulated: pd.DataFrame) -> pd.DataFrame:
    """One row per policy: latency p50/p90/p99 real (pooled over the real runs, ``replication``)
    and simulated with the relative error and the real runs' floor (:func:`real_floor`), the KS
    distance between the served latencies, miss rates with 95 % intervals, level shares, and
    the verdict: ``pass`` when p50 and p99 are within :data:`TOLERANCE` or their floor
    (:func:`within`) and each miss rate lies in the other's interval (one of the two suffices)."""
    real_summary = summarize_plan(plan, real).set_index("policy")
    sim_summary = summarize_plan(plan, simulated).set_index("policy")
    rows = []
    for policy in real_summary.index:
        r, s = real_summary.loc[policy], sim_summary.loc[policy]
        row: dict[str, object] = {"policy": policy, "requests": int(r["requests"])}
        for p in ("p50", "p90", "p99"):
            row[f"real_{p}_ms"] = r[f"{p}_ms"]
            row[f"sim_{p}_ms"] = s[f"{p}_ms"]
            row[f"{p}_error"] = _relative(s[f"{p}_ms"], r[f"{p}_ms"])
            row[f"{p}_floor"] = real_floor(real, policy, float(p[1:]), r[f"{p}_ms"])
        real_lat = real.loc[(real["policy"] == policy) & ~real["warmup"], "latency_ms"].dropna()
        sim_lat = simulated.loc[(simulated["policy"] == policy) & ~simulated["warmup"], "latency_ms"].dropna()
        row["ks_distance"] = float(ks_2samp(real_lat, sim_lat).statistic)
        for side, summary in (("real", r), ("sim", s)):
            row[f"{side}_miss_rate"] = summary["miss_rate"]
            row[f"{side}_miss_low"] = 10 ** -summary["nines_high"] if pd.notna(summary["nines_high"]) else 0.0
            row[f"{side}_miss_high"] = 10 ** -summary["nines_low"]
        row["miss_agree"] = bool(
            row["sim_miss_low"] <= row["real_miss_rate"] <= row["sim_miss_high"]
            or row["real_miss_low"] <= row["sim_miss_rate"] <= row["real_miss_high"]
        )
        for k in range(plan.model.n_levels):
            row[f"real_share_L{k}"] = r[f"level_share_L{k}"]
            row[f"sim_share_L{k}"] = s[f"level_share_L{k}"]
        row["verdict"] = "pass" if (
            within(row["p50_error"], row["p50_floor"]) and within(row["p99_error"], row["p99_floor"]) and row["miss_agree"]
        ) else "fail"
        rows.append(row)
    return pd.DataFrame(rows)
