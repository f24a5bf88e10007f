"""What the rest of simqos needs to know about a model: :class:`ModelSpec` and :class:`Dataset`."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["IGNORE", "Dataset", "ModelSpec"]

IGNORE = -100
"""A label that is not scored (padding of a sequence, a node outside the split); it is also
``torch.nn.CrossEntropyLoss``'s default ``ignore_index``."""


@dataclass(frozen=True)
class Dataset:
    """Labelled train / validation / test splits.

    Inputs are float or integer tensors with the batch first; labels are integer class indices
    shaped like the model's output without its last (class) dimension: ``(N,)`` for a
    classifier, ``(N, T)`` for a sequence model scored per token. A label of :data:`IGNORE` is
    not scored. A model without a batch dimension (a graph: the whole feature matrix is one
    input) uses the same input in every split, and the labels of the nodes outside a split are
    :data:`IGNORE`. The validation split is what policies may tune on; the test split is what
    tables report. ``metric`` names what a correct label means ("top-1 accuracy", "token
    accuracy", "node accuracy"); ``unit`` what one scored label is ("sample", "token", "node").
    With ``exact_sequences``, a sample with several labels (a translation) is one unit, right
    only when every scored label is ("exact match", unit "sentence").
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    metric: str = "top-1 accuracy"
    unit: str = "sample"
    exact_sequences: bool = False

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, y)`` of the split ``"train"``, ``"validation"`` or ``"test"``."""
        key = {"train": "train", "validation": "val", "test": "test"}[name]
        return getattr(self, f"x_{key}"), getattr(self, f"y_{key}")


@dataclass
class ModelSpec:
    """A model to make nested-sparse and profile.

    ``example_input`` is one batch-1 input of the real shape; ``reroute_after`` names the
    layers after which a reroute is possible (``None``: after every prunable layer);
    ``dataset`` is ``None`` when no data ships for the model, in which case accuracy is
    reported as unavailable. ``batch_dim`` is the input's batch dimension (0), or ``None`` when
    the input has none (a graph's whole feature matrix): then it is profiled as it is, and
    trained on the whole input at every step.
    """

    name: str
    module: nn.Module
    example_input: torch.Tensor
    reroute_after: tuple[str, ...] | None
    dataset: Dataset | None
    description: str
    batch_dim: int | None = 0
