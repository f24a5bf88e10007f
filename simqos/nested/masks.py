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
from dataclasses import dataclass
from typing import Literal, get_args

import torch

from simqos.errors import SimqosError

__all__ = [
    "PRUNED",
    "SCOPES",
    "Pruning",
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


def check_nested(name: str, weight: torch.Tensor, ranks: torch.Tensor, n_levels: int) -> None:
    """Raise SimqosError unless ``ranks`` are valid nested ranks of ``weight``: same shape,
    ``int8``, every rank in ``[PRUNED, n_levels - 1]``, and every pruned position of ``weight``
    zero (so no level's value can hide outside its mask). How many weights each level holds is
    :meth:`Pruning.check`'s job. ``name`` is the parameter's name for the message."""
    if ranks.shape != weight.shape:
        raise SimqosError(
            f"{name}: rank shape {tuple(ranks.shape)} differs from weight shape "
            f"{tuple(weight.shape)}; the checkpoint is corrupt, re-create it with `simqos train`"
        )
    if ranks.dtype != torch.int8:
        raise SimqosError(f"{name}: ranks have dtype {ranks.dtype}, expected torch.int8")
    low, high = int(ranks.min()), int(ranks.max())
    if low < PRUNED or high > n_levels - 1:
        raise SimqosError(
            f"{name}: ranks span [{low}, {high}], outside [{PRUNED}, {n_levels - 1}] for {n_levels} levels"
        )
    stray = int(((ranks == PRUNED) & (weight != 0)).sum())
    if stray:
        raise SimqosError(
            f"{name}: {stray} pruned positions hold non-zero values; every value must belong "
            "to a level for the levels to be nested"
        )


Scope = Literal["layer", "global"]
SCOPES: tuple[str, ...] = get_args(Scope)


@dataclass(frozen=True)
class Pruning:
    """How the levels are cut from a network's prunable weight tensors.

    ``scope``: ``layer`` — every tensor keeps the fraction ``densities[k]`` of its own weights
    at level k (uniform per-layer densities); ``global`` — the pruned tensors together keep
    ``densities[k]`` of all their weights, chosen by magnitude across layers, so per-layer
    densities differ (and the FLOPs fraction differs from the weights fraction, as in the
    paper). Under ``global`` every tensor keeps at least one weight per level. ``dense``: names
    of parameters held whole by every level (e.g. a 1-channel first convolution or the
    classifier head, kept dense on request); the densities apply to the other weights.
    """

    densities: tuple[float, ...]
    scope: Scope = "layer"
    dense: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        object.__setattr__(self, "densities", validate_densities(self.densities))
        if self.scope not in SCOPES:
            raise SimqosError(f"scope: {self.scope!r} is not one of {list(SCOPES)}")

    @property
    def n_levels(self) -> int:
        return len(self.densities)

    def _pruned(self, tensors: dict[str, torch.Tensor]) -> list[str]:
        return [w for w in tensors if w not in self.dense]

    def ranks(self, scores: dict[str, torch.Tensor], densities: Sequence[float] | None = None) -> dict[str, torch.Tensor]:
        """One-shot nested ranks: level k keeps the highest ``scores`` (typically ``|weight|``)
        of its scope. ``densities`` (default: all of this pruning's) may select the sparsest
        only, as sparse-first training does: then the ranks are 0-based over those."""
        densities = self.densities if densities is None else validate_densities(densities)
        top = len(densities) - 1
        out = {w: torch.full(s.shape, top, dtype=torch.int8) for w, s in scores.items() if w in self.dense}
        pruned = self._pruned(scores)
        if self.scope == "layer":
            out |= {w: nested_ranks(scores[w], densities) for w in pruned}
        elif pruned:
            flat = torch.cat([scores[w].detach().reshape(-1) for w in pruned])
            joint = nested_ranks(flat, densities)
            for w, part in zip(pruned, torch.split(joint, [scores[w].numel() for w in pruned])):
                part = part.clone()
                if not bool((part == top).any()):  # no level may empty a tensor
                    part[torch.argmax(scores[w].detach().reshape(-1))] = top
                out[w] = part.reshape(scores[w].shape)
        return {w: out[w] for w in scores}

    def grow(self, ranks: dict[str, torch.Tensor], scores: dict[str, torch.Tensor], level: int) -> dict[str, torch.Tensor]:
        """Re-open pruned slots, highest ``scores`` first, until ``level`` holds its share
        (per tensor, or jointly under ``global``); used by sparse-first growth, where levels
        above ``level`` exist and are frozen."""
        pruned = self._pruned(ranks)
        out = dict(ranks)
        if self.scope == "layer":
            for w in pruned:
                out[w] = grow_ranks(ranks[w], scores[w], level, keep_count(ranks[w].numel(), self.densities[level]))
            return out
        if not pruned:
            return out
        flat_ranks = torch.cat([ranks[w].reshape(-1) for w in pruned])
        flat_scores = torch.cat([scores[w].detach().reshape(-1) for w in pruned])
        count = max(int((flat_ranks >= level).sum()), keep_count(flat_ranks.numel(), self.densities[level]))
        grown = grow_ranks(flat_ranks, flat_scores, level, count)
        for w, part in zip(pruned, torch.split(grown, [ranks[w].numel() for w in pruned])):
            out[w] = part.reshape(ranks[w].shape)
        return out

    def check(self, ranks: dict[str, torch.Tensor]) -> None:
        """Raise SimqosError unless every level holds what this pruning says: whole dense
        tensors; under ``layer`` ``keep_count(n, d_k)`` of each tensor; under ``global`` that
        many of all pruned weights together (plus at most one per tensor that would be empty)."""
        for w in self.dense & ranks.keys():
            if int((ranks[w] == self.n_levels - 1).sum()) != ranks[w].numel():
                raise SimqosError(f"{w}: kept dense, but not every level holds all its weights; the checkpoint is corrupt")
        pruned = self._pruned(ranks)
        groups = [[w] for w in pruned] if self.scope == "layer" else ([pruned] if pruned else [])
        for group in groups:
            n = sum(ranks[w].numel() for w in group)
            for k, d in enumerate(self.densities):
                held = sum(int((ranks[w] >= k).sum()) for w in group)
                want = keep_count(n, d)
                if not want <= held <= want + (len(group) if self.scope == "global" else 0):
                    where = group[0] if self.scope == "layer" else f"{len(group)} pruned tensors ({self.scope} scope)"
                    raise SimqosError(
                        f"{where}: level {k} holds {held} weights but density {d} of {n} means {want}; "
                        "the levels are not the configured nested levels"
                    )
