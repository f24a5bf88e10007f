"""simqos validate: the load generator (its arithmetic, and that it always stops), and a short
real validation run end to end through the CLI — checking the bookkeeping and that the
comparison is computed, not that this machine is quiet."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from simqos.cli import app
from simqos.scenario import Device
from simqos.validate.loadgen import CFS_WEIGHTS, LoadGenerator, competitors_for

runner = CliRunner()


@pytest.mark.parametrize("speed, count, nice", [(1.0, 0, 0), (0.5, 1, 0), (0.25, 3, 0), (1 / 9, 8, 0)])
def test_competitors_for_whole_shares(speed, count, nice):
    plan = competitors_for(speed)
    assert (plan.count, plan.nice) == (count, nice) and plan.expected == pytest.approx(speed)


def test_competitors_for_a_fraction_uses_nice():
    plan = competitors_for(0.3)
    assert abs(plan.expected - 0.3) < 0.01
    assert plan.expected == pytest.approx(CFS_WEIGHTS[0] / (CFS_WEIGHTS[0] + plan.count * CFS_WEIGHTS[plan.nice]))


@pytest.mark.parametrize("speed", [1.5, 0.05])
def test_speeds_that_cannot_be_played(speed):
    with pytest.raises(ValueError, match="cannot be produced here"):
        competitors_for(speed)


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")  # a zombie runs nothing; reaping it is its new parent's business


def test_competitors_stop_when_the_block_fails():
    with pytest.raises(RuntimeError, match="boom"):
        with LoadGenerator([0.5, 0.25]) as load:
            load.apply(0.25)
            pids = load.pids
            assert len(pids) == 1 + 3 and not any(_gone(p) for p in pids)
            raise RuntimeError("boom")
    assert all(_gone(p) for p in pids)


def test_competitors_stop_when_their_parent_is_killed():
    script = (
        "import sys, time\n"
        "from simqos.validate.loadgen import LoadGenerator\n"
        "g = LoadGenerator([0.5]).__enter__()\n"
        "g.apply(0.5)\n"
        "print(*g.pids, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    pids = [int(p) for p in parent.stdout.readline().split()]
    assert pids and not any(_gone(p) for p in pids)
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.time() + 5
    while time.time() < deadline and not all(_gone(p) for p in pids):
        time.sleep(0.05)
    assert all(_gone(p) for p in pids), "a competitor outlived its parent"


def _scenario(tmp_path, profile, **extra):
    raw = {
        "name": "tiny-validation", "seed": 3, "profile": str(profile), "requests": 100,
        "workload": {"arrival": {"kind": "poisson", "rate_hz": 200}, "deadline": {"kind": "constant", "ms": 5}},
        "device": {"speed": {"kind": "markov", "states": [{"speed": 1.0, "mean_dwell_s": 0.3}, {"speed": 0.5, "mean_dwell_s": 0.2}]}},
        "policies": [{"kind": "static", "level": 0}, {"kind": "deadline_aware", "quantile": 0.9}, {"kind": "clairvoyant"}],
        **extra,
    }
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_a_short_validation_run(tmp_path, tiny_profile_dir):
    out = tmp_path / "v"
    (tmp_path / "v.profile").mkdir()  # a user's folder where a re-profiled bundle would go: not simqos's to move
    (tmp_path / "v.profile" / "theirs.txt").write_text("keep me")
    result = runner.invoke(app, ["validate", str(_scenario(tmp_path, tiny_profile_dir)), "--seconds", "1.5",
                                 "--noise-seconds", "1", "--sim-replications", "2", "--probes", "20", "--anchor-seconds", "0.2",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "clairvoyant policies left out" in result.output
    for name in ("report.md", "comparison.csv", "calibration.csv", "schedule.csv", "real_records.csv", "sim_records.csv.gz",
                 "plots/validation_ccdf.png"):
        assert (out / name).exists(), name
    assert not (tmp_path / "v.partial").exists()
    assert (tmp_path / "v.profile" / "theirs.txt").read_text() == "keep me" and not (out / "profile").exists()
    real = pd.read_csv(out / "real_records.csv", dtype={"route": str})
    sim = pd.read_csv(out / "sim_records.csv.gz", dtype={"route": str})
    policies = ["static L0", "deadline_aware (q0.9)"]
    assert list(dict.fromkeys(real["policy"])) == policies
    per_run = real.groupby(["policy", "replication"]).size()
    assert len(per_run) == 4 and per_run.nunique() == 1 and per_run.iloc[0] > 100  # two real runs, the same arrivals
    assert len(sim) == len(real)  # one latency draw for each real run's schedule
    for policy in policies:  # the simulation replays the real arrivals and deadlines
        r = real[(real["policy"] == policy) & (real["replication"] == 0)]
        s = sim[(sim["policy"] == policy) & (sim["replication"] == 1)]
        assert r["arrival_s"].to_numpy() == pytest.approx(s["arrival_s"].to_numpy())
        assert r["deadline_s"].to_numpy() == pytest.approx(s["deadline_s"].to_numpy())
    served = real[real["outcome"] != "dropped"]
    assert (served["finish_s"] >= served["start_s"]).all() and (served["start_s"] >= served["arrival_s"] - 1e-3).all()
    assert set(real.loc[real["policy"] == "static L0", "route"].dropna()) <= {"0-0-0"}
    calibration = pd.read_csv(out / "calibration.csv")
    states = calibration.drop_duplicates(["target_speed", "gaps"])
    assert list(states["target_speed"]) == [1.0, 1.0, 0.5] and list(states["competitors"]) == [0, 0, 1]
    levels = sorted(real["route"].dropna().str.split("-").explode().astype(int).unique())
    assert len(calibration) == 3 * len(set(levels) | {0, 1})  # every state measured at every level
    assert (calibration.groupby(["target_speed", "gaps"])["level"].apply(list) == [[0, 1]] * 3).all()
    assert (calibration["measured_speed"] > 0).all()
    schedule = pd.read_csv(out / "schedule.csv")
    assert set(schedule["policy"]) == set(policies) and schedule["measured_speed"].notna().all()
    comparison = pd.read_csv(out / "comparison.csv")
    assert list(comparison["policy"]) == policies
    assert comparison["ks_distance"].between(0, 1).all() and set(comparison["verdict"]) <= {"pass", "fail"}
    assert (comparison[["p50_floor", "p90_floor", "p99_floor"]] >= 0).all().all()
    schedule_runs = schedule.groupby("policy")["run"].unique()
    assert all(sorted(runs) == [0, 1] for runs in schedule_runs)
    report = (out / "report.md").read_text()
    assert "## Out of sample: each real run predicted without its own data" in report and "## In sample, a diagnostic" in report
    prediction = pd.read_csv(out / "prediction.csv")
    assert len(prediction) == 4 and set(prediction["drift_runs"]) == {3}  # each run predicted from the three others
    for p in ("p50", "p99", "miss"):
        assert (prediction[f"{p}_low"] <= prediction[f"{p}_high"]).all()
    assert set(prediction["verdict"]) <= {"pass", "fail"} and (prediction["anchor"] > 0).all()
    passed = prediction.groupby("policy")["verdict"].apply(lambda v: (v == "pass").all())
    assert list(comparison["verdict"]) == ["pass" if passed[p] else "fail" for p in policies]  # the verdict is out of sample
    assert set(comparison["in_sample_verdict"]) <= {"pass", "fail"}
    assert "Out of sample:" in result.output
    probes = pd.read_csv(out / "calibration_probes.csv")
    idle = probes[(probes["target_speed"] == 1.0) & (probes["gaps"] != "none")]
    assert len(idle) > 20 and idle["begin_s"].max() > 0.9  # the idle state ran for --noise-seconds
    noise = yaml.safe_load((out / "noise.yaml").read_text())["noise"]
    Device(noise=noise)  # what validate measured is a device.noise a scenario accepts
    assert "The machine's own noise" in report and "## The idle slowdown at the scenario's rate" in report
    if (out / "calibrated-profile").exists():  # enough probes found the device busy: served and simulated with it
        from simqos.bundle import load_profile

        assert load_profile(out / "calibrated-profile").idle is not None and "measured here" in report
    else:
        assert "the profile's is used" in report


def test_a_validation_under_memory_pressure(tmp_path, tiny_profile_dir):
    """The memory schedule is played for real: levels are evicted and reloaded, reloads read
    for at least the model's time, static level 0 waits for its level, and the simulation
    replays the memory as it was applied."""
    from simqos.bundle import load_profile

    sizes_mb = load_profile(tiny_profile_dir).layers.groupby("level")["weight_bytes"].sum().sort_index().to_numpy() / 1e6
    bandwidth = (sizes_mb[0] - sizes_mb[1]) / 0.04  # level 0's extra weights: 40 ms to reload
    memory = {"kind": "markov", "states": [{"name": "free", "memory_mb": float(sizes_mb[0] * 1.5), "mean_dwell_s": 0.3},
                                           {"name": "tight", "memory_mb": float(sizes_mb[1] * 1.2), "mean_dwell_s": 0.2}]}
    scenario = _scenario(tmp_path, tiny_profile_dir, device={"memory": memory, "storage_bandwidth_mb_s": float(bandwidth)})
    out = tmp_path / "v"
    result = runner.invoke(app, ["validate", str(scenario), "--seconds", "2", "--noise-seconds", "1", "--sim-replications", "2",
                                 "--probes", "20", "--anchor-seconds", "0.1", "--prediction-draws", "4", "--out", str(out)])
    assert result.exit_code == 0, result.output
    applied = pd.read_csv(out / "memory_schedule.csv")
    assert set(applied["policy"]) == {"static L0", "deadline_aware (q0.9)"} and applied["memory_mb"].nunique() == 2
    log = pd.read_csv(out / "residency.csv")
    reloads = log[log["event"] == "reloaded"]
    assert (log["event"] == "evicted").any() and len(reloads) > 0
    assert (reloads["level"] == 0).all() and (reloads["read_ms"] >= 39).all()
    real = pd.read_csv(out / "real_records.csv", dtype={"route": str})
    sim = pd.read_csv(out / "sim_records.csv.gz", dtype={"route": str})
    for records in (real, sim):  # static level 0 waits out every eviction, on both sides
        assert records.loc[records["policy"] == "static L0", "latency_ms"].max() > 20
    adaptive = real[real["policy"] == "deadline_aware (q0.9)"]
    assert adaptive["route"].str.contains("1").any()  # rerouted around the evicted level
    assert "Memory: what the real server evicted and reloaded" in (out / "report.md").read_text()


@pytest.mark.parametrize("extra, fragment", [
    ({"device": {"speed": {"kind": "constant", "speed": 2.0}}}, "device.speed"),
    ({"policies": [{"kind": "clairvoyant"}]}, "only clairvoyant policies"),
])
def test_what_cannot_be_played_is_refused(tmp_path, tiny_profile_dir, extra, fragment):
    result = runner.invoke(app, ["validate", str(_scenario(tmp_path, tiny_profile_dir, **extra)), "--out", str(tmp_path / "v")])
    assert result.exit_code == 2 and fragment in result.output, result.output
    assert not (tmp_path / "v").exists()


def test_validate_profiles_this_machine_from_the_recipe(tmp_path, tiny_profile_dir):
    """--reprofile measures the bundle's own network again here (built from its recipe, with its
    settings) and keeps that profile with the comparison."""
    from simqos.bundle import load_profile

    out = tmp_path / "v"
    result = runner.invoke(app, ["validate", str(_scenario(tmp_path, tiny_profile_dir, requests=50)), "--seconds", "0.5",
                                 "--noise-seconds", "1", "--sim-replications", "1", "--probes", "5", "--reprofile", "--out", str(out)])
    assert result.exit_code == 0, result.output
    shipped, here = load_profile(tiny_profile_dir).meta.provenance, load_profile(out / "profile").meta.provenance
    assert here.recipe == shipped.recipe and here.settings == shipped.settings
    assert here.command.startswith("simqos validate ") and "--reprofile" in here.command
    assert not (tmp_path / "v.profile").exists()


def test_a_bundle_without_a_recipe_is_refused(tmp_path):
    from bundles import write_bundle

    bundle = write_bundle(tmp_path / "hand", {("a", k): [1.0, 1.1] for k in range(2)}, {"a": 0})
    result = runner.invoke(app, ["validate", str(_scenario(tmp_path, bundle)), "--out", str(tmp_path / "v")])
    assert result.exit_code == 2 and "records no recipe" in result.output, result.output
    assert not (tmp_path / "v").exists()


def test_a_busy_machine_is_named(tmp_path, tiny_profile_dir, monkeypatch):
    """The calibration's first row (no competing load) ran at half the profile's speed, as on a
    machine with other work: validate says so while it runs, and in its notes and report."""
    import simqos.validate.run as validate_run

    real_calibrate = validate_run.calibrate

    def on_a_busy_machine(*args, **kwargs):
        table, probes = real_calibrate(*args, **kwargs)
        table.loc[table["gaps"] == "none", "measured_speed"] = 0.5
        return table, probes

    monkeypatch.setattr(validate_run, "calibrate", on_a_busy_machine)
    out = tmp_path / "v"
    result = runner.invoke(app, ["validate", str(_scenario(tmp_path, tiny_profile_dir, requests=50)), "--seconds", "0.5",
                                 "--noise-seconds", "1", "--sim-replications", "1", "--probes", "5", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "validate: warning: with no competing load, this machine ran level 0 at 0.50 of the profile's speed" in result.output
    assert "note: with no competing load" in result.output
    assert "it is busy" in (out / "report.md").read_text()


def test_a_machine_busy_for_real_is_named(tmp_path, tiny_profile_dir):
    """Two other processes spinning on the serving core the whole time, as on a machine with
    other work: the calibration's back-to-back probes with no load of validate's own get about a
    third of the core (3,000 probes of the tiny model span many scheduler slices: a few fit in
    one), and validate warns that the machine is busy. Two, not one: the tiny profile itself may
    have been measured while the suite's other worker loaded the machine, and half the core
    against a slow profile can still look quiet."""
    from simqos.validate.loadgen import serving_core

    spin = "import os, time\nos.sched_setaffinity(0, {%d})\nwhile True:\n    pass\n" % serving_core()
    busy = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(2)]
    try:
        time.sleep(0.5)
        out = tmp_path / "v"
        result = runner.invoke(app, ["validate", str(_scenario(tmp_path, tiny_profile_dir, requests=50)), "--seconds", "0.5",
                                     "--noise-seconds", "0.5", "--sim-replications", "1", "--probes", "3000", "--out", str(out)])
    finally:
        for process in busy:
            process.kill()
            process.wait()
    assert result.exit_code == 0, result.output
    assert "validate: warning: with no competing load, this machine ran level 0 at 0." in result.output
    assert "it is busy" in result.output and "it is busy" in (out / "report.md").read_text()
    calibration = pd.read_csv(out / "calibration.csv")
    assert calibration.loc[calibration["gaps"] == "none", "measured_speed"].iloc[0] < 0.85


def test_the_floor_is_how_far_one_real_run_lies_from_the_pooled_one():
    from simqos.validate.compare import TOLERANCE, real_floor, within

    def records(latencies_by_run):
        return pd.DataFrame([{"policy": "a", "warmup": False, "replication": run, "latency_ms": x}
                             for run, xs in enumerate(latencies_by_run) for x in xs])

    two = records([[10.0] * 50, [12.0] * 50])
    assert real_floor(two, "a", 50, 11.0) == pytest.approx(1 / 11)  # each run 1 ms from the pooled 11 ms
    assert real_floor(records([[10.0] * 50]), "a", 50, 10.0) == 0.0  # one run: no floor
    assert real_floor(records([[10.0] * 50, [np.nan] * 50]), "a", 50, 10.0) == 0.0  # a run that served nothing
    assert within(TOLERANCE, 0.0) and not within(TOLERANCE + 0.01, 0.0)
    assert within(-0.15, 0.2) and not within(0.25, 0.2)  # the floor widens the band when it is the larger


def test_a_runs_served_speed_is_its_requests_predicted_work_over_their_time(tmp_path):
    """Two segments at exactly 2 ms (level 0) and 1 ms (level 1): a request on route 0-1 is
    predicted 3 ms of work — 4 ms where level 1 runs at half level 0's speed — plus the server's
    own cost, spread over the segments; the state it started in is the schedule's at its start, and a state with fewer
    than MIN_SERVED requests is left to the calibration."""
    from bundles import scenario_dict, write_bundle
    from simqos.sim.plan import build_plan
    from simqos.scenario import parse_scenario
    from simqos.validate.compare import MIN_SERVED, served_speeds

    bundle = write_bundle(tmp_path / "b", {("a", 0): [2.0], ("b", 0): [2.0], ("a", 1): [1.0], ("b", 1): [1.0]}, {"a": 0, "b": 1})
    plan = build_plan(parse_scenario(scenario_dict(bundle)))
    quick = MIN_SERVED + 5  # requests in the first state (speed 1): route 0-0, 4 ms of work in 5 ms
    slow = MIN_SERVED - 1  # then at target 0.5: too few to read
    start = np.arange(1, quick + slow + 1) * 0.1  # the first after 0: it too finds the server idle
    took_ms = np.r_[np.full(quick, 5.0), np.full(slow, 8.0)]
    real = pd.DataFrame({"arrival_s": start, "start_s": start, "finish_s": start + took_ms / 1e3,
                         "route": ["0-0"] * quick + ["0-1"] * slow, "overhead_work_ms": 0.0})
    real.loc[len(real)] = [0.0, np.nan, np.nan, "", np.nan]  # dropped: not served, not counted
    applied = pd.DataFrame({"t_s": [0.0, quick * 0.1 + 0.05], "target_speed": [1.0, 0.5]})
    by_level = {1.0: np.array([1.0, 1.0]), 0.5: np.array([1.0, 0.5])}
    assert served_speeds(plan, real, applied, by_level) == pytest.approx({1.0: 0.8})
    real.loc[quick:, "overhead_work_ms"] = 1.0
    more = pd.concat([real, real.iloc[quick : quick + 1]], ignore_index=True).sort_values("start_s")  # now enough at 0.5
    # 2 ms at level 0, 1 ms at level 1 running at half speed, and the server's 1 ms spread over the two segments as
    # the simulation charges it (half of it at half speed): 5.5 ms of work in 8 ms
    assert served_speeds(plan, more, applied, by_level)[0.5] == pytest.approx(5.5 / 8.0)
    # with slices of 2 ms a request that arrived to an idle server ran a whole slice, then waited a competitor's turn
    # before each of the next two (5.5 ms: 2, 2 and 1.5, 4 ms of turns' slices), leaving 0.5 ms: every one here but the
    # copy, which arrived while its original ran, ran that 0.5 and then three slices (6 ms); at target 1 nothing competes.
    # The share a of the quiet state's speed (0.8) solves 160 ms = (a 110 + (1 - a) waited) / (a 0.8)
    sliced = build_plan(parse_scenario(scenario_dict(bundle, device={"slice_ms": 2.0})))
    waited = 19 * 4.0 + 6.0
    share = waited / (160 * 0.8 - 110 + waited)
    assert served_speeds(sliced, more, applied, by_level) == pytest.approx({1.0: 0.8, 0.5: 0.8 * share})
    # each arrived as the one before started: it continues the slice left, and the 20 at 0.5 (from a slice's end)
    # make five whole cycles of 6, 6, 6 and 4 ms of turns' slices, as much as their work: the speed a factor gives
    queued = more.assign(arrival_s=more["start_s"].shift(1, fill_value=0.0))
    assert served_speeds(sliced, queued, applied, by_level) == pytest.approx({1.0: 0.8, 0.5: 5.5 / 8.0})
    # a loaded state that ran as fast as the quiet one (a machine busy with other work slows the quiet state too): no
    # share below 1 explains it, and its plain speed stands (a negative share once crashed the simulation)
    fast = more.assign(finish_s=more["start_s"] + np.where(more["start_s"] > quick * 0.1 + 0.05, 5.0, 8.0) / 1e3)
    assert served_speeds(sliced, fast, applied, by_level) == pytest.approx({1.0: 4.0 / 8.0, 0.5: 5.5 / 5.0})
