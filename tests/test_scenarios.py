"""Every shipped scenario runs (shortened) through the CLI; one matches a golden summary; a fuzz
set of broken scenarios each gives exit 2 and one line, and writes nothing."""

import copy
from unittest import mock
import sys
import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from simqos.results import read_records
from simqos.cli import app
from simqos.bundle import load_profile
from simqos.errors import SimqosError
from simqos.scenario import load_scenario, override, with_counts
from simqos.sim.service import ServiceModel

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = sorted(p for p in (ROOT / "scenarios").glob("*.yaml") if not p.name.endswith(".sweep.yaml"))
GOLDEN = Path(__file__).parent / "golden" / "iot-short-summary.csv"
runner = CliRunner()


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_shipped_scenario_runs(path, tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(app, ["run", str(path), "--requests", "1500", "--replications", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    for name in ("summary.json", "summary.csv", "replications.csv", "records/r0000-p00.parquet", "scenario.yaml", "report.md", "plots/latency_ccdf.png",
                 "plots/accuracy_vs_percentile.png", "plots/accuracy_frontier.png", "plots/timeline.png",
                 "plots/profile_layers.png", "plots/profile_gap.png"):
        assert (out / name).exists(), name
    raw = yaml.safe_load(path.read_text())
    constant_deadline = raw["workload"]["deadline"]["kind"] == "constant"
    assert (out / "plots" / "nines_vs_deadline.png").exists() == constant_deadline
    assert (out / "plots" / "nines_vs_load.png").exists() == (raw["workload"]["arrival"]["kind"] in ("poisson", "periodic"))
    report = (out / "report.md").read_text()
    assert "Δ accuracy-at-deadline vs" in report and "**Deploy" in report and all(p in report for p in pd.read_csv(out / "summary.csv")["policy"])
    assert f"The device: {load_scenario(path).device.describe()}" in report  # the device in words
    assert not (tmp_path / "out.partial").exists()
    summary = pd.read_csv(out / "summary.csv")
    assert len(summary) == len(yaml.safe_load(path.read_text())["policies"])
    kept = {p.name for p in (out / "experiments").iterdir()}
    assert kept == {"frontier.csv"} | {f"{f}.csv" for f, made in (("nines_vs_deadline", constant_deadline),
                                                                  ("nines_vs_load", (out / "plots" / "nines_vs_load.png").exists())) if made}
    # simqos report only reads and draws: with the simulator out of reach it draws every figure again
    before = {p.name for p in (out / "plots").iterdir()}
    for p in (out / "plots").iterdir():
        p.unlink()
    import simqos.sim.execution

    def refused(*args, **kwargs):
        raise AssertionError("the report simulated")

    with mock.patch.object(simqos.sim.execution, "serve_replication", refused):  # every simulate serves through it
        again = runner.invoke(app, ["report", str(out)])
    assert again.exit_code == 0, again.output
    assert {p.name for p in (out / "plots").iterdir()} == before


def test_iot_matches_its_golden_summary(tmp_path):
    out = tmp_path / "iot"
    result = runner.invoke(app, ["run", str(ROOT / "scenarios" / "iot.yaml"), "--requests", "3000", "--replications", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    # To renew after an intended change: copy summary.csv from the same command over GOLDEN.
    pd.testing.assert_frame_equal(pd.read_csv(out / "summary.csv"), pd.read_csv(GOLDEN), check_exact=False, rtol=1e-6)


BASE = yaml.safe_load((ROOT / "scenarios" / "iot.yaml").read_text())
BASE["profile"] = str((ROOT / "scenarios" / BASE["profile"]).resolve())  # absolute: the test files are written elsewhere


def _set(path, value):
    def change(d):
        *parents, last = path.split(".")
        for p in parents:
            d = d[int(p)] if p.isdigit() else d[p]
        if value is DELETE:
            del d[last]
        else:
            d[last] = value
    return change


DELETE = object()
FUZZ = [
    (_set("workload.arival", {"kind": "poisson"}), "workload.arival: unknown key — did you mean 'arrival'?"),
    (_set("workload.arrival.rate_hz", -3), "workload.arrival.rate_hz"),
    (_set("workload.arrival.rate_hz", "fast"), "workload.arrival.rate_hz"),
    (_set("workload.arrival.kind", "poison"), "'poison' is not one of"),
    (_set("workload.deadline.ms", 0), "workload.deadline.ms"),
    (_set("device.speed.states.1.speed", -0.5), "device.speed.states[1].speed"),
    (_set("device.speed.states.0.sped", 1), "did you mean 'speed'?"),
    (_set("device.storage_bandwidth_mb_s", 0), "device.storage_bandwidth_mb_s"),
    (_set("profile", "no/such/profile"), "no/such/profile is not a profile folder"),
    (_set("workload.arrival", {"kind": "poisson", "rat_hz": 45}), "workload.arrival.rat_hz: unknown key — did you mean 'rate_hz'?"),
    # a key of another kind: never "did you mean" itself; what this kind takes
    (_set("workload.arrival", {"kind": "periodic", "rate_hz": 30}), "workload.arrival.rate_hz: unknown key — kind 'periodic' takes fps"),
    (_set("workload.queue", {"capacity": 8, "colour": "red"}), "workload.queue.colour: unknown key — queue takes capacity, late"),
    (_set("policies", [{"kind": "lookahead", "decision_ms": -2}]), "policies[0].decision_ms: give the device ms charged per decision"),
    (_set("policies", []), "policies"),
    (_set("policies", [{"kind": "static", "level": 7}]), "policies[0].level: 7"),
    (_set("policies", [{"kind": "fastest"}]), "policies[0].kind: 'fastest' is not a registered policy"),
    (_set("policies", [{"kind": "deadline_aware", "quantil": 0.9}]), "policies[0].quantil: unknown key — did you mean 'quantile'?"),
    (_set("policies", [{"kind": "deadline_aware", "count_queues": True}]), "did you mean 'count_queue'?"),
    (_set("policies", [{"kind": "greedy", "speed": 1}]), "policies[0].speed: unknown key — greedy takes quantile"),
    (_set("policies", [{"kind": "static", "level": 0}, {"kind": "static", "level": 0}]), "repeat"),
    (_set("requests", 0), "requests"),
    (_set("warmup_requests", 10**9), "warmup_requests"),
    (_set("replications", 0), "replications"),
    (_set("name", DELETE), "name: required"),
    (_set("workload.arrival", {"kind": "trace", "path": "missing.csv"}), "no such arrivals file"),
    (_set("device.speed", {"kind": "trace", "path": "EMPTY"}), "the trace is empty"),
    (_set("device.memory", {"kind": "trace", "path": "BADCOLS"}), "needs columns time_s and memory_mb"),
    (_set("plugins", ["no_such_plugin"]), "plugins[0]: importing 'no_such_plugin' failed"),
]


@pytest.mark.parametrize("change, fragment", FUZZ, ids=[f[1][:40] for f in FUZZ])
def test_broken_scenarios_exit_2_with_one_line(tmp_path, change, fragment):
    (tmp_path / "EMPTY").write_text("time_s,speed\n")
    (tmp_path / "BADCOLS").write_text("t,mb\n0,1\n")
    raw = copy.deepcopy(BASE)
    change(raw)
    text = yaml.safe_dump(raw).replace("EMPTY", str(tmp_path / "EMPTY")).replace("BADCOLS", str(tmp_path / "BADCOLS"))
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    out = tmp_path / "results"
    result = runner.invoke(app, ["run", str(path), "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert fragment in result.output
    assert result.output.count("\n") == 1 and "Traceback" not in result.output
    assert not out.exists() and not (tmp_path / "results.partial").exists()


def test_every_problem_of_a_scenario_in_one_line():
    """Three mistakes at once are named at once, the misspelt key first, and its "required, but
    missing" twin left out; past MAX_PROBLEMS the rest are counted."""
    from simqos.errors import SimqosError
    from simqos.errors import MAX_PROBLEMS
    from simqos.scenario import parse_scenario

    raw = copy.deepcopy(BASE)
    raw["workload"]["dedline"] = raw["workload"].pop("deadline")
    raw["workload"]["arrival"]["rate_hz"] = -3
    raw["device"]["speed"]["states"][0]["speed"] = 0
    with pytest.raises(SimqosError) as caught:
        parse_scenario(raw)
    message = str(caught.value)
    assert message.startswith("scenario: workload.dedline: unknown key — did you mean 'deadline'?; ")
    assert "workload.arrival.rate_hz" in message and "device.speed.states[0].speed" in message
    assert "missing" not in message and "\n" not in message
    for k in range(MAX_PROBLEMS + 2):
        raw[f"extra_{k}"] = 1
    with pytest.raises(SimqosError) as caught:
        parse_scenario(raw)
    assert str(caught.value).endswith("more") and str(caught.value).count("; ") == MAX_PROBLEMS


@pytest.mark.parametrize("text, fragment", [("{not: [yaml", "not valid YAML"), ("- a list", "YAML mapping")])
def test_unparseable_files(tmp_path, text, fragment):
    path = tmp_path / "s.yaml"
    path.write_text(text)
    result = runner.invoke(app, ["run", str(path)])
    assert result.exit_code == 2 and fragment in result.output
    missing = runner.invoke(app, ["run", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 2 and "no such scenario file" in missing.output


def test_a_users_registered_policy_runs_from_yaml(tmp_path):
    """A Python policy runs on SimPy, the same rule compiled on the fast path: same records,
    and the summary says which engine served each."""
    raw = copy.deepcopy(BASE)
    raw.update(plugins=["user_policies"], requests=500, warmup_requests=0, replications=1, device={},
               outputs={"plots": False},
               policies=[{"kind": "sparsest_after", "segments": 2}, {"kind": "sparsest_after_compiled", "segments": 2}])
    path = tmp_path / "user.yaml"
    path.write_text(yaml.safe_dump(raw))
    result = runner.invoke(app, ["run", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    records = read_records(tmp_path / "out")
    n_segments = ServiceModel.from_profile(load_profile(BASE["profile"])).n_segments
    assert set(records.loc[records["outcome"] != "dropped", "route"]) == {"-".join(["0", "0"] + ["1"] * (n_segments - 2))}
    python, compiled = (records[records["policy"] == p].drop(columns="policy").reset_index(drop=True)
                        for p in ("sparsest_after", "sparsest_after_compiled"))
    pd.testing.assert_frame_equal(python, compiled)
    summary = pd.read_csv(tmp_path / "out" / "summary.csv")
    assert summary.set_index("policy")["engine"].to_dict() == {"sparsest_after": "simpy", "sparsest_after_compiled": "compiled"}
    assert "engine: simpy: sparsest_after; compiled: sparsest_after_compiled" in result.output  # and the terminal says so


def test_a_plugin_beside_the_scenario_file_is_found(tmp_path, monkeypatch):
    """``plugins:`` are looked for next to the scenario file first (before, only on the Python
    path: a plugin beside the scenario failed to import unless run from its folder)."""
    import uuid

    module = f"beside_{uuid.uuid4().hex[:8]}"
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / f"{module}.py").write_text(
        "from simqos.policies import Policy, register_policy\n\n\n"
        f"@register_policy({module!r})\n"
        "class Sparsest(Policy):\n"
        "    def choose(self, state):\n"
        "        return state.n_levels - 1\n"
    )
    raw = copy.deepcopy(BASE)
    raw.update(plugins=[module], requests=300, warmup_requests=0, replications=1, outputs={"plots": False},
               policies=[{"kind": module}])
    (folder / "s.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.chdir(tmp_path)  # not the scenario's folder
    result = runner.invoke(app, ["run", "project/s.yaml", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert module not in sys.modules or str(folder) not in sys.path  # the path was restored
    raw["plugins"] = ["no_such_plugin_anywhere"]
    (folder / "t.yaml").write_text(yaml.safe_dump(raw))
    result = runner.invoke(app, ["run", "project/t.yaml", "--out", str(tmp_path / "out2")])
    assert result.exit_code == 2 and f"looked in {folder.resolve()}, then the Python path" in result.output


def test_report_command(tmp_path):
    out = tmp_path / "r"
    raw = copy.deepcopy(BASE)
    raw.update(requests=600, warmup_requests=0, replications=1, outputs={"plots": False})
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert runner.invoke(app, ["run", str(path), "--out", str(out)]).exit_code == 0
    assert not (out / "report.md").exists()
    result = runner.invoke(app, ["report", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "report.md").exists() and (out / "plots" / "latency_ccdf.png").exists()
    # the report simulates nothing: without the run's experiments/ their figures are left out, and it says why
    assert not (out / "experiments").exists() and not (out / "plots" / "nines_vs_deadline.png").exists()
    assert "nines vs deadline: not in this folder: its run had outputs.plots: false" in (out / "report.md").read_text()
    missing = runner.invoke(app, ["report", str(tmp_path)])
    assert missing.exit_code == 2 and "not a results or sweep folder" in missing.output


def test_a_stopping_rule_through_the_cli(tmp_path):
    raw = yaml.safe_load((ROOT / "scenarios" / "iot.yaml").read_text())
    raw |= {"profile": BASE["profile"], "requests": 1500, "warmup_requests": 100, "replications": 2,
            "precision": {"nines_half_width": 0.001, "max_replications": 4}, "outputs": {"plots": False}}
    path = tmp_path / "precise.yaml"
    path.write_text(yaml.safe_dump(raw))
    out = tmp_path / "out"
    result = runner.invoke(app, ["run", str(path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "Budget spent: 4 replications" in result.output
    stopping = json.loads((out / "summary.json").read_text())["stopping"]
    assert stopping["stopped"] == "budget" and stopping["replications"] == 4
    assert yaml.safe_load((out / "scenario.yaml").read_text())["replications"] == 4
    per = pd.read_csv(out / "replications.csv")
    assert sorted(per["replication"].unique()) == [0, 1, 2, 3] and len(per) == 4 * len(raw["policies"])


def test_override_takes_a_relative_path_from_the_scenario_files_folder(monkeypatch, tmp_path):
    """As the file does, and as the error for a bad profile path says: not from the current folder."""
    scenario = load_scenario(ROOT / "scenarios" / "iot.yaml")
    monkeypatch.chdir(tmp_path)
    assert override(scenario, "profile", "../profiles/mlp-cpu").profile == ROOT / "profiles" / "mlp-cpu"
    counted = with_counts(scenario, requests=100)
    assert override(counted, "profile", "../profiles/mlp-cpu").profile == ROOT / "profiles" / "mlp-cpu"


def test_every_policys_mistake_is_named_in_one_run(tmp_path):
    """A misspelt kind and a misspelt parameter in two policies: one error names both."""
    raw = yaml.safe_load((ROOT / "scenarios" / "iot.yaml").read_text())
    raw["profile"] = str((ROOT / "scenarios" / raw["profile"]).resolve())
    raw["policies"] = [{"kind": "lookahed"}, {"kind": "greedy", "quantle": 0.9}, {"kind": "static", "level": 0}]
    from simqos.scenario import parse_scenario
    from simqos.sim.plan import build_plan

    with pytest.raises(SimqosError) as error:
        build_plan(parse_scenario(raw), "s.yaml")
    message = str(error.value)
    assert "s.yaml: policies[0].kind: 'lookahed' is not a registered policy" in message
    assert "s.yaml: policies[1].quantle: unknown key — did you mean 'quantile'?" in message


def test_an_error_in_a_trace_file_names_the_scenario_and_its_field(tmp_path):
    raw = yaml.safe_load((ROOT / "scenarios" / "iot.yaml").read_text())
    raw["profile"] = str((ROOT / "scenarios" / raw["profile"]).resolve())
    (tmp_path / "bad.csv").write_text("t,s\n0,1\n")
    raw["device"]["speed"] = {"kind": "trace", "path": str(tmp_path / "bad.csv")}
    from simqos.scenario import parse_scenario
    from simqos.sim.plan import build_plan

    with pytest.raises(SimqosError, match=rf"^s.yaml: device.speed.path: {tmp_path / 'bad.csv'}: needs columns time_s and speed"):
        build_plan(parse_scenario(raw), "s.yaml")


@pytest.mark.parametrize("command", ["run", "validate", "sweep"])
def test_a_top_level_mistake_and_policy_mistakes_are_named_in_one_run(tmp_path, command):
    """README: a scenario's mistakes are named together — a misspelt top-level key, a misspelt
    policy kind and a misspelt policy parameter, in one error — by run, validate and a sweep."""
    import simqos
    from simqos.sweep import load_sweep

    raw = yaml.safe_load((ROOT / "scenarios" / "iot.yaml").read_text())
    raw["profile"] = str((ROOT / "scenarios" / raw["profile"]).resolve())
    raw["replicatons"] = 2
    raw["policies"] = [{"kind": "lookahed"}, {"kind": "greedy", "quantle": 0.9}]
    path = tmp_path / "three.yaml"
    path.write_text(yaml.safe_dump(raw))
    start = {"run": lambda: simqos.run_scenario(path, out=tmp_path / "out"),
             "validate": lambda: simqos.validate_scenario(path, out=tmp_path / "out"),
             "sweep": lambda: load_sweep(_written(tmp_path / "s.sweep.yaml", {"base": str(path), "grid": {"seed": [1]}}))}
    with pytest.raises(SimqosError) as error:
        start[command]()
    message = str(error.value)
    assert "replicatons: unknown key — did you mean 'replications'?" in message
    assert "policies[0].kind: 'lookahed' is not a registered policy — did you mean 'lookahead'?" in message
    assert "policies[1].quantle: unknown key — did you mean 'quantile'?" in message
    assert not (tmp_path / "out").exists()


def _written(path, document):
    path.write_text(yaml.safe_dump(document))
    return path


def test_the_device_in_words():
    device = load_scenario(ROOT / "scenarios" / "iot.yaml").device
    assert device.describe().startswith("speed a Markov chain over normal 0.045 (about 1 s at a time), background-app 0.028")
    assert "memory a Markov chain over free 2 MB" in device.describe() and "reloaded at 20 MB/s" in device.describe()
    periodic = load_scenario(ROOT / "scenarios" / "bursty-gateway.yaml").device
    assert periodic.describe() == "speed periodic, 0.17 then 0.067 for 40% of every 0.2 s; memory unlimited"
