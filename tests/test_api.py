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
    code = "import sys, simqos; heavy = [m for m in ('simqos.engine', 'numba', 'torch', 'matplotlib') if m in sys.modules]; assert not heavy, heavy"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_the_readme_example_runs(monkeypatch, capsys):
    block = re.search(r"## Python API.*?```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    monkeypatch.chdir(ROOT)
    exec(compile(block, "README.md", "exec"), {})
    deploy = capsys.readouterr().out.split()[0]
    assert deploy in {"lookahead", "dp", "deadline_aware", "greedy"} or deploy.startswith(("static", "deadline_aware"))
