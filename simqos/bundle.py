"""The profile bundle: the simulator's only view of a model (no torch here).

A bundle is a folder of one JSON file and a few CSV tables, documented field by field in
``profiles/README.md``:

``profile.json``
    :class:`ProfileMeta`: schema version, model, levels, layers in execution order, reroute
    points, accuracy availability, provenance.
``layers.csv``
    one row per layer x level: chosen kernel, non-zeros, FLOPs, bytes, latency summary.
``latency_samples.csv``
    raw latency samples (ms) per layer x level: one call each of the chosen kernel, timed
    inside whole-model passes.
``kernels.csv``
    every candidate kernel per layer x level: median alone and inside the model (ms), and
    whether it was exact / chosen.
``end_to_end.csv``
    raw latency samples (ms) of the whole model per level (all layers at that level, chosen
    kernels), and of the dense baseline (level ``DENSE_BASELINE_LEVEL`` = -1: every layer's
    dense kernel with all its weights).
``routes.csv``
    accuracy per route on each held-out split (only when accuracy is available): the
    ``validation`` rows are what policies decide on, the ``test`` rows what reports show.
``route_outcomes.npz`` (optional, with ``routes.csv``)
    every route's outcome on each test sample (:class:`RouteOutcomes`): routes are scored on the
    same samples, so the verdict's difference of two policies' accuracy gets its *paired*
    test-set sampling error from it. Without it, the verdict's interval leaves that error out
    and says so.
``idle.csv`` (optional)
    raw whole-model latency samples (ms) per level after the device idled ``idle_ms`` since the
    previous inference (0: back to back, as every other table is timed). An idle core loses
    warm caches (and, on many devices, clock speed), so a request that finds the device idle
    runs slower; the simulator scales its work at each level by that level's measured ratio
    (see :meth:`Profile.idle_factors`).

:func:`load_profile` validates everything — schema, completeness, units, and nesting (non-zeros
and resident bytes never grow from a level to a sparser one) — and raises SimqosError naming
the file, the field, the value and the fix.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from simqos.errors import SimqosError, validation_message

__all__ = [
    "DENSE_BASELINE_LEVEL",
    "SCHEMA_VERSION",
    "AccuracyInfo",
    "Deployment",
    "LayerInfo",
    "LevelInfo",
    "Profile",
    "ProfileMeta",
    "Provenance",
    "Quietness",
    "NetworkRecipe",
    "OUTCOMES_FILE",
    "ProfileSettings",
    "RouteOutcomes",
    "TrainingSettings",
    "SPLITS",
    "SplitAccuracy",
    "check_routes",
    "load_profile",
    "save_profile",
]

SCHEMA_VERSION = 3
DENSE_BASELINE_LEVEL = -1
"""The ``level`` of end-to-end samples of the dense baseline (unpruned model, dense kernels)."""

_META_FILE = "profile.json"
TABLE_COLUMNS: dict[str, tuple[str, ...]] = {
    "layers.csv": (
        "layer", "level", "kernel", "nnz", "density", "flops", "weight_bytes",
        "kernel_weight_bytes", "activation_bytes", "latency_median_ms", "latency_iqr_ms",
        "isolated_median_ms", "isolated_calls_per_sample",
    ),
    "latency_samples.csv": ("layer", "level", "sample", "latency_ms"),
    "kernels.csv": ("layer", "level", "kernel", "median_ms", "in_model_median_ms", "status"),
    "end_to_end.csv": ("level", "sample", "latency_ms"),
    "routes.csv": ("route", "split", "correct", "n", "accuracy", "ci_low", "ci_high"),
    "idle.csv": ("level", "idle_ms", "sample", "latency_ms"),
}
"""Required columns of each table (more columns are an error too)."""


OUTCOMES_FILE = "route_outcomes.npz"


@dataclass(frozen=True)
class RouteOutcomes:
    """Every route's outcome on each scored sample of the test split: of sample i's
    ``units[i]`` scored units (1 for a classified sample; a sentence's tokens), route
    ``routes[r]`` gets ``hits[r, i]`` right. Stored as ``route_outcomes.npz`` (arrays ``route``:
    route texts ``"0-1-1"``, ``hits``, ``units``)."""

    routes: tuple[tuple[int, ...], ...]
    hits: np.ndarray  # (routes, samples) int
    units: np.ndarray  # (samples,) int

    def save(self, path: Path) -> None:
        """Write atomically (a crash leaves the old file or none)."""
        tmp = path.with_name(path.name + ".tmp.npz")
        counts = np.min_scalar_type(int(self.units.max(initial=1)))  # the smallest integer holding a sample's units
        np.savez_compressed(tmp, route=np.array(["-".join(map(str, r)) for r in self.routes]),
                            hits=self.hits.astype(counts), units=self.units.astype(counts))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> RouteOutcomes:
        try:
            with np.load(path, allow_pickle=False) as f:
                routes = tuple(tuple(int(p) for p in str(t).split("-")) for t in f["route"])
                return cls(routes, f["hits"].astype(np.int64), f["units"].astype(np.int64))
        except (OSError, KeyError, ValueError) as exc:
            raise _fail(path, f"not a route outcomes file ({exc}); re-create the profile with `simqos profile`, "
                              "or remove the file (the verdict then leaves the test set's sampling error out)") from None


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
    weights only) and the norm ``clip_grad_norm`` that each step's gradient is clipped to (0:
    none). ``scope`` and ``keep_dense`` also decide the levels of a model pruned by magnitude
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


@dataclass(frozen=True)
class Profile:
    """A validated profile bundle in memory; tables are pandas DataFrames (see module doc)."""

    meta: ProfileMeta
    layers: pd.DataFrame
    latency_samples: pd.DataFrame
    kernels: pd.DataFrame
    end_to_end: pd.DataFrame
    routes: pd.DataFrame | None
    idle: pd.DataFrame | None = None
    outcomes: RouteOutcomes | None = None

    @property
    def n_levels(self) -> int:
        return len(self.meta.levels)

    @property
    def n_segments(self) -> int:
        return self.meta.layers[-1].segment + 1

    @property
    def layer_names(self) -> list[str]:
        return [layer.name for layer in self.meta.layers]

    def samples_ms(self, layer: str, level: int) -> np.ndarray:
        """Raw latency samples (ms) of ``layer`` at ``level``."""
        t = self.latency_samples
        return t.loc[(t["layer"] == layer) & (t["level"] == level), "latency_ms"].to_numpy()

    def end_to_end_gap(self) -> pd.DataFrame:
        """Per level: sum of layer medians, end-to-end median, their gap (ms and fraction of
        end to end), and the end-to-end ratio to the dense baseline.

        The gap is what per-layer timing misses (activations, pooling, Python dispatch, cache
        effects between layers); it is measured, never assumed zero.
        """
        layer_sum = self.layers.groupby("level")["latency_median_ms"].sum()
        e2e = self.end_to_end.groupby("level")["latency_ms"].median()
        out = pd.DataFrame({"sum_of_layers_ms": layer_sum, "end_to_end_ms": e2e.loc[layer_sum.index]})
        out["gap_ms"] = out["end_to_end_ms"] - out["sum_of_layers_ms"]
        out["gap_fraction"] = out["gap_ms"] / out["end_to_end_ms"]
        out["ratio_to_dense"] = out["end_to_end_ms"] / self.dense_end_to_end_ms
        return out.reset_index()

    def level_summary(self) -> pd.DataFrame:
        """Per level, relative to the dense model: kept weights, FLOPs, end-to-end latency
        (median, chosen kernels vs dense kernels), resident bytes under nested storage (vs the
        float32 bytes of the dense weight tensors), and — when the profile has accuracy — the
        level's test accuracy with its interval and its loss relative to the dense model's:
        the paper's "13.38 % weights, 14.97 % FLOPs at dense accuracy" table for this profile
        (NaN where unknown)."""
        t = self.layers
        n_weights = {layer.name: layer.n_weights for layer in self.meta.layers}
        dense_flops = sum(
            row.flops * n_weights[row.layer] / row.nnz for row in t[t["level"] == 0].itertuples() if row.nnz
        )
        gap = self.end_to_end_gap().set_index("level")
        rows = []
        for level in self.meta.levels:
            at = t[t["level"] == level.index]
            rows.append(
                {
                    "level": level.index,
                    "weights_fraction": level.kept_fraction,
                    "flops_fraction": at["flops"].sum() / dense_flops,
                    "latency_ratio": gap.loc[level.index, "ratio_to_dense"],
                    "storage_ratio": at["weight_bytes"].sum() / (4 * sum(n_weights.values())),
                    **self._level_accuracy(level.index),
                }
            )
        return pd.DataFrame(rows)

    def _level_accuracy(self, level: int) -> dict[str, float]:
        """Test accuracy of the all-``level`` route, its interval, and its loss relative to the
        dense model's test accuracy (NaN where unknown)."""
        out = dict.fromkeys(("accuracy", "ci_low", "ci_high", "relative_loss"), math.nan)
        if self.routes is None:
            return out
        uniform = "-".join([str(level)] * self.n_segments)
        row = self.routes[(self.routes["route"] == uniform) & (self.routes["split"] == "test")].iloc[0]
        out.update(accuracy=float(row.accuracy), ci_low=float(row.ci_low), ci_high=float(row.ci_high))
        dense = self.dense_accuracy("test")
        if dense is not None:
            out["relative_loss"] = (dense.accuracy - row.accuracy) / dense.accuracy
        return out

    def dense_accuracy(self, split: str) -> SplitAccuracy | None:
        """The unpruned model's score on ``split``, if the profile knows it."""
        return next((a for a in self.meta.accuracy.dense if a.split == split), None)

    def idle_factors(self) -> tuple[np.ndarray, np.ndarray]:
        """``(idle_ms, factor)``: how much longer level k runs after the device idled
        ``idle_ms[j]`` than back to back, ``factor[k, j]`` — the median after the gap over the
        median with none; ascending gaps from 0 (factor 1). Without ``idle.csv``: gap 0 only,
        no slowdown at any gap."""
        if self.idle is None:
            return np.array([0.0]), np.ones((self.n_levels, 1))
        medians = self.idle.groupby(["level", "idle_ms"])["latency_ms"].median().unstack("idle_ms").sort_index()
        ratios = medians.div(medians[0.0], axis=0).sort_index(axis=1)
        return ratios.columns.to_numpy(dtype=float), ratios.to_numpy(dtype=float)

    @property
    def dense_end_to_end_ms(self) -> float:
        """Median end-to-end latency (ms) of the dense baseline."""
        e = self.end_to_end
        return float(e.loc[e["level"] == DENSE_BASELINE_LEVEL, "latency_ms"].median())


def save_profile(profile: Profile, folder: Path) -> None:
    """Write ``profile`` into ``folder`` (created if needed): the files named in the module doc."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / _META_FILE).write_text(json.dumps(profile.meta.model_dump(), indent=2) + "\n")
    tables = {
        "layers.csv": profile.layers,
        "latency_samples.csv": profile.latency_samples,
        "kernels.csv": profile.kernels,
        "end_to_end.csv": profile.end_to_end,
        "routes.csv": profile.routes,
        "idle.csv": profile.idle,
    }
    for name, table in tables.items():
        if table is not None:
            table.loc[:, list(TABLE_COLUMNS[name])].to_csv(folder / name, index=False, float_format="%.6g")
    if profile.outcomes is not None:
        profile.outcomes.save(folder / OUTCOMES_FILE)


def _fail(where: Path, message: str) -> SimqosError:
    return SimqosError(f"{where}: {message}")


def _read_meta(folder: Path) -> ProfileMeta:
    path = folder / _META_FILE
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise _fail(path, "missing; a profile folder needs profile.json (make one with `simqos profile`)") from None
    except json.JSONDecodeError as exc:
        raise _fail(path, f"not valid JSON ({exc}); re-create the profile with `simqos profile`") from None
    if isinstance(raw, dict) and raw.get("schema_version") != SCHEMA_VERSION:
        raise _fail(
            path, f"schema_version is {raw.get('schema_version')!r}, this simqos reads {SCHEMA_VERSION}; re-profile"
        )
    try:
        return ProfileMeta.model_validate(raw)
    except ValidationError as exc:
        raise _fail(path, validation_message(exc, ProfileMeta, "profile.json")) from None


def _read_table(folder: Path, name: str) -> pd.DataFrame:
    path = folder / name
    try:
        table = pd.read_csv(path, dtype={c: str for c in ("layer", "kernel", "status", "route", "split")})
    except FileNotFoundError:
        raise _fail(path, "missing; re-create the profile with `simqos profile`") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise _fail(path, f"unreadable as CSV ({exc}); re-create the profile with `simqos profile`") from None
    expected = TABLE_COLUMNS[name]
    if tuple(table.columns) != expected:
        raise _fail(path, f"columns are {list(table.columns)}, expected {list(expected)}")
    return table


def _check_numeric(path: Path, table: pd.DataFrame, columns: tuple[str, ...], minimum: float, strict: bool) -> None:
    for col in columns:
        values = pd.to_numeric(table[col], errors="coerce")
        bad = values.isna() | ~np.isfinite(values) | (values <= minimum if strict else values < minimum)
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            rule = f"> {minimum}" if strict else f">= {minimum}"
            raise _fail(path, f"row {row + 2}: {col}={table[col].iloc[row]!r} must be a finite number {rule}")


def _validate(folder: Path, profile: Profile) -> None:
    meta = profile.meta
    densities = [lv.density for lv in meta.levels]
    if [lv.index for lv in meta.levels] != list(range(len(meta.levels))):
        raise _fail(folder / _META_FILE, "levels: indices must be 0, 1, ... in order")
    if any(b >= a for a, b in zip(densities, densities[1:])):
        raise _fail(folder / _META_FILE, f"levels: densities {densities} must strictly decrease (level 0 least sparse)")
    if not meta.layers:
        raise _fail(folder / _META_FILE, "layers: empty; a profile needs at least one layer")
    segments = [layer.segment for layer in meta.layers]
    if segments[0] != 0 or any(b - a not in (0, 1) for a, b in zip(segments, segments[1:])):
        raise _fail(folder / _META_FILE, f"layers: segments {segments} must start at 0 and grow by 0 or 1")
    names = profile.layer_names
    boundaries = [a.name for a, b in zip(meta.layers, meta.layers[1:]) if b.segment != a.segment]
    if meta.reroute_after != boundaries:
        raise _fail(
            folder / _META_FILE,
            f"reroute_after {meta.reroute_after} must name the last layer of every segment but the last, {boundaries}",
        )
    k = profile.n_levels
    expected = {(n, lv) for n in names for lv in range(k)}

    path = folder / "layers.csv"
    t = profile.layers
    _check_numeric(path, t, ("nnz", "flops", "weight_bytes", "kernel_weight_bytes", "activation_bytes"), 0, strict=False)
    _check_numeric(path, t, ("latency_median_ms", "isolated_median_ms", "isolated_calls_per_sample"), 0, strict=True)
    got = list(zip(t["layer"], t["level"]))
    if len(got) != len(set(got)) or set(got) != expected:
        missing = sorted(expected - set(got))[:3]
        raise _fail(path, f"needs exactly one row per layer x level; missing {missing}, {len(got)} rows for {len(expected)}")
    for name in names:
        rows = t[t["layer"] == name].sort_values("level")
        for col, what in (("nnz", "non-zeros"), ("weight_bytes", "resident weight bytes")):
            values = rows[col].to_numpy()
            if np.any(np.diff(values) > 0):
                raise _fail(
                    path,
                    f"layer {name!r}: {what} {values.tolist()} grow from a level to a sparser one; "
                    "the levels are not nested — re-profile from a nested network",
                )

    path = folder / "latency_samples.csv"
    s = profile.latency_samples
    _check_numeric(path, s, ("latency_ms",), 0, strict=True)
    have = set(zip(s["layer"], s["level"]))
    if have != expected:
        raise _fail(path, f"needs samples for every layer x level; missing {sorted(expected - have)[:3]}")
    medians = s.groupby(["layer", "level"])["latency_ms"].median()
    for row in t.itertuples(index=False):
        sampled = float(medians.loc[(row.layer, row.level)])
        if not 0.5 <= row.latency_median_ms / sampled <= 2.0:
            raise _fail(
                folder / "layers.csv",
                f"layer {row.layer!r} level {row.level}: latency_median_ms {row.latency_median_ms:g} is not the median of "
                f"its samples in latency_samples.csv ({sampled:g} ms); both are milliseconds",
            )

    path = folder / "end_to_end.csv"
    e = profile.end_to_end
    _check_numeric(path, e, ("latency_ms",), 0, strict=True)
    if set(e["level"]) != {DENSE_BASELINE_LEVEL, *range(k)}:
        raise _fail(
            path, f"needs samples for levels {DENSE_BASELINE_LEVEL} (dense baseline) and 0..{k - 1}, has {sorted(set(e['level']))}"
        )

    if meta.accuracy.available and profile.routes is None:
        raise _fail(folder / "routes.csv", "missing, but profile.json says accuracy is available")
    if not meta.accuracy.available and profile.routes is not None:
        raise _fail(folder / "routes.csv", "present, but profile.json says accuracy is unavailable; remove one")
    if profile.routes is not None:
        check_routes(folder / "routes.csv", profile.routes, profile.n_segments, k)
    if profile.outcomes is not None:
        _check_outcomes(folder / OUTCOMES_FILE, profile.outcomes, profile.routes)

    if profile.idle is not None:
        path = folder / "idle.csv"
        d = profile.idle
        _check_numeric(path, d, ("idle_ms",), 0, strict=False)
        _check_numeric(path, d, ("latency_ms",), 0, strict=True)
        gaps = set(d["idle_ms"])
        if set(d["level"]) != set(range(k)) or 0.0 not in gaps:
            raise _fail(path, f"needs samples for levels 0..{k - 1}, each at idle_ms 0 (back to back) and after gaps")
        if any(set(g["idle_ms"]) != gaps for _, g in d.groupby("level")):
            raise _fail(path, f"every level needs samples at the same idle gaps {sorted(gaps)}")


def _check_outcomes(path: Path, outcomes: RouteOutcomes, routes: pd.DataFrame | None) -> None:
    """Raise SimqosError unless ``outcomes`` are routes.csv's test rows, sample by sample: the
    same routes, each one's hits summing to its ``correct`` and the units to its ``n``."""
    if routes is None:
        raise _fail(path, "present without routes.csv; remove it")
    test = routes[routes["split"] == "test"].set_index("route")
    texts = ["-".join(map(str, r)) for r in outcomes.routes]
    if sorted(texts) != sorted(test.index) or outcomes.hits.shape != (len(texts), len(outcomes.units)):
        raise _fail(path, f"needs one row of hits per test route of routes.csv ({len(test)}) and one column per sample; "
                          f"has {outcomes.hits.shape[0]} routes of {outcomes.hits.shape[1] if outcomes.hits.ndim == 2 else '?'} samples")
    n = int(outcomes.units.sum())
    for text, hits in zip(texts, outcomes.hits):
        row = test.loc[text]
        if int(hits.sum()) != int(row.correct) or n != int(row.n) or (hits > outcomes.units).any() or (hits < 0).any():
            raise _fail(path, f"route {text}: {int(hits.sum())} of {n} scored units right, but routes.csv's test row says "
                              f"{int(row.correct)} of {int(row.n)}; re-create the profile with `simqos profile`")


SPLITS = ("validation", "test")
"""Splits of routes.csv: policies decide on ``validation``, reports show ``test``."""


def check_routes(path: Path, routes: pd.DataFrame, n_segments: int, n_levels: int) -> None:
    """Raise SimqosError unless ``routes`` (routes.csv's columns) is a valid accuracy table:
    each route ``n_segments`` levels in ``[0, n_levels)``, splits among :data:`SPLITS` with a
    ``test`` one, counts whole, accuracy ``correct / n`` inside its interval, every route of a
    split once, the same routes in every split, and those routes every route or every
    monotone one (levels never decreasing)."""
    _check_numeric(path, routes, ("correct", "n", "accuracy", "ci_low", "ci_high"), 0, strict=False)
    for i, row in enumerate(routes.itertuples(index=False)):
        where = f"row {i + 2}"
        parts = str(row.route).split("-")
        if len(parts) != n_segments or not all(p.isdigit() and int(p) < n_levels for p in parts):
            raise _fail(path, f"{where}: route {row.route!r} needs {n_segments} levels in [0, {n_levels - 1}] joined by '-'")
        if row.split not in SPLITS:
            raise _fail(path, f"{where}: split {row.split!r} is not one of {list(SPLITS)}")
        if row.n < 1 or row.correct > row.n or row.correct != int(row.correct) or row.n != int(row.n):
            raise _fail(path, f"{where}: correct={row.correct!r} of n={row.n!r} must be whole numbers with 0 <= correct <= n, n >= 1")
        if not math.isclose(row.accuracy, row.correct / row.n, abs_tol=1e-5):
            raise _fail(path, f"{where}: accuracy {row.accuracy} is not correct/n = {row.correct}/{row.n}")
        if not (row.ci_low - 1e-6 <= row.accuracy <= row.ci_high + 1e-6 and row.ci_high <= 1):
            raise _fail(path, f"{where}: the interval [{row.ci_low}, {row.ci_high}] must hold accuracy {row.accuracy} inside [0, 1]")
    if "test" not in set(routes["split"]):
        raise _fail(path, "needs the test split (what reports show); validation is optional")
    for split, rows in routes.groupby("split"):
        repeated = rows["route"][rows["route"].duplicated()].tolist()
        if repeated:
            raise _fail(path, f"split {split!r}: routes {repeated[:3]} appear more than once")
    by_split = {split: set(rows["route"]) for split, rows in routes.groupby("split")}
    if len({frozenset(v) for v in by_split.values()}) > 1:
        raise _fail(path, "every split needs the same routes")
    given = by_split["test"]
    every = {"-".join(map(str, r)) for r in itertools.product(range(n_levels), repeat=n_segments)}
    monotone = {"-".join(map(str, r)) for r in itertools.combinations_with_replacement(range(n_levels), n_segments)}
    if given != every and given != monotone:
        missing = sorted((monotone if given <= monotone else every) - given)
        raise _fail(
            path,
            f"needs every route ({len(every)}) or every monotone one ({len(monotone)}, levels never decreasing); "
            f"has {len(given)}, missing e.g. {missing[:3]}",
        )


def load_profile(folder: str | Path) -> Profile:
    """Read and validate a profile bundle; raises SimqosError on any problem."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SimqosError(f"{folder}: no such profile folder; list the shipped ones with `ls profiles/`")
    meta = _read_meta(folder)
    routes = _read_table(folder, "routes.csv") if (folder / "routes.csv").exists() else None
    idle = _read_table(folder, "idle.csv") if (folder / "idle.csv").exists() else None
    outcomes = RouteOutcomes.load(folder / OUTCOMES_FILE) if (folder / OUTCOMES_FILE).exists() else None
    profile = Profile(
        meta=meta,
        layers=_read_table(folder, "layers.csv"),
        latency_samples=_read_table(folder, "latency_samples.csv"),
        kernels=_read_table(folder, "kernels.csv"),
        end_to_end=_read_table(folder, "end_to_end.csv"),
        routes=routes,
        idle=idle,
        outcomes=outcomes,
    )
    _validate(folder, profile)
    return profile
