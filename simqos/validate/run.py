"""``simqos validate``: run a scenario for real on this CPU, simulate the same, compare.

1. The real run (:mod:`simqos.validate.server` on :mod:`simqos.validate.real`'s model):
   replication 0's arrivals of the scenario, cut to
   ``seconds``, served in real time by the profiled model on one core, while
   :mod:`simqos.validate.loadgen` plays the scenario's speed process with competing processes
   on that core. A calibration probe first measures the speed factor each load state really
   delivers; its idle state, run longer, is what the machine's own noise (wander and stalls,
   :mod:`simqos.validate.noise`) and its idle slowdown at the scenario's rate
   (:mod:`simqos.validate.idle`) are measured from; the real server and the simulation both use
   that idle slowdown. Every policy gets the same arrivals and the same schedule,
   ``real_runs`` times.
2. The simulation (:mod:`simqos.validate.compare`): the same arrivals and the schedule as it was
   applied, each state at the speed the run's own requests were served at (the machine drifts
   over minutes, so the calibration's factor cannot stand for a later run; its levels' relative
   speeds do), times the fitted noise, with latency drawn from the profile.
3. The comparison, written to ``OUT/``: ``comparison.csv``, ``report.md`` (table and verdict),
   ``calibration.csv`` and ``calibration_probes.csv``, ``noise.yaml`` (the fitted noise as a
   scenario's ``device.noise``), ``calibrated-profile/`` (the profile with the idle slowdown
   measured here), ``schedule.csv`` (every switch as applied),
   ``real_records.csv`` and ``sim_records.csv.gz`` (the simulator's columns),
   ``plots/validation_ccdf.png``. The folder is built as ``OUT.partial`` and swapped in when
   complete (:mod:`simqos.outputs`).

A memory process is played for real too (:mod:`simqos.validate.memory`): the real server's
levels are evicted and reloaded, at the scenario's storage bandwidth, as the schedule says,
and the simulation replays the memory as it was applied (``memory_schedule.csv``; evictions and
reloads, with how long each reload read, in ``residency.csv``).

What cannot be played for real is refused up front, naming the field: speed factors above 1
(this CPU cannot run faster than it was profiled) or below 1/9. A clairvoyant policy needs
the future, so it is left out, with a note.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel, ConfigDict, Field

from simqos import plots
from simqos.sim.inputs import sample_inputs
from simqos.sim.plan import build_plan, Plan
from simqos.errors import SimqosError
from simqos.nested.network import NestedNetwork
from simqos.policies import POLICIES
from simqos.bundle import Profile, save_profile
from simqos.scenario import override
from simqos.profiler.timer import torch_threads
from simqos.scenario import Device, Scenario, parse_scenario
from simqos.validate.compare import TOLERANCE, compare, floor_text, mean_overhead_ms, served_speeds, simulate_like
from simqos.validate.predict import INTERVAL, PRIOR_LOG_SD, PRIOR_RUNS, out_of_sample_verdicts, predict_runs, requests_by_state, run_drift
from simqos.validate.noise import STALL_FACTOR, NoiseFit, fit_noise, window_s as noise_window_s
from simqos.validate.memory import RealResidency, WeightStore, reload_mb
from simqos.validate.loadgen import LoadGenerator, SchedulePlayer, competitors_for, pinned
from simqos.validate.idle import regime_idle
from simqos.validate.real import anchor_speed, calibrate, calibration_table, real_model
from simqos.validate.server import collector_paused, serve
from simqos.validate.slicing import MIN_GROUP, Slicing, fit_slicing

__all__ = ["ValidationSettings", "played_speeds", "run_validation", "validation_plan"]


class ValidationSettings(BaseModel):
    """``seconds`` of real arrivals per policy; ``sim_replications`` latency draws of the
    simulation; ``probes`` inferences per load state in the calibration; ``warmup`` inferences
    before anything is timed; ``real_runs``: each policy is run for real that many times (all
    policies, then all again), and how much the runs differ is the comparison's floor;
    ``noise_seconds``: the calibration's idle state at the scenario's gaps runs at least that
    long, and the machine's noise is fitted from it; ``anchor_seconds``: quiet probes just before
    each real run, to start its prediction from the machine's speed then (0: none, the default:
    measured here it did not help, :mod:`simqos.validate.predict`);
    ``prediction_draws``: simulated runs per real run in its out-of-sample prediction
    (:mod:`simqos.validate.predict`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seconds: float = Field(20.0, gt=0)
    sim_replications: int = Field(20, ge=1)
    probes: int = Field(300, ge=1)
    warmup: int = Field(200, ge=0)
    real_runs: int = Field(2, ge=1)
    noise_seconds: float = Field(30.0, ge=0)
    anchor_seconds: float = Field(0.0, ge=0)
    prediction_draws: int = Field(40, ge=2)

    @property
    def draws_per_run(self) -> int:
        """Latency draws simulated on each real run's schedule: its share of ``sim_replications``."""
        return math.ceil(self.sim_replications / self.real_runs)


def validation_plan(scenario: Scenario, seconds: float, source: str) -> tuple[Plan, list[str]]:
    """The scenario as it will be played: ``seconds`` of arrivals, no warm-up requests, the
    clairvoyant policies left out; raises SimqosError for what cannot be played. Returns the plan and notes."""
    notes = []
    if scenario.device.noise is not None:
        notes.append("device.noise left out: validate measures this machine's own noise and simulates with that (noise.yaml)")
    if scenario.device.slice_ms or any(scenario.device.wake_wait):
        notes.append("device.slice_ms and wake_wait left out: validate measures this machine's and simulates with them")
    kept = [p for p in scenario.policies if not getattr(POLICIES.get(p.kind), "clairvoyant", False)]
    if len(kept) < len(scenario.policies):
        notes.append("clairvoyant policies left out: they need the future, so they cannot run on a real device")
    if not kept:
        raise SimqosError(f"{source}: policies: only clairvoyant policies are listed, and they cannot run for real; add another policy")
    changes = {"requests": None, "duration_s": seconds, "warmup_requests": 0, "replications": 1, "precision": None,
               "policies": [p.model_dump(exclude_none=True) for p in kept]}
    played = scenario.model_dump(mode="json") | changes
    played["device"].pop("noise", None)
    played["device"]["slice_ms"] = 0.0
    played["device"]["wake_wait"] = []
    played = parse_scenario(played, f"{source} (as validated)")
    plan = build_plan(played, source)
    played_speeds(plan, source)
    return plan, notes


def played_speeds(plan: Plan, source: str = "scenario") -> list[float]:
    """The speed factors replication 0's speed trace takes while arrivals last; raises
    SimqosError naming ``device.speed`` if competitors cannot produce one of them."""
    inputs = sample_inputs(plan, 0)
    trace, end = inputs.speed.trace, float(inputs.arrivals_s[-1]) if len(inputs.arrivals_s) else 0.0
    used = sorted({float(s) for t, s in zip(trace.times_s, trace.values) if t <= end})
    for speed in used:
        try:
            competitors_for(speed)
        except ValueError as exc:
            raise SimqosError(f"{source}: device.speed: {exc}; validate plays speeds between 1/9 and 1") from None
    return used


def run_validation(
    plan: Plan,
    notes: list[str],
    profile: Profile,
    net: NestedNetwork,
    x: torch.Tensor,
    work: Path,
    settings: ValidationSettings,
    source: str = "scenario",
    progress: Callable[[str], None] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run, simulate and compare (see the module doc) and write the files into ``work``, the
    folder being built (:func:`simqos.outputs.staged`); returns the comparison table (per
    policy) and the out-of-sample prediction of each real run (per policy and run)."""
    say = progress or (lambda _what: None)
    scenario = plan.scenario
    inputs = sample_inputs(plan, 0)
    arrivals, deadlines = inputs.arrivals_s, inputs.deadlines_s
    schedule_times, schedule_speeds = inputs.speed.trace.times_s, inputs.speed.trace.values
    speeds = played_speeds(plan, source)
    kernels = {(row.layer, int(row.level)): row.kernel for row in profile.layers.itertuples(index=False)}
    (work / "plots").mkdir()
    real_requests = len(arrivals) * settings.real_runs
    if real_requests < FEW_REAL_REQUESTS:
        notes.append(f"{real_requests} real requests per policy: a p99 is then about the {math.ceil(real_requests / 100)}"
                     f"{_ordinal(math.ceil(real_requests / 100))} slowest, so a verdict says little; the table in "
                     "scenarios/README.md uses the defaults (--seconds 20, --real-runs 2)")

    memory_times, memory_mb = inputs.memory_mb.times_s.tolist(), inputs.memory_mb.values.tolist()
    real_frames: list[list[pd.DataFrame]] = [[] for _ in plan.labels]  # per policy, per real run
    applied_frames, memory_frames, residency_frames = [], [], []
    with (LoadGenerator([*speeds, 1.0]) as load, pinned(load.core), torch_threads(profile.meta.provenance.settings.threads),
          tempfile.TemporaryDirectory(prefix="simqos-weights-") as stored):  # fmt: skip
        say(f"warm-up on core {load.core}")
        real = real_model(net, kernels, x)
        residency = None
        if scenario.device.memory is not None:
            residency = RealResidency(real, net, WeightStore(net, Path(stored)), plan.model.level_bytes,
                                      scenario.device.storage_bandwidth_mb_s, load.all_cores - {load.core})  # fmt: skip
        for _ in range(settings.warmup):
            real.infer(lambda _segment: 0)
        say("calibration")
        model = plan.model
        profiled_ms = [float(profile.end_to_end.loc[profile.end_to_end["level"] == k, "latency_ms"].mean()) for k in range(model.n_levels)]

        def predicted_ms(idle_ms: float, level: int) -> float:
            return profiled_ms[level] * model.idle_factors_at(idle_ms)[level]

        mean_gap_s = settings.seconds / max(len(arrivals), 1)
        calibration, probes = calibrate(real, load.apply, speeds, settings.probes, mean_gap_s, predicted_ms,
                                        levels=model.n_levels, idle_seconds=settings.noise_seconds)  # fmt: skip
        busy = _busy_machine(calibration, profile)
        if busy:
            notes.append(busy)
            say(f"warning: {busy}")
        profiled_idle = (model.idle_ms, model.idle_factor)
        no_load = (probes["target_speed"] == 1.0) & (probes["gaps"] != "none")  # and the scenario's gaps
        regime = regime_idle(probes[no_load], model.idle_ms)
        if regime is None:
            notes.append("too few calibration probes found the device busy to measure its idle slowdown at the scenario's "
                         "rate; the profile's is used (raise --probes or --noise-seconds)")
        else:  # serve and simulate with this machine's idle slowdown at the scenario's rate
            save_profile(dataclasses.replace(profile, idle=regime), work / "calibrated-profile")
            plan = build_plan(override(scenario, "profile", str((work / "calibrated-profile").resolve())), source)
            model = plan.model
            calibration = calibration_table(probes, predicted_ms)
        plans = [load.plans[s] for s in calibration["target_speed"]]
        calibration["competitors"] = [p.count for p in plans]
        calibration["nice"] = [p.nice for p in plans]
        calibration["fair_share"] = [p.expected for p in plans]
        slicing = fit_slicing(probes)  # under competitors: the speed queued work gets, and the slice
        sliced = override(override(plan.scenario, "device.slice_ms", slicing.slice_ms), "device.wake_wait", slicing.wake_wait)
        plan = build_plan(sliced, source)
        played = calibration[calibration["gaps"] != "none"].pivot(index="target_speed", columns="level", values="measured_speed")
        for speed, queued in slicing.speeds.items():
            played.loc[speed] = queued
        factor = played[0].to_dict()  # the speed trace carries level 0's; the others run at theirs relative to it
        by_level = {speed: (row / row[0]).to_numpy() for speed, row in played.iterrows()}
        ahead = min(WARMUP_REQUESTS, len(arrivals))
        warm_overhead_ms = []  # each policy's server cost per request, median, before any real run
        for index in range(len(plan.labels)):  # compile each policy's and the serving core's code before any timing
            warm = serve(real, plan, index, arrivals[:ahead], deadlines[:ahead], lambda: 1.0, time.perf_counter() - arrivals[ahead - 1] - 1.0)
            warm_overhead_ms.append(float(warm["overhead_work_ms"].median()) if warm["overhead_work_ms"].notna().any() else 0.0)
        anchors: dict[tuple[int, int], float] = {}  # (policy, run): its quiet speed just before it, over the calibration's
        for run in range(settings.real_runs):
            for index, label in enumerate(plan.labels):
                say(f"real run {run + 1} of {settings.real_runs}: {label} ({settings.seconds:g} s)")
                policy = plan.policy_factories[index]()  # built before the clock starts (a table may take a while)
                load.apply(1.0)
                if settings.anchor_seconds:
                    if residency is not None:
                        residency.reset(math.inf)  # the anchor runs level 0
                    anchors[index, run] = anchor_speed(real, mean_gap_s, settings.anchor_seconds, predicted_ms, seed=run) / factor[1.0]
                if residency is not None:
                    residency.reset(memory_mb[0])
                time.sleep(0.05)
                with collector_paused():
                    t0 = time.perf_counter() + 0.01
                    memory = residency.play(memory_times, memory_mb, t0, settings.seconds) if residency else contextlib.nullcontext()
                    with SchedulePlayer(load, schedule_times.tolist(), schedule_speeds.tolist(), t0, settings.seconds) as player, memory:
                        real_frames[index].append(serve(real, plan, index, arrivals, deadlines, lambda: factor[load.speed], t0,
                                                        replication=run, residency=residency, policy=policy))  # fmt: skip
                if residency is not None:
                    memory_frames.append(pd.DataFrame(residency.applied, columns=["t_s", "memory_mb"]).assign(policy=label, run=run))
                    residency_frames.append(pd.DataFrame(residency.log, columns=["t_s", "event", "level", "read_ms"])
                                            .assign(policy=label, run=run))  # fmt: skip
                applied = pd.DataFrame(player.applied, columns=["t_s", "target_speed"])
                applied["measured_speed"] = applied["target_speed"].map(factor)
                applied.insert(0, "policy", label)
                applied.insert(1, "run", run)
                applied_frames.append(applied)
    idle = probes[no_load]
    noise = fit_noise(idle["begin_s"], idle["took_ms"], idle["predicted_ms"], window_s=noise_window_s(mean_gap_s))
    noise_process = Device(noise=noise.spec).noise
    real_records = pd.concat([frame for frames in real_frames for frame in frames], ignore_index=True)

    say("simulation")
    sim_frames, replayed, drifts, schedules, memories = [], [], {}, {}, {}
    per_run = settings.draws_per_run
    for index, label in enumerate(plan.labels):
        for run, (real_run, as_applied) in enumerate(zip(real_frames[index], applied_frames[index::len(plan.labels)])):
            applied = as_applied.copy()
            applied.iloc[0, applied.columns.get_loc("t_s")] = 0.0  # the first state holds from the start
            applied = schedules[index, run] = applied.drop_duplicates("t_s", keep="last")
            served = served_speeds(plan, real_run, applied, by_level)
            drifts[index, run] = run_drift(label, run, served, requests_by_state(real_run, applied), factor,
                                           anchors.get((index, run), 1.0), mean_overhead_ms(real_run))  # fmt: skip
            for frame in (applied, as_applied):
                frame["served_speed"] = [served.get(v, m) for v, m in zip(frame["target_speed"], frame["measured_speed"])]
            replayed.append(as_applied)
            memory = None
            if memory_frames:
                memory = memory_frames[run * len(plan.labels) + index].copy()
                memory.iloc[0, memory.columns.get_loc("t_s")] = 0.0  # the first state holds from the start
            memories[index, run] = memory
            sim_frames.append(simulate_like(plan, index, real_run, applied, per_run, scenario.seed, first_replication=run * per_run,
                                            noise=noise_process, by_level=by_level, memory=memory,
                                            overhead_ms=mean_overhead_ms(real_run)))  # fmt: skip
    schedule = pd.concat(replayed, ignore_index=True)
    sim_records = pd.concat(sim_frames, ignore_index=True)
    comparison = compare(plan, real_records, sim_records)

    say("prediction, out of sample")

    def simulate(index: int, run: int, replication: int, speeds: dict[float, float], overhead_ms: float) -> pd.DataFrame:
        drawn = schedules[index, run].assign(served_speed=schedules[index, run]["target_speed"].map(speeds))
        return simulate_like(plan, index, real_frames[index][run], drawn, 1, scenario.seed, first_replication=replication,
                             noise=noise_process, by_level=by_level, memory=memories[index, run], overhead_ms=overhead_ms)  # fmt: skip

    prediction = predict_runs(plan, drifts, {(i, r): real_frames[i][r] for i, r in drifts}, factor,
                              {key: anchors.get(key, 1.0) for key in drifts}, warm_overhead_ms, simulate,
                              settings.prediction_draws, scenario.seed)  # fmt: skip
    prediction.insert(0, "scenario", scenario.name)
    comparison = out_of_sample_verdicts(comparison, prediction)

    calibration.to_csv(work / "calibration.csv", index=False, float_format="%.6g")
    probes.to_csv(work / "calibration_probes.csv", index=False, float_format="%.6g")
    (work / "noise.yaml").write_text(noise.yaml())
    schedule.to_csv(work / "schedule.csv", index=False, float_format="%.6f")
    residency_log, build_ms = None, []
    if residency is not None:
        build_ms = residency.build_ms
        pd.concat(memory_frames, ignore_index=True).to_csv(work / "memory_schedule.csv", index=False, float_format="%.6f")
        residency_log = pd.concat(residency_frames, ignore_index=True)
        residency_log.to_csv(work / "residency.csv", index=False, float_format="%.6f")
    real_records.to_csv(work / "real_records.csv", index=False, float_format="%.9g")
    sim_records.to_csv(work / "sim_records.csv.gz", index=False, float_format="%.9g")
    comparison.to_csv(work / "comparison.csv", index=False, float_format="%.6g")
    prediction.to_csv(work / "prediction.csv", index=False, float_format="%.6g")
    deadline = scenario.workload.deadline
    plots.save(plots.validation_ccdf(real_records, sim_records, deadline.fixed_ms),
               work / "plots" / "validation_ccdf.png")
    idle_tables = (profiled_idle, (plan.model.idle_ms, plan.model.idle_factor) if regime is not None else None)
    slicing.table.to_csv(work / "slicing.csv", index=False, float_format="%.6g")
    report = _markdown(plan, profile, settings, calibration, idle_tables, slicing, noise, schedule, residency_log, build_ms,
                       comparison, prediction, notes)  # fmt: skip
    (work / "report.md").write_text(report)
    return comparison, prediction


FEW_REAL_REQUESTS = 1000
"""Below this many real requests per policy (over its real runs) validate says the verdict says little."""


def _ordinal(n: int) -> str:
    """The suffix of ``n``'s ordinal: 1st, 2nd, 3rd, 4th, 11th, 12th, 21st."""
    return "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")


WARMUP_REQUESTS = 50
"""Requests each policy serves, untimed and back to back, before the real runs: the first call
of a policy's and the serving core's compiled code compiles it (200-600 ms on the build machine,
which the first real run's first requests would otherwise wait out)."""

QUIET_SPEED = (0.85, 1.15)
"""The speed, against the profile, at which level 0 must run back to back with no competing
load for the machine to count as the quiet one the profile was measured on."""


def _busy_machine(calibration: pd.DataFrame, profile: Profile) -> str | None:
    """A warning when the calibration's first row (no competing load, back to back) ran outside
    :data:`QUIET_SPEED`: the machine is busy, or it is not the one the profile was measured on."""
    drift = float(calibration.loc[calibration["gaps"] == "none", "measured_speed"].iloc[0])
    if QUIET_SPEED[0] <= drift <= QUIET_SPEED[1]:
        return None
    made = f"{profile.meta.provenance.cpu}, {profile.meta.provenance.created_utc}"
    if drift > QUIET_SPEED[1]:
        return (f"with no competing load, this machine ran level 0 at {drift:.2f} of the profile's speed: faster than "
                f"profiled, so the profile was measured on another machine or while this one was busy ({made}). The "
                "comparison plays the scenario's speeds against what was measured here, but the profile's spread is not "
                "this machine's; validate with --reprofile")
    return (f"with no competing load, this machine ran level 0 at {drift:.2f} of the profile's speed: it is busy (other "
            f"work on its cores), or it is not the machine the profile was measured on ({made}). The comparison plays "
            "the scenario's speeds against what was measured, but the real tails carry that other load; validate on a "
            "quiet machine, or with --reprofile")


def _markdown(plan: Plan, profile: Profile, settings: ValidationSettings, calibration: pd.DataFrame, idle_tables: tuple,
              slicing: Slicing, noise: NoiseFit, schedule: pd.DataFrame, residency: pd.DataFrame | None, build_ms: list[float],
              comparison: pd.DataFrame, prediction: pd.DataFrame, notes: list[str]) -> str:
    scenario = plan.scenario
    lines = [
        f"# validation of {scenario.name}",
        "",
        f"{settings.seconds:g} s of real arrivals per policy, "
        f"run {'once' if settings.real_runs == 1 else f'{settings.real_runs} times'}, on one core of "
        f"{profile.meta.provenance.cpu} ({profile.meta.provenance.settings.threads} thread), profile `{scenario.profile.name}`; "
        "the simulation replays the same arrivals and each run's applied load schedule, "
        f"{settings.draws_per_run * settings.real_runs} latency draws in all.",
    ]
    lines += _calibration_markdown(calibration)
    lines += _idle_markdown(*idle_tables)
    lines += _slicing_markdown(slicing)
    lines += _noise_markdown(noise)
    lines += _served_markdown(schedule)
    if residency is not None:
        lines += _memory_markdown(plan.model.level_bytes, scenario.device.storage_bandwidth_mb_s, residency, build_ms)
    lines += _prediction_markdown(prediction, settings)
    lines += _comparison_markdown(comparison, settings.real_runs)
    lines += ["", "- figure: `plots/validation_ccdf.png` (real and simulated latency CCDF per policy)"]
    lines += [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


def _calibration_markdown(calibration: pd.DataFrame) -> list[str]:
    """The report's calibration section: the speed each load state delivered to the probes."""
    lines = [
        "",
        "## Calibration: the speed each load state delivered",
        "",
        "Measured speed: what the profile predicts for the probes (its mean time at the level, times its slowdown "
        "after each probe's actual idle gap) over what they took; 1.0 = as profiled. Back-to-back probes with "
        "no load show the machine's drift since profiling; probes after idle gaps like the scenario's check "
        "the profile's idle slowdown; the other states add the competitors.",
        "",
        "| target speed | gaps | competitors x nice | fair share | level | probe mean ms | p90 ms | predicted mean ms | measured speed |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in calibration.itertuples(index=False):
        lines.append(f"| {row.target_speed:g} | {row.gaps} | {row.competitors} x {row.nice} | {row.fair_share:.3f} | {row.level} | "
                     f"{row.mean_ms:.3f} | {row.p90_ms:.3f} | {row.predicted_mean_ms:.3f} | {row.measured_speed:.3f} |")
    return lines


def _noise_markdown(noise: NoiseFit) -> list[str]:
    """The report's section on the machine's own noise, as fitted."""
    lines = [
        "",
        "## The machine's own noise",
        "",
        f"From the {noise.probes} probes of the idle state at the scenario's gaps ({noise.seconds:.1f} s), in windows of "
        f"{noise.window_s * 1e3:.0f} ms: the wander explains {noise.persistent_share:.0%} of the windows' variance (the rest "
        f"is the independent variation the profile's draws already carry); {noise.stalls_text} (a probe over "
        f"{STALL_FACTOR:g}x its prediction), {noise.stall_rate_hz:.3g} per second of service, {noise.stall_mean_ms:.3g} ms "
        "long on average. The simulation multiplies this process onto the schedule's speed (`noise.yaml`: paste it "
        "under a scenario's `device:`).",
        "",
        "| state | speed | mean dwell ms |",
        "|---|---|---|",
    ]
    lines += [f"| {s['name']} | {s['speed']:.3f} | {s['mean_dwell_s'] * 1e3:.3g} |" for s in noise.states]
    return lines


def _served_markdown(schedule: pd.DataFrame) -> list[str]:
    """The report's section on the speed each load state delivered to each run's own requests."""
    lines = [
        "",
        "## The speed each run was served at",
        "",
        "What each load state delivered to the run's own requests (their predicted work over the time they took, "
        "level 0's), against the calibration's: the simulation replays each run at its own, so that the machine's "
        "drift over minutes is not laid to the simulator's account.",
        "",
        "| policy | run | target speed | calibrated | served |",
        "|---|---|---|---|---|",
    ]
    speeds = schedule.groupby(["policy", "run", "target_speed"], sort=False)[["measured_speed", "served_speed"]].first()
    lines += [f"| {policy} | {run + 1} | {target:g} | {row.measured_speed:.3f} | {row.served_speed:.3f} |"
              for (policy, run, target), row in speeds.iterrows()]  # fmt: skip
    return lines


def _prediction_markdown(prediction: pd.DataFrame, settings: ValidationSettings) -> list[str]:
    """The report's verdict: each real run against its out-of-sample prediction."""
    passed = int((prediction["verdict"] == "pass").sum())
    lines = [
        "",
        f"## Out of sample: each real run predicted without its own data ({passed} of {len(prediction)} runs pass)",
        "",
        f"Each run is simulated {settings.prediction_draws} times from what was known without it: the calibration"
        + (f", an anchor ({settings.anchor_seconds:g} s of quiet probes just before the run, by which its speeds are scaled)"
           if settings.anchor_seconds else "")
        + ", the drift the other runs showed against the calibration in each load state (a log-normal factor per state "
        "and draw, centred on their mean; `drift sd` is its standard deviation, from `drift runs` other runs pooled with a "
        f"prior of {PRIOR_LOG_SD:.0%} counted as {PRIOR_RUNS:g} run), and the server cost of the other runs of the "
        "policy. Each figure's interval holds the middle "
        f"{INTERVAL:.0%} of the draws: drift, the machine's noise and a run's own sampling noise. A figure passes inside "
        f"its interval or, p50 and p99, within {TOLERANCE:.0%} of the predicted median; a run passes when all three do. "
        "Half-width: half the p99 interval over the predicted p99 (a pass earned by a wide interval says little). Left out of "
        "the interval: the error of the calibration's relative speeds and of the fitted slice, noise and idle slowdown.",
        "",
        "| policy | run | anchor (1: none) | drift sd (runs) | p50 ms real / predicted [interval] | p99 ms real / predicted [interval] | "
        "half-width | miss % real / predicted [interval] | verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in prediction.itertuples(index=False):
        cells = [f"{getattr(row, f'real_{p}_ms'):.3f} / {getattr(row, f'pred_{p}_ms'):.3f} [{getattr(row, f'{p}_low'):.3f}, "
                 f"{getattr(row, f'{p}_high'):.3f}] ({getattr(row, f'{p}_error'):+.0%})" for p in ("p50", "p99")]  # fmt: skip
        miss = (f"{100 * row.real_miss_rate:.2f} / {100 * row.pred_miss_rate:.2f} [{100 * row.miss_low:.2f}, "
                f"{100 * row.miss_high:.2f}]")  # fmt: skip
        lines.append(f"| {row.policy} | {row.run + 1} | {row.anchor:.3f} | {row.drift_sd:.3f} ({row.drift_runs}) | {cells[0]} | "
                     f"{cells[1]} | {row.p99_half_width:.0%} | {miss} | {row.verdict} |")
    return lines


def _comparison_markdown(comparison: pd.DataFrame, real_runs: int) -> list[str]:
    """The report's comparison table: each policy's percentiles, miss rates and level shares,
    real against simulated."""
    lines = [
        "",
        f"## In sample, a diagnostic: real vs simulated with each run's own speeds and server cost (pass: p50 and p99 within "
        f"{TOLERANCE:.0%} or within the floor, miss rates within each other's 95 % interval)",
        "",
        "Not the verdict: here each run is simulated at the speeds its own requests were served at, with its own server "
        "cost, so the mean is fitted to what is compared and only the shape is tested. Real: pooled over the real runs. Floor: how far one real run's percentile lies from the pooled one, the largest "
        "over the runs: what this machine varies by itself, run to run, on the same arrivals and schedule.",
        "",
        "| policy | requests | p50 ms real / sim | p90 ms real / sim | p99 ms real / sim | KS | miss % real [CI] | miss % sim [CI] | "
        "level shares real / sim | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in comparison.itertuples(index=False):
        cells = [
            f"{getattr(row, f'real_{p}_ms'):.3f} / {getattr(row, f'sim_{p}_ms'):.3f} ({getattr(row, f'{p}_error'):+.0%}; "
            f"{floor_text(getattr(row, f'{p}_floor'), real_runs)})"
            for p in ("p50", "p90", "p99")
        ]
        miss = [
            f"{100 * getattr(row, f'{side}_miss_rate'):.2f} [{100 * getattr(row, f'{side}_miss_low'):.2f}, "
            f"{100 * getattr(row, f'{side}_miss_high'):.2f}]"
            for side in ("real", "sim")
        ]
        levels = sorted(int(c.removeprefix("real_share_L")) for c in comparison.columns if c.startswith("real_share_L"))
        shares = " / ".join(
            "-".join(f"{getattr(row, f'{side}_share_L{k}'):.0%}" for k in levels) for side in ("real", "sim")
        )
        lines.append(f"| {row.policy} | {row.requests} | {' | '.join(cells)} | {row.ks_distance:.3f} | {' | '.join(miss)} | "
                     f"{shares} | {row.verdict} |")
    return lines


def _memory_markdown(level_bytes: np.ndarray, bandwidth: float, residency: pd.DataFrame, build_ms: list[float]) -> list[str]:
    """The report's memory section: evictions, and each level's reloads against the model's time."""
    sizes_mb = np.asarray(level_bytes, dtype=float) / 1e6
    lines = [
        "",
        "## Memory: what the real server evicted and reloaded",
        "",
        f"The memory schedule played for real: levels that no longer fit were taken out of the served model at once; "
        f"they came back one at a time, sparsest first, each after reading its extra non-zeros paced at {bandwidth:g} MB/s "
        "(the simulator's model: the profile's bytes over the bandwidth). "
        f"{int((residency['event'] == 'evicted').sum())} evictions in all the runs. Building a level's kernels from the "
        "non-zeros read is not part of the model, so the reload gives back kernels built before the runs; the last "
        "column is what building them took here, which a deployment that stores the kernels' own format does not pay.",
        "",
        "| level | extra MB | modelled ms | reloads | read ms mean / max | building the kernels ms |",
        "|---|---|---|---|---|---|",
    ]
    for level in range(len(sizes_mb)):
        extra_mb = reload_mb(sizes_mb, level)
        done = residency[(residency["event"] == "reloaded") & (residency["level"] == level)]
        read = f"{done['read_ms'].mean():.1f} / {done['read_ms'].max():.1f}" if len(done) else "-"
        lines.append(f"| {level} | {extra_mb:.3g} | {extra_mb / bandwidth * 1e3:.1f} | {len(done)} | {read} | {build_ms[level]:.1f} |")
    return lines


def _slicing_markdown(slicing: Slicing) -> list[str]:
    """The time-slicing section of report.md: the fitted slice, and each loaded state's queued
    speed and probe times per level, queued and woken (:mod:`simqos.validate.slicing`)."""
    if not len(slicing.table):
        return []
    lines = [
        "",
        "## CPU time-slicing under competitors",
        "",
        "Under competing processes the server gets the core a slice at a time and waits out the competitors' turns "
        "between its slices; a request that finds it idle is scheduled at once with a whole slice, one that queued "
        "continues the slice left. A state's *queued speed* at a level is what the profile predicts for the probes that "
        "queued behind another, over the time they took: the share of the core that queued work gets. The slice is the "
        "one for which the simulator's model, run on the probes in the order they came, gives times closest to the "
        f"measured ones: **{slicing.slice_ms:g} ms** (`device.slice_ms`), with a woken request first waiting "
        f"{_wake_words(slicing.wake_wait)} of the rest of the running competitor's slice, by the number of competitors "
        "(`device.wake_wait`: under one the scheduler places a woken thread behind the running one). How close: the model's fastest probe against "
        "the measured fastest, its second against the second, and so on, lie on average "
        f"{slicing.distance:.1%} of the mean time apart (each state, level, queued and woken group weighing the same; a "
        f"group of fewer than {MIN_GROUP} probes is left out), where a speed factor alone lies "
        f"{slicing.unsliced_distance:.1%}. The simulation serves each level at its own queued speed and slices it so. "
        "`slicing.csv` has the table.",
        "",
        "| target speed | level | probes | queued speed | mean ms | model mean ms | p90 ms | model p90 ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [f"| {row.target_speed:g} | {row.level} | {row.probes} {'woken' if row.woken else 'queued'} | {row.queued_speed:.3f} | "
              f"{row.mean_ms:.2f} | {row.model_mean_ms:.2f} | {row.p90_ms:.2f} | {row.model_p90_ms:.2f} |"
              for row in slicing.table.itertuples(index=False)]  # fmt: skip
    return lines


def _wake_words(wake_wait: list[float]) -> str:
    """``device.wake_wait`` in words: "90 % (1 competitor), 0 % (2 or more)"."""
    if not wake_wait:
        return "none (not measured)"
    last = len(wake_wait) - 1
    return ", ".join(f"{f:.0%} ({n + 1} competitor{'s' if n else ''}{' or more' if n == last else ''})" for n, f in enumerate(wake_wait))


def _idle_markdown(profiled: tuple[np.ndarray, np.ndarray], measured: tuple[np.ndarray, np.ndarray] | None) -> list[str]:
    """The report's idle-slowdown section: the profile's table against the one measured at the
    scenario's rate (:mod:`simqos.validate.idle`), each level's factor by idle gap."""
    lines = ["", "## The idle slowdown at the scenario's rate", ""]
    if measured is None:
        return lines + ["Not measured (too few probes found the device busy); the simulation used the profile's."]
    lines += [
        "How much longer a request runs after the device idled a gap than a queued one, as the profile measured it "
        "(after a long back-to-back streak) and as the calibration's probes at the scenario's gaps showed it; the real "
        "server and the simulation used the measured one (`calibrated-profile/`, the profile with it as `idle.csv`).",
        "",
        "| level | idle ms | profile | measured here |",
        "|---|---|---|---|",
    ]
    for level in range(len(profiled[1])):
        for j, gap in enumerate(measured[0]):
            before = profiled[1][level][list(profiled[0]).index(gap)] if gap in profiled[0] else float("nan")
            lines.append(f"| {level} | {gap:g} | {before:.2f} | {measured[1][level][j]:.2f} |")
    return lines
