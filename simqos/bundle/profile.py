"""A profile bundle in memory (:class:`Profile`), its tables' columns, the per-sample route
outcomes (:class:`RouteOutcomes`), and writing a bundle (:func:`save_profile`)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from simqos.bundle.meta import DENSE_BASELINE_LEVEL, ProfileMeta, SplitAccuracy
from simqos.errors import SimqosError

__all__ = ["META_FILE", "OUTCOMES_FILE", "TABLE_COLUMNS", "Profile", "RouteOutcomes", "save_profile"]

META_FILE = "profile.json"
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


def _fail(where: Path, message: str) -> SimqosError:
    return SimqosError(f"{where}: {message}")


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
    (folder / META_FILE).write_text(json.dumps(profile.meta.model_dump(), indent=2) + "\n")
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
