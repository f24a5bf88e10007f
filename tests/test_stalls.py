"""Stalls in a profile's timing: found, dropped and run again, or kept and said so; a profile
made with a stall injected into one layer warns, names it, and ships no stalled sample."""

import json
import time

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from conftest import TINY_PROFILE_ARGS
from simqos.cli import app
from simqos.profiler.passes import REPEAT_ROUNDS, PassTime, find_stalls, time_passes


def _passes(ms: list[float]) -> list[PassTime]:
    return [PassTime(m / 1e3 + 1e-4, {"a": m / 1e3, "b": 1e-4}) for m in ms]


def test_a_stall_by_hand():
    found = find_stalls("level 0", _passes([0.5] * 19 + [5.0]))
    # layer a: 5 ms against a median of 0.5 ms, above 0.5 + max(4 x 0.5, 0.1); the pass's end to end too
    assert {(s.what, s.pass_index) for s in found} == {("a", 19), ("end to end", 19)}
    assert found[0].text().startswith("level 0: ")
    assert "10x its median" in next(s for s in found if s.what == "a").text()
    # jitter of a fast layer is not a stall: 3x a 0.01 ms median is below the 0.1 ms floor
    assert find_stalls("level 0", _passes([0.01] * 19 + [0.03])) == []


def test_a_stalled_pass_is_run_again_and_a_persistent_one_kept():
    def run(sequence):
        it = iter(sequence)
        return time_passes([0], lambda _key: _passes([next(it)])[0], lambda _key: None, 20)

    passes, stalls = run([0.5] * 7 + [9.0] + [0.5] * 12 + [0.5])
    assert len(passes[0]) == 20 and max(p.layers["a"] for p in passes[0]) == 0.5e-3
    assert stalls and not any(s.kept for s in stalls)
    passes, stalls = run([0.5] * 7 + [9.0] + [0.5] * 12 + [9.0] * REPEAT_ROUNDS + [0.5])
    assert any(s.kept for s in stalls)  # came back on every re-run: how the layer runs, kept


def test_a_profile_with_a_stall_injected_into_one_layer(tmp_path, monkeypatch):
    from simqos.kernels.runtime import CompiledNetwork

    real_run = CompiledNetwork.run
    timed_calls = {"n": 0}

    def stalling_run(self, x, route, op_ns=None):
        measured = op_ns is not None and not op_ns.any()  # a timed pass starts from zero, a warm-up one does not
        out = real_run(self, x, route, op_ns)
        if measured and route[0] == 0:
            timed_calls["n"] += 1
            if timed_calls["n"] == 5:  # one timed pass of level 0: fc2 stalls 3 ms
                op = int(np.flatnonzero(self.op_layers() == self.layer_names.index("fc2"))[0])
                op_ns[op] += 3_000_000
                time.sleep(0.003)
        return out

    monkeypatch.setattr(CompiledNetwork, "run", stalling_run)
    out = tmp_path / "stalled"
    result = CliRunner().invoke(app, ["profile", "mlp", "--out", str(out), *TINY_PROFILE_ARGS])
    assert result.exit_code == 0, result.output
    assert "level 0: fc2 took" in result.output and "a stall; dropped" in result.output
    provenance = json.loads((out / "profile.json").read_text())["provenance"]
    assert provenance["deployment"]["runtime"] == "simqos-nested"
    quiet = provenance["quietness"]
    assert quiet["stalled_passes"] >= 1 and any("fc2 took" in s for s in quiet["stalls"])
    samples = pd.read_csv(out / "latency_samples.csv")
    fc2 = samples[(samples["layer"] == "fc2") & (samples["level"] == 0)]
    assert len(fc2) == 20 and fc2["latency_ms"].max() < 1.0  # the 3 ms sample is not shipped
