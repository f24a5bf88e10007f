"""profiles/README.md's worked example of a user's own model, run as a user runs it: the
factory saved as my_sensor.py in the current folder, trained and profiled by the commands the
README gives (shortened), and its bundle run by a scenario."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
FAST = ["--epochs", "2,2,1", "--calibration-samples", "200"]


def test_the_readme_model_trains_profiles_and_runs(tmp_path):
    text = (ROOT / "profiles" / "README.md").read_text()
    section = text[text.index("## Your own model"):text.index("## Files")]
    (tmp_path / "my_sensor.py").write_text(re.search(r"```python\n(.*?)```", section, re.S).group(1))

    def simqos(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "simqos", *args], capture_output=True, text=True, cwd=tmp_path, check=False)
        assert done.returncode == 0, done.stderr + done.stdout
        return done.stdout

    trained = simqos("train", "my_sensor:sensor_model", "--levels", "0.3,0.1", "--model-arg", "noise=0.5", *FAST)
    assert "0-1" in trained and "dense model" in trained  # every route's accuracy, and the dense model's
    simqos("profile", "my_sensor:sensor_model", "--levels", "0.3,0.1", "--out", "sensor-cpu", *FAST,
           "--samples", "3", "--min-sample-ms", "0.05", "--passes", "20", "--choice-passes", "3", "--idle-samples", "0")
    scenario = yaml.safe_load((ROOT / "scenarios" / "iot.yaml").read_text())
    scenario.update(profile=str(tmp_path / "sensor-cpu"), requests=500, replications=1, warmup_requests=0)
    scenario["workload"]["deadline"] = {"kind": "constant", "ms": 5}
    (tmp_path / "sensor.yaml").write_text(yaml.safe_dump(scenario))
    assert "Deploy" in simqos("run", "sensor.yaml", "--out", "run")
