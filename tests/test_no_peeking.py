"""A policy sees only what a deployed system could: its decisions up to a time t do not change
when the inputs after t do — later arrivals, deadlines and latency draws, the device's speed and
memory after t, and the work of the request that starts at t (drawn, but not yet run)."""

from pathlib import Path

import numpy as np
import pytest
import simpy
import yaml
from typer.testing import CliRunner

from simqos.cli import app
from simqos.sim.device import SpeedTrace, Trace
from simqos.sim.inputs import ReplicationInputs, sample_inputs
from simqos.sim.plan import build_plan
from simqos.sim.simpy_model import Recorder, Server
from simqos.scenario import load_scenario

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()

DEPLOYABLE = [
    {"kind": "static", "level": 0},
    {"kind": "greedy"},
    {"kind": "deadline_aware", "quantile": 0.9},
    {"kind": "deadline_aware", "quantile": 0.9, "count_queue": True},
    {"kind": "lookahead"},
    {"kind": "dp"},
    {"kind": "queue_dp", "grid": 8, "queue_grid": 4, "max_queue": 2, "samples": 16, "quantiles": 2},
]


def _decisions(plan, inputs, policy_index):
    """Every decision of the policy: (request, segment, time, level)."""
    recorder = Recorder(plan.policy_factories[policy_index](), None)
    env = simpy.Environment()
    env.process(Server(plan, inputs, recorder).process(env))
    env.run()
    return [(row["request"], row["segment"], row["now_s"], row["chosen"]) for row in recorder.rows]


def _plan(tmp_path, slice_ms):
    raw = yaml.safe_load((ROOT / "scenarios" / "iot.yaml").read_text())
    raw["profile"] = str((ROOT / "scenarios" / raw["profile"]).resolve())
    raw.update({"requests": 400, "warmup_requests": 0, "replications": 1, "policies": DEPLOYABLE})
    raw["device"]["slice_ms"] = slice_ms  # time-slicing: its factors depend on a request's own work
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(raw))
    return build_plan(load_scenario(path))


def _changed_after(inputs: ReplicationInputs, t: float, request: int, rng) -> ReplicationInputs:
    """The same inputs up to ``t``; after it, other arrivals, deadlines, draws, speed and
    memory, and another drawn work for ``request`` (which starts at ``t``)."""
    arrivals, deadlines, work = inputs.arrivals_s.copy(), inputs.deadlines_s.copy(), inputs.work_ms.copy()
    later = arrivals > t
    arrivals[later] = t + np.sort(rng.uniform(0, arrivals[-1] - t, later.sum()))
    deadlines[later] = arrivals[later] + rng.uniform(0.004, 0.03, later.sum())
    work[later] *= rng.uniform(0.5, 2.0, (later.sum(), 1, 1))
    work[request] *= 1.7

    def after(trace: Trace, values: np.ndarray) -> Trace:
        keep = trace.times_s <= t
        times = np.concatenate([trace.times_s[keep], [t + 1e-6], t + 1e-6 + np.cumsum(rng.uniform(0.001, 0.05, 200))])
        return Trace(times, np.concatenate([trace.values[keep], rng.choice(values, 201)]))

    speed = SpeedTrace(after(inputs.speed.trace, np.unique(inputs.speed.trace.values)))
    resident = after(inputs.resident, np.unique(inputs.resident.values))
    share = None if inputs.share is None else after(inputs.share, np.unique(inputs.share.values))
    return ReplicationInputs(arrivals, deadlines, work, speed, inputs.memory_mb, resident, inputs.horizon_s, share)


@pytest.mark.parametrize("slice_ms", [0.0, 0.05])  # slices shorter than a request: its sliced time depends on its work
def test_decisions_up_to_t_ignore_every_input_after_t(tmp_path, slice_ms):
    plan = _plan(tmp_path, slice_ms)
    inputs = sample_inputs(plan, 0)
    rng = np.random.default_rng(1)
    for policy_index, label in enumerate(plan.labels):
        base = _decisions(plan, inputs, policy_index)
        # t: when a request well into the run starts (its first decision), found idle or queued
        for request, _segment, t, _level in [row for row in base if row[1] == 0][150::60][:3]:
            changed = _decisions(plan, _changed_after(inputs, t, request, rng), policy_index)
            before = [row for row in base if row[2] <= t]
            assert [row for row in changed if row[2] <= t] == before, f"{label}: a decision at or before {t:.4f} s saw the inputs after it"


def test_a_replayed_trace_must_state_the_rate_planning_policies_assume(tmp_path):
    arrivals = tmp_path / "arrivals.csv"
    arrivals.write_text("arrival_s\n" + "\n".join(f"{0.02 * i:.3f}" for i in range(1, 400)) + "\n")
    raw = yaml.safe_load((ROOT / "scenarios" / "iot.yaml").read_text())
    raw["profile"] = str((ROOT / "scenarios" / raw["profile"]).resolve())
    raw.update({"requests": 300, "warmup_requests": 0, "replications": 1, "policies": [{"kind": "lookahead"}],
                "outputs": {"plots": False}})
    raw["workload"]["arrival"] = {"kind": "trace", "path": str(arrivals)}
    path, out = tmp_path / "trace.yaml", tmp_path / "out"
    path.write_text(yaml.safe_dump(raw))
    result = runner.invoke(app, ["run", str(path), "--out", str(out)])
    assert result.exit_code == 2 and "workload.arrival.rate_hz" in result.output and "rate_hz: 30" in result.output, result.output
    assert "Traceback" not in result.output and not out.exists()
    raw["workload"]["arrival"]["rate_hz"] = 50
    path.write_text(yaml.safe_dump(raw))
    result = runner.invoke(app, ["run", str(path), "--out", str(out)])
    assert result.exit_code == 0, result.output
