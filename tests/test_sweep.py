"""Sweeps: cells, the local and the dask executor (a real LocalCluster on loopback), resuming
after a kill, failing cells recorded."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from simqos.cli import app
from simqos.errors import SimqosError
from simqos.sweep import base_key, cell_id, finished_cells, load_sweep, run_sweep

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()


def _sweep_file(tmp_path, **extra):
    spec = {
        "base": str(ROOT / "scenarios" / "iot.yaml"),
        "grid": {"workload.deadline.ms": [12, 24], "workload.arrival.rate_hz": [30, 60]},
        "seeds": [1, 2],
        "requests": 800,
        "replications": 1,
        **extra,
    }
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _sorted(table):
    return table.sort_values(["cell", "policy"]).reset_index(drop=True).drop(columns=["seconds"])


def test_cells_expand_the_grid_and_seeds(tmp_path):
    _, base, cells = load_sweep(_sweep_file(tmp_path))
    assert len(cells) == 2 * 2 * 2
    assert {c["seed"] for c in cells} == {1, 2} and all(c["requests"] == 800 for c in cells)
    assert len({cell_id(c) for c in cells}) == len(cells)


def test_local_and_dask_give_the_same_results(tmp_path):
    _, base, cells = load_sweep(_sweep_file(tmp_path))
    local = run_sweep(base, cells, tmp_path / "local", executor="local", workers=2)
    dask = run_sweep(base, cells, tmp_path / "dask", executor="dask", workers=2)
    assert len(local) == len(cells) * len(base.policies)
    pd.testing.assert_frame_equal(_sorted(local), _sorted(dask))


def test_a_failing_cell_is_recorded_and_the_rest_finish(tmp_path):
    _, base, cells = load_sweep(_sweep_file(tmp_path))
    broken = [cells[0] | {"policies": [{"kind": "static", "level": 9}]}] + cells[1:3]  # level 9 does not exist
    with pytest.raises(SimqosError, match="1 of 3 cells failed"):
        run_sweep(base, broken, tmp_path / "out", workers=2)
    assert (tmp_path / "out" / "cells" / f"{cell_id(broken[0])}-{base_key(base)}.error").exists()
    assert len(pd.read_csv(tmp_path / "out" / "results.csv")) == 2 * len(base.policies)


def test_an_edited_base_runs_every_cell_again(tmp_path):
    """Finished cells are reused only with the same base scenario (and profile, and simqos):
    before, a changed base silently kept the old cells' numbers."""
    raw = yaml.safe_load((ROOT / "scenarios" / "iot.yaml").read_text())
    raw["profile"] = str((ROOT / "scenarios" / raw["profile"]).resolve())
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(raw))
    _, base, cells = load_sweep(_sweep_file(tmp_path, base=str(tmp_path / "base.yaml")))
    cells = cells[:2]
    first = run_sweep(base, cells, tmp_path / "out", workers=1)
    assert finished_cells(tmp_path / "out", base, cells) == (2, 0)
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(raw | {"policies": [{"kind": "static", "level": 1}]}))  # edited
    _, edited, _ = load_sweep(_sweep_file(tmp_path, base=str(tmp_path / "base.yaml")))
    assert finished_cells(tmp_path / "out", edited, cells) == (0, 2)
    again = run_sweep(edited, cells, tmp_path / "out", workers=1)
    assert len(first) == 2 * len(raw["policies"]) and list(again["policy"]) == ["static L1"] * 2


def test_a_killed_sweep_resumes_where_it_stopped(tmp_path):
    path = _sweep_file(tmp_path, requests=6000, grid={"workload.deadline.ms": [8, 12, 16, 20, 24, 32], "workload.arrival.rate_hz": [30, 60]})
    out = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "simqos", "sweep", str(path), "--out", str(out), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    cells_dir = out / "cells"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(cells_dir.glob("*.csv"))) < 3:
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = {p.name for p in cells_dir.glob("*.csv")}
    assert 3 <= len(finished) < 24, "the sweep should have been killed midway"
    before = {name: (cells_dir / name).stat().st_mtime_ns for name in finished}
    result = runner.invoke(app, ["sweep", str(path), "--out", str(out), "--workers", "2"])
    assert result.exit_code == 0, result.output
    assert f"Resuming: {len(finished)} of 24 cells are already done" in result.output  # and it says so
    assert all((cells_dir / name).stat().st_mtime_ns == t for name, t in before.items()), "finished cells were re-run"
    results = pd.read_csv(out / "results.csv")
    n_policies = len(yaml.safe_load((ROOT / "scenarios" / "iot.yaml").read_text())["policies"])
    assert len(results) == 24 * n_policies
    assert (results["requests"] == 6000 - 500).all() and (results["scenario.requests"] == 6000).all()  # warm-up 500
    # The report: nines against each varied field, seeds pooled, one panel per value of the other.
    for name in ("nines_vs_workload_deadline_ms", "nines_vs_workload_arrival_rate_hz"):
        assert (out / "plots" / f"{name}.png").exists()
    report = (out / "report.md").read_text()
    assert report.count("| deadline_aware (q0.9) |") == 6 * 2 and "seeds pooled" in report
    assert "| at deadline |" in report and "%" in report.split("| deadline_aware (q0.9) |")[1].split("\n")[0]


IOT = str(ROOT / "scenarios" / "iot.yaml")


@pytest.mark.parametrize("spec, fragment", [
    ({"base": IOT}, "exactly one of grid or cells"),
    ({"base": IOT, "grid": {"workload.deadline.ms": []}}, "at least one value"),
    ({"base": IOT, "grid": {"workload.deadlin.ms": [4]}}, "deadlin"),
    ({"base": IOT, "grid": {"workload.arrival.rate_hz": [-1]}}, "rate_hz"),
    ({"base": IOT, "cells": [{"seed": 1}], "colour": 1}, "colour"),
    ({"base": "missing.yaml", "cells": [{"seed": 1}]}, "no such scenario file"),
])
def test_bad_sweep_files(tmp_path, spec, fragment):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(spec))
    result = runner.invoke(app, ["sweep", str(path), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and fragment in result.output, result.output
    assert not (tmp_path / "o").exists()


def test_seeds_pool_into_one_setting_with_summed_counts():
    from simqos.report import pooled_over_seeds

    rows = pd.DataFrame({
        "workload.deadline.ms": [4, 4, 8], "policy": ["g", "g", "g"], "requests": [1000, 3000, 1000],
        "met": [990, 2970, 1000], "miss_design_effect": [1.0, 2.0, 1.0],
    })
    pooled = pooled_over_seeds(rows, ["workload.deadline.ms"]).set_index("workload.deadline.ms")
    assert pooled.loc[4, "requests"] == 4000 and pooled.loc[4, "miss_rate"] == pytest.approx(40 / 4000)
    assert pooled.loc[4, "nines"] == pytest.approx(2.0) and pooled.loc[4, "seeds"] == 2
    assert pd.isna(pooled.loc[8, "nines"]) and pooled.loc[8, "nines_low"] > 2  # no miss: a lower bound
    assert pd.isna(pooled.loc[4, "accuracy_at_deadline"])  # no accuracy column: none
    rows["accuracy_at_deadline"] = [0.9, 0.5, 0.7]
    pooled = pooled_over_seeds(rows, ["workload.deadline.ms"]).set_index("workload.deadline.ms")
    assert pooled.loc[4, "accuracy_at_deadline"] == pytest.approx((0.9 * 1000 + 0.5 * 3000) / 4000)  # weighted by requests


def test_the_shipped_sweep_runs_shortened(tmp_path):
    _, base, cells = load_sweep(ROOT / "scenarios" / "iot.sweep.yaml")
    assert len(cells) == 5 * 3 * 2
    short = [c | {"requests": 500, "warmup_requests": 0} for c in cells[:2]]
    table = run_sweep(base, short, tmp_path / "s", workers=2)
    assert len(table) == 2 * len(base.policies)


def test_an_unreachable_scheduler_leaves_no_folder_behind(tmp_path):
    _, base, cells = load_sweep(_sweep_file(tmp_path))
    out = tmp_path / "sw"
    with pytest.raises(SimqosError, match="--scheduler tcp://127.0.0.1:9: cannot reach it"):
        run_sweep(base, cells[:1], out, executor="dask", scheduler="tcp://127.0.0.1:9")
    assert not out.exists()


def test_a_full_disk_while_writing_a_cell_is_one_line_and_leaves_no_partial_file(tmp_path, monkeypatch):
    _, base, cells = load_sweep(_sweep_file(tmp_path))
    out = tmp_path / "sw"
    real = pd.DataFrame.to_csv

    def full(self, path=None, *args, **kwargs):
        if str(path).endswith(".csv.tmp"):
            Path(path).write_text("cell,poli")  # a partial write, then the disk is full
            raise OSError(28, "No space left on device")
        return real(self, path, *args, **kwargs)

    monkeypatch.setattr(pd.DataFrame, "to_csv", full)
    with pytest.raises(SimqosError, match=r"cells: cannot write a finished cell \(No space left on device\); free some space"):
        run_sweep(base, cells[:1], out, workers=1)
    assert not list((out / "cells").glob("*.tmp")) and not list((out / "cells").glob("*.csv"))
