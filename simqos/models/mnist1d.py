"""MNIST-1D (Greydanus 2020, "Scaling down deep learning"): a published benchmark that is
*generated*, not downloaded, and hard enough that sparsity costs accuracy.

Each sample is one of ten 1D digit templates, padded, randomly scaled, translated, sheared
and blurred with correlated and i.i.d. noise, resampled to 40 points. The PyPI package
``mnist1d`` generates it procedurally from a seed (``make_dataset``, pure numpy; simqos never
calls its downloading loader). Its generator seeds numpy's and Python's global random state,
so simqos saves and restores both around it: nothing else's randomness changes. 20,000
samples take about 10 s to generate and are cached in ``$SIMQOS_CACHE_DIR/datasets``.

Split: 12,000 training, 3,000 validation, 5,000 test samples (a 95 % interval of about
±0.6 points at 90 % accuracy).

Models:

- ``cnn1d``: four 1D convolutions (kernel 5 then 3, stride 2 after the first) of ``channels``
  each, ReLU, and a linear classifier; a reroute point after every layer.
- ``resnet1d``: the ResNet family — ResNet-50's bottleneck block structure (1x1, 3x3, 1x1 x4,
  projection shortcuts, batch norm), at reduced depth and width: stages of
  ``counts`` blocks with widths ``width`` x (1, 2, 4, 8) / 2; a reroute point after the stem and
  after every block.
"""

from __future__ import annotations

import random
from collections import OrderedDict

import numpy as np
import torch
from torch import nn

from simqos.cache import cache_dir
from simqos.models.paper import BottleneckResNet
from simqos.models.spec import Dataset, ModelSpec

__all__ = ["cnn1d", "load_mnist1d", "mlp1d", "resnet1d"]

SPLITS = (12_000, 3_000, 5_000)
"""Training, validation and test samples."""
LENGTH = 40
"""Points per sample (the benchmark's ``final_seq_length``)."""


def _generate(n_samples: int, seed: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    import mnist1d.data  # imports requests and matplotlib at import time: only when generating

    args = mnist1d.data.get_dataset_args()
    args.num_samples, args.seed, args.train_split, args.final_seq_length = n_samples, seed, 1.0, length
    numpy_state, python_state = np.random.get_state(), random.getstate()
    try:
        data = mnist1d.data.make_dataset(args)
    finally:
        np.random.set_state(numpy_state)
        random.setstate(python_state)
    return data["x"].astype(np.float32), data["y"].astype(np.int64)


def load_mnist1d(seed: int = 42, splits: tuple[int, int, int] = SPLITS, length: int = LENGTH) -> Dataset:
    """MNIST-1D with ``sum(splits)`` samples from ``seed`` (42 is the benchmark's), split into
    training, validation and test in that order; inputs (N, 1, ``length``), labels (N,). A
    length other than the benchmark's 40 resamples the same transformed signals more finely
    (the generator's ``final_seq_length``): the task is the same, each input longer."""
    n = sum(splits)
    suffix = "" if length == LENGTH else f"-len{length}"
    path = cache_dir() / "datasets" / f"mnist1d-{n}-seed{seed}{suffix}.npz"
    if path.exists():
        saved = np.load(path)
        x, y = saved["x"], saved["y"]
    else:
        x, y = _generate(n, seed, length)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, x=x, y=y)
        tmp.replace(path)
    xs, ys = torch.from_numpy(x).unsqueeze(1), torch.from_numpy(y)
    a, b = splits[0], splits[0] + splits[1]
    return Dataset(
        name=f"MNIST-1D (Greydanus 2020), {n} samples generated from seed {seed}"
        + ("" if length == LENGTH else f", {length} points each") + f"; split {'/'.join(map(str, splits))}",
        x_train=xs[:a], y_train=ys[:a], x_val=xs[a:b], y_val=ys[a:b], x_test=xs[b:], y_test=ys[b:],
    )


def mlp1d(hidden: int = 1024, depth: int = 2, seed: int = 0, samples: int = sum(SPLITS)) -> ModelSpec:
    """An MLP 40 -> ``hidden`` x ``depth`` -> 10 with ReLU on MNIST-1D; a reroute point after
    every layer. Wide layers keep its latency in the kernels (where sparsity pays) at batch 1;
    without convolutions it needs all of its capacity for the benchmark's translations."""
    torch.manual_seed(seed)
    widths = [LENGTH] + [hidden] * depth
    layers: OrderedDict[str, nn.Module] = OrderedDict(flatten=nn.Flatten())
    for i, (w_in, w_out) in enumerate(zip(widths[:-1], widths[1:]), start=1):
        layers[f"fc{i}"] = nn.Linear(w_in, w_out)
        layers[f"relu{i}"] = nn.ReLU()
    layers["out"] = nn.Linear(widths[-1], 10)
    return _sequential("mlp1d", layers, samples, f"MNIST-1D MLP 40-{'-'.join([str(hidden)] * depth)}-10, ReLU")


def cnn1d(channels: int = 64, seed: int = 0, samples: int = sum(SPLITS)) -> ModelSpec:
    """The 1D CNN of the module docstring. ``samples`` shrinks the dataset (tests)."""
    torch.manual_seed(seed)
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    length, ch = LENGTH, 1
    for i, (kernel, stride) in enumerate(((5, 1), (3, 2), (3, 2), (3, 2)), start=1):
        layers[f"conv{i}"] = nn.Conv1d(ch, channels, kernel, stride, kernel // 2)
        layers[f"relu{i}"] = nn.ReLU()
        length, ch = (length + 2 * (kernel // 2) - kernel) // stride + 1, channels
    layers["flatten"] = nn.Flatten()
    layers["fc"] = nn.Linear(channels * length, 10)
    return _sequential("cnn1d", layers, samples, f"MNIST-1D CNN, 4 conv1d x {channels} channels + linear, ReLU")


def resnet1d(width: int = 16, counts: str = "1,1,2,1", seed: int = 0, samples: int = sum(SPLITS), length: int = LENGTH) -> ModelSpec:
    """The 1D bottleneck ResNet of the module docstring; ``counts`` blocks per stage, on inputs
    of ``length`` points."""
    torch.manual_seed(seed)
    blocks = tuple(int(c) for c in str(counts).split(","))
    mids = tuple(width * m // 2 for m in (1, 2, 4, 8))[: len(blocks)]
    module = BottleneckResNet(1, 1, width, 5, 1, mids, blocks, 10)
    return ModelSpec(
        name="resnet1d",
        module=module,
        example_input=torch.zeros(1, 1, length),
        reroute_after=module.block_ends(),
        dataset=load_mnist1d(splits=_scaled(samples), length=length),
        description=f"MNIST-1D bottleneck ResNet (ResNet-50 blocks), stem {width}, stages {'-'.join(map(str, blocks))}, "
        f"widths {'-'.join(str(4 * m) for m in mids)}" + ("" if length == LENGTH else f", {length}-point inputs"),
    )


def _sequential(name: str, layers: OrderedDict, samples: int, description: str) -> ModelSpec:
    """The spec of a plain layer stack on MNIST-1D (one segment: no reroute points)."""
    return ModelSpec(name=name, module=nn.Sequential(layers), example_input=torch.zeros(1, 1, LENGTH), reroute_after=None,
                     dataset=load_mnist1d(splits=_scaled(samples)), description=description)


def _scaled(samples: int) -> tuple[int, int, int]:
    """:data:`SPLITS` scaled to ``samples`` in all (each split at least 10)."""
    total = sum(SPLITS)
    return tuple(max(10, samples * s // total) for s in SPLITS)  # type: ignore[return-value]
