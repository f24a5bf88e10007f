"""A corpus of broken inputs — scenarios, sweeps, bundles, trace files, command lines, file-system
conditions — each of which must give exit status 2, one line on stderr naming the problem, no
traceback, and write nothing. ``tests/test_bad_inputs.py`` runs every case through the command
line; the cases are built here, in a temporary folder, so that any checkout can be measured
against the same corpus.
"""

from __future__ import annotations

import copy
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import yaml


@dataclass(frozen=True)
class Case:
    """``argv`` after ``simqos``; ``out`` is a folder the command must not create."""

    name: str
    argv: list[str]
    out: Path | None = None


def _base(root: Path) -> dict:
    return {
        "name": "broken",
        "seed": 1,
        "profile": str(root / "profiles" / "mlp-cpu"),
        "requests": 200,
        "warmup_requests": 0,
        "workload": {"arrival": {"kind": "poisson", "rate_hz": 200}, "deadline": {"kind": "constant", "ms": 5}},
        "device": {"speed": {"kind": "markov", "states": [{"speed": 1.0, "mean_dwell_s": 0.05}, {"speed": 0.5, "mean_dwell_s": 0.02}]}},
        "policies": [{"kind": "static", "level": 0}, {"kind": "deadline_aware"}],
        "outputs": {"plots": False},
    }


def _set(raw: dict, dotted: str, value: object) -> dict:
    raw = copy.deepcopy(raw)
    *parents, last = dotted.split(".")
    node = raw
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    node[last] = value
    return raw


SCENARIO_CHANGES = {
    "name-parent-path": ("name", "../escape"),
    "name-absolute": ("name", "/tmp/escape"),
    "name-dot": ("name", "."),
    "name-dotdot": ("name", ".."),
    "name-empty": ("name", ""),
    "rate-inf": ("workload.arrival.rate_hz", float("inf")),
    "rate-nan": ("workload.arrival.rate_hz", float("nan")),
    "rate-negative": ("workload.arrival.rate_hz", -3),
    "rate-text": ("workload.arrival.rate_hz", "fast"),
    "rate-tiny-with-markov-device": ("workload.arrival.rate_hz", 1e-9),
    "requests-huge": ("requests", 10**12),
    "deadline-inf": ("workload.deadline.ms", float("inf")),
    "deadline-zero": ("workload.deadline.ms", 0),
    "speed-inf": ("device.speed.states.0.speed", float("inf")),
    "speed-zero": ("device.speed.states.0.speed", 0),
    "dwell-inf": ("device.speed.states.0.mean_dwell_s", float("inf")),
    "slice-negative": ("device.slice_ms", -4),
    "slice-inf": ("device.slice_ms", float("inf")),
    "wake-wait-without-slices": ("device.wake_wait", [0.5]),
    "wake-wait-above-one": ("device.wake_wait", [1.5]),
    "slack-inf": ("policies", [{"kind": "deadline_aware", "slack_ms": float("inf")}]),
    "quantile-one": ("policies", [{"kind": "greedy", "quantile": 1.0}]),
    "policy-unknown": ("policies", [{"kind": "fastest"}]),
    "policy-level-too-high": ("policies", [{"kind": "static", "level": 9}]),
    "policy-unknown-param": ("policies", [{"kind": "lookahead", "queue_len": 3}]),
    "policies-empty": ("policies", []),
    "capacity-negative": ("workload.queue", {"capacity": -1}),
    "late-unknown": ("workload.queue", {"late": "skip"}),
    "replications-zero": ("replications", 0),
    "warmup-too-many": ("warmup_requests", 500),
    "objective-unknown": ("objective", {"kind": "speed"}),
    "objective-floor-without-nines": ("objective", {"accuracy_floor": 0.9}),
    "precision-budget-low": ("precision", {"nines_half_width": 0.1, "max_replications": 0}),
    "profile-missing": ("profile", "no/such/profile"),
    "plugin-empty-name": ("plugins", [""]),
    "plugin-relative-name": ("plugins", [".relative"]),
    "plugin-missing": ("plugins", ["no_such_module_anywhere"]),
    "jitter-inf": ("workload.arrival", {"kind": "periodic", "fps": 30, "jitter_ms": float("inf")}),
    "lognormal-sigma-inf": ("workload.deadline", {"kind": "lognormal", "median_ms": 5, "sigma": float("inf")}),
    "unknown-key": ("workload.arival", {"kind": "poisson"}),
}


def cases(tmp: Path, root: Path) -> list[Case]:
    """Build the corpus under ``tmp`` for the checkout at ``root``."""
    base = _base(root)
    out = tmp / "out"
    made: list[Case] = []

    def scenario(name: str, raw: object, text: str | None = None) -> Path:
        path = tmp / f"{name}.yaml"
        path.write_text(text if text is not None else yaml.safe_dump(raw))
        return path

    for name, (dotted, value) in SCENARIO_CHANGES.items():
        made.append(Case(name, ["run", str(scenario(name, _set(base, dotted, value))), "--out", str(out)], out))

    # YAML and file-system conditions
    good = yaml.safe_dump(base)
    made.append(Case("yaml-duplicate-key", ["run", str(scenario("dup", None, good + "seed: 2\n")), "--out", str(out)], out))
    made.append(Case("yaml-deep", ["run", str(scenario("deep", None, "a: " + "[" * 500 + "]" * 500 + "\n")), "--out", str(out)], out))
    bomb = "a: &a [1,1,1,1,1,1,1,1,1]\n" + "".join(
        f"{x}: &{x} [{', '.join(['*' + p] * 9)}]\n" for p, x in zip("abcdefg", "bcdefgh")
    )
    made.append(Case("yaml-alias-bomb", ["run", str(scenario("bomb", None, good + "x:\n  " + bomb.replace("\n", "\n  "))), "--out", str(out)], out))
    made.append(Case("yaml-list", ["run", str(scenario("list", None, "- 1\n- 2\n")), "--out", str(out)], out))
    made.append(Case("yaml-empty", ["run", str(scenario("empty", None, "")), "--out", str(out)], out))
    made.append(Case("yaml-invalid", ["run", str(scenario("invalid", None, "a: [1, 2\n")), "--out", str(out)], out))
    made.append(Case("yaml-nul-character", ["run", str(scenario("nul", None, good + "\x00\n")), "--out", str(out)], out))
    (tmp / "binary.yaml").write_bytes(b"\xff\xfe\x00\x01\x02junk")
    made.append(Case("file-binary", ["run", str(tmp / "binary.yaml"), "--out", str(out)], out))
    (tmp / "a-folder.yaml").mkdir()
    made.append(Case("file-is-folder", ["run", str(tmp / "a-folder.yaml"), "--out", str(out)], out))
    (tmp / "loop.yaml").symlink_to(tmp / "loop.yaml")
    made.append(Case("file-symlink-loop", ["run", str(tmp / "loop.yaml"), "--out", str(out)], out))
    made.append(Case("file-missing", ["run", str(tmp / "nope.yaml"), "--out", str(out)], out))

    # plugins that fail while importing
    plugins = tmp / "plugins"
    plugins.mkdir()
    (plugins / "raising_plugin.py").write_text("raise RuntimeError('broken on import')\n")
    (plugins / "syntax_plugin.py").write_text("def f(:\n")
    for module in ("raising_plugin", "syntax_plugin"):
        raw = _set(base, "plugins", [module])
        made.append(Case(f"plugin-{module}", ["run", str(scenario(module, raw)), "--out", str(out)], out))

    # trace files
    (tmp / "trace-folder.csv").mkdir()
    (tmp / "trace-binary.csv").write_bytes(b"\xff\xfe\x00junk")
    (tmp / "one-arrival.csv").write_text("arrival_s\n0.0\n")
    (tmp / "negative-speed.csv").write_text("time_s,speed\n0,1\n1,-2\n")
    (tmp / "no-column.csv").write_text("t,s\n0,1\n")
    traces = {
        "trace-folder": ("workload.arrival", {"kind": "trace", "path": str(tmp / "trace-folder.csv")}),
        "trace-binary": ("workload.arrival", {"kind": "trace", "path": str(tmp / "trace-binary.csv")}),
        "trace-no-column": ("workload.arrival", {"kind": "trace", "path": str(tmp / "no-column.csv")}),
        "speed-trace-negative": ("device.speed", {"kind": "trace", "path": str(tmp / "negative-speed.csv")}),
    }
    for name, (dotted, value) in traces.items():
        made.append(Case(name, ["run", str(scenario(name, _set(base, dotted, value))), "--out", str(out)], out))
    one_row = _set(base, "workload.arrival", {"kind": "trace", "path": str(tmp / "one-arrival.csv")})
    one_row = {k: v for k, v in one_row.items() if k != "requests"} | {"duration_s": 10}
    made.append(Case("trace-one-row-with-duration", ["run", str(scenario("one-row", one_row)), "--out", str(out)], out))

    # damaged bundles (copies of a shipped one)
    def bundle(name: str) -> Path:
        folder = tmp / f"bundle-{name}"
        shutil.copytree(root / "profiles" / "mlp-cpu", folder)
        return folder

    damaged = bundle("no-routes")
    (damaged / "routes.csv").unlink()
    reroute = bundle("bad-reroute")
    meta = json.loads((reroute / "profile.json").read_text())
    meta["reroute_after"] = ["no_such_layer"]
    (reroute / "profile.json").write_text(json.dumps(meta))
    seconds = bundle("seconds")
    layers = (seconds / "layers.csv").read_text().splitlines()
    header = layers[0].split(",")
    column = header.index("latency_median_ms")
    rows = [line.split(",") for line in layers[1:]]
    for row in rows:
        row[column] = str(float(row[column]) / 1000)
    (seconds / "layers.csv").write_text("\n".join([layers[0], *(",".join(r) for r in rows)]) + "\n")
    meta_folder = bundle("meta-is-a-folder")
    (meta_folder / "profile.json").unlink()
    (meta_folder / "profile.json").mkdir()
    table_folder = bundle("table-is-a-folder")
    (table_folder / "layers.csv").unlink()
    (table_folder / "layers.csv").mkdir()
    for name, folder in (("bundle-no-routes", damaged), ("bundle-bad-reroute", reroute), ("bundle-medians-in-seconds", seconds),
                         ("bundle-meta-is-a-folder", meta_folder), ("bundle-table-is-a-folder", table_folder)):
        made.append(Case(name, ["run", str(scenario(name, _set(base, "profile", str(folder)))), "--out", str(out)], out))
        made.append(Case(f"show-{name}", ["show", str(folder)]))
    made.append(Case("show-a-file", ["show", str(tmp / "one-arrival.csv")]))

    # command lines
    good_path = scenario("good", base)
    made += [
        Case("cli-unknown-option", ["run", str(good_path), "--bogus", "1", "--out", str(out)], out),
        Case("cli-bad-number", ["run", str(good_path), "--requests", "many", "--out", str(out)], out),
        Case("cli-workers-zero", ["run", str(good_path), "--workers", "0", "--out", str(out)], out),
        Case("cli-scheduler-without-port", ["run", str(good_path), "--executor", "dask", "--scheduler", "nonsense", "--out", str(out)], out),
        Case("cli-scheduler-without-dask", ["run", str(good_path), "--scheduler", "tcp://localhost:8786", "--out", str(out)], out),
        Case("cli-unknown-executor", ["run", str(good_path), "--executor", "ray", "--out", str(out)], out),
        Case("cli-requests-negative", ["run", str(good_path), "--requests", "-5", "--out", str(out)], out),
        Case("cli-replications-zero", ["run", str(good_path), "--replications", "0", "--out", str(out)], out),
        Case("cli-unknown-command", ["runn", str(good_path)]),
        Case("cli-missing-argument", ["run"]),
        Case("profile-unknown-model", ["profile", "resnet9000", "--out", str(out)], out),
        Case("profile-bad-levels", ["profile", "mlp", "--levels", "0.1,0.5", "--out", str(out)], out),
        Case("profile-factory-needs-arguments", ["profile", "simqos.nested.masks:keep_count", "--out", str(out)], out),
        Case("train-unknown-scope", ["train", "mlp", "--scope", "sideways"]),
        Case("train-bad-lr", ["train", "mlp", "--lr", "fast"]),
    ]

    # output folders that must not be touched
    (tmp / "a-file").write_text("keep")
    made.append(Case("out-is-a-file", ["run", str(good_path), "--out", str(tmp / "a-file")]))
    users = tmp / "users-folder"
    users.mkdir()
    (users / "canary.txt").write_text("keep")
    made.append(Case("out-is-a-users-folder", ["run", str(good_path), "--out", str(users)]))
    made.append(Case("out-is-the-parent", ["run", str(good_path), "--out", ".."]))

    # report and sweep
    (tmp / "not-results").mkdir()
    made.append(Case("report-not-results", ["report", str(tmp / "not-results")]))
    made.append(Case("report-a-file", ["report", str(tmp / "a-file")]))
    for name, body in (("sweep-empty-grid", {"base": str(good_path), "grid": {}}),
                       ("sweep-empty-cells", {"base": str(good_path), "cells": []}),
                       ("sweep-bad-field", {"base": str(good_path), "grid": {"workload.nothing": [1, 2]}}),
                       ("sweep-bad-value", {"base": str(good_path), "grid": {"workload.arrival.rate_hz": [-1]}})):
        path = tmp / f"{name}.sweep.yaml"
        path.write_text(yaml.safe_dump(body))
        made.append(Case(name, ["sweep", str(path), "--out", str(out)], out))
    misspelt_base = tmp / "lookahed.yaml"
    misspelt_base.write_text(yaml.safe_dump(_set(_base(root), "policies", [{"kind": "lookahed"}])))
    (tmp / "misspelt-base.sweep.yaml").write_text(yaml.safe_dump({"base": str(misspelt_base), "grid": {"seed": [1, 2]}}))
    made.append(Case("sweep-base-policy-misspelt", ["sweep", str(tmp / "misspelt-base.sweep.yaml"), "--out", str(out)], out))
    ok_sweep = tmp / "ok.sweep.yaml"
    ok_sweep.write_text(yaml.safe_dump({"base": str(good_path), "grid": {"seed": [1]}}))
    made.append(Case("sweep-workers-zero", ["sweep", str(ok_sweep), "--workers", "0", "--out", str(out)], out))
    made.append(Case("sweep-executor-unknown", ["sweep", str(ok_sweep), "--executor", "cloud", "--out", str(out)], out))
    return made


def classify(returncode: int | None, err: str, out: Path | None) -> str:
    """What a case did, in the terms the corpus holds commands to: ``ok`` (exit 2, one line that
    starts ``error:``, nothing written), else the first way it fell short."""
    if returncode is None:
        return "hung (killed after the time limit)"
    if "Traceback" in err:
        return "traceback"
    if returncode != 2:
        return f"exit {returncode}"
    lines = err.strip().splitlines()
    if len(lines) != 1 or not lines[0].startswith("error: "):
        return "more than one line" if len(lines) > 1 else "no error line"
    if out is not None and (out.exists() or out.with_name(out.name + ".partial").exists()):
        return "wrote its output"
    return "ok"


def measure(checkout: Path, timeout_s: float = 60.0) -> dict[str, str]:
    """Run every case against the simqos at ``checkout`` (its own profiles), each in a fresh
    temporary folder, through ``python -m simqos``; returns the outcome of each case."""
    import os
    import subprocess
    import sys
    import tempfile

    outcomes: dict[str, str] = {}
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    with tempfile.TemporaryDirectory() as names_tmp:
        names = [case.name for case in cases(Path(names_tmp), checkout)]
    for name in names:
        with tempfile.TemporaryDirectory() as tmp_name:
            tmp = Path(tmp_name)
            (tmp / "cwd" / "sub").mkdir(parents=True)  # "--out .." stays inside tmp
            case = {c.name: c for c in cases(tmp, checkout)}[name]
            try:
                done = subprocess.run([sys.executable, "-m", "simqos", *case.argv], cwd=tmp / "cwd" / "sub", env=env,
                                      capture_output=True, text=True, timeout=timeout_s)
                outcomes[name] = classify(done.returncode, done.stderr, case.out)
            except subprocess.TimeoutExpired:
                outcomes[name] = classify(None, "", case.out)
    return outcomes


if __name__ == "__main__":  # python tests/broken_inputs.py [CHECKOUT]: the corpus against a checkout
    import collections
    import sys

    root = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent).resolve()
    results = measure(root)
    for name, outcome in results.items():
        if outcome != "ok":
            print(f"{name}: {outcome}")
    counts = collections.Counter(results.values())
    print(f"{root}: {counts['ok']} of {len(results)} cases ok; " + ", ".join(f"{n} {k}" for k, n in counts.most_common() if k != "ok"))
