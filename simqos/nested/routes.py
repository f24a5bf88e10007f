"""Routes through a nested network and their measured accuracy.

With S segments and K levels there are K**S routes. When that is at most ``max_routes`` all are
measured; otherwise only the *monotone* ones — levels never decreasing along the route, i.e.
rerouting only from less sparse to sparser, as the simulator's policies do — of which there are
C(S+K-1, K-1).

Every route is scored on two splits of held-out data: **validation**, which policies may use
to decide (what a deployed system would have measured before deployment), and **test**, which
tables and figures report — so no decision is tuned on the numbers that are reported.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from simqos.bundle import RouteOutcomes
from simqos.models.spec import Dataset
from simqos.nested.network import NestedNetwork, Route
from simqos.nested.scoring import Accuracy, accuracy_of, unit_hits

__all__ = ["RouteAccuracy", "RouteOutcomes", "enumerate_routes", "is_monotone", "monotone_routes", "route_accuracies", "score_routes"]


@dataclass(frozen=True)
class RouteAccuracy(Accuracy):
    """The :class:`Accuracy` of one route."""

    route: Route = field(kw_only=True)


def is_monotone(route: Route) -> bool:
    """True if the route never goes back to a less sparse level."""
    return all(a <= b for a, b in zip(route, route[1:]))


def monotone_routes(n_segments: int, n_levels: int) -> list[Route]:
    """Every monotone route: C(S+K-1, K-1) of them, in lexicographic order."""
    return list(itertools.combinations_with_replacement(range(n_levels), n_segments))


def enumerate_routes(n_segments: int, n_levels: int, max_routes: int = 256) -> tuple[list[Route], bool]:
    """All routes if there are at most ``max_routes``, else the monotone ones.

    Returns ``(routes, complete)`` where ``complete`` says whether every route is listed.
    """
    if n_levels**n_segments <= max_routes:
        return list(itertools.product(range(n_levels), repeat=n_segments)), True
    return monotone_routes(n_segments, n_levels), False


def score_routes(
    net: NestedNetwork, data: Dataset, routes: list[Route], split: str = "test", batched: bool = True
) -> tuple[list[RouteAccuracy], RouteOutcomes]:
    """Score each route on ``data``'s ``split`` (:func:`~simqos.nested.scoring.unit_hits`): its
    accuracy, and every route's per-sample outcomes."""
    net.module.eval()
    results, hits, units = [], [], None
    for route in routes:
        hit, units = unit_hits(lambda x, r=tuple(route): net.forward(x, r), data, split, batched)
        a = accuracy_of(hit, units, split)
        results.append(RouteAccuracy(a.correct, a.n, a.split, a.design_effect, route=tuple(route)))
        hits.append(hit)
    return results, RouteOutcomes(tuple(map(tuple, routes)), np.array(hits, dtype=np.int64), np.asarray(units, dtype=np.int64))


def route_accuracies(
    net: NestedNetwork, data: Dataset, routes: list[Route], split: str = "test", batched: bool = True
) -> list[RouteAccuracy]:
    """Each route's accuracy on ``data``'s ``split`` (:func:`score_routes`)."""
    return score_routes(net, data, routes, split, batched)[0]
