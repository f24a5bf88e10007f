"""Never delete a user's files: every output folder simqos writes is its own, and a canary file
placed where a careless command would delete it survives every case."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

import simqos.results
from simqos.cli import app
from simqos.outputs import MARKER, claim, owned, staged

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()


def _scenario(folder: Path, **changes) -> Path:
    raw = yaml.safe_load((ROOT / "scenarios" / "iot.yaml").read_text())
    raw.update({"profile": str((ROOT / "scenarios" / raw["profile"]).resolve()), "requests": 300, "warmup_requests": 0,
                "replications": 1, "outputs": {"plots": False}, **changes})
    path = folder / "scenario.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _canary(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    canary = folder / "canary.txt"
    canary.write_text("a user's file")
    return canary


def _run(*args: object, cwd: Path | None = None, monkeypatch=None):
    if cwd is not None:
        monkeypatch.chdir(cwd)
    return runner.invoke(app, [str(a) for a in args])


def _refused(result, fragment: str) -> None:
    """Exit 2 and one line on stderr (stdout may hold the progress lines printed before)."""
    assert result.exit_code == 2, result.output
    assert fragment in result.stderr, result.output
    assert "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1, result.output


@pytest.mark.parametrize("name", ["../../escape", "../x", "/tmp/absolute", ".", "..", "a/b", "", "-flag", "x" * 101])
def test_a_scenario_name_is_a_name_not_a_path(tmp_path, monkeypatch, name):
    work = tmp_path / "project"
    canaries = [_canary(tmp_path / "escape"), _canary(work / "runs"), _canary(work)]
    scenario = _scenario(tmp_path, name=name)
    result = _run("run", scenario, cwd=work, monkeypatch=monkeypatch)
    assert result.exit_code == 2, result.output
    assert "name" in result.output and "Traceback" not in result.output
    assert all(c.exists() for c in canaries)
    assert sorted(p.name for p in (work / "runs").iterdir()) == ["canary.txt"]


def test_out_above_the_current_folder_is_refused(tmp_path, monkeypatch):
    work = tmp_path / "project"
    work.mkdir()
    canaries = [_canary(tmp_path), _canary(work)]
    scenario = _scenario(tmp_path / "project")
    for out in ("..", ".", str(tmp_path), "/"):
        _refused(_run("run", scenario, "--out", out, cwd=work, monkeypatch=monkeypatch), "current folder or one above it")
    assert all(c.exists() for c in canaries)


def test_an_existing_folder_simqos_did_not_write_is_not_replaced(tmp_path):
    canary = _canary(tmp_path / "mine")
    _refused(_run("run", _scenario(tmp_path), "--out", tmp_path / "mine"), "was not written by simqos")
    assert canary.read_text() == "a user's file" and not (tmp_path / "mine" / "summary.csv").exists()


def test_a_users_partial_folder_is_not_cleared(tmp_path):
    canary = _canary(tmp_path / "out.partial")
    _refused(_run("run", _scenario(tmp_path), "--out", tmp_path / "out"), "was not written by simqos")
    assert canary.exists() and not (tmp_path / "out").exists()


def test_a_file_or_a_symlink_as_out_is_refused(tmp_path):
    (tmp_path / "afile").write_text("keep")
    _refused(_run("run", _scenario(tmp_path), "--out", tmp_path / "afile"), "is a file")
    assert (tmp_path / "afile").read_text() == "keep"
    canary = _canary(tmp_path / "target")
    (tmp_path / "link").symlink_to(tmp_path / "target")
    _refused(_run("run", _scenario(tmp_path), "--out", tmp_path / "link"), "symbolic link")
    assert canary.exists()


def test_an_output_field_pointing_at_a_users_folder_is_refused(tmp_path):
    canary = _canary(tmp_path / "theirs")
    _refused(_run("run", _scenario(tmp_path, output=str(tmp_path / "theirs"))), "output:")
    assert canary.exists()


def test_simqos_replaces_its_own_results_and_an_empty_folder(tmp_path):
    out = tmp_path / "out"
    out.mkdir()  # empty: nothing to lose
    scenario = _scenario(tmp_path)
    assert _run("run", scenario, "--out", out).exit_code == 0
    assert owned(out) == "results"
    (out / "stale.txt").write_text("from an earlier run")
    assert _run("run", scenario, "--out", out).exit_code == 0
    assert not (out / "stale.txt").exists()  # replaced whole
    assert not list(tmp_path.glob(".out.replaced-*")) and not (tmp_path / "out.partial").exists()


def test_a_failed_write_leaves_the_earlier_results_and_no_partial_folder(tmp_path, monkeypatch):
    out = tmp_path / "out"
    scenario = _scenario(tmp_path)
    assert _run("run", scenario, "--out", out).exit_code == 0
    before = (out / "summary.csv").read_bytes()

    def full_disk(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "out.partial" / "summary.json"))

    monkeypatch.setattr(simqos.results, "provenance", full_disk)
    result = _run("run", scenario, "--out", out)
    _refused(result, "No space left on device")
    assert "untouched" in result.output
    assert (out / "summary.csv").read_bytes() == before
    assert not (tmp_path / "out.partial").exists()


def test_a_results_folder_is_complete_with_its_report_or_absent(tmp_path, monkeypatch):
    """The report is written before the swap: a run that fails while reporting leaves no
    complete-looking folder without report.md."""
    import simqos.report

    def broken(*_args, **_kwargs):
        raise RuntimeError("the report failed")

    monkeypatch.setattr(simqos.report, "write_report", broken)
    result = _run("run", _scenario(tmp_path, outputs={"plots": True}), "--out", tmp_path / "out")
    assert result.exit_code != 0
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()


def test_sweep_never_writes_into_a_users_folder(tmp_path):
    _scenario(tmp_path)
    sweep = tmp_path / "s.sweep.yaml"
    sweep.write_text(yaml.safe_dump({"base": "scenario.yaml", "grid": {"seed": [1]}}))
    canary = _canary(tmp_path / "mine")
    (tmp_path / "mine" / "results.csv").write_text("a user's table")
    _refused(_run("sweep", sweep, "--out", tmp_path / "mine", "--workers", "1"), "was not written by simqos")
    assert canary.exists() and (tmp_path / "mine" / "results.csv").read_text() == "a user's table"
    results_folder = tmp_path / "results"
    assert _run("run", tmp_path / "scenario.yaml", "--out", results_folder).exit_code == 0
    _refused(_run("sweep", sweep, "--out", results_folder, "--workers", "1"), "is a simqos results folder")


def test_profile_overwrite_replaces_only_a_profile_bundle(tmp_path):
    canary = _canary(tmp_path / "mine")
    _refused(_run("profile", "mlp", "--out", tmp_path / "mine", "--overwrite"), "was not written by simqos")
    assert canary.exists()
    assert not (tmp_path / "mine.partial").exists()


def test_report_writes_only_into_simqos_folders(tmp_path):
    canary = _canary(tmp_path / "mine")
    (tmp_path / "mine" / "summary.json").write_text("{}")
    _refused(_run("report", tmp_path / "mine"), "not a results or sweep folder written by simqos")
    _refused(_run("report", canary), "not a results or sweep folder written by simqos")
    assert not (tmp_path / "mine" / "report.md").exists() and not (tmp_path / "mine" / "plots").exists()


def test_validate_never_replaces_a_users_folder(tiny_profile_dir, tmp_path):
    canary = _canary(tmp_path / "mine")
    scenario = tmp_path / "v.yaml"
    scenario.write_text(yaml.safe_dump({
        "name": "v", "profile": str(tiny_profile_dir), "requests": 50,
        "workload": {"arrival": {"kind": "poisson", "rate_hz": 50}, "deadline": {"kind": "constant", "ms": 5}},
        "policies": [{"kind": "static", "level": 0}],
    }))
    _refused(_run("validate", scenario, "--out", tmp_path / "mine", "--seconds", "0.2"), "was not written by simqos")
    assert canary.exists()


def test_staged_keeps_the_old_folder_until_the_new_one_is_whole(tmp_path):
    out = tmp_path / "out"
    with staged(out, "results") as work:
        (work / "a.txt").write_text("first")
    assert (out / "a.txt").read_text() == "first" and (out / MARKER).exists()
    with pytest.raises(KeyboardInterrupt):
        with staged(out, "results") as work:
            (work / "a.txt").write_text("second")
            raise KeyboardInterrupt
    assert (out / "a.txt").read_text() == "first" and not (tmp_path / "out.partial").exists()
    claim(out, "results")  # its own kind: may be replaced
    with pytest.raises(Exception, match="not a sweep folder"):
        claim(out, "sweep")


def test_a_forged_or_damaged_marker_is_not_simqos(tmp_path):
    folder = _canary(tmp_path / "f").parent
    for text in ("", "not json", '{"written_by": "someone", "kind": "results"}', '{"written_by": "simqos", "kind": "x"}', "[]"):
        (folder / MARKER).write_text(text)
        assert owned(folder) is None


def test_an_interrupted_run_of_other_work_is_discarded_out_loud(tmp_path):
    """A leftover OUT.partial of the same work is resumed as it is; one of other work (another
    scenario, profile or simqos) is cleared, and the caller is told, not left to wonder why
    nothing was resumed."""
    out = tmp_path / "results"
    heard: list[str] = []
    with pytest.raises(KeyboardInterrupt), staged(out, "results", resume="work A", notice=heard.append) as work:
        (work / "kept.txt").write_text("a finished replication")
        raise KeyboardInterrupt
    with staged(out, "results", resume="work A", notice=heard.append) as work:
        assert (work / "kept.txt").exists() and heard == []  # resumed as it was left
    assert (out / "kept.txt").exists()
    with pytest.raises(KeyboardInterrupt), staged(out, "results", resume="work A", notice=heard.append) as work:
        (work / "kept.txt").write_text("another")
        raise KeyboardInterrupt
    with staged(out, "results", resume="work B", notice=heard.append) as work:
        assert not (work / "kept.txt").exists()
    assert len(heard) == 1 and "another scenario" in heard[0]
