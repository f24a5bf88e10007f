"""The command line, in-process (Typer's CliRunner), plus one real subprocess."""

import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import simqos.profiler.run as profiler_run
from conftest import TINY_PROFILE_ARGS
from simqos.cli import app
from simqos.cli import main as cli_main
from simqos.outputs import mark
from simqos.bundle import load_profile

runner = CliRunner()
ROOT = Path(__file__).resolve().parent.parent


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_python_dash_m_runs():
    done = subprocess.run([sys.executable, "-m", "simqos", "--help"], capture_output=True, text=True, check=False)
    assert done.returncode == 0
    assert "profile" in done.stdout and "train" in done.stdout


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["profile", "resnet9000", "--out", "{tmp}/x"], "not a shipped model"),
        (["profile", "mlp", "--levels", "0.1,0.2", "--out", "{tmp}/x"], "strictly decrease"),
        (["profile", "mlp", "--levels", "abc", "--out", "{tmp}/x"], "not a comma-separated list"),
        (["profile", "mlp", "--levels", "1.5", "--out", "{tmp}/x"], "outside (0, 1]"),
        (["profile", "mlp", "--out", "{tmp}/afile/sub"], "is a file, not a folder"),
        (["profile", "mlp", "--out", "{tmp}"], "already exists; pass --overwrite"),
        (["profile", "mlp", "--kernels", "dense,magic", "--out", "{tmp}/x"], "'magic'"),
        (["profile", "mlp", "--samples", "0", "--out", "{tmp}/x"], "--samples: Input should be greater than or equal to 1 (got 0)"),
        (["profile", "mlp", "--model-arg", "hidden", "--out", "{tmp}/x"], "KEY=VALUE"),
        (["profile", "user_models:plain_cnn", "--out", "{tmp}/x"], "--input-shape"),
        (["profile", "user_models:NOT_A_FACTORY", "--out", "{tmp}/x"], "not callable"),
        (["profile", "no_such_module:f", "--out", "{tmp}/x"], "cannot import"),
        (["train", "mlp", "--growth", "sideways"], "growth"),
        (["profile", "mlp", "--lr", "0,1e-3", "--out", "{tmp}/x"], "--lr (the dense phase's rate): Input should be greater than 0 (got 0.0)"),
        (["profile", "mlp", "--scope", "sideways", "--out", "{tmp}/x"], "--scope: Input should be 'layer' or 'global' (got 'sideways')"),
        (["profile", "mlp", "--weight-decay", "-0.1", "--out", "{tmp}/x"], "--weight-decay: Input should be greater than or equal to 0 (got -0.1)"),
        (["train", "mlp", "--clip-grad-norm", "-1"], "--clip-grad-norm: Input should be greater than or equal to 0 (got -1.0)"),
        (["train", "mlp", "--distill", "2"], "--distill: Input should be less than or equal to 1 (got 2.0)"),
        (["profile", "mlp", "--threads", "0", "--out", "{tmp}/x"], "--threads: Input should be greater than or equal to 1 (got 0)"),
        (["profile", "mlp", "--device", "gpu", "--out", "{tmp}/x"], "--device: Input should be 'cpu' or 'cuda' (got 'gpu')"),
        (["train", "gat", "--epochs", "1,1,1"], "cannot be trained"),
    ],
)
def test_user_mistakes_exit_2_with_one_line(tmp_path, args, fragment):
    (tmp_path / "afile").write_text("")
    result = invoke(*[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert result.exit_code == 2, result.output
    assert fragment in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "x").exists() and not (tmp_path / "x.partial").exists()


def test_profile_a_users_plain_module(tmp_path):
    out = tmp_path / "user"
    result = invoke("profile", "user_models:plain_cnn", "--input-shape", "1,3,6,6", "--levels", "0.5,0.2",
                    "--samples", "3", "--min-sample-ms", "0.05", "--passes", "10", "--out", out)
    assert result.exit_code == 0, result.output
    p = load_profile(out)
    assert not p.meta.accuracy.available and p.routes is None
    assert [layer.kind for layer in p.meta.layers] == ["conv2d", "linear"]
    conv = p.kernels[p.kernels["layer"] == "0"]
    assert set(conv.loc[conv["status"].isin(["exact", "chosen"]), "kernel"]) >= {"dense", "torch_csr", "scipy_csr"}


def test_train_compares_both_growth_methods():
    result = invoke("train", "mlp", *TINY_PROFILE_ARGS[:6], "--levels", "0.6,0.3", "--growth", "both")
    assert result.exit_code == 0, result.output
    assert "sparse-first" in result.output and "route-aware" in result.output
    assert "0-1-1" in result.output


def test_an_interrupted_profile_resumes(tmp_path, monkeypatch):
    out = tmp_path / "resumed"
    real = profiler_run.profile_layer_level
    calls = []
    interrupt_at = [3]  # layer fc1 (2 levels) is done when fc2's first level is interrupted

    def flaky(*args, **kwargs):
        calls.append(args[1].name)
        if len(calls) == interrupt_at[0]:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(profiler_run, "profile_layer_level", flaky)
    first = invoke("profile", "mlp", "--out", out, *TINY_PROFILE_ARGS)
    assert first.exit_code != 0
    assert not out.exists(), "an unfinished profile must not look complete"
    assert (tmp_path / "resumed.partial" / "layer-000.json").exists()

    calls.clear()
    interrupt_at[0] = None
    second = invoke("profile", "mlp", "--out", out, *TINY_PROFILE_ARGS)
    assert second.exit_code == 0, second.output
    assert calls == ["fc2", "fc2", "out", "out"], "the finished layer was measured again"
    assert not (tmp_path / "resumed.partial").exists()
    load_profile(out)


def test_other_settings_start_afresh(tmp_path, monkeypatch):
    out = tmp_path / "p"
    partial = tmp_path / "p.partial"
    partial.mkdir()
    mark(partial, "profile")  # an interrupted run's folder: simqos's own
    (partial / "settings.json").write_text('{"model": "something else"}')
    (partial / "layer-000.json").write_text("[]")
    result = invoke("profile", "mlp", "--out", out, *TINY_PROFILE_ARGS)
    assert result.exit_code == 0, result.output
    assert len(load_profile(out).layers) == 6
    # the progress says what is being timed while it is, not the last thing finished
    for what in ("timing fc1, every level alone", "timing in model, every level", "timing after idle gaps, level 1",
                 "timed every part; writing the bundle"):
        assert what in result.output, result.output


def test_show_summarises_a_valid_bundle(tiny_profile_dir):
    result = invoke("show", tiny_profile_dir)
    assert result.exit_code == 0, result.output
    assert "8 routes, test split of 540 samples" in result.output


def test_show_rejects_a_damaged_bundle(tiny_profile_dir, tmp_path):
    import shutil

    copy = tmp_path / "damaged"
    shutil.copytree(tiny_profile_dir, copy)
    (copy / "routes.csv").unlink()
    result = invoke("show", copy)
    assert result.exit_code == 2
    assert "routes.csv: missing" in result.output and "Traceback" not in result.output


def test_profile_an_attention_block(tmp_path):
    out = tmp_path / "attn"
    result = invoke("profile", "user_models:attention_block", "--input-shape", "1,6,32", "--levels", "0.5,0.2",
                    "--samples", "3", "--min-sample-ms", "0.05", "--passes", "5", "--out", out)
    assert result.exit_code == 0, result.output
    kernels = load_profile(out).kernels
    attn = kernels[kernels["layer"] == "attn"].set_index(["level", "kernel"])["status"]
    assert attn[(0, "nested_attention")] in ("exact", "chosen") and attn[(1, "dense")] in ("exact", "chosen")


def test_progress_shows_when_output_is_not_a_terminal(tmp_path, monkeypatch, capsys):
    """Piped to a file, a live bar shows nothing for minutes (training behind validate did): the
    commands print plain lines instead, at each stage and every EVERY_S seconds."""
    import simqos.cli as cli

    progress = cli._progress()
    assert isinstance(progress, cli._LineProgress)  # pytest's output is not a terminal
    monkeypatch.setattr(cli._LineProgress, "EVERY_S", 0.0)  # every update says so; the heartbeat sleeps 10 s
    with progress as bar:
        task = bar.add_task("train mlp", total=3)
        bar.advance(task)
        bar.update(task, description="profile")
        bar.update(task, completed=2, rate="9 requests/s")
    lines = capsys.readouterr().out.splitlines()
    said = [line.rsplit(" (", 1)[0] for line in lines]
    assert [line.split(",")[0] for line in said] == ["train mlp: 1/3", "profile", "profile: 2/3"]  # nothing before the first update
    assert "/s, about" in said[0] and said[0].endswith(" s left")  # its rate, and the time left at that rate
    assert said[2].endswith(", 9 requests/s")
    monkeypatch.setattr(cli._LineProgress, "EVERY_S", 100.0)
    with cli._LineProgress() as bar:  # a stage shorter than EVERY_S still says where it ended
        task = bar.add_task("simulate", total=3)
        bar.advance(task, 3)
        bar.update(task, description="offline optimum", total=None)
    said = [line.rsplit(" (", 1)[0] for line in capsys.readouterr().out.splitlines()]
    assert said == ["simulate: 3/3", "offline optimum"]
    monkeypatch.setattr(cli._LineProgress, "HEARTBEAT_S", 0.05)  # a long stage with no update still prints
    monkeypatch.setattr(cli._LineProgress, "EVERY_S", 0.05)
    with cli._LineProgress() as bar:
        bar.add_task("offline optimum")
        trained = bar.add_task("train", total=2)
        bar.update(trained, completed=2)  # finished: said once, not repeated by the heartbeat
        time.sleep(0.3)
    out = capsys.readouterr().out
    assert out.count("offline optimum") >= 3 and out.count("train: 2/2") == 1
    monkeypatch.setattr(cli._LineProgress, "EVERY_S", 0.0)
    with cli._LineProgress() as bar:
        slow = bar.add_task("epochs", total=100)
        bar.tasks[slow]["start"] -= 30.0  # one epoch in 30 s: seconds each, and no estimate from the first one
        bar.advance(slow)
    line = capsys.readouterr().out.splitlines()[0]
    assert "s each" in line and "/s" not in line and "left" not in line


def test_a_piped_run_prints_its_stages(tmp_path):
    done = subprocess.run([sys.executable, "-m", "simqos", "run", "scenarios/bursty-gateway.yaml", "--requests", "1000",
                           "--replications", "1", "--out", str(tmp_path / "o")], capture_output=True, text=True, check=False,
                          cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("simulate bursty-gateway") and "offline optimum (the bound)" in done.stdout


def test_a_mistake_found_at_once_is_not_preceded_by_progress_when_piped(tmp_path):
    """Piped, a sweep whose base cannot run says only its error: no '0/1' line before it."""
    sweep = tmp_path / "s.yaml"
    sweep.write_text(f"base: {ROOT / 'scenarios' / 'iot.yaml'}\ngrid: {{workload.deadline.ms: [10]}}\nrequests: 100\n")
    (tmp_path / "users").mkdir()
    (tmp_path / "users" / "theirs.txt").write_text("keep me")
    done = subprocess.run([sys.executable, "-m", "simqos", "sweep", str(sweep), "--out", str(tmp_path / "users")],
                          capture_output=True, text=True, check=False, cwd=ROOT)
    assert done.returncode == 2 and done.stdout == "", done.stdout
    assert len(done.stderr.strip().splitlines()) == 1


def test_an_interrupted_sweep_says_what_it_kept(tmp_path, monkeypatch, capsys):
    import simqos.sweep

    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt

    sweep = tmp_path / "s.yaml"
    sweep.write_text(f"base: {ROOT / 'scenarios' / 'iot.yaml'}\ngrid: {{workload.deadline.ms: [10, 20]}}\nrequests: 100\n")
    monkeypatch.setattr(simqos.sweep, "run_sweep", interrupted)
    monkeypatch.setattr(sys, "argv", ["simqos", "sweep", str(sweep), "--out", str(tmp_path / "sw")])
    with pytest.raises(SystemExit) as exited:
        cli_main()
    assert exited.value.code == 130
    err = capsys.readouterr().err
    assert f"interrupted: 0 of 2 cells are finished and kept in {tmp_path / 'sw'}/cells/; the same command runs the rest" in err


def test_the_console_script_imports_from_the_current_folder_as_python_m_does(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    monkeypatch.setattr(sys, "argv", ["simqos", "--help"])
    with pytest.raises(SystemExit):
        cli_main()
    assert sys.path[0] == str(tmp_path)


def test_a_model_named_by_its_factory_is_not_an_emoji(capsys):
    """rich turned ':factory:' in 'mymodel:factory: ...' into an emoji."""
    import simqos.cli as cli

    cli.console.print("mymodel:factory: 3 routes")
    assert "mymodel:factory: 3 routes" in capsys.readouterr().out
    cli.console.print("no onnxruntime anchor (pip install -e '.[anchors]')")  # nor brackets a markup tag
    assert "(pip install -e '.[anchors]')" in capsys.readouterr().out
