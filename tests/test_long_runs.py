"""Long runs: which records a run keeps and in what format, an interrupted run going on from
its finished replications, the same run on a dask LocalCluster, and the limits a run is
checked against before it starts."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from bundles import scenario_dict
from simqos.sim import execution
from simqos.cli import app
from simqos.sim.execution import simulate
from simqos.sim.plan import build_plan
from simqos.sim.replication import KeptRecords, NO_RECORDS, summarize_plan
from simqos.errors import SimqosError
from simqos.results import read_records
from simqos.scenario import parse_scenario

runner = CliRunner()
DEVICE = {"speed": {"kind": "markov", "states": [{"speed": 1.0, "mean_dwell_s": 0.5}, {"speed": 0.4, "mean_dwell_s": 0.2}]}}
POLICIES = [{"kind": "static", "level": 0}, {"kind": "deadline_aware"}]


def _scenario(profile, **extra) -> dict:
    base = {"requests": 3000, "warmup_requests": 100, "replications": 3, "device": DEVICE, "policies": POLICIES,
            "workload": {"arrival": {"kind": "poisson", "rate_hz": 150}, "deadline": {"kind": "constant", "ms": 9}}}
    return scenario_dict(profile, **(base | extra))


def _run(tmp_path, raw: dict, name: str, *options: str):
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    out = tmp_path / name
    result = runner.invoke(app, ["run", str(path), "--out", str(out), *options])
    return result, out


def test_records_all_sample_or_none_in_parquet_or_csv_with_the_same_summary(two_level, tmp_path):
    summaries = {}
    for records, fmt in (("all", "parquet"), ("all", "csv"), ("sample", "parquet"), ("none", "parquet")):
        raw = _scenario(two_level, outputs={"records": records, "records_format": fmt, "sample_requests": 250})
        result, out = _run(tmp_path, raw, f"{records}-{fmt}")
        assert result.exit_code == 0, result.output
        summaries[records, fmt] = pd.read_csv(out / "summary.csv")
        kept = read_records(out)
        if records == "none":
            assert kept is None and not (out / "records").exists()
            assert "timeline: skipped" in (out / "report.md").read_text()
            continue
        suffix = ".parquet" if fmt == "parquet" else ".csv.gz"
        assert sorted(p.name for p in (out / "records").iterdir()) == [f"r{r:04d}-p{p:02d}{suffix}" for r in range(3) for p in range(2)]
        per = kept.groupby(["replication", "policy"], observed=True)["request"]
        assert (per.min() == 0).all()
        assert (per.max() == (2999 if records == "all" else 349)).all()  # sample: the warm-up and 250 after it
        assert (out / "plots" / "timeline.png").exists()
    first = summaries["all", "parquet"]
    for summary in summaries.values():
        pd.testing.assert_frame_equal(summary, first)  # every request is in the summary, whatever is kept
    a, b = read_records(tmp_path / "all-parquet"), read_records(tmp_path / "all-csv")
    pd.testing.assert_frame_equal(a, b, check_exact=True)  # CSV at full precision


def test_an_interrupted_run_goes_on_from_its_finished_replications(two_level, tmp_path, monkeypatch):
    raw = _scenario(two_level)
    straight, out = _run(tmp_path, raw, "straight")
    assert straight.exit_code == 0, straight.output
    served = []
    real = execution.serve_replication

    def interrupted(plan, replication, kept, progress=None):
        served.append(replication)
        if replication == 1 and served.count(1) == 1:
            raise KeyboardInterrupt  # Ctrl-C during replication 1, the first time
        return real(plan, replication, kept, progress)

    monkeypatch.setattr(execution, "serve_replication", interrupted)
    first, out = _run(tmp_path, raw, "resumed")
    assert first.exit_code != 0 and not out.exists()
    assert (tmp_path / "resumed.partial" / "checkpoints" / "r0000.pickle").exists()
    assert "1 finished replication(s) are kept" in first.output
    again, out = _run(tmp_path, raw, "resumed")
    assert again.exit_code == 0, again.output
    assert "Resuming the interrupted run" in again.output
    assert served[:4] == [0, 1, 1, 2]  # replication 0 was not served again (after: the report's sweeps)
    assert not (tmp_path / "resumed.partial").exists() and not (out / "checkpoints").exists()
    pd.testing.assert_frame_equal(pd.read_csv(out / "summary.csv"), pd.read_csv(tmp_path / "straight" / "summary.csv"))
    pd.testing.assert_frame_equal(read_records(out), read_records(tmp_path / "straight"))


def test_a_changed_scenario_does_not_resume(two_level, tmp_path, monkeypatch):
    raw = _scenario(two_level)
    monkeypatch.setattr(execution, "serve_replication", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    _run(tmp_path, raw, "out")
    assert (tmp_path / "out.partial").exists()
    monkeypatch.undo()
    result, out = _run(tmp_path, raw | {"seed": 99}, "out")
    assert result.exit_code == 0 and "Resuming" not in result.output


def test_the_same_run_on_a_dask_local_cluster(two_level):
    plan = build_plan(parse_scenario(_scenario(two_level, replications=2)))
    local = simulate(plan, workers=2, records=KeptRecords())
    dask = simulate(plan, executor="dask", workers=2, records=KeptRecords())
    pd.testing.assert_frame_equal(summarize_plan(plan, dask), summarize_plan(plan, local))
    pd.testing.assert_frame_equal(dask.records, local.records)


def test_progress_counts_requests(two_level):
    plan = build_plan(parse_scenario(_scenario(two_level)))
    counted = []
    simulate(plan, progress=counted.append, records=NO_RECORDS)
    assert sum(counted) == 3 * 3000


def test_a_replication_too_long_or_records_too_big_is_refused_before_it_starts(two_level, tmp_path, monkeypatch):
    with pytest.raises(SimqosError, match=r"requests: 1e\+11 requests in one replication.*split them over replications"):
        build_plan(parse_scenario(_scenario(two_level, requests=10**11)))
    import shutil

    monkeypatch.setattr(shutil, "disk_usage", lambda _path: shutil._ntuple_diskusage(10**9, 10**9 - 10**5, 10**5))
    result, out = _run(tmp_path, _scenario(two_level), "full")
    assert result.exit_code == 2 and "set outputs.records: sample" in result.output and not out.exists()
    result, out = _run(tmp_path, _scenario(two_level, outputs={"records": "none", "plots": False}), "none")
    assert result.exit_code == 0, result.output


def test_a_streamed_replication_of_any_length_samples_its_device_in_a_window(two_level):
    """A replication of 5 * 10^9 requests changes speed about 10^10 times: served whole (by
    SimPy) that is refused up front; streamed, the device is sampled a window at a time, so
    the plan is accepted."""
    fast = {"kind": "markov", "states": [{"speed": 1.0, "mean_dwell_s": 0.05}, {"speed": 0.4, "mean_dwell_s": 0.02}]}
    raw = _scenario(two_level, requests=5 * 10**9, replications=1, device={"speed": fast})
    assert build_plan(parse_scenario(raw)).scenario.requests == 5 * 10**9
    with pytest.raises(SimqosError, match=r"would need about .* GiB at once|more than 100,000,000"):
        build_plan(parse_scenario(raw | {"engine": "simpy"}))


def test_ctrl_c_inside_compiled_code_is_an_interrupt():
    """numba reports a KeyboardInterrupt that lands in compiled code as a SystemError, possibly
    caused by another SystemError (its unpickling of a constant); either way it is Ctrl-C."""
    from simqos.jit import interruptible

    def nested() -> None:
        try:
            try:
                raise KeyboardInterrupt
            except KeyboardInterrupt as inner:
                raise SystemError("_numba_unpickle returned a result with an exception set") from inner
        except SystemError as middle:
            raise SystemError("CPUDispatcher(_serve) returned a result with an exception set") from middle

    with pytest.raises(KeyboardInterrupt):
        with interruptible():
            nested()
    with pytest.raises(SystemError):  # any other SystemError stays one
        with interruptible():
            raise SystemError("something else")


def test_records_and_checkpoints_go_only_into_folders_of_simqos(two_level, tmp_path):
    """The API takes any folder for records and checkpoints: one of the user's is refused
    before anything in it is replaced."""
    plan = build_plan(parse_scenario(_scenario(two_level, replications=1, requests=300)))
    mine = tmp_path / "mine"
    (mine / "records").mkdir(parents=True)
    (mine / "records" / "r0000-p00.parquet").write_text("the user's")
    with pytest.raises(SimqosError, match="not written by simqos"):
        simulate(plan, records=KeptRecords(folder=mine))
    with pytest.raises(SimqosError, match="not written by simqos"):
        simulate(plan, records=NO_RECORDS, checkpoints=mine)
    assert (mine / "records" / "r0000-p00.parquet").read_text() == "the user's"
    ours = tmp_path / "ours"
    simulate(plan, records=KeptRecords(folder=ours), checkpoints=tmp_path / "checkpoints")
    assert read_records(ours) is not None and (tmp_path / "checkpoints" / "r0000.pickle").exists()
