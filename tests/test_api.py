"""The Python API: every name in ``simqos.__all__`` resolves, ``import simqos`` alone loads no
engine, and the README's example runs as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import simqos

ROOT = Path(__file__).resolve().parent.parent


def test_every_exported_name_resolves():
    for name in simqos.__all__:
        assert getattr(simqos, name) is not None, name


def test_import_simqos_is_light():
    code = "import sys, simqos; heavy = [m for m in ('simqos.sim.plan', 'numba', 'torch', 'matplotlib') if m in sys.modules]; assert not heavy, heavy"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_the_readme_example_runs(monkeypatch, capsys):
    block = re.search(r"## Python API.*?```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    monkeypatch.chdir(ROOT)
    ns: dict = {}
    exec(compile(block, "README.md", "exec"), ns)
    deploy, value, bound = re.fullmatch(r"(.+) (\S+%) bound (\S+%)", capsys.readouterr().out.strip()).groups()  # a label may hold spaces
    plan, summary, verdict = ns["plan"], ns["summary"].set_index("policy"), ns["verdict"]
    assert deploy == verdict["deploy"] and deploy in plan.labels  # what it prints is the verdict, for a policy it ran
    assert value == f"{summary.loc[deploy, 'accuracy_at_deadline']:.2%}"
    assert float(bound.rstrip("%")) / 100 >= summary["accuracy_at_deadline"].max() - 5e-5  # no policy beats the optimum
    by_deadline = ns["by_deadline"]
    assert len(by_deadline) == 3 * len(plan.labels) and sorted(set(by_deadline["workload.deadline.ms"])) == [20, 30, 45]
    miss = by_deadline[by_deadline["policy"] == "static L1"].sort_values("workload.deadline.ms")["miss_rate"].to_numpy()
    assert (miss[1:] <= miss[:-1]).all()  # a looser deadline misses no more: the same requests, served the same way


def test_run_scenario_is_simqos_run(two_level, tmp_path):
    """The command is one call of :func:`simqos.run_scenario`: the same folder from both, and
    the listener hears the stages, the served requests and the warnings the command prints."""
    import pandas as pd
    import yaml
    from typer.testing import CliRunner

    from bundles import scenario_dict
    from simqos.api import Listener
    from simqos.cli import app

    raw = scenario_dict(two_level, requests=400, replications=2, outputs={"plots": False},
                        policies=[{"kind": "static", "level": 0}, {"kind": "static", "level": 1}, {"kind": "deadline_aware"}])
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(raw))

    class Heard(Listener):
        def __init__(self):
            self.stages, self.served = [], 0

        def stage(self, description, total=None):
            self.stages.append((description, total))

        def advance(self, requests):
            self.served += requests

    heard = Heard()
    result = simqos.run_scenario(path, out=str(tmp_path / "api"), requests=300, listener=heard)  # a str, as the README writes it
    assert heard.stages == [("simulate test", 300 * 2), ("offline optimum (the bound)", None)]
    assert heard.served == 300 * 2 and result.scenario.requests == 300 and result.scenario.warmup_requests == 0
    assert result.verdict["deploy"] in {"static L0", "static L1", "deadline_aware (q0.9)"}
    done = CliRunner().invoke(app, ["run", str(path), "--out", str(tmp_path / "cli"), "--requests", "300"])
    assert done.exit_code == 0, done.output
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "api" / "summary.csv"), pd.read_csv(tmp_path / "cli" / "summary.csv"))
    assert f"Deploy {result.verdict['deploy']}" in done.output
