"""Sparse-first training of nested levels (Qin et al., ICTAI 2022), and a route-aware variant.

Phases, for densities ``d_0 > ... > d_{K-1}``:

1. **dense**: train every parameter.
2. **sparsest**: keep, in every prunable weight tensor separately (layer-wise, not global), the
   ``d_{K-1}`` fraction of largest dense magnitudes; fine-tune those weights, biases and
   normalisation layers, with every other weight masked out.
3. **grow**, for k = K-2 down to 0: freeze everything trained so far; re-open the pruned slots
   with the largest *dense* magnitudes until level k holds ``d_k`` of each tensor; start them
   from their dense values and train only them — the gradients of frozen weights are masked to
   zero (PackNet-style), and a fresh Adam without weight decay never moves a weight whose
   gradient was always zero. So level k+1's positions and values are untouched.

**Biases and normalisation layers** are not pruned. They are trained in phases 1-2 and then
frozen and shared by every level (normalisation layers also run in eval mode during growth, so
their running statistics do not move either): growth leaves the sparsest level's function
bit-for-bit unchanged, which the tests check.

**Growth methods.** ``sparse-first`` trains level k on its own route (all segments at k), as
published. Its weak spot is a *mixed* route: a sparser tail never saw the activations of a
less-sparse head during training. ``route-aware`` adds, for every batch, the loss of a sampled
mixed route — head at level k up to a random reroute point, tail at a random already-formed
sparser level — so the new weights learn to hand over to every sparser tail.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from simqos.errors import SimqosError
from simqos.models.spec import ModelSpec
from simqos.nested.masks import PRUNED, grow_ranks, keep_count, level_mask, nested_ranks, validate_densities
from simqos.nested.network import NestedNetwork, PrunableLayer, find_prunable_layers

__all__ = ["GROWTH_METHODS", "TrainConfig", "train_nested"]

GROWTH_METHODS = ("sparse-first", "route-aware")

_NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)

EpochCallback = Callable[[str, int, float], None]
"""Called after each epoch with (phase name, epoch index, mean training loss)."""


@dataclass(frozen=True)
class TrainConfig:
    """Epochs per phase, batch size, Adam learning rates, seed and growth method."""

    epochs_dense: int = 20
    epochs_sparsest: int = 15
    epochs_grow: int = 10
    batch_size: int = 64
    lr_dense: float = 1e-3
    lr_sparse: float = 5e-4
    seed: int = 0
    growth: Literal["sparse-first", "route-aware"] = "sparse-first"

    def __post_init__(self) -> None:
        if self.growth not in GROWTH_METHODS:
            raise SimqosError(f"growth: {self.growth!r} is not one of {list(GROWTH_METHODS)}")
        for field in ("epochs_dense", "epochs_sparsest", "epochs_grow", "batch_size"):
            if getattr(self, field) < (1 if field == "batch_size" else 0):
                raise SimqosError(f"{field}: {getattr(self, field)} must be >= 0 (batch_size >= 1)")


def _forward(
    module: nn.Module,
    layers: Sequence[PrunableLayer],
    ranks: dict[str, torch.Tensor],
    route: Sequence[int],
    x: torch.Tensor,
) -> torch.Tensor:
    params = dict(module.named_parameters())
    weights = {
        w: params[w] * level_mask(ranks[w], route[layer.segment]) for layer in layers for w in layer.weights
    }
    return torch.func.functional_call(module, weights, (x,))


def _epochs(
    n_epochs: int,
    phase: str,
    x: torch.Tensor,
    y: torch.Tensor,
    config: TrainConfig,
    generator: torch.Generator,
    step: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    on_epoch: EpochCallback | None,
) -> None:
    for epoch in range(n_epochs):
        order = torch.randperm(len(y), generator=generator)
        total, batches = 0.0, 0
        for start in range(0, len(y), config.batch_size):
            idx = order[start : start + config.batch_size]
            total += float(step(x[idx], y[idx]))
            batches += 1
        if on_epoch is not None:
            on_epoch(phase, epoch, total / max(batches, 1))


def train_nested(
    spec: ModelSpec,
    densities: Sequence[float],
    config: TrainConfig = TrainConfig(),
    on_epoch: EpochCallback | None = None,
) -> NestedNetwork:
    """Train ``spec.module`` in place into a :class:`NestedNetwork` (see the module docstring).

    Deterministic for a given seed, thread count and torch build. Raises SimqosError if the
    model ships no dataset.
    """
    densities = validate_densities(densities)
    if spec.dataset is None:
        raise SimqosError(f"model {spec.name!r} ships no dataset, so it cannot be trained here")
    data = spec.dataset
    module = spec.module
    generator = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    layers = find_prunable_layers(module, spec.example_input, spec.reroute_after)
    n_segments = layers[-1].segment + 1
    params = dict(module.named_parameters())
    weight_names = [w for layer in layers for w in layer.weights]
    loss_fn = nn.CrossEntropyLoss()
    sparsest = len(densities) - 1

    # 1. dense
    module.train()
    optimiser = torch.optim.Adam(module.parameters(), lr=config.lr_dense)

    def dense_step(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        optimiser.zero_grad()
        loss = loss_fn(module(xb), yb)
        loss.backward()
        optimiser.step()
        return loss.detach()

    _epochs(config.epochs_dense, "dense", data.x_train, data.y_train, config, generator, dense_step, on_epoch)
    dense_values = {w: params[w].detach().clone() for w in weight_names}
    scores = {w: v.abs() for w, v in dense_values.items()}

    # 2. sparsest level: layer-wise magnitude, then fine-tune
    ranks: dict[str, torch.Tensor] = {}
    for w in weight_names:
        kept = nested_ranks(scores[w], [densities[-1]]) == 0
        ranks[w] = torch.where(kept, sparsest, PRUNED).to(torch.int8)
    with torch.no_grad():
        for w in weight_names:
            params[w].mul_(level_mask(ranks[w], sparsest))
    optimiser = torch.optim.Adam(module.parameters(), lr=config.lr_sparse)
    sparsest_route = (sparsest,) * n_segments

    def sparsest_step(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        optimiser.zero_grad()
        loss = loss_fn(_forward(module, layers, ranks, sparsest_route, xb), yb)
        loss.backward()
        optimiser.step()
        return loss.detach()

    _epochs(config.epochs_sparsest, "sparsest", data.x_train, data.y_train, config, generator, sparsest_step, on_epoch)

    # 3. grow the less-sparse levels; everything else frozen
    for name, p in module.named_parameters():
        p.requires_grad_(name in weight_names)
    for sub in module.modules():
        if isinstance(sub, _NORM_TYPES):
            sub.eval()
    for level in range(sparsest - 1, -1, -1):
        ranks = {w: grow_ranks(ranks[w], scores[w], level, keep_count(r.numel(), densities[level])) for w, r in ranks.items()}
        trainable = {w: ranks[w] == level for w in weight_names}
        with torch.no_grad():
            for w in weight_names:
                params[w].copy_(torch.where(trainable[w], dense_values[w], params[w]))
        optimiser = torch.optim.Adam([params[w] for w in weight_names], lr=config.lr_sparse)
        own_route = (level,) * n_segments

        def grow_step(xb: torch.Tensor, yb: torch.Tensor, level: int = level, own_route: tuple = own_route) -> torch.Tensor:
            optimiser.zero_grad()
            loss = loss_fn(_forward(module, layers, ranks, own_route, xb), yb)
            if config.growth == "route-aware" and n_segments > 1:
                switch = int(torch.randint(1, n_segments, (1,), generator=generator))
                tail = int(torch.randint(level + 1, sparsest + 1, (1,), generator=generator))
                mixed = (level,) * switch + (tail,) * (n_segments - switch)
                loss = loss + loss_fn(_forward(module, layers, ranks, mixed, xb), yb)
            loss.backward()
            for w in weight_names:
                params[w].grad.mul_(trainable[w])
            optimiser.step()
            return loss.detach()

        _epochs(config.epochs_grow, f"grow level {level}", data.x_train, data.y_train, config, generator, grow_step, on_epoch)

    for p in module.parameters():
        p.requires_grad_(True)
    module.eval()
    return NestedNetwork(module, densities, layers, ranks)
