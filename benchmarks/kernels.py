"""Kernel benchmark: median latency of every layer kernel and its ratio to dense, same run.

    python benchmarks/kernels.py            # all shapes, 30 samples each
    python benchmarks/kernels.py --quick    # fewer shapes and samples

One thread, batch 1, float32, random weights masked to each density uniformly at random (the
pattern magnitude pruning gives a trained layer is close to this for timing purposes). Every
kernel's output is checked against the dense masked layer before it is timed. "speedup" is
dense median / kernel median: above 1 the kernel beats dense. "of bound" is the time the bytes
the kernel must move (its weight storage, input and output) would take at the read bandwidth
measured in the same run (one thread summing a 512 MB array), divided by its median: 100 %
would be the physical limit. Dense GEMV can exceed 100 %: its tuned prefetching reads faster
than the plain summing probe, so the figures are a conservative distance to the limit.

A second table times the nested layout as it is deployed: one shared copy of the 13.4 % level
serving both nested levels (13.4 % and 5.4 %), and its storage against level 0 alone. A third
times its batched product against torch's CSR at batch 1, 16 and 64, and at the GAT's size. A
fourth times a Linear layer's batch of rows as a model hands it over, ``x @ W.T`` for the GAT's
x (6,000 x 500): the dense product, torch's CSR and the nested layout with x and the result
transposed around ``W @ x``, and the nested layout taking the rows as they come (``matmul_rows``).
A fifth times the GNMT's LSTM layers (hidden 128) as it runs them: torch's LSTM against
``nested_lstm`` at every density, 100 % included — the compiled recurrence on dense weights, so
that what is the arithmetic's and what is torch's per-call cost can be told apart.
"""

from __future__ import annotations

import argparse
import platform

import numpy as np
import torch
from torch import nn

from simqos.kernels import build_kernel, kernel_names
from simqos.kernels.nested import NestedSell
from simqos.nested.masks import nested_ranks
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


def read_bandwidth_gb_s(samples: int) -> float:
    """Memory read bandwidth: summing a 512 MB array, median of ``samples``, in GB/s."""
    big = np.ones(128 * 1024 * 1024, dtype=np.float32)
    m = measure(lambda: big.sum(), n_samples=max(3, samples // 5), threads=1)
    return big.nbytes / (m.median_ms / 1e3) / 1e9


def nested_table(samples: int) -> None:
    """Both nested levels of one shared copy, for the Linear shapes."""
    print(f"\n{'shared nested storage':<26} {'level':>5} {'density':>7} {'median ms':>10} {'speedup':>8} {'bytes / level 0 alone':>22}")
    for label, (make, shape) in LAYERS.items():
        if not label.startswith("linear"):
            continue
        layer = make()
        w = layer.weight.detach()
        ranks = nested_ranks(w.abs() * torch.rand_like(w), (0.134, 0.054))
        w = w * (ranks >= 0)
        matrix = NestedSell.from_ranks(w, ranks, 2)
        x = torch.randn(shape[1])
        dense = measure(lambda: w @ x, n_samples=samples, threads=1).median_ms
        for level, density in enumerate((0.134, 0.054)):
            torch.testing.assert_close(torch.from_numpy(matrix.matmul(level, x.numpy())), (w * (ranks >= level)) @ x, rtol=1e-4, atol=1e-4)
            m = measure(lambda level=level: matrix.matmul(level, x.numpy()), n_samples=samples, threads=1)
            ratio = matrix.nbytes / matrix.level_nbytes(0)
            print(f"{label:<26} {level:>5} {density:>7.3f} {m.median_ms:>10.4f} {dense / m.median_ms:>7.2f}x {ratio:>21.3f}x")


BATCHES = (1, 16, 64)
"""Columns of x in the batched table (a batch of requests, a convolution's positions, a graph's nodes)."""


def batched_table(samples: int) -> None:
    """The nested layout's batched product against torch's CSR, 4096 x 4096, both levels of one
    shared copy, and the GAT's projection (256 x 500 at 14.6 % over 6,000 nodes)."""
    print(f"\n{'batched product':<26} {'batch':>6} {'level':>5} {'density':>7} {'nested ms':>10} {'torch CSR ms':>13} {'CSR / nested':>13}")
    shapes = [("linear 4096x4096", 4096, 4096, (0.134, 0.054), BATCHES), ("GAT projection 256x500", 256, 500, (0.146, 0.067), (6000,))]
    for label, rows, cols, densities, batches in shapes:
        w = torch.randn(rows, cols)
        ranks = nested_ranks(w.abs() * torch.rand_like(w), densities)
        matrix = NestedSell.from_ranks(w * (ranks >= 0), ranks, len(densities))
        for batch in batches:
            x = torch.randn(cols, batch)
            xn = x.numpy() if batch > 1 else x.numpy()[:, 0].copy()
            for level, density in enumerate(densities):
                masked = w * (ranks >= level)
                torch.testing.assert_close(torch.from_numpy(matrix.matmul(level, xn)).reshape(rows, batch), masked @ x, rtol=1e-4, atol=1e-3)
                csr = masked.to_sparse_csr()
                nested = measure(lambda level=level: matrix.matmul(level, xn), n_samples=samples, threads=1).median_ms
                torch_csr = measure(lambda: csr @ x, n_samples=samples, threads=1).median_ms
                print(f"{label:<26} {batch:>6} {level:>5} {density:>7.3f} {nested:>10.3f} {torch_csr:>13.3f} {torch_csr / nested:>12.2f}x")


def linear_rows_table(samples: int) -> None:
    """``x @ W.T`` for the GAT's projection (x 6,000 x 500, W 256 x 500 at 14.6 % and 6.7 %, one
    shared copy), each way against the dense product in the same run."""
    rows, cols, batch, densities = 256, 500, 6000, (0.146, 0.067)
    w = torch.randn(rows, cols)
    ranks = nested_ranks(w.abs() * torch.rand_like(w), densities)
    matrix = NestedSell.from_ranks(w * (ranks >= 0), ranks, len(densities))
    x = torch.randn(batch, cols)
    xn = x.numpy()
    print(f"\n{'Linear rows x @ W.T':<26} {'level':>5} {'density':>7} {'way':<26} {'median ms':>10} {'vs dense':>9}")
    for level, density in enumerate(densities):
        masked = w * (ranks >= level)
        csr = masked.to_sparse_csr()
        torch.testing.assert_close(torch.from_numpy(matrix.matmul_rows(level, xn)), x @ masked.T, rtol=1e-4, atol=1e-3)
        ways = {
            "dense": lambda: x @ masked.T,
            "torch CSR, transposed": lambda: (csr @ x.t().contiguous()).t().contiguous(),
            "nested, transposed": lambda level=level: matrix.matmul(level, np.ascontiguousarray(xn.T)).T.copy(),
            "nested rows": lambda level=level: matrix.matmul_rows(level, xn),
        }
        medians = {way: measure(fn, n_samples=samples, threads=1).median_ms for way, fn in ways.items()}
        for way, ms in medians.items():
            print(f"{'GAT projection 256x500':<26} {level:>5} {density:>7.3f} {way:<26} {ms:>10.3f} {ms / medians['dense']:>8.2f}x")


def lstm_table(samples: int) -> None:
    """The GNMT's LSTM layers, one thread: a decoder step (one token from a state, inputs 256 and
    128) and the encoder's 24 steps, torch's dense LSTM against ``nested_lstm`` at 100 %, 13.4 %
    and 5.4 % of the weights."""
    print(f"\n{'LSTM (hidden 128)':<26} {'kernel':<12} {'density':>7} {'median us':>10} {'vs torch':>9}")
    shapes = {"decoder step, input 256": (256, 1), "decoder step, input 128": (128, 1), "encoder, 24 steps": (128, 24)}
    for label, (inputs, steps) in shapes.items():
        lstm = nn.LSTM(inputs, 128, batch_first=True).eval()
        x, state = torch.randn(1, steps, inputs), (torch.randn(1, 1, 128), torch.randn(1, 1, 128))
        with torch.no_grad():
            torch_us = measure(lambda: lstm(x, state), n_samples=samples, threads=1).median_ms * 1e3
            print(f"{label:<26} {'torch':<12} {1.0:>7.3f} {torch_us:>10.1f} {1.0:>8.2f}x")
            for density in (1.0, *DENSITIES[1:]):
                weights = {n: p.detach() * (torch.rand(p.shape) < density) if "weight" in n else p.detach()
                           for n, p in lstm.named_parameters()}
                built = build_kernel("nested_lstm", lstm, weights)
                torch.testing.assert_close(built.fn(x, state), torch.func.functional_call(lstm, weights, (x, state)), rtol=1e-4, atol=1e-5)
                us = measure(lambda built=built: built.fn(x, state), n_samples=samples, threads=1).median_ms * 1e3
                print(f"{label:<26} {'nested_lstm':<12} {density:>7.3f} {us:>10.1f} {us / torch_us:>8.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--samples", type=int, default=30)
    args = parser.parse_args()
    samples = 10 if args.quick else args.samples
    torch.manual_seed(0)
    bandwidth = read_bandwidth_gb_s(samples)
    print(f"torch {torch.__version__}, {platform.machine()}, 1 thread, batch 1, float32, median of {samples} samples")
    print(f"measured read bandwidth: {bandwidth:.1f} GB/s")
    print(f"{'layer':<26} {'density':>7} {'kernel':<11} {'median ms':>10} {'IQR ms':>8} {'speedup':>8} {'of bound':>8}")
    for label, (make, shape) in LAYERS.items():
        if args.quick and label not in QUICK:
            continue
        layer, x = make().eval(), torch.randn(shape)
        for density in DENSITIES:
            weights = {"weight": layer.weight.detach() * (torch.rand_like(layer.weight) < density)}
            reference = torch.func.functional_call(layer, weights, (x,))
            medians = {}
            for name in kernel_names("cpu"):
                try:
                    built = build_kernel(name, layer, weights)
                except ValueError:  # not a kernel for this kind of layer
                    continue
                torch.testing.assert_close(built.fn(x), reference, rtol=1e-4, atol=1e-4)
                m = measure(lambda built=built: built.fn(x), n_samples=samples, threads=1)
                medians[name] = m.median_ms
                speedup = medians["dense"] / m.median_ms
                moved = built.resident_bytes + (x.numel() + reference.numel()) * 4
                bound = moved / (bandwidth * 1e9) * 1e3 / m.median_ms
                print(
                    f"{label:<26} {density:>7.3f} {name:<11} {m.median_ms:>10.4f} {m.iqr_ms:>8.4f} "
                    f"{speedup:>7.2f}x {bound:>7.0%}"
                )
    nested_table(samples)
    batched_table(samples)
    linear_rows_table(samples)
    lstm_table(samples)


if __name__ == "__main__":
    main()
