"""Nested multi-level sparse networks (torch): ranks, routes, sparse-first training."""

from simqos.nested.masks import PRUNED, check_nested, level_mask, nested_ranks, validate_densities
from simqos.nested.network import NestedNetwork, PrunableLayer, Route, find_prunable_layers, format_route, parse_route
from simqos.nested.routes import RouteAccuracy, enumerate_routes, route_accuracies
from simqos.nested.training import GROWTH_METHODS, TrainConfig, train_nested

__all__ = [
    "GROWTH_METHODS",
    "PRUNED",
    "NestedNetwork",
    "PrunableLayer",
    "Route",
    "RouteAccuracy",
    "TrainConfig",
    "check_nested",
    "enumerate_routes",
    "find_prunable_layers",
    "format_route",
    "level_mask",
    "nested_ranks",
    "parse_route",
    "route_accuracies",
    "train_nested",
    "validate_densities",
]
