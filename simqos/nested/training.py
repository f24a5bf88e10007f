"""Sparse-first training of nested levels (Qin et al., ICTAI 2022), and a route-aware variant.

Phases, for densities ``d_0 > ... > d_{K-1}``:

1. **dense**: train every parameter.
2. **sparsest**: keep the ``d_{K-1}`` fraction of largest dense magnitudes — in every prunable
   weight tensor separately (``scope="layer"``) or across all of them (``"global"``, so layers
   end with different densities), layers named in ``keep_dense`` whole — and fine-tune those
   weights, biases and normalisation layers, with every other weight masked out.
3. **grow**, for k = K-2 down to 0: freeze everything trained so far; re-open the pruned slots
   with the largest *dense* magnitudes until level k holds ``d_k`` (of each tensor, or of all),
   and train only them — the gradients of frozen weights are masked to zero (PackNet-style),
   and a fresh Adam without weight decay never moves a weight whose gradient was always zero.
   So level k+1's positions and values are untouched. The re-opened slots start at zero, so
   level k starts as exactly level k+1's function and training can only move it from there:
   starting them at their dense values instead made a network with batch normalisation blow
   up (its statistics are frozen at the sparsest level's, and the dense values' activations
   are many times larger — a loss of 10^7 in a 1D ResNet on MNIST-1D).

4. **calibrate** (``calibration_samples`` > 0): the statistics of every prefix of every
   monotone route are measured afresh on that many training inputs, without labels
   (:mod:`simqos.nested.calibration`). A route that switches to a sparser level is then
   normalised by statistics of its own activations, and each level by statistics of its final
   weights rather than a running average taken while they moved.

**Weight decay** (``weight_decay``, Adam's L2 penalty; 0 by default) shrinks the weights that
the loss does not hold up, so the dense magnitudes that choose each level's positions mark the
inputs that matter: on the GAT's few labelled nodes it lifted level 0 from 73.8 % to 76.4 %.
While a level grows it is added to the re-opened weights' gradients only, before the mask, as
Adam's own decay would move the frozen ones.

**Gradient clipping** (``clip_grad_norm``; 0, none, by default) bounds each step, as recurrent
networks are trained (GNMT clips at 5): unclipped, the GNMT's attention sat on a plateau for
the first thousand steps. While a level grows, the norm is taken after the mask, over the
weights that move.

**Distillation** (``distill``, a weight in [0, 1]; 0, none, by default): the sparse phases'
loss becomes ``(1 - distill)`` x the labels' cross-entropy plus ``distill`` x the KL divergence
from the trained dense model's outputs on the same inputs, both softened by a temperature of
2 (Hinton et al. 2015), on the scored labels only — so a sparse level learns from nothing the
dense model did not see. On the GAT (140 labelled nodes) 0.5 lifted level 0 from 76.4 % to
77.1 % and level 1 from 74.2 % to 75.7 % (test split). Over every node instead, labelled or not,
both levels passed the dense model (82-85 % against 79.8 %): the dense model's guesses on the
unlabelled nodes are then labels it never had, self-training, which would lift it too; so the
unlabelled outputs are left out.

**Biases and normalisation layers** are not pruned. Their parameters are trained in phases 1-2
and then frozen and shared by every level. A batch-norm module's *running statistics* are kept
per level while training: while level k grows, batch norm normalises with the batch's
statistics (as in any training) and its running statistics, started from level k+1's, become
level k's; level k+1's are stored untouched. So growth leaves every sparser level's function
bit-for-bit unchanged (the tests check it), and each level is normalised by statistics of its
own activations. With one set of statistics frozen at the sparsest level's, growing a 1D ResNet
on MNIST-1D drove level 0 (15.6 % of the weights) to 78 % test accuracy, below level 1's 87 %.

**Growth methods.** ``sparse-first`` trains level k on its own route (all segments at k), as
published. Its weak spot is a *mixed* route: a sparser tail never saw the activations of a
less-sparse head during training. ``route-aware`` adds, for every batch, the loss of a sampled
mixed route — head at level k up to a random reroute point, tail at a random already-formed
sparser level — so the new weights learn to hand over to every sparser tail. The mixed route
normalises by its batch's statistics throughout, as the calibrated network will by its own
prefix's, and leaves no trace in any level's running statistics.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from simqos.errors import SimqosError
from simqos.models.spec import IGNORE, ModelSpec
from simqos.nested.calibration import calibrate_norms
from simqos.nested.masks import PRUNED, SCOPES, Pruning, Scope, level_mask, validate_densities
from simqos.nested.network import NORM_STATS, NestedNetwork, PrunableLayer, find_norms, find_prunable_layers
from simqos.nested.routes import monotone_routes
from simqos.nested.scoring import SPLITS, measure

__all__ = ["GROWTH_METHODS", "LR_SCHEDULES", "TrainConfig", "train_nested"]

GROWTH_METHODS = ("sparse-first", "route-aware")
LR_SCHEDULES = ("constant", "cosine")

EpochCallback = Callable[[str, int, float], None]
"""Called after each epoch with (phase name, epoch index, mean training loss)."""


@dataclass(frozen=True)
class TrainConfig:
    """Epochs per phase, batch size, Adam learning rates (held, or annealed along a half cosine
    to zero over each phase), seed, growth method, pruning scope, layers kept whole, and the
    training inputs that calibrate batch-norm statistics per route prefix (0: none), Adam's L2
    weight decay, and the norm that each step's gradient is clipped to (0: none)."""

    epochs_dense: int = 20
    epochs_sparsest: int = 15
    epochs_grow: int = 10
    batch_size: int = 64
    lr_dense: float = 1e-3
    lr_sparse: float = 5e-4
    seed: int = 0
    growth: Literal["sparse-first", "route-aware"] = "sparse-first"
    scope: Scope = "layer"
    keep_dense: tuple[str, ...] = ()
    calibration_samples: int = 4000
    lr_schedule: Literal["constant", "cosine"] = "constant"
    weight_decay: float = 0.0
    clip_grad_norm: float = 0.0
    distill: float = 0.0

    def __post_init__(self) -> None:
        if self.growth not in GROWTH_METHODS:
            raise SimqosError(f"growth: {self.growth!r} is not one of {list(GROWTH_METHODS)}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise SimqosError(f"lr_schedule: {self.lr_schedule!r} is not one of {list(LR_SCHEDULES)}")
        if self.scope not in SCOPES:
            raise SimqosError(f"scope: {self.scope!r} is not one of {list(SCOPES)}")
        if not self.weight_decay >= 0:
            raise SimqosError(f"weight_decay: {self.weight_decay} must be >= 0 (an L2 penalty, e.g. 5e-4)")
        if not 0 <= self.distill <= 1:
            raise SimqosError(f"distill: {self.distill} must be between 0 and 1 (the dense model's share of the sparse phases' loss, e.g. 0.5; 0: none)")
        if not self.clip_grad_norm >= 0:
            raise SimqosError(f"clip_grad_norm: {self.clip_grad_norm} must be >= 0 (a gradient norm, e.g. 1.0; 0: no clipping)")
        for field in ("epochs_dense", "epochs_sparsest", "epochs_grow", "batch_size", "calibration_samples"):
            if getattr(self, field) < (1 if field == "batch_size" else 0):
                raise SimqosError(f"{field}: {getattr(self, field)} must be >= 0 (batch_size >= 1)")


def _forward(
    module: nn.Module,
    layers: Sequence[PrunableLayer],
    ranks: dict[str, torch.Tensor],
    route: Sequence[int],
    x: torch.Tensor,
    buffers: dict[str, torch.Tensor] | None = None,
) -> torch.Tensor:
    params = dict(module.named_parameters())
    weights = {
        w: params[w] * level_mask(ranks[w], route[layer.segment]) for layer in layers for w in layer.weights
    }
    return torch.func.functional_call(module, weights | (buffers or {}), (x,))


def _mixed_forward(module, layers, ranks, route, x, norms: dict[str, int]) -> torch.Tensor:
    """A mixed route while growing: batch norm normalises by the batch's statistics, and its
    running statistics are updated in copies that are thrown away."""
    named = dict(module.named_buffers())
    scratch = {f"{n}.{b}": named[f"{n}.{b}"].clone() for n in norms for b in (*NORM_STATS, "num_batches_tracked")}
    return _forward(module, layers, ranks, route, x, scratch)


def _epochs(
    n_epochs: int,
    phase: str,
    x: torch.Tensor,
    y: torch.Tensor,
    config: TrainConfig,
    generator: torch.Generator,
    step: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    on_epoch: EpochCallback | None,
    batched: bool,
    optimiser: torch.optim.Optimizer,
    teacher: torch.Tensor | None = None,
) -> None:
    """``n_epochs`` passes over ``(x, y)`` in shuffled batches (or whole, when not ``batched``),
    ``step`` taking one optimiser step per batch (given the batch's rows of ``teacher`` too);
    with ``config.lr_schedule == "cosine"`` the learning rate falls from its start to zero along
    a half cosine over the phase's steps."""
    steps_per_epoch = -(-len(y) // config.batch_size) if batched else 1
    total_steps = max(1, n_epochs * steps_per_epoch)
    schedule = None
    if config.lr_schedule == "cosine":
        schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda i: 0.5 * (1 + math.cos(math.pi * min(i, total_steps) / total_steps)))
    for epoch in range(n_epochs):
        if not batched:  # the whole input is one sample (a graph): one step per epoch
            total, batches = float(step(x, y, teacher)), 1
            if schedule is not None:
                schedule.step()
        else:
            order = torch.randperm(len(y), generator=generator)
            total, batches = 0.0, 0
            for start in range(0, len(y), config.batch_size):
                idx = order[start : start + config.batch_size]
                total += float(step(x[idx], y[idx], None if teacher is None else teacher[idx]))
                batches += 1
                if schedule is not None:
                    schedule.step()
        if on_epoch is not None:
            on_epoch(phase, epoch, total / max(batches, 1))


def _clip(parameters, config: TrainConfig) -> None:
    """Scale the gradients down to ``config.clip_grad_norm`` in all, where it is set."""
    if config.clip_grad_norm:
        nn.utils.clip_grad_norm_(list(parameters), config.clip_grad_norm)


def _loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over every scored label: logits (..., classes), labels (...), IGNORE skipped."""
    return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), ignore_index=IGNORE)


DISTILL_TEMPERATURE = 2.0
"""The softmax temperature of distillation from the dense model (Hinton et al. 2015: 1-20)."""


def _distilled(logits: torch.Tensor, y: torch.Tensor, teacher: torch.Tensor | None, weight: float) -> torch.Tensor:
    """``(1 - weight)`` x the labels' cross-entropy + ``weight`` x T² x the KL divergence from the
    dense model's outputs (``teacher``, logits) softened by T, over the scored labels only."""
    loss = _loss(logits, y)
    if teacher is None or not weight:
        return loss
    t, classes = DISTILL_TEMPERATURE, logits.shape[-1]
    scored = y.reshape(-1) != IGNORE
    student = nn.functional.log_softmax(logits.reshape(-1, classes)[scored] / t, -1)
    target = nn.functional.log_softmax(teacher.reshape(-1, classes)[scored] / t, -1)
    kl = nn.functional.kl_div(student, target, reduction="batchmean", log_target=True)
    return (1 - weight) * loss + weight * t * t * kl


def _teacher(module: nn.Module, x: torch.Tensor, batched: bool) -> torch.Tensor:
    """The trained dense model's outputs on every training input, in evaluation mode."""
    module.eval()
    with torch.no_grad():
        out = torch.cat([module(x[i : i + 1024]) for i in range(0, len(x), 1024)]) if batched else module(x)
    module.train()
    return out


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
    batched = spec.batch_dim is not None
    sparsest = len(densities) - 1

    # 1. dense
    module.train()
    optimiser = torch.optim.Adam(module.parameters(), lr=config.lr_dense, weight_decay=config.weight_decay)

    def dense_step(xb: torch.Tensor, yb: torch.Tensor, tb: None) -> torch.Tensor:
        optimiser.zero_grad()
        loss = _loss(module(xb), yb)
        loss.backward()
        _clip(module.parameters(), config)
        optimiser.step()
        return loss.detach()

    _epochs(config.epochs_dense, "dense", data.x_train, data.y_train, config, generator, dense_step, on_epoch, batched, optimiser)
    module.eval()
    dense_accuracy = tuple(measure(module, data, split, batched) for split in SPLITS)
    module.train()
    scores = {w: params[w].detach().abs().clone() for w in weight_names}
    teacher = _teacher(module, data.x_train, batched) if config.distill else None

    # 2. sparsest level: magnitude (layer-wise or global), then fine-tune
    dense = frozenset(w for layer in layers if layer.name in config.keep_dense for w in layer.weights)
    pruning = Pruning(tuple(densities), config.scope, dense)
    first = pruning.ranks(scores, [densities[-1]])
    ranks = {w: torch.where(first[w] == 0, sparsest, PRUNED).to(torch.int8) for w in weight_names}
    with torch.no_grad():
        for w in weight_names:
            params[w].mul_(level_mask(ranks[w], sparsest))
    optimiser = torch.optim.Adam(module.parameters(), lr=config.lr_sparse, weight_decay=config.weight_decay)
    sparsest_route = (sparsest,) * n_segments

    def sparsest_step(xb: torch.Tensor, yb: torch.Tensor, tb: torch.Tensor | None) -> torch.Tensor:
        optimiser.zero_grad()
        loss = _distilled(_forward(module, layers, ranks, sparsest_route, xb), yb, tb, config.distill)
        loss.backward()
        _clip(module.parameters(), config)
        optimiser.step()
        return loss.detach()

    _epochs(config.epochs_sparsest, "sparsest", data.x_train, data.y_train, config, generator, sparsest_step, on_epoch, batched, optimiser,
            teacher)

    # 3. grow the less-sparse levels; everything else frozen
    norms = find_norms(module, spec.example_input, layers)
    named = dict(module.named_modules())

    def statistics() -> dict[str, torch.Tensor]:
        return {f"{n}.{b}": getattr(named[n], b).detach().clone() for n in norms for b in NORM_STATS}

    norm_stats = {sparsest: statistics()}
    for name, p in module.named_parameters():
        p.requires_grad_(name in weight_names)
    for level in range(sparsest - 1, -1, -1):
        ranks = pruning.grow(ranks, scores, level)
        trainable = {w: ranks[w] == level for w in weight_names}  # re-opened slots are zero: pruned
        optimiser = torch.optim.Adam([params[w] for w in weight_names], lr=config.lr_sparse)
        own_route = (level,) * n_segments
        with torch.no_grad():  # this level's statistics start from the sparser level's
            for key, value in norm_stats[level + 1].items():
                dict(module.named_buffers())[key].copy_(value)

        def grow_step(xb: torch.Tensor, yb: torch.Tensor, tb: torch.Tensor | None, level: int = level, own_route: tuple = own_route) -> torch.Tensor:
            optimiser.zero_grad()
            loss = _distilled(_forward(module, layers, ranks, own_route, xb), yb, tb, config.distill)
            if config.growth == "route-aware" and n_segments > 1:
                switch = int(torch.randint(1, n_segments, (1,), generator=generator))
                tail = int(torch.randint(level + 1, sparsest + 1, (1,), generator=generator))
                mixed = (level,) * switch + (tail,) * (n_segments - switch)
                loss = loss + _loss(_mixed_forward(module, layers, ranks, mixed, xb, norms), yb)
            loss.backward()
            for w in weight_names:
                if config.weight_decay:  # Adam's own decay would move the frozen weights
                    params[w].grad.add_(params[w].detach(), alpha=config.weight_decay)
                params[w].grad.mul_(trainable[w])
            _clip([params[w] for w in weight_names], config)
            optimiser.step()
            return loss.detach()

        _epochs(config.epochs_grow, f"grow level {level}", data.x_train, data.y_train, config, generator, grow_step, on_epoch, batched, optimiser,
                teacher)
        norm_stats[level] = statistics()
    with torch.no_grad():  # the module itself runs level 0
        for key, value in norm_stats[0].items():
            dict(module.named_buffers())[key].copy_(value)

    for p in module.parameters():
        p.requires_grad_(True)
    module.eval()
    prefix_stats = {
        (level,) * (segment + 1): {f"{n}.{b}": stats[f"{n}.{b}"] for n, s in norms.items() if s == segment for b in NORM_STATS}
        for level, stats in norm_stats.items()
        for segment in sorted(set(norms.values()))
    }
    net = NestedNetwork(module, densities, layers, ranks, config.scope, config.keep_dense, dense_accuracy, norms, prefix_stats)
    if config.calibration_samples:
        x = data.x_train[: config.calibration_samples] if batched else data.x_train
        calibrate_norms(net, x, monotone_routes(n_segments, len(densities)), batched)
        with torch.no_grad():  # the module itself still runs level 0
            buffers = dict(module.named_buffers())
            for key, value in net.norm_buffers(net.uniform_route(0)).items():
                buffers[key].copy_(value)
    return net
