"""Runtimes benchmark: a shipped bundle's model on simqos's nested runtime, torch eager, ONNX
Runtime and ExecuTorch (XNNPACK), in the same run: whole-model medians and ratios against ONNX
Runtime's dense model.

    python benchmarks/runtimes.py                                  # ResNet-1D and the digits CNN, MLP
    python benchmarks/runtimes.py --bundles resnet1d-cpu --passes 400

Each bundle's network is rebuilt from its recipe (the cached checkpoint, else trained again) and
run on its test inputs at batch 1 on one thread: every level on the nested runtime
(:mod:`simqos.kernels.runtime`, one compiled call a pass), the dense model and every level on torch's
eager dense kernels, and every level exported to ONNX Runtime and to ExecuTorch's XNNPACK backend
(:mod:`simqos.profiler.anchors`; dense kernels: a level's zeros cost what its non-zeros do there,
so its level 0 is the same dense model's time). All setups
take turns in blocks of 10 passes, stalls dropped and re-run (:mod:`simqos.profiler.passes`),
so the machine's drift weighs on all alike; the figures are medians of ``--passes`` passes.
"ratio" is a setup's median over ONNX Runtime's level 0 (the dense model): below 1 beats what a
user would deploy instead. "layers" is the sum of the nested runtime's per-layer medians inside
the pass, "alone" the sum of each layer's op timed alone: the model's time over them is what
the runtime costs beyond its kernels. Needs the ``anchors`` extra
(``pip install -e '.[anchors]'``).
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np

from simqos.bundle import load_profile
from simqos.profiler.anchors import anchors
from simqos.profiler.measure import TimerOptions, time_compiled_alone, torch_pass
from simqos.profiler.passes import PassTime, time_passes
from simqos.profiler.recipe import build_network
from simqos.profiler.timer import torch_threads
from simqos.kernels.runtime import compile_network

PROFILES = Path(__file__).resolve().parent.parent / "profiles"


def bench(name: str, passes: int) -> None:
    profile = load_profile(PROFILES / name)
    built = build_network(profile.meta.provenance.recipe)
    net, spec = built.net, built.spec
    net.module.eval()
    x = spec.dataset.x_test[:1]
    xn = np.ascontiguousarray(x.numpy())
    compiled = compile_network(net, x)
    built_anchors, notes = anchors(net, x, threads=1)
    for note in notes:
        print(note)
    if not built_anchors or not built_anchors[0].name.startswith("onnxruntime"):
        raise SystemExit("the ONNX Runtime anchor is needed: pip install -e '.[anchors]'")
    timer = TimerOptions(n_samples=30, min_sample_s=1e-3, warmup_s=0.1, threads=1)
    runs = {("torch eager", "dense"): torch_pass(net, 0, {ly.name: "dense" for ly in net.layers}, x, timer)}
    op_ns = np.zeros(len(compiled.ops), dtype=np.int64)
    layer_of_op = compiled.op_layers()
    layer_ns: dict[int, list[int]] = {}
    for level in range(net.n_levels):
        route = net.uniform_route(level)
        runs[("torch eager", f"level {level}")] = torch_pass(net, level, {ly.name: "dense" for ly in net.layers}, x, timer)
        for anchor in built_anchors:
            runs[(anchor.name, f"level {level}")] = lambda level=level, anchor=anchor: anchor.run(level)
        runs[("simqos-nested", f"level {level}")] = lambda route=route: compiled.run(xn, route, op_ns)
        layer_ns[level] = []

    def run_pass(key) -> PassTime:
        op_ns[:] = 0
        begin = time.perf_counter()
        runs[key]()
        seconds = time.perf_counter() - begin
        if key[0] == "simqos-nested":
            layer_ns[int(key[1].split()[-1])].append(int(op_ns[layer_of_op >= 0].sum()))
        return PassTime(seconds, {})

    def warm_up(key) -> None:
        start = time.perf_counter()
        while time.perf_counter() - start < timer.warmup_s:
            runs[key]()

    with torch_threads(1):
        timed, stalls = time_passes(list(runs), run_pass, warm_up, passes, {k: " ".join(k) for k in runs})
        alone = {level: sum(m.median_ms for m in time_compiled_alone(compiled, level, x, timer).values()) for level in range(net.n_levels)}
    medians = {key: float(np.median([p.seconds for p in ps])) * 1e3 for key, ps in timed.items()}
    dense = medians[(built_anchors[0].name, "level 0")]
    print(f"\n{name}: {spec.description}; batch 1, 1 thread, {passes} passes each; {len(stalls)} stalls dropped")
    print(f"{'runtime':30s} {'setup':9s} {'median ms':>10s} {'ratio':>7s} {'layers ms':>10s} {'alone ms':>9s}")
    for (runtime, setup), ms in medians.items():
        extra = ""
        if runtime == "simqos-nested":
            level = int(setup.split()[-1])
            extra = f" {np.median(layer_ns[level]) / 1e6:10.3f} {alone[level]:9.3f}"
        print(f"{runtime:30s} {setup:9s} {ms:10.3f} {ms / dense:7.2f}{extra}")
    flops = profile.layers.groupby("level")["flops"].sum()
    nested = [medians[("simqos-nested", f"level {k}")] for k in range(net.n_levels)]
    for k in range(1, net.n_levels):
        print(f"level {k} / level {k - 1}: latency {nested[k] / nested[k - 1]:.2f}, FLOPs {flops[k] / flops[k - 1]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bundles", nargs="+", default=["resnet1d-cpu", "cnn-cpu", "mlp-cpu"])
    parser.add_argument("--passes", type=int, default=300)
    args = parser.parse_args()
    print(f"{platform.processor() or platform.machine()}, {platform.python_version()}")
    for name in args.bundles:
        bench(name, args.passes)


if __name__ == "__main__":
    main()
