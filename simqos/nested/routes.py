"""Routes through a nested network and their measured accuracy.

With S segments and K levels there are K**S routes. When that is at most ``max_routes`` all are
measured; otherwise only the *monotone* ones — levels never decreasing along the route, i.e.
rerouting only from less sparse to sparser, as the simulator's policies do — of which there are
C(S+K-1, K-1).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch

from simqos.metrics import wilson_interval
from simqos.nested.network import NestedNetwork, Route

__all__ = ["RouteAccuracy", "enumerate_routes", "is_monotone", "route_accuracies"]


@dataclass(frozen=True)
class RouteAccuracy:
    """Top-1 accuracy of one route on ``n`` test samples, with its 95 % Wilson interval."""

    route: Route
    correct: int
    n: int

    @property
    def accuracy(self) -> float:
        return self.correct / self.n

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.correct, self.n)


def is_monotone(route: Route) -> bool:
    """True if the route never goes back to a less sparse level."""
    return all(a <= b for a, b in zip(route, route[1:]))


def enumerate_routes(n_segments: int, n_levels: int, max_routes: int = 256) -> tuple[list[Route], bool]:
    """All routes if there are at most ``max_routes``, else the monotone ones.

    Returns ``(routes, complete)`` where ``complete`` says whether every route is listed.
    """
    if n_levels**n_segments <= max_routes:
        return list(itertools.product(range(n_levels), repeat=n_segments)), True
    return list(itertools.combinations_with_replacement(range(n_levels), n_segments)), False


@torch.no_grad()
def route_accuracies(
    net: NestedNetwork, x: torch.Tensor, y: torch.Tensor, routes: list[Route], batch_size: int = 512
) -> list[RouteAccuracy]:
    """Measure each route's top-1 accuracy on ``(x, y)``."""
    net.module.eval()
    results = []
    for route in routes:
        correct = 0
        for start in range(0, len(y), batch_size):
            logits = net.forward(x[start : start + batch_size], route)
            correct += int((logits.argmax(dim=1) == y[start : start + batch_size]).sum())
        results.append(RouteAccuracy(route=tuple(route), correct=correct, n=len(y)))
    return results
