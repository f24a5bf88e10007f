"""Accuracy measured elsewhere, attached to a latency-only bundle; and the rule that policies
decide on the validation split while reports show the test split."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from bundles import scenario_dict, write_bundle
from simqos.cli import app
from simqos.sim.execution import run_plan
from simqos.sim.plan import build_plan
from simqos.outputs import mark
from simqos.bundle import load_profile
from simqos.results import folder_hash
from simqos.scenario import parse_scenario
from simqos.sim.service import ServiceModel

runner = CliRunner()
ROUTES = ["-".join(map(str, r)) for r in itertools.product(range(2), repeat=2)]


@pytest.fixture
def latency_only(tmp_path):
    rng = np.random.default_rng(0)
    samples = {(n, k): list(rng.uniform(1.0, 2.0, 20) / (k + 1)) for n in ("a", "b") for k in range(2)}
    folder = write_bundle(tmp_path / "bundle", samples, {"a": 0, "b": 1})
    mark(folder, "profile")
    return folder


def _csv(tmp_path, rows, name="acc.csv"):
    path = tmp_path / name
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def _rows(accuracy=None, splits=("validation", "test")):
    accuracy = accuracy or {"0-0": 0.9, "0-1": 0.85, "1-0": 0.8, "1-1": 0.75}
    return [{"route": r, "split": s, "correct": int(a * 1000), "n": 1000} for s in splits for r, a in accuracy.items()]


def test_attached_accuracy_is_used_by_policies_and_reports(latency_only, tmp_path):
    rows = _rows() + [{"route": "dense", "split": "test", "correct": 910, "n": 1000}]
    result = runner.invoke(app, ["attach-accuracy", str(latency_only), str(_csv(tmp_path, rows)), "--dataset", "hand data"])
    assert result.exit_code == 0, result.output
    profile = load_profile(latency_only)
    info = profile.meta.accuracy
    assert info.available and info.source == "attached" and info.dataset == "hand data" and info.routes_complete
    assert profile.dense_accuracy("test").accuracy == pytest.approx(0.91)
    assert "policies decide on validation" in info.note
    summary = profile.level_summary().set_index("level")
    assert summary.loc[1, "relative_loss"] == pytest.approx((0.91 - 0.75) / 0.91)
    model = ServiceModel.from_profile(profile)
    assert model.accuracy((0, 1)) == pytest.approx(0.85)


def test_a_file_with_only_test_rows_says_decisions_use_them(latency_only, tmp_path):
    rows = [{"route": r, "accuracy": a, "n": 500} for r, a in zip(ROUTES, (0.9, 0.8, 0.7, 0.6))]
    result = runner.invoke(app, ["attach-accuracy", str(latency_only), str(_csv(tmp_path, rows)), "--dataset", "d"])
    assert result.exit_code == 0, result.output
    assert "policies decide on test (no validation split was given)" in load_profile(latency_only).meta.accuracy.note


def test_monotone_routes_are_enough(latency_only, tmp_path):
    rows = [r for r in _rows() if r["route"] != "1-0"]
    assert runner.invoke(app, ["attach-accuracy", str(latency_only), str(_csv(tmp_path, rows)), "--dataset", "d"]).exit_code == 0
    assert not load_profile(latency_only).meta.accuracy.routes_complete


@pytest.mark.parametrize(
    "change, fragment",
    [
        (lambda rows: [r for r in rows if r["route"] != "0-0"], "missing e.g. ['0-0']"),
        (lambda rows: [r | {"correct": 1500} if r["route"] == "0-1" else r for r in rows], "exceeds n"),
        (lambda rows: [r | {"route": "0-1-1"} if r["route"] == "0-1" else r for r in rows], "needs 2 levels"),
        (lambda rows: [r | {"route": "0-7"} if r["route"] == "0-1" else r for r in rows], "needs 2 levels in [0, 1]"),
        (lambda rows: [r | {"n": 0} for r in rows], "n must be >= 1"),
        (lambda rows: [r | {"n": 10.5} for r in rows], "whole number"),
        (lambda rows: [{k: v for k, v in r.items() if k != "correct"} for r in rows], "correct or accuracy"),
        (lambda rows: [r | {"split": "train"} for r in rows], "split 'train'"),
        (lambda rows: [r for r in rows if r["split"] == "validation"], "needs the test split"),
        (lambda rows: rows + rows[:1], "appear more than once"),
        (lambda rows: [r | {"colour": "red"} for r in rows], "unknown columns ['colour']"),
        (lambda rows: [r | {"correct": "many"} for r in rows], "correct='many'"),
        (lambda rows: [r | {"correct": -1} for r in rows], "correct='-1'"),
    ],
)
def test_a_bad_file_is_one_line_and_changes_nothing(latency_only, tmp_path, change, fragment):
    before = folder_hash(latency_only)
    result = runner.invoke(app, ["attach-accuracy", str(latency_only), str(_csv(tmp_path, change(_rows()))), "--dataset", "d"])
    assert result.exit_code == 2, result.output
    assert fragment in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert folder_hash(latency_only) == before
    assert not (tmp_path / "bundle.partial").exists()


def test_files_that_are_not_csv_and_bundles_that_have_accuracy(latency_only, tmp_path):
    (tmp_path / "junk.csv").write_bytes(b"\xff\xfe\x00\x01junk")
    for path, fragment in ((tmp_path / "junk.csv", "unreadable as CSV"), (tmp_path / "none.csv", "no such accuracy file"),
                           (tmp_path, "is a folder")):
        result = runner.invoke(app, ["attach-accuracy", str(latency_only), str(path), "--dataset", "d"])
        assert result.exit_code == 2 and fragment in result.output, result.output
    good = _csv(tmp_path, _rows())
    assert runner.invoke(app, ["attach-accuracy", str(latency_only), str(good), "--dataset", "d"]).exit_code == 0
    again = runner.invoke(app, ["attach-accuracy", str(latency_only), str(good), "--dataset", "d"])
    assert again.exit_code == 2 and "--replace" in again.output
    assert runner.invoke(app, ["attach-accuracy", str(latency_only), str(good), "--dataset", "d", "--replace"]).exit_code == 0


def test_replacing_the_accuracy_drops_the_old_per_sample_outcomes(tiny_profile_dir, tmp_path):
    """A profiled bundle carries its routes' per-sample test outcomes; attached accuracies
    replace routes.csv, so the old outcomes (of other data) go with them."""
    import shutil

    bundle = tmp_path / "profiled"
    shutil.copytree(tiny_profile_dir, bundle)
    assert load_profile(bundle).outcomes is not None
    routes = ["-".join(map(str, r)) for r in itertools.product(range(2), repeat=3)]
    rows = [{"route": r, "split": "test", "correct": 900, "n": 1000} for r in routes]
    result = runner.invoke(app, ["attach-accuracy", str(bundle), str(_csv(tmp_path, rows)), "--dataset", "d", "--replace"])
    assert result.exit_code == 0, result.output
    assert load_profile(bundle).outcomes is None and not (bundle / "route_outcomes.npz").exists()


def test_the_clairvoyant_decides_on_validation_never_on_test(tmp_path):
    """Shuffling what the test split says (the reported numbers) changes no decision: the
    records' routes stay the same, only their reported accuracy moves."""
    rng = np.random.default_rng(3)
    samples = {(n, k): list(rng.uniform(1.0, 3.0, 40) / (1 + k)) for n in ("a", "b") for k in range(2)}
    validation = {"0-0": 0.95, "0-1": 0.93, "1-0": 0.90, "1-1": 0.92}
    outcomes = []
    for test in (dict(validation), dict(zip(validation, (0.80, 0.99, 0.97, 0.85)))):
        folder = write_bundle(tmp_path / f"b{len(outcomes)}", samples, {"a": 0, "b": 1}, accuracy=test,
                              validation_accuracy=validation)
        scenario = scenario_dict(folder, requests=800, policies=[{"kind": "clairvoyant"}, {"kind": "deadline_aware"}],
                                 workload={"arrival": {"kind": "poisson", "rate_hz": 250},
                                           "deadline": {"kind": "constant", "ms": 5}})
        outcomes.append(run_plan(build_plan(parse_scenario(scenario))))
    first, second = outcomes
    pd.testing.assert_series_equal(first["route"], second["route"])
    assert not np.allclose(first["accuracy"].fillna(0), second["accuracy"].fillna(0))
