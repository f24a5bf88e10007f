"""Slips of units are warned about, naming the field, the value and its meaning; the shipped
scenarios raise none; and a run with such values still completes (a deadline slipped into 10^41
ms once made the lookahead's tables sample the speed process for ever, and the dp's lookup cast
a float past int64 and crashed the compiled path)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from bundles import scenario_dict, write_bundle
from simqos.cli import app
from simqos.sim.execution import run_plan
from simqos.sim.plan import build_plan
from simqos.scenario import load_scenario, parse_scenario

ROOT = Path(__file__).resolve().parent.parent
MARKOV = {"speed": {"kind": "markov", "states": [{"speed": 1.0, "mean_dwell_s": 0.05}, {"speed": 0.5, "mean_dwell_s": 0.02}]}}


def _warnings(two_level, **overrides) -> list[str]:
    return list(build_plan(parse_scenario(scenario_dict(two_level, **overrides))).warnings)


def test_the_shipped_scenarios_raise_no_warning_but_the_one_they_mean():
    meant = {"validate-memory.yaml": ("device.memory.states[2].memory_mb (severe): 2 MB holds no level",)}  # "nothing fits, requests wait"
    for path in sorted((ROOT / "scenarios").glob("*.yaml")):
        if not path.name.endswith(".sweep.yaml"):
            warnings = build_plan(load_scenario(path)).warnings
            assert len(warnings) == len(meant.get(path.name, ())), (path.name, warnings)
            assert all(w.startswith(m) for w, m in zip(warnings, meant.get(path.name, ()))), (path.name, warnings)


def test_a_deadline_that_the_idle_slowdown_puts_out_of_reach(tmp_path):
    """Back to back the fastest route takes 1 ms (level 1's 0.5 + 0.5); frames 100 ms apart find
    the device idle ~99 ms, after which the idle table slows level 1 by 1 + 3 x 1.5 = 5.5: 5.5 ms
    against a 3 ms deadline."""
    samples = {(name, k): [1.0 / (k + 1)] * 5 for name in ("a", "b") for k in (0, 1)}
    bundle = write_bundle(tmp_path / "idle", samples, {"a": 0, "b": 1}, idle_factor={0.0: 1.0, 50.0: 4.0})
    workload = {"arrival": {"kind": "periodic", "fps": 10}, "deadline": {"kind": "constant", "ms": 3}}
    (warning,) = build_plan(parse_scenario(scenario_dict(bundle, workload=workload))).warnings
    assert warning.startswith("workload.deadline: the deadline is 3 ms") and "idle for about 99 ms" in warning
    assert "slows it to 5.5 ms" in warning
    workload["deadline"]["ms"] = 6
    assert build_plan(parse_scenario(scenario_dict(bundle, workload=workload))).warnings == ()


def test_a_memory_state_that_holds_no_level_and_memory_written_in_kb(two_level):
    """two_level holds 1000 bytes at level 0 and 500 at level 1: 0.001 and 0.0005 MB."""
    memory = {"kind": "markov", "states": [{"name": "free", "memory_mb": 0.002, "mean_dwell_s": 1},
                                           {"name": "squeezed", "memory_mb": 0.0004, "mean_dwell_s": 0.1}]}
    (warning,) = _warnings(two_level, device={"speed": {"kind": "constant", "speed": 1.0}, "memory": memory})
    assert warning.startswith("device.memory.states[1].memory_mb (squeezed): 0.0004 MB holds no level")
    memory = {"kind": "constant", "memory_mb": 2.0}  # 2,000x level 0: meant 2 KB?
    (warning,) = _warnings(two_level, device={"speed": {"kind": "constant", "speed": 1.0}, "memory": memory})
    assert warning.startswith("device.memory: at least 2 MB in every state") and "in KB" in warning


def test_a_speed_in_percent(two_level):
    device = {"speed": {"kind": "markov", "states": [{"speed": 100, "mean_dwell_s": 0.05}, {"speed": 40, "mean_dwell_s": 0.02}]}}
    first, second = _warnings(two_level, device=device)
    assert first.startswith("device.speed.states[0].speed: 100 means a device 100 times faster") and "not a percentage" in first
    assert second.startswith("device.speed.states[1].speed: 40 means")


def test_a_sigma_in_ms(two_level):
    workload = {"arrival": {"kind": "poisson", "rate_hz": 100}, "deadline": {"kind": "lognormal", "median_ms": 20, "sigma": 40}}
    (warning,) = _warnings(two_level, workload=workload)
    assert warning.startswith("workload.deadline.sigma: 40 puts the 99th-percentile deadline at") and "not a spread in ms" in warning


def test_a_deadline_no_route_can_meet(two_level):
    """The two-level bundle's fastest route needs 1 ms (two layers of at least 0.5 ms)."""
    workload = {"arrival": {"kind": "poisson", "rate_hz": 100}, "deadline": {"kind": "constant", "ms": 0.006}}
    (warning,) = _warnings(two_level, workload=workload)
    assert "the deadline is 0.006 ms, but the fastest route" in warning and "every request will miss" in warning
    assert _warnings(two_level, workload={**workload, "deadline": {"kind": "constant", "ms": 1.2}}) == []


def test_a_sample_size_without_a_sample(two_level):
    (warning,) = _warnings(two_level, outputs={"records": "all", "sample_requests": 500})
    assert warning.startswith("outputs.sample_requests: 500 has no effect with outputs.records: all")
    assert _warnings(two_level, outputs={"records": "sample", "sample_requests": 500}) == []
    assert _warnings(two_level, outputs={"records": "none"}) == []
    copied = parse_scenario(parse_scenario(scenario_dict(two_level, outputs={"records": "none"})).model_dump())
    assert build_plan(copied).warnings == ()  # as `simqos run --requests` copies it: every field set, none changed


def test_a_records_format_without_records(two_level):
    (warning,) = _warnings(two_level, outputs={"records": "none", "records_format": "csv"})
    assert warning.startswith("outputs.records_format: csv has no effect with outputs.records: none")
    assert _warnings(two_level, outputs={"records": "sample", "records_format": "csv"}) == []


def test_trace_times_in_ms(two_level, tmp_path):
    speed = tmp_path / "speed.csv"
    speed.write_text("time_s,speed\n0,1\n" + "".join(f"{k * 500},0.5\n{k * 500 + 250},1\n" for k in range(1, 200)))
    (warning,) = _warnings(two_level, requests=2000, device={"speed": {"kind": "trace", "path": str(speed), "after_end": "hold"}})
    assert warning.startswith("device.speed:") and "spans 99750 s, but the run's arrivals last about 20 s" in warning
    arrivals = tmp_path / "arrivals.csv"
    arrivals.write_text("arrival_s\n" + "".join(f"{k * 100}\n" for k in range(1, 3000)))
    workload = {"arrival": {"kind": "trace", "path": str(arrivals)}, "deadline": {"kind": "constant", "ms": 20}}
    (warning,) = _warnings(two_level, requests=2000, workload=workload)
    assert warning.startswith("workload.arrival:") and "one arrival every 100 s" in warning


@pytest.mark.parametrize("policy", ["lookahead", "dp", "queue_dp", "deadline_aware"])
def test_a_run_with_absurd_deadlines_completes(two_level, policy):
    workload = {"arrival": {"kind": "poisson", "rate_hz": 300}, "deadline": {"kind": "lognormal", "median_ms": 3, "sigma": 40}}
    plan = build_plan(parse_scenario(scenario_dict(two_level, requests=3000, workload=workload, device=MARKOV,
                                                   policies=[{"kind": policy}])))
    records = run_plan(plan)
    served = records[records["outcome"] != "dropped"]
    assert len(served) == 3000 and np.isfinite(served["finish_s"]).all()
    early = records["deadline_s"] - records["arrival_s"] < 1e-3
    assert (records.loc[early, "outcome"] == "missed").all() and (records.loc[~early & (records["latency_ms"] < 1), "outcome"] == "met").all()


def test_the_command_line_prints_warnings_and_the_report_keeps_them(two_level, tmp_path):
    import yaml

    workload = {"arrival": {"kind": "poisson", "rate_hz": 100}, "deadline": {"kind": "constant", "ms": 0.006}}
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(scenario_dict(two_level, requests=300, workload=workload)))
    result = CliRunner().invoke(app, ["run", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "warning: " in result.output and "every request will miss" in result.output
    assert "accuracy is unavailable" not in result.output  # every request missed: 0 %, not "no accuracy"
    assert "every request will miss" in (tmp_path / "out" / "report.md").read_text()


def test_a_slice_with_no_competitors(two_level):
    (warning,) = _warnings(two_level, device={"speed": {"kind": "constant", "speed": 1.0}, "slice_ms": 4})
    assert warning.startswith("device.slice_ms: 4 has no effect: device.speed never drops below 1")
    markov = {"kind": "markov", "states": [{"speed": 1.0, "mean_dwell_s": 1}, {"speed": 0.5, "mean_dwell_s": 1}]}
    assert _warnings(two_level, device={"speed": markov, "slice_ms": 4}) == []
