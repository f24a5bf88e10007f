"""The model zoo: shipped models by name, or a user's ``package.module:factory``.

A factory returns a :class:`ModelSpec`, or a plain ``nn.Module`` together with an input shape
given by the caller (its levels then come from the magnitudes of its current weights and its
accuracy is unavailable).
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from collections.abc import Callable, Sequence

import torch
from torch import nn

from simqos.errors import SimqosError
from simqos.models.digits import digits_cnn, digits_mlp
from simqos.models.grammar import gnmt_grammar
from simqos.models.graphs import gat_sbm
from simqos.models.mnist1d import cnn1d, mlp1d, resnet1d
from simqos.models.paper import gat, gnmt, pointnet2, resnet50
from simqos.models.shapes import pointnet2_shapes
from simqos.models.spec import Dataset, ModelSpec

__all__ = ["MODELS", "Dataset", "ModelSpec", "build_model"]

MODELS: dict[str, Callable[..., ModelSpec]] = {
    "mlp": digits_mlp,
    "cnn": digits_cnn,
    "mlp1d": mlp1d,
    "cnn1d": cnn1d,
    "resnet1d": resnet1d,
    "resnet50": resnet50,
    "pointnet2": pointnet2,
    "gnmt": gnmt,
    "gat": gat,
    "pointnet2_shapes": pointnet2_shapes,
    "gnmt_grammar": gnmt_grammar,
    "gat_sbm": gat_sbm,
}
"""Shipped models by name: the paper's four families at full size (latency only, no dataset);
each family trained at reduced size on a task generated here — ``resnet1d`` (and ``cnn1d``) on
MNIST-1D, ``pointnet2_shapes``, ``gnmt_grammar``, ``gat_sbm``; and two models on scikit-learn's
bundled digits (``mlp``, ``cnn``), an easy task."""


def _import_factory(target: str) -> Callable[..., object]:
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # a user's module may fail in any way while importing
        raise SimqosError(f"model {target!r}: cannot import {module_name!r} ({exc}); is it on PYTHONPATH?") from None
    factory = getattr(module, attr, None)
    if factory is None:
        raise SimqosError(f"model {target!r}: module {module_name!r} has no attribute {attr!r}")
    if not callable(factory):
        raise SimqosError(f"model {target!r}: {attr!r} is not callable; give a function returning an nn.Module")
    return factory


def factory_source(name: str) -> bytes:
    """The source of the module whose factory builds model ``name`` (a shipped name, or a
    user's ``package.module:factory``); empty where it cannot be read."""
    factory = _import_factory(name) if ":" in name else MODELS.get(name)
    try:
        return Path(inspect.getsourcefile(factory)).read_bytes()
    except (TypeError, OSError):
        return b""


def build_model(name: str, input_shape: Sequence[int] | None = None, **kwargs: object) -> ModelSpec:
    """Build a shipped model by name, or call a user's ``package.module:factory``.

    ``input_shape`` (batch included) is required when the factory returns a plain
    ``nn.Module``. ``kwargs`` go to the factory. Raises SimqosError naming the model and the fix.
    """
    if ":" in name:
        made = _call(name, _import_factory(name), kwargs)
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
    return _call(name, MODELS[name], kwargs)


def _call(name: str, factory: Callable[..., object], kwargs: dict) -> object:
    """``factory(**kwargs)``; a call its signature does not take is the user's mistake."""
    try:
        inspect.signature(factory).bind(**kwargs)
    except TypeError as exc:
        raise SimqosError(f"model {name!r}: {exc}; pass its arguments with --model-arg KEY=VALUE") from None
    except ValueError:  # a builtin without a signature: let the call say
        pass
    return factory(**kwargs)
