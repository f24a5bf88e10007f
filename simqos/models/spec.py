"""What the rest of simqos needs to know about a model: :class:`ModelSpec` and :class:`Dataset`."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["Dataset", "ModelSpec"]


@dataclass(frozen=True)
class Dataset:
    """A labelled classification split: inputs (N, ...) float32 and integer class labels (N,)."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


@dataclass
class ModelSpec:
    """A model to make nested-sparse and profile.

    ``example_input`` is one batch-1 input of the real shape; ``reroute_after`` names the
    layers after which a reroute is possible (``None``: after every prunable layer);
    ``dataset`` is ``None`` when no data ships for the model, in which case accuracy is
    reported as unavailable. ``batch_dim`` is the input's batch dimension (0), or ``None`` when
    the input has none (a graph's whole feature matrix): then it is profiled as it is.
    """

    name: str
    module: nn.Module
    example_input: torch.Tensor
    reroute_after: tuple[str, ...] | None
    dataset: Dataset | None
    description: str
    batch_dim: int | None = 0
