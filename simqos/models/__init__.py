"""The model zoo: shipped models by name, or a user's ``package.module:factory``.

A factory returns a :class:`ModelSpec`, or a plain ``nn.Module`` together with an input shape
given by the caller (its levels then come from the magnitudes of its current weights and its
accuracy is unavailable).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence

import torch
from torch import nn

from simqos.errors import SimqosError
from simqos.models.digits import digits_cnn, digits_mlp
from simqos.models.paper import gat, gnmt, pointnet2, resnet50
from simqos.models.spec import Dataset, ModelSpec

__all__ = ["MODELS", "Dataset", "ModelSpec", "build_model"]

MODELS: dict[str, Callable[..., ModelSpec]] = {
    "mlp": digits_mlp,
    "cnn": digits_cnn,
    "resnet50": resnet50,
    "pointnet2": pointnet2,
    "gnmt": gnmt,
    "gat": gat,
}
"""Shipped models by name: two trained on bundled digits, and the paper's four families."""


def _import_factory(target: str) -> Callable[..., object]:
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SimqosError(f"model {target!r}: cannot import {module_name!r} ({exc}); is it on PYTHONPATH?") from None
    factory = getattr(module, attr, None)
    if factory is None:
        raise SimqosError(f"model {target!r}: module {module_name!r} has no attribute {attr!r}")
    if not callable(factory):
        raise SimqosError(f"model {target!r}: {attr!r} is not callable; give a function returning an nn.Module")
    return factory


def build_model(name: str, input_shape: Sequence[int] | None = None, **kwargs: object) -> ModelSpec:
    """Build a shipped model by name, or call a user's ``package.module:factory``.

    ``input_shape`` (batch included) is required when the factory returns a plain
    ``nn.Module``. ``kwargs`` go to the factory. Raises SimqosError naming the model and the fix.
    """
    if ":" in name:
        made = _import_factory(name)(**kwargs)
        if isinstance(made, ModelSpec):
            return made
        if isinstance(made, nn.Module):
            if input_shape is None:
                raise SimqosError(
                    f"model {name!r} returns a plain nn.Module; give its input shape, "
                    "e.g. --input-shape 1,3,224,224"
                )
            made.eval()
            return ModelSpec(
                name=name.rpartition(":")[2],
                module=made,
                example_input=torch.zeros(tuple(input_shape)),
                reroute_after=None,
                dataset=None,
                description=f"user model {name}",
            )
        raise SimqosError(f"model {name!r}: the factory returned {type(made).__name__}, not a ModelSpec or nn.Module")
    if name not in MODELS:
        raise SimqosError(
            f"model {name!r} is not a shipped model; choose one of {sorted(MODELS)} "
            "or give your own as package.module:factory"
        )
    return MODELS[name](**kwargs)
