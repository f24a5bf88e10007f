"""The network a profile measures, made from its recipe, and its routes' accuracy.

A :class:`~simqos.bundle.NetworkRecipe` (stored in every bundle's provenance) names the
model, its levels and its training. :func:`build_network` turns it into the nested network:
trained sparse-first (or loaded from the checkpoint cache) where a dataset ships for the model,
else pruned by magnitude. ``simqos train``, ``simqos profile``, ``simqos validate`` and the
training benchmark all build through it, so a validated model is the profiled one.
"""

from __future__ import annotations

import os

import json
from dataclasses import asdict, dataclass
from pathlib import Path


from simqos.models import build_model
from simqos.models.spec import ModelSpec
from simqos.nested.checkpoint import outcomes_cache_path, routes_cache_path, trained_network
from simqos.nested.masks import validate_densities
from simqos.nested.network import NestedNetwork
from simqos.nested.routes import RouteAccuracy, enumerate_routes, score_routes
from simqos.nested.scoring import SPLITS, Accuracy
from simqos.nested.training import EpochCallback, TrainConfig
from simqos.bundle import NetworkRecipe, RouteOutcomes
from simqos.profiler.timer import torch_threads

__all__ = ["TRAINING_THREADS", "BuiltNetwork", "RouteReport", "build_network", "route_report", "total_epochs", "train_config"]

TRAINING_THREADS = os.cpu_count() or 1
"""torch threads while training, by default: every core this machine has (``simqos train
--threads`` sets it; timing uses the profile's own ``threads``)."""


@dataclass(frozen=True)
class BuiltNetwork:
    """The nested network, a fresh spec of its model (dataset, example input), the cached
    checkpoint it was trained into (``None`` when pruned by magnitude: no dataset ships), the
    wall seconds and torch threads its training took (``None`` where unknown or untrained), and
    whether it came from the cache (trained earlier from the same code, data and settings)."""

    net: NestedNetwork
    spec: ModelSpec
    checkpoint: Path | None
    training_s: float | None = None
    training_threads: int | None = None
    cached: bool = False


@dataclass(frozen=True)
class RouteReport:
    """Measured route accuracies on every held-out split, the dense model's, the dataset and
    metric they come from, whether all routes are listed (else the monotone ones), and every
    route's per-sample outcomes on the test split."""

    accuracies: list[RouteAccuracy]
    dense: tuple[Accuracy, ...]
    dataset: str
    metric: str
    unit: str
    complete: bool
    test_outcomes: RouteOutcomes


def train_config(recipe: NetworkRecipe) -> TrainConfig:
    """The recipe's training as :func:`simqos.nested.training.train_nested` takes it."""
    return TrainConfig(**recipe.training.model_dump())


def total_epochs(recipe: NetworkRecipe) -> int:
    """Epochs that training the recipe's network takes (for a progress bar)."""
    t = recipe.training
    return t.epochs_dense + t.epochs_sparsest + t.epochs_grow * (len(recipe.densities) - 1)


def build_network(
    recipe: NetworkRecipe, retrain: bool = False, on_epoch: EpochCallback | None = None, threads: int = TRAINING_THREADS
) -> BuiltNetwork:
    """The recipe's nested network: trained with ``threads`` torch threads (or loaded from the
    checkpoint cache unless ``retrain``) where a dataset ships for the model, else pruned by
    magnitude."""
    densities = validate_densities(recipe.densities)
    config = train_config(recipe)
    spec = build_model(recipe.model, recipe.input_shape, **recipe.model_kwargs)
    if spec.dataset is None:
        net = NestedNetwork.from_magnitude(spec.module, densities, spec.example_input, spec.reroute_after, config.scope, config.keep_dense)
        return BuiltNetwork(net, spec, None)
    with torch_threads(threads):
        trained = trained_network(recipe.model, recipe.model_kwargs, densities, config, retrain, on_epoch)
    return BuiltNetwork(trained.net, trained.spec, trained.path, trained.training_s, trained.training_threads, trained.cached)


def route_report(built: BuiltNetwork) -> RouteReport:
    """Every route's accuracy on both held-out splits, and the dense model's; kept beside the
    checkpoint (``NAME.routes.json``, and the test outcomes in ``NAME.outcomes.npz``) so that
    profiling the same network again reuses them."""
    net, data = built.net, built.spec.dataset
    saved = None if built.checkpoint is None else routes_cache_path(built.checkpoint)
    outcomes_path = None if built.checkpoint is None else outcomes_cache_path(built.checkpoint)
    if saved is not None and saved.exists() and outcomes_path.exists():
        document = json.loads(saved.read_text())
        accuracies = [RouteAccuracy(**{**a, "route": tuple(a["route"])}) for a in document["accuracies"]]
        outcomes = RouteOutcomes.load(outcomes_path)
        return RouteReport(accuracies, net.dense_accuracy, data.name, data.metric, data.unit, document["complete"], outcomes)
    routes, complete = enumerate_routes(net.n_segments, net.n_levels)
    batched = built.spec.batch_dim is not None
    accuracies, scored = [], {}
    for split in SPLITS:
        a, scored[split] = score_routes(net, data, routes, split, batched)
        accuracies += a
    outcomes = scored["test"]
    if saved is not None:
        outcomes.save(outcomes_path)
        saved.write_text(json.dumps({"complete": complete, "accuracies": [asdict(a) for a in accuracies]}))
    return RouteReport(accuracies, net.dense_accuracy, data.name, data.metric, data.unit, complete, outcomes)
