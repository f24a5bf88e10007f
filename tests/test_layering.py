"""The simulator side imports neither torch nor (until a figure is drawn) matplotlib."""

import subprocess
import sys


def test_simulator_imports_no_torch():
    code = (
        "import sys, simqos.cli, simqos.engine, simqos.metrics, simqos.results, simqos.scenario, simqos.bundle;"
        "bad = [m for m in ('torch', 'matplotlib') if m in sys.modules]; assert not bad, bad"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
