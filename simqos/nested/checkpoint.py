"""Saving and loading trained nested networks, keyed by everything that made them.

A checkpoint is one ``torch.save`` file: the model's registry name and factory arguments, the
densities, the training configuration and :meth:`NestedNetwork.state`, named by a digest of the
settings; it also records a digest of what else made it (:func:`content_digest`: the factory's
source, the module's architecture and the dataset's tensors), and one whose content differs
from what the factory makes now is trained again — an edited dataset generator with the same
arguments does not reuse the old network. Loading rebuilds the
model from the registry and checks nesting (:func:`simqos.nested.masks.check_nested`).
Trained checkpoints live in a cache folder (``$SIMQOS_CACHE_DIR``, default
``~/.cache/simqos``), because they are reproducible by ``simqos train`` and too large to ship.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import NamedTuple

import torch

from simqos.cache import cache_dir
from simqos.errors import SimqosError
from simqos.models import ModelSpec, build_model, factory_source
from simqos.nested.network import NestedNetwork
from simqos.nested.training import EpochCallback, TrainConfig, train_nested

__all__ = ["StaleCheckpoint", "Trained", "checkpoint_path", "content_digest", "load_checkpoint", "routes_cache_path", "save_checkpoint", "trained_network"]


class StaleCheckpoint(SimqosError):
    """A checkpoint written by an older simqos, missing what this one stores (``trained_network`` retrains)."""


_LATER_FIELDS = {"weight_decay": 0.0, "clip_grad_norm": 0.0, "distill": 0.0}
"""TrainConfig fields added after checkpoints were first keyed, with the value that trains as
before: left out of the key at that value, so existing checkpoints keep their names."""


def checkpoint_path(model: str, model_kwargs: dict, densities: tuple[float, ...], config: TrainConfig) -> Path:
    """Where the checkpoint for these settings lives in :func:`cache_dir`."""
    settings = {k: v for k, v in asdict(config).items() if _LATER_FIELDS.get(k, object()) != v}
    key = json.dumps([model, model_kwargs, list(densities), settings], sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return cache_dir() / "checkpoints" / f"{model}-{config.growth}-{digest}.pt"


def routes_cache_path(checkpoint: Path) -> Path:
    """Where the route accuracies of the network in ``checkpoint`` are kept (beside it, in the cache)."""
    return checkpoint.with_suffix(".routes.json")


def outcomes_cache_path(checkpoint: Path) -> Path:
    """Where its routes' per-sample test outcomes are kept (:class:`~simqos.nested.routes.RouteOutcomes`)."""
    return checkpoint.with_suffix(".outcomes.npz")


def content_digest(model: str, spec: ModelSpec) -> str:
    """A digest of what training reads besides its settings: the source of the model's factory
    module, the module's architecture (its ``repr``) and the dataset's tensors."""
    digest = hashlib.sha256(factory_source(model))
    digest.update(repr(spec.module).encode())
    if spec.dataset is not None:
        for name in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
            tensor = getattr(spec.dataset, name).detach().cpu().contiguous()
            digest.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
            digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


def save_checkpoint(path: Path, model: str, model_kwargs: dict, config: TrainConfig, net: NestedNetwork,
                    training_s: float | None = None, content: str | None = None) -> None:
    """Write atomically: a crash leaves either the old file or none, never half a file.
    ``training_s``: the wall seconds training took, with the torch threads it had, kept beside;
    ``content``: :func:`content_digest` of what it was trained from."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"model": model, "model_kwargs": model_kwargs, "config": asdict(config), "network": net.state(),
                "training_s": training_s, "training_threads": torch.get_num_threads(), "content": content}, tmp)
    tmp.replace(path)
    routes_cache_path(path).unlink(missing_ok=True)  # route accuracies of an earlier network
    outcomes_cache_path(path).unlink(missing_ok=True)


def load_checkpoint(path: Path) -> tuple[NestedNetwork, dict]:
    """Rebuild the network; returns it and the raw checkpoint dict (model, kwargs, config)."""
    try:
        saved = torch.load(path, weights_only=True)
    except FileNotFoundError:
        raise SimqosError(f"checkpoint {path}: no such file; create it with `simqos train`") from None
    except Exception as exc:  # torch raises several unrelated types for a corrupt file
        raise SimqosError(f"checkpoint {path}: unreadable ({exc}); delete it and run `simqos train` again") from None
    spec = build_model(saved["model"], **saved["model_kwargs"])
    try:
        return NestedNetwork.from_state(spec.module, saved["network"]), saved
    except (KeyError, RuntimeError) as exc:  # a field this simqos stores, or a weight shape it builds, is missing
        reason = f"no {exc} in it" if isinstance(exc, KeyError) else str(exc).splitlines()[0]
        raise StaleCheckpoint(f"checkpoint {path}: written by an older simqos ({reason}); "
                              "run `simqos train` with --retrain") from None


class Trained(NamedTuple):
    """A trained nested network, a fresh spec of its model (its dataset, example input), its
    checkpoint's path, the wall seconds its training took and with how many torch threads
    (None for a checkpoint that did not record them), and whether it came from the cache."""

    net: NestedNetwork
    spec: ModelSpec
    path: Path
    training_s: float | None
    training_threads: int | None
    cached: bool


def trained_network(
    model: str,
    model_kwargs: dict,
    densities: tuple[float, ...],
    config: TrainConfig,
    retrain: bool = False,
    on_epoch: EpochCallback | None = None,
) -> Trained:
    """The trained nested network for these settings: from the cache, or trained and cached."""
    path = checkpoint_path(model, model_kwargs, densities, config)
    spec = build_model(model, **model_kwargs)
    content = content_digest(model, spec)
    if path.exists() and not retrain:
        try:
            net, saved = load_checkpoint(path)
            if saved.get("content") == content:  # else made from other code or data (or not recorded): trained again
                return Trained(net, spec, path, saved.get("training_s"), saved.get("training_threads"), True)
        except StaleCheckpoint:
            pass  # trained again below, as if absent
    started = time.perf_counter()
    net = train_nested(spec, densities, config, on_epoch=on_epoch)
    seconds = time.perf_counter() - started
    save_checkpoint(path, model, model_kwargs, config, net, seconds, content)
    return Trained(net, spec, path, seconds, torch.get_num_threads(), False)
