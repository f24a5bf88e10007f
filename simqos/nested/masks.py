"""Nested sparsity levels for one weight tensor, stored as a per-weight *rank*.

A network with K levels keeps one weight tensor and, beside it, an ``int8`` tensor of the same
shape: the **rank** of a weight is the sparsest level that still holds it, or ``PRUNED`` (-1)
if no level does. Level 0 is the least sparse, level K-1 the sparsest, so level ``k``'s mask is
``rank >= k``. Because there is one value per position, every sparser level's non-zeros —
positions *and* values — are a subset of every less sparse level's: nesting holds by
construction. :func:`check_nested` verifies the bookkeeping (ranks in range, kept counts as
configured, pruned positions zero) when a network is loaded.

Densities are fractions of weights kept (``0 < density <= 1``), strictly decreasing with the
level index; a density of 1.0 at level 0 is the dense model as an extra level.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from simqos.errors import SimqosError

__all__ = [
    "PRUNED",
    "check_nested",
    "grow_ranks",
    "keep_count",
    "level_mask",
    "nested_ranks",
    "validate_densities",
]

PRUNED = -1
"""Rank of a weight that no level holds."""


def validate_densities(densities: Sequence[float]) -> tuple[float, ...]:
    """Return ``densities`` as a tuple after checking they can define nested levels.

    Raises SimqosError unless there is at least one density, each is in (0, 1], and they are
    strictly decreasing (level 0 least sparse). At most 127 levels fit an ``int8`` rank.
    """
    values = tuple(float(d) for d in densities)
    if not values:
        raise SimqosError("levels: no density given; pass kept-weight fractions such as 0.134,0.054")
    if len(values) > 127:
        raise SimqosError(f"levels: {len(values)} levels given; at most 127 are supported")
    for i, d in enumerate(values):
        if not 0.0 < d <= 1.0:
            raise SimqosError(
                f"levels[{i}]: density {d!r} is outside (0, 1]; a density is the fraction of "
                "weights kept, e.g. 0.134 for 13.4 %"
            )
    for i in range(1, len(values)):
        if values[i] >= values[i - 1]:
            raise SimqosError(
                f"levels: densities must strictly decrease (level 0 least sparse), but "
                f"levels[{i - 1}]={values[i - 1]} <= levels[{i}]={values[i]}; "
                f"give them as e.g. {','.join(str(v) for v in sorted(set(values), reverse=True))}"
            )
    return values


def keep_count(n_weights: int, density: float) -> int:
    """Number of weights a level of ``density`` keeps in a tensor of ``n_weights``.

    ``round(density * n_weights)``, but at least 1 so that no level empties a layer.
    """
    return max(1, min(n_weights, round(density * n_weights)))


def nested_ranks(scores: torch.Tensor, densities: Sequence[float]) -> torch.Tensor:
    """One-shot nested magnitude ranks: level k keeps the ``keep_count(n, d_k)`` top scores.

    ``scores`` is any tensor (typically ``|weight|``); ties are broken by position so the
    result is deterministic. Returns an ``int8`` tensor shaped like ``scores``.
    """
    densities = validate_densities(densities)
    flat = scores.detach().reshape(-1)
    n = flat.numel()
    order = torch.argsort(flat, descending=True, stable=True)
    counts = torch.tensor([keep_count(n, d) for d in densities])
    # A weight at sorted position p is held by every level whose count exceeds p.
    position = torch.empty(n, dtype=torch.long)
    position[order] = torch.arange(n)
    rank = (position.unsqueeze(1) < counts.unsqueeze(0)).sum(dim=1) - 1
    return rank.to(torch.int8).reshape(scores.shape)


def grow_ranks(ranks: torch.Tensor, scores: torch.Tensor, level: int, count: int) -> torch.Tensor:
    """Re-open pruned slots so that ``level`` holds ``count`` weights; returns new ranks.

    Weights already held (rank > ``level``) keep their rank; the highest-scoring ``PRUNED``
    positions get rank ``level`` until the level holds ``count`` weights. Used by sparse-first
    growth, where level ``level + 1`` exists and is frozen.
    """
    held = int((ranks >= level).sum())
    if count < held:
        raise ValueError(f"count(={count}) is below the {held} weights level {level} already holds")
    out = ranks.clone()
    free = (ranks.reshape(-1) == PRUNED).nonzero().squeeze(1)
    free_scores = scores.detach().reshape(-1)[free]
    pick = free[torch.argsort(free_scores, descending=True, stable=True)[: count - held]]
    out.view(-1)[pick] = level
    return out


def level_mask(ranks: torch.Tensor, level: int) -> torch.Tensor:
    """Boolean mask of the weights level ``level`` holds (``rank >= level``)."""
    return ranks >= level


def check_nested(
    name: str, weight: torch.Tensor, ranks: torch.Tensor, densities: Sequence[float]
) -> None:
    """Raise SimqosError unless ``ranks`` are valid nested levels of ``weight``.

    Checks: same shape, ``int8``, every rank in ``[PRUNED, K-1]``, level k holds exactly
    ``keep_count(n, d_k)`` weights, and every pruned position of ``weight`` is zero (so no
    level's value can hide outside its mask). ``name`` is the parameter's name for the message.
    """
    densities = validate_densities(densities)
    if ranks.shape != weight.shape:
        raise SimqosError(
            f"{name}: rank shape {tuple(ranks.shape)} differs from weight shape "
            f"{tuple(weight.shape)}; the checkpoint is corrupt, re-create it with `simqos train`"
        )
    if ranks.dtype != torch.int8:
        raise SimqosError(f"{name}: ranks have dtype {ranks.dtype}, expected torch.int8")
    low, high = int(ranks.min()), int(ranks.max())
    if low < PRUNED or high > len(densities) - 1:
        raise SimqosError(
            f"{name}: ranks span [{low}, {high}], outside [{PRUNED}, {len(densities) - 1}] "
            f"for {len(densities)} levels"
        )
    n = weight.numel()
    for k, d in enumerate(densities):
        held = int((ranks >= k).sum())
        if held != keep_count(n, d):
            raise SimqosError(
                f"{name}: level {k} holds {held} weights but density {d} of {n} means "
                f"{keep_count(n, d)}; the levels are not the configured nested levels"
            )
    stray = int(((ranks == PRUNED) & (weight != 0)).sum())
    if stray:
        raise SimqosError(
            f"{name}: {stray} pruned positions hold non-zero values; every value must belong "
            "to a level for the levels to be nested"
        )
