"""Kernel benchmark: median latency of every layer kernel and its ratio to dense, same run.

    python benchmarks/kernels.py            # all shapes, 30 samples each
    python benchmarks/kernels.py --quick    # fewer shapes and samples

One thread, batch 1, float32, random weights masked to each density uniformly at random (the
pattern magnitude pruning gives a trained layer is close to this for timing purposes). Every
kernel's output is checked against the dense masked layer before it is timed. "speedup" is
dense median / kernel median: above 1 the kernel beats dense.
"""

from __future__ import annotations

import argparse
import platform

import torch
from torch import nn

from simqos.kernels import FORMATS, build_kernel
from simqos.profiler.timer import measure

LAYERS = {
    "linear 4096x4096": (lambda: nn.Linear(4096, 4096), (1, 4096)),
    "linear 2048x2048": (lambda: nn.Linear(2048, 2048), (1, 2048)),
    "linear 1024x1024": (lambda: nn.Linear(1024, 1024), (1, 1024)),
    "conv3x3 256->256 @14x14": (lambda: nn.Conv2d(256, 256, 3, padding=1), (1, 256, 14, 14)),
    "conv3x3 64->64 @56x56": (lambda: nn.Conv2d(64, 64, 3, padding=1), (1, 64, 56, 56)),
    "conv1x1 256->1024 @14x14": (lambda: nn.Conv2d(256, 1024, 1), (1, 256, 14, 14)),
}
QUICK = ("linear 4096x4096", "conv3x3 256->256 @14x14")
DENSITIES = (0.25, 0.134, 0.054)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--samples", type=int, default=30)
    args = parser.parse_args()
    samples = 10 if args.quick else args.samples
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {platform.machine()}, 1 thread, batch 1, float32, median of {samples} samples")
    print(f"{'layer':<26} {'density':>7} {'kernel':<10} {'median ms':>10} {'IQR ms':>8} {'speedup':>8}")
    for label, (make, shape) in LAYERS.items():
        if args.quick and label not in QUICK:
            continue
        layer, x = make().eval(), torch.randn(shape)
        for density in DENSITIES:
            weights = {"weight": layer.weight.detach() * (torch.rand_like(layer.weight) < density)}
            reference = torch.func.functional_call(layer, weights, (x,))
            medians = {}
            for name in ["dense", *(n for n, f in FORMATS.items() if "cpu" in f.devices)]:
                try:
                    built = build_kernel(name, layer, weights)
                except ValueError as exc:
                    print(f"{label:<26} {density:>7.3f} {name:<10} unsupported: {exc}")
                    continue
                torch.testing.assert_close(built.fn(x), reference, rtol=1e-4, atol=1e-4)
                m = measure(lambda built=built: built.fn(x), n_samples=samples, threads=1)
                medians[name] = m.median_ms
                speedup = medians["dense"] / m.median_ms
                print(f"{label:<26} {density:>7.3f} {name:<10} {m.median_ms:>10.4f} {m.iqr_ms:>8.4f} {speedup:>7.2f}x")


if __name__ == "__main__":
    main()
