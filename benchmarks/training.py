"""Training benchmark: each shipped family trained sparse-first, as its bundle's recorded
recipe trains it, timed, with dense / level 0 / level 1 test accuracy.

    python benchmarks/training.py                       # every family with measured accuracy
    python benchmarks/training.py resnet1d-cpu gat-sbm-cpu
    python benchmarks/training.py --recorded            # what each bundle's own training took

Each bundle's ``provenance.recipe`` gives the model, its levels and the training, so the
settings are exactly the bundle's; training runs into a fresh temporary cache (nothing
cached is reused) with 2 torch threads, on this machine. A wall-clock figure, not a test: the
machine is shared, so run it when it is quiet. ``--recorded`` retrains nothing: it prints the
wall time and thread count each bundle's profile run recorded when it trained the network (its
``provenance.training_s``), with the accuracies the bundle measured.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FAMILIES = ("resnet1d-cpu", "pointnet2-shapes-cpu", "gnmt-grammar-cpu", "gat-sbm-cpu")


def recorded(names: list[str]) -> None:
    """Each bundle's own training time and accuracies, as its profile run recorded them."""
    from simqos.bundle import load_profile

    print(f"{'bundle':<22} {'train s':>8} {'threads':>7} {'dense':>8} {'level 0':>8} {'level 1':>8}")
    for name in names:
        bundle = load_profile(ROOT / "profiles" / name)
        made, accuracy = bundle.meta.provenance, bundle.meta.accuracy
        test = bundle.routes[bundle.routes["split"] == "test"].set_index("route")["accuracy"]
        dense = next(a.accuracy for a in accuracy.dense if a.split == "test")
        segments = len(test.index[0].split("-"))
        levels = [test["-".join([str(k)] * segments)] for k in range(2)]
        seconds = "unknown" if made.training_s is None else f"{made.training_s:.0f}"
        print(f"{name:<22} {seconds:>8} {made.training_threads or '':>7} {dense:8.2%} {levels[0]:8.2%} {levels[1]:8.2%}")


def main(names: list[str]) -> None:
    os.environ["SIMQOS_CACHE_DIR"] = tempfile.mkdtemp(prefix="simqos-train-bench-")
    from simqos.bundle import load_profile
    from simqos.profiler.recipe import build_network, route_report

    print(f"{'bundle':<22} {'train s':>8} {'dense':>16} {'level 0':>16} {'level 1':>16}")
    for name in names:
        recipe = load_profile(ROOT / "profiles" / name).meta.provenance.recipe
        started = time.perf_counter()
        built = build_network(recipe, retrain=True)
        seconds = time.perf_counter() - started
        net, report = built.net, route_report(built)
        test = {a.route: a for a in report.accuracies if a.split == "test"}
        cells = [next(a for a in report.dense if a.split == "test")] + [test[net.uniform_route(k)] for k in range(2)]
        text = [f"{a.accuracy:.2%} ±{(a.interval[1] - a.interval[0]) / 2:.2%}" for a in cells]
        print(f"{name:<22} {seconds:8.0f} {text[0]:>16} {text[1]:>16} {text[2]:>16}", flush=True)


if __name__ == "__main__":
    args = sys.argv[1:]
    if "--recorded" in args:
        recorded([a for a in args if a != "--recorded"] or list(FAMILIES))
    else:
        main(args or list(FAMILIES))
