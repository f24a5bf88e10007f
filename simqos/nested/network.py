"""A torch module serving several nested sparsity levels, run along any *route*.

:class:`NestedNetwork` wraps an ``nn.Module`` without changing it: each prunable weight keeps
its values in the module and its per-weight rank (:mod:`simqos.nested.masks`) beside it. A
forward pass substitutes masked weights with ``torch.func.functional_call``, so any level
assignment runs through the unmodified module code.

Prunable layers are ``Linear``, ``Conv1d``, ``Conv2d``, ``LSTM`` (all gate matrices) and
``MultiheadAttention`` (input and output projections); their order is the execution order seen
on an example input. Biases and normalisation layers are never pruned: their parameters are
shared by all levels. A batch-norm module's running statistics are kept per *route prefix* (a
few numbers per channel): the activations reaching it depend on the levels of every segment up
to its own (see :mod:`simqos.nested.calibration`); training leaves each level's own, those of
its uniform route (see :mod:`simqos.nested.training`).

A **reroute point** is a layer boundary where an inference may switch level; the layers between
two reroute points form a **segment**, and a **route** gives one level per segment.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import torch
from torch import nn

from simqos.errors import SimqosError
from simqos.nested.masks import Pruning, Scope, check_nested, level_mask
from simqos.nested.scoring import Accuracy

__all__ = ["NORM_STATS", "NestedNetwork", "PrunableLayer", "Route", "find_norms", "find_prunable_layers", "format_route", "parse_route"]

Route = tuple[int, ...]
"""One level index per segment, segments in execution order."""

_SIMPLE_KINDS: dict[type[nn.Module], str] = {
    nn.Linear: "linear",
    nn.Conv1d: "conv1d",
    nn.Conv2d: "conv2d",
}


@dataclass(frozen=True)
class PrunableLayer:
    """A layer whose weights are pruned into nested levels.

    ``name`` is the module's dotted path, ``kind`` one of linear, conv1d, conv2d, lstm,
    attention; ``weights`` the dotted names of its pruned parameters; ``segment`` the index of
    the segment it runs in.
    """

    name: str
    kind: str
    weights: tuple[str, ...]
    segment: int


def _layer_kind_and_weights(name: str, module: nn.Module) -> tuple[str, tuple[str, ...]] | None:
    prefix = f"{name}." if name else ""
    for cls, kind in _SIMPLE_KINDS.items():
        if isinstance(module, cls):
            return kind, (f"{prefix}weight",)
    if isinstance(module, nn.LSTM):
        gates = tuple(f"{prefix}{p}" for p, _ in module.named_parameters() if p.startswith("weight_"))
        return "lstm", gates
    if isinstance(module, nn.MultiheadAttention):
        projections = [
            p
            for p, _ in module.named_parameters()
            if p in ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight", "out_proj.weight")
        ]
        return "attention", tuple(f"{prefix}{p}" for p in projections)
    return None


def _probe(module: nn.Module, example_input: torch.Tensor, hooks: list) -> None:
    """One pass over ``example_input`` for the ``hooks`` to record, then remove them. In eval mode
    and without gradients: no batch-norm statistic may move, and batch 1 must be allowed."""
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            module(example_input)
    finally:
        module.train(was_training)
        for h in hooks:
            h.remove()


def find_prunable_layers(
    module: nn.Module, example_input: torch.Tensor, reroute_after: Iterable[str] | None = None
) -> list[PrunableLayer]:
    """Prunable layers of ``module`` in the order one forward pass on ``example_input`` runs them.

    ``reroute_after`` names the layers after which a reroute is possible; ``None`` means after
    every layer. A layer that the forward pass does not run is not included. The children of an
    attention module are part of it. Raises SimqosError if a name in ``reroute_after`` is not a
    prunable layer, or if the module has no prunable layer.
    """
    candidates: dict[str, tuple[str, tuple[str, ...]]] = {}
    inside_attention: list[str] = []
    for name, sub in module.named_modules():
        if any(name.startswith(f"{a}.") for a in inside_attention):
            continue
        found = _layer_kind_and_weights(name, sub)
        if found is not None:
            candidates[name] = found
            if found[0] == "attention":
                inside_attention.append(name)
    order: list[str] = []
    hooks = [
        sub.register_forward_pre_hook(lambda _m, _a, n=name: order.append(n) if n not in order else None)
        for name, sub in module.named_modules()
        if name in candidates
    ]
    _probe(module, example_input, hooks)
    if not order:
        raise SimqosError(
            f"{type(module).__name__}: no prunable layer (Linear, Conv1d, Conv2d, LSTM, "
            "MultiheadAttention) runs in its forward pass; nothing to make sparse"
        )
    boundaries = set(order[:-1]) if reroute_after is None else set(reroute_after)
    unknown = boundaries - set(order)
    if unknown:
        raise SimqosError(
            f"reroute_after: {sorted(unknown)} are not prunable layers of {type(module).__name__}; "
            f"choose among {order}"
        )
    layers, segment = [], 0
    for name in order:
        kind, weights = candidates[name]
        layers.append(PrunableLayer(name=name, kind=kind, weights=weights, segment=segment))
        if name in boundaries:
            segment += 1
    return layers


NORM_STATS = ("running_mean", "running_var")
"""The buffers of a batch-norm module that each level keeps for itself."""


def find_norms(module: nn.Module, example_input: torch.Tensor, layers: Sequence[PrunableLayer]) -> dict[str, int]:
    """Batch-norm modules that keep running statistics, by name, with the segment each runs in:
    that of the last prunable layer run before it (segment 0 before any)."""
    named = dict(module.named_modules())
    norms = [n for n, m in named.items() if isinstance(m, nn.modules.batchnorm._NormBase) and m.track_running_stats]
    if not norms:
        return {}
    segment_of = {layer.name: layer.segment for layer in layers}
    order: list[str] = []
    hooks = [named[n].register_forward_pre_hook(lambda _m, _a, n=n: order.append(n)) for n in [*segment_of, *norms]]
    _probe(module, example_input, hooks)
    found, segment = {}, 0
    for name in order:
        if name in segment_of:
            segment = segment_of[name]
        elif name not in found:
            found[name] = segment
    return found


def format_route(route: Sequence[int]) -> str:
    """``(0, 0, 1)`` -> ``"0-0-1"``: the spelling of a route in files and tables."""
    return "-".join(str(level) for level in route)


def parse_route(text: str) -> Route:
    """Inverse of :func:`format_route`; raises ValueError on anything else."""
    try:
        return tuple(int(part) for part in text.split("-"))
    except ValueError:
        raise ValueError(f"route {text!r} is not of the form '0-0-1'") from None


def _check_keep_dense(names: Sequence[str], layers: Sequence[PrunableLayer]) -> tuple[str, ...]:
    """``names`` as a tuple, after checking each is a prunable layer."""
    known = [layer.name for layer in layers]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SimqosError(f"keep dense: {unknown} are not prunable layers; choose among {known}")
    return tuple(names)


class NestedNetwork:
    """An ``nn.Module`` plus nested ranks for its prunable weights.

    Construct with :meth:`from_magnitude` (one-shot nested magnitude pruning of the module's
    current weights) or directly with ranks (e.g. from :mod:`simqos.nested.training` or a
    checkpoint). Pruned positions are zeroed in the module's weights on construction.
    """

    def __init__(
        self,
        module: nn.Module,
        densities: Sequence[float],
        layers: Sequence[PrunableLayer],
        ranks: dict[str, torch.Tensor],
        scope: Scope = "layer",
        keep_dense: Sequence[str] = (),
        dense_accuracy: Sequence[Accuracy] = (),
        norm_segments: dict[str, int] | None = None,
        norm_stats: dict[Route, dict[str, torch.Tensor]] | None = None,
    ) -> None:
        self.module = module
        self.dense_accuracy = tuple(dense_accuracy)
        self.norm_segments = dict(norm_segments or {})
        self.norm_stats = {tuple(k): dict(v) for k, v in (norm_stats or {}).items()}
        """Batch-norm running statistics by route prefix: ``norm_stats[p]`` holds those of the
        modules in segment ``len(p) - 1`` as reached along ``p``. Empty: the module's own buffers
        serve every route."""
        self.layers = tuple(layers)
        self.keep_dense = _check_keep_dense(keep_dense, self.layers)
        dense = frozenset(w for layer in self.layers if layer.name in self.keep_dense for w in layer.weights)
        self.pruning = Pruning(tuple(densities), scope, dense)
        self.densities = self.pruning.densities
        self.ranks = dict(ranks)
        params = dict(module.named_parameters())
        expected = {w for layer in self.layers for w in layer.weights}
        if set(self.ranks) != expected:
            raise SimqosError(
                f"ranks are given for {sorted(self.ranks)} but the prunable weights are "
                f"{sorted(expected)}"
            )
        with torch.no_grad():
            for name, rank in self.ranks.items():
                params[name].mul_(level_mask(rank, 0))
                check_nested(name, params[name], rank, self.n_levels)
        self.pruning.check(self.ranks)

    @classmethod
    def from_magnitude(
        cls,
        module: nn.Module,
        densities: Sequence[float],
        example_input: torch.Tensor,
        reroute_after: Iterable[str] | None = None,
        scope: Scope = "layer",
        keep_dense: Sequence[str] = (),
    ) -> NestedNetwork:
        """Nested levels by magnitude of the module's current values: level k keeps the
        largest-magnitude fraction ``densities[k]`` of each tensor (``scope="layer"``) or of all
        of them together (``"global"``); layers named in ``keep_dense`` stay whole."""
        layers = find_prunable_layers(module, example_input, reroute_after)
        dense = frozenset(w for layer in layers if layer.name in _check_keep_dense(keep_dense, layers) for w in layer.weights)
        params = dict(module.named_parameters())
        scores = {w: params[w].detach().abs() for layer in layers for w in layer.weights}
        ranks = Pruning(tuple(densities), scope, dense).ranks(scores)
        return cls(module, densities, layers, ranks, scope, keep_dense)

    @property
    def n_levels(self) -> int:
        """Number of sparsity levels K."""
        return len(self.densities)

    @property
    def n_segments(self) -> int:
        """Number of segments (reroute points + 1)."""
        return self.layers[-1].segment + 1

    def check_route(self, route: Sequence[int]) -> Route:
        """Return ``route`` as a tuple after checking its length and level indices."""
        route = tuple(int(level) for level in route)
        if len(route) != self.n_segments or not all(0 <= lv < self.n_levels for lv in route):
            raise SimqosError(
                f"route {format_route(route)!r} needs {self.n_segments} levels, each in "
                f"[0, {self.n_levels - 1}]"
            )
        return route

    def uniform_route(self, level: int) -> Route:
        """The route that runs every segment at ``level``."""
        return self.check_route((level,) * self.n_segments)

    def masked_weights(self, route: Sequence[int]) -> dict[str, torch.Tensor]:
        """Each prunable weight multiplied by its segment's level mask, keyed by parameter name.

        Differentiable with respect to the module's parameters.
        """
        route = self.check_route(route)
        params = dict(self.module.named_parameters())
        return {
            w: params[w] * level_mask(self.ranks[w], route[layer.segment])
            for layer in self.layers
            for w in layer.weights
        }

    def norm_buffers(self, route: Sequence[int]) -> dict[str, torch.Tensor]:
        """Each batch-norm module's running statistics along ``route``: those of its route
        prefix (:attr:`norm_stats`), else, for a prefix never calibrated, those of its segment's
        level (the uniform prefix); none where the network keeps no statistics of its own."""
        route = self.check_route(route)
        buffers: dict[str, torch.Tensor] = {}
        for name, segment in self.norm_segments.items():
            prefix = route[: segment + 1]
            stats = self.norm_stats.get(prefix, self.norm_stats.get((route[segment],) * (segment + 1)))
            if stats is not None:
                buffers |= {f"{name}.{b}": stats[f"{name}.{b}"] for b in NORM_STATS}
        return buffers

    def route_tensors(self, route: Sequence[int]) -> dict[str, torch.Tensor]:
        """:meth:`masked_weights` and :meth:`norm_buffers`: everything that differs by route."""
        return self.masked_weights(route) | self.norm_buffers(route)

    def forward(self, x: torch.Tensor, route: Sequence[int]) -> torch.Tensor:
        """Run the module along ``route``."""
        return torch.func.functional_call(self.module, self.route_tensors(route), (x,))

    def kept_fraction(self, level: int) -> float:
        """Fraction of all prunable weights that ``level`` holds."""
        held = sum(int(level_mask(r, level).sum()) for r in self.ranks.values())
        return held / sum(r.numel() for r in self.ranks.values())

    def state(self) -> dict:
        """Everything needed to rebuild the network around a fresh module of the same shape."""
        return {
            "state_dict": {k: v.detach().clone() for k, v in self.module.state_dict().items()},
            "densities": list(self.densities),
            "scope": self.pruning.scope,
            "keep_dense": list(self.keep_dense),
            "dense_accuracy": [asdict(a) for a in self.dense_accuracy],
            "norm_segments": dict(self.norm_segments),
            "prefix_norm_stats": {format_route(k): {n: t.clone() for n, t in v.items()} for k, v in self.norm_stats.items()},
            "ranks": {k: v.clone() for k, v in self.ranks.items()},
            "layers": [vars(layer) | {"weights": list(layer.weights)} for layer in self.layers],
        }

    @classmethod
    def from_state(cls, module: nn.Module, state: dict) -> NestedNetwork:
        """Rebuild from :meth:`state` around ``module``; nesting is checked on the way."""
        module.load_state_dict(state["state_dict"])
        layers = [PrunableLayer(**{**layer, "weights": tuple(layer["weights"])}) for layer in state["layers"]]
        dense_accuracy = [Accuracy(**a) for a in state["dense_accuracy"]]
        return cls(module, state["densities"], layers, state["ranks"], state["scope"], state["keep_dense"], dense_accuracy,
                   state["norm_segments"], {parse_route(k): v for k, v in state["prefix_norm_stats"].items()})
