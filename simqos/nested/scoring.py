"""Scoring a model on held-out data: :class:`Accuracy`, with intervals that know when scored
units come in clusters (the tokens of a sentence)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from simqos.sim.metrics import cluster_design_effect, wilson_interval
from simqos.models.spec import IGNORE, Dataset

__all__ = ["SPLITS", "Accuracy", "accuracy_of", "measure", "score", "unit_hits"]

SPLITS = ("validation", "test")
"""The held-out splits every route is scored on: policies decide on the first, reports show the second."""


@dataclass(frozen=True)
class Accuracy:
    """``correct`` of ``n`` scored units (samples, tokens, nodes) on ``split``, with the 95 %
    Wilson interval on the effective sample size (``n / design_effect``: units that come in
    clusters, as the tokens of a sentence, are not independent)."""

    correct: int
    n: int
    split: str = "test"
    design_effect: float = 1.0

    @property
    def accuracy(self) -> float:
        return self.correct / self.n

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.correct, self.n, design_effect=self.design_effect)


def score(logits: torch.Tensor, y: torch.Tensor, exact_sequences: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sample (the first dimension): scored labels that the arg-max of ``logits`` gets
    right, and scored labels in all (labels of :data:`IGNORE` are not scored). With
    ``exact_sequences`` a sample with any scored label is one unit, right when all of them are."""
    scored = y != IGNORE
    hit = (logits.argmax(dim=-1) == y) & scored
    if hit.dim() == 1:
        return hit.long(), scored.long()
    hits, units = hit.flatten(1).sum(1), scored.flatten(1).sum(1)
    if exact_sequences:
        return ((hits == units) & (units > 0)).long(), (units > 0).long()
    return hits, units


@torch.no_grad()
def unit_hits(forward: Callable[[torch.Tensor], torch.Tensor], data: Dataset, split: str, batched: bool = True,
              batch_size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Per scored sample of ``data``'s ``split`` (samples with no scored label left out): the
    scored units ``forward`` gets right, and its scored units (:func:`score`), run in batches of
    ``batch_size`` (``batched=False``: the split's whole input at once, as for a graph, whose
    nodes are then units of their own)."""
    x, y = data.split(split)
    step = batch_size if batched else len(x)
    hits, units = [], []
    for start in range(0, len(x), step):
        h, u = score(forward(x[start : start + step]), y[start : start + step], data.exact_sequences)
        hits.append(h)
        units.append(u)
    hit, unit = torch.cat(hits), torch.cat(units)
    keep = unit > 0
    return hit[keep].numpy(), unit[keep].numpy()


def accuracy_of(hit: np.ndarray, unit: np.ndarray, split: str) -> Accuracy:
    """The :class:`Accuracy` of per-sample ``hit`` and ``unit`` counts (:func:`unit_hits`)."""
    return Accuracy(int(hit.sum()), int(unit.sum()), split, cluster_design_effect(hit, unit))


def measure(forward: Callable[[torch.Tensor], torch.Tensor], data: Dataset, split: str, batched: bool = True,
            batch_size: int = 512) -> Accuracy:
    """Score ``forward`` on ``data``'s ``split`` (:func:`unit_hits`)."""
    return accuracy_of(*unit_hits(forward, data, split, batched, batch_size), split)
