"""The bundle's ``profile.json``, field by field (``profiles/README.md``): levels, layers in
execution order, accuracy, the recipe that made the network and the settings it was measured
with, its provenance."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "DENSE_BASELINE_LEVEL",
    "SCHEMA_VERSION",
    "AccuracyInfo",
    "Deployment",
    "LayerInfo",
    "LevelInfo",
    "NetworkRecipe",
    "ProfileMeta",
    "ProfileSettings",
    "Provenance",
    "Quietness",
    "SplitAccuracy",
    "TrainingSettings",
]

SCHEMA_VERSION = 3
DENSE_BASELINE_LEVEL = -1
"""The ``level`` of end-to-end samples of the dense baseline (unpruned model, dense kernels)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class LevelInfo(_Strict):
    """A sparsity level: ``density`` as configured, ``kept_fraction`` as realised over all
    prunable weights (they differ by rounding and by layers too small to prune)."""

    index: int = Field(ge=0)
    name: str
    density: float = Field(gt=0, le=1)
    kept_fraction: float = Field(gt=0, le=1)


class LayerInfo(_Strict):
    """A prunable layer in execution order; shapes include the batch dimension."""

    name: str
    kind: str
    segment: int = Field(ge=0)
    n_weights: int = Field(gt=0)
    weight_shapes: list[list[int]]
    input_shapes: list[list[int]]
    output_shapes: list[list[int]]


class SplitAccuracy(_Strict):
    """A score on one split: ``correct`` of ``n`` scored units, with its 95 % interval."""

    split: str
    correct: int = Field(ge=0)
    n: int = Field(gt=0)
    accuracy: float = Field(ge=0, le=1)
    ci_low: float = Field(ge=0, le=1)
    ci_high: float = Field(ge=0, le=1)


class AccuracyInfo(_Strict):
    """Whether routes.csv exists, what it measures and on what, and how the levels were cut.

    ``source``: ``measured`` (by ``simqos profile``) or ``attached`` (by ``simqos
    attach-accuracy``, from a file measured elsewhere). ``metric`` and ``unit`` say what is
    scored ("top-1 accuracy" of "sample"s, "token accuracy" of "token"s, ...). ``dense``: the
    unpruned model's score on each split, when known. ``scope`` and ``keep_dense``: how the
    levels were pruned (layer-wise or global magnitude; layers kept whole)."""

    available: bool
    source: Literal["measured", "attached"] | None = None
    dataset: str | None = None
    metric: str | None = None
    unit: str | None = None
    growth: str | None = None
    scope: str = "layer"
    keep_dense: list[str] = []
    routes_complete: bool | None = None
    dense: list[SplitAccuracy] = []
    note: str = ""


class TrainingSettings(_Strict):
    """How the nested network was trained (:class:`simqos.nested.training.TrainConfig`'s
    fields): epochs of the dense, sparsest and each growth phase, batch size, Adam learning
    rates of the dense and sparse phases (``lr_schedule``: held constant, or annealed to zero
    along a half cosine over each phase), seed, growth method, pruning scope and the layers kept
    whole, the training inputs that re-estimate batch-norm statistics per route prefix
    afterwards (0, the default of a recipe that does not say: the statistics training left, per
    level), Adam's L2 ``weight_decay`` (0: none; in the growth phases it acts on the re-opened
    weights only), the norm ``clip_grad_norm`` that each step's gradient is clipped to (0:
    none) and ``distill``, the dense model's share of the sparse phases' loss (0: none).
    ``scope`` and ``keep_dense`` also decide the levels of a model pruned by magnitude
    (no dataset ships for it), which is not trained."""

    epochs_dense: int = Field(20, ge=0)
    epochs_sparsest: int = Field(15, ge=0)
    epochs_grow: int = Field(10, ge=0)
    batch_size: int = Field(64, ge=1)
    lr_dense: float = Field(1e-3, gt=0)
    lr_sparse: float = Field(5e-4, gt=0)
    seed: int = 0
    growth: Literal["sparse-first", "route-aware"] = "sparse-first"
    scope: Literal["layer", "global"] = "layer"
    keep_dense: tuple[str, ...] = ()
    calibration_samples: int = Field(0, ge=0)
    lr_schedule: Literal["constant", "cosine"] = "constant"
    weight_decay: float = Field(0.0, ge=0)
    clip_grad_norm: float = Field(0.0, ge=0)
    distill: float = Field(0.0, ge=0, le=1)


class NetworkRecipe(_Strict):
    """What makes the profiled network, enough to make it again (``simqos validate`` runs it
    for real): the model (a shipped name or ``package.module:factory``), its factory's keyword
    arguments and input shape, the levels' kept-weight fractions (least sparse first) and the
    training."""

    model: str
    model_kwargs: dict[str, Any] = Field(default_factory=dict)
    input_shape: tuple[int, ...] | None = None
    densities: tuple[float, ...]
    training: TrainingSettings = TrainingSettings()


class ProfileSettings(_Strict):
    """How latencies were measured (see :mod:`simqos.profiler`): on ``device`` with ``threads``
    torch threads and inputs of ``batch_size``; every candidate kernel in ``kernels`` timed alone
    (``n_samples`` samples of at least ``min_sample_ms``, after ``warmup_ms`` of warm-up), the
    contenders compared in ``choice_passes`` whole-model passes, the chosen kernels timed in
    ``in_model_passes`` whole-model passes per level (the shipped samples), and ``idle_samples``
    passes per level after each idle gap in ``idle_gaps_ms`` (0: no ``idle.csv``)."""

    device: Literal["cpu", "cuda"] = "cpu"
    kernels: tuple[str, ...]
    batch_size: int = Field(1, ge=1)
    threads: int = Field(1, ge=1)
    n_samples: int = Field(30, ge=1)
    min_sample_ms: float = Field(1.0, gt=0)
    warmup_ms: float = Field(50.0, ge=0)
    in_model_passes: int = Field(200, ge=1)
    choice_passes: int = Field(20, ge=1)
    idle_samples: int = Field(30, ge=0)
    idle_gaps_ms: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0)


class Deployment(_Strict):
    """The runtime the latency tables time (``runtime``): ``torch-eager`` (torch calls each
    layer's chosen kernel) or ``simqos-nested`` (:mod:`simqos.kernels.runtime`: one compiled call over
    the nested kernels); every candidate's whole-model median (ms) at each level, least sparse
    first; where the nested runtime was not a candidate, why (``note``); and the anchors: the
    same levels' medians on the runtimes users deploy instead (:mod:`simqos.profiler.anchors`;
    ONNX Runtime, ExecuTorch XNNPACK: dense kernels), timed taking turns with the deployed
    runtime, whose medians in that timing are in ``anchors_ms`` too under its own name — compare
    within ``anchors_ms`` — or why there is none."""

    runtime: str = "torch-eager"
    medians_ms: dict[str, list[float]] = Field(default_factory=dict)
    note: str = ""
    anchors_ms: dict[str, list[float]] = Field(default_factory=dict)
    anchor_note: str = ""


class Quietness(_Strict):
    """How quiet the machine was while the latencies were measured: its load averages (1, 5,
    15 minutes) before and after (absent where the OS does not say), the in-model passes timed,
    how many were dropped and run again for a stall (:mod:`simqos.profiler.passes`), how many
    stalls came back every time and were kept, and the first stalls, described."""

    load_average_before: tuple[float, float, float] | None = None
    load_average_after: tuple[float, float, float] | None = None
    passes: int = Field(0, ge=0)
    stalled_passes: int = Field(0, ge=0)
    kept_stalls: int = Field(0, ge=0)
    stalls: list[str] = Field(default_factory=list)


class Provenance(_Strict):
    """Where and how the profile was measured: the machine, the versions, the command line that
    made it, the measurement settings and the network's recipe (absent from a bundle written by
    hand or by another tool: such a model cannot be rebuilt, so ``simqos validate`` refuses it);
    and the wall seconds training the network took, with how many torch threads (absent where
    it was not trained, or its checkpoint predates the record); the runtime the latencies were
    measured on (:class:`Deployment`) and how quiet the machine was (:class:`Quietness`; absent in
    bundles made before simqos recorded it)."""

    cpu: str
    gpu: str | None = None
    torch_version: str
    simqos_version: str
    python_version: str
    dtype: str
    created_utc: str
    command: str
    settings: ProfileSettings
    recipe: NetworkRecipe | None = None
    training_s: float | None = Field(None, ge=0)
    training_threads: int | None = Field(None, ge=1)
    deployment: Deployment = Deployment(note="profiled before simqos recorded its runtime: torch eager")
    quietness: Quietness | None = None


class ProfileMeta(_Strict):
    """Contents of ``profile.json``."""

    schema_version: int
    model: str
    description: str
    input_shape: list[int]
    levels: list[LevelInfo]
    layers: list[LayerInfo]
    reroute_after: list[str]
    accuracy: AccuracyInfo
    provenance: Provenance
