"""Training benchmark: each shipped family trained sparse-first, as its bundle's recorded
command trains it, timed, with dense / level 0 / level 1 test accuracy.

    python benchmarks/training.py                       # every family with measured accuracy
    python benchmarks/training.py resnet1d-cpu gat-sbm-cpu

Each bundle's ``provenance.command`` (``simqos profile ...``) is parsed by that command itself,
so the settings are exactly the bundle's; training runs into a fresh temporary cache (nothing
cached is reused) with 2 torch threads, on this machine. A wall-clock figure, not a test: the
machine is shared, so run it when it is quiet.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FAMILIES = ("resnet1d-cpu", "pointnet2-shapes-cpu", "gnmt-grammar-cpu", "gat-sbm-cpu")


def main(names: list[str]) -> None:
    os.environ["SIMQOS_CACHE_DIR"] = tempfile.mkdtemp(prefix="simqos-train-bench-")
    from simqos.cli import _model_kwargs, _profile_params, _route_report, _train_config
    from simqos.models import build_model
    from simqos.nested.masks import validate_densities
    from simqos.nested.training import train_nested
    from simqos.profile import load_profile
    from simqos.profiler.timer import torch_threads

    print(f"{'bundle':<22} {'train s':>8} {'dense':>16} {'level 0':>16} {'level 1':>16}")
    for name in names:
        params = _profile_params(load_profile(ROOT / "profiles" / name))
        densities = validate_densities(tuple(float(d) for d in params["levels"].split(",")))
        spec = build_model(params["model"], **_model_kwargs(params["model_arg"]))
        config = _train_config(params, params["growth"])
        with torch_threads(2):
            started = time.perf_counter()
            net = train_nested(spec, densities, config)
            seconds = time.perf_counter() - started
        report = _route_report(net, spec)
        test = {a.route: a for a in report.accuracies if a.split == "test"}
        cells = [next(a for a in report.dense if a.split == "test")] + [test[net.uniform_route(k)] for k in range(2)]
        text = [f"{a.accuracy:.2%} ±{(a.interval[1] - a.interval[0]) / 2:.2%}" for a in cells]
        print(f"{name:<22} {seconds:8.0f} {text[0]:>16} {text[1]:>16} {text[2]:>16}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:] or list(FAMILIES))
