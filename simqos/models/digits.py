"""Two small models trained on scikit-learn's bundled handwritten digits (no download).

The data: 1,797 8x8 grey images of the digits 0-9 (``sklearn.datasets.load_digits``), pixel
values 0..16 scaled to [0, 1], split stratified with a fixed seed into 987 training, 270
validation and 540 test images (the test split is the 30 % it has always been). Easy: sparse
levels barely lose accuracy here — the MNIST-1D models (:mod:`simqos.models.mnist1d`) show the
trade-off. The models are wide enough that their layer kernels, not Python overhead, dominate
latency at batch 1 (hidden widths of 1,024 and more).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from simqos.models.spec import Dataset, ModelSpec

__all__ = ["digits_cnn", "digits_mlp", "load_digits_dataset"]

_SPLIT_SEED = 0
_TEST_FRACTION = 0.3
_VALIDATION_SHARE = 0.15 / 0.7


def load_digits_dataset(image: bool) -> Dataset:
    """The digits split described in the module docstring.

    ``image=True`` gives inputs shaped (N, 1, 8, 8), else (N, 64).
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = torch.tensor(bunch.data, dtype=torch.float32) / 16.0
    y = torch.tensor(bunch.target, dtype=torch.long)
    idx_rest, idx_test = train_test_split(
        torch.arange(len(y)).numpy(), test_size=_TEST_FRACTION, random_state=_SPLIT_SEED, stratify=y.numpy()
    )
    idx_train, idx_val = train_test_split(
        idx_rest, test_size=_VALIDATION_SHARE, random_state=_SPLIT_SEED, stratify=y.numpy()[idx_rest]
    )
    if image:
        x = x.reshape(-1, 1, 8, 8)
    return Dataset(
        name="sklearn-digits (8x8, 10 classes), stratified 55/15/30 split, seed 0",
        x_train=x[idx_train],
        y_train=y[idx_train],
        x_val=x[idx_val],
        y_val=y[idx_val],
        x_test=x[idx_test],
        y_test=y[idx_test],
    )


def digits_mlp(hidden: int = 2048, depth: int = 3, seed: int = 0) -> ModelSpec:
    """An MLP 64 -> ``hidden`` x ``depth`` -> 10 with ReLU; a reroute point after every layer."""
    torch.manual_seed(seed)
    widths = [64] + [hidden] * depth
    layers: dict[str, nn.Module] = {}
    for i, (w_in, w_out) in enumerate(zip(widths[:-1], widths[1:]), start=1):
        layers[f"fc{i}"] = nn.Linear(w_in, w_out)
        layers[f"relu{i}"] = nn.ReLU()
    layers["out"] = nn.Linear(widths[-1], 10)
    module = nn.Sequential(OrderedDict(layers))
    return ModelSpec(
        name="mlp",
        module=module,
        example_input=torch.zeros(1, 64),
        reroute_after=None,
        dataset=load_digits_dataset(image=False),
        description=f"digits MLP 64-{'-'.join([str(hidden)] * depth)}-10, ReLU",
    )


class DigitsCNN(nn.Module):
    """conv3x3(1->c) -> conv3x3(c->2c) -> maxpool2 -> conv3x3(2c->4c) -> fc(4c*16 -> hidden) -> fc(10)."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, 2 * channels, 3, padding=1)
        self.conv3 = nn.Conv2d(2 * channels, 4 * channels, 3, padding=1)
        self.fc1 = nn.Linear(4 * channels * 16, hidden)
        self.fc2 = nn.Linear(hidden, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(x))
        x = torch.max_pool2d(torch.relu(self.conv2(x)), 2)
        x = torch.relu(self.conv3(x))
        x = torch.relu(self.fc1(x.flatten(1)))
        return self.fc2(x)


def digits_cnn(channels: int = 64, hidden: int = 1024, seed: int = 0) -> ModelSpec:
    """:class:`DigitsCNN` on 1x8x8 digits; a reroute point after every layer."""
    torch.manual_seed(seed)
    return ModelSpec(
        name="cnn",
        module=DigitsCNN(channels, hidden),
        example_input=torch.zeros(1, 1, 8, 8),
        reroute_after=None,
        dataset=load_digits_dataset(image=True),
        description=f"digits CNN conv{channels}-conv{2 * channels}-pool-conv{4 * channels}-fc{hidden}-fc10, ReLU",
    )
