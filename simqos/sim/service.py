"""What the simulator knows of a model: a :class:`ServiceModel` built from a profile bundle.

For each layer and level the measured in-model latency samples, sorted; per level the part of
the end-to-end time that per-layer samples miss (the *gap*, spread evenly over the layers, so
that a whole route costs what the model costs end to end); the segments between reroute points;
resident weight bytes per level; the accuracy of each route when the profile has it (the
validation split's, which policies may use to decide, and the test split's, which records and
reports show, with every route's per-sample test outcomes when the profile has them, which give
the verdict's differences their test-set sampling error); and how
much slower a request runs when it finds the device idle (the profile's ``idle.csv``: per
level, a factor on its work that grows with the idle gap before it; none without that table).

A request's latency draw is one uniform number per layer, shared by every level (a slow call
of layer j at level 0 is also slow at level 1: the levels are coupled through their quantiles),
so every route of a request and every policy sees the same randomness (common random numbers).
"""

from __future__ import annotations

import functools
import hashlib

import itertools
from dataclasses import dataclass

import numpy as np

from simqos.bundle import Profile
from simqos.jit import njit
from simqos.sim.serving import idle_factor_at, route_code, route_text

__all__ = ["ServiceModel"]


def _layer_samples(profile: Profile, layer: str) -> tuple[np.ndarray, ...]:
    """The layer's sorted latency samples per level, pooled over levels that run the same work:
    nested levels with equally many non-zeros hold the same weights, so when the same kernel
    runs them (a dense first layer, a classifier kept whole) their measured difference is timing
    noise, and a policy must not be able to buy time by switching between them."""
    rows = profile.layers[profile.layers["layer"] == layer].set_index("level")
    same = {k: tuple(rows.loc[k, ["nnz", "kernel"]]) for k in range(profile.n_levels)}
    return tuple(
        np.sort(np.concatenate([profile.samples_ms(layer, j) for j in range(profile.n_levels) if same[j] == same[k]]))
        for k in range(profile.n_levels)
    )


@njit(nogil=True)
def _segment_work(uniforms, flat, start, length, layer_segment, glue, n_segments):
    """:meth:`ServiceModel.segment_work_ms`, compiled: layer j's draw at level k is sample
    ``min(floor(u * m), m - 1)`` of its m ascending samples, plus the level's glue, added to its
    segment in layer order (the sums of the numpy form, bit for bit)."""
    n, n_layers = uniforms.shape
    n_levels = length.shape[1]
    work = np.zeros((n, n_levels, n_segments))
    for i in range(n):
        for j in range(n_layers):
            seg = layer_segment[j]
            u = uniforms[i, j]
            for k in range(n_levels):
                m = length[j, k]
                work[i, k, seg] += flat[start[j, k] + min(int(u * m), m - 1)] + glue[k]
    return work


@dataclass(frozen=True)
class ServiceModel:
    """Latency, memory and accuracy of a nested model, indexed by level and segment."""

    name: str
    n_levels: int
    n_segments: int
    layer_segment: np.ndarray  # (n_layers,) segment of each layer
    sorted_samples_ms: tuple[tuple[np.ndarray, ...], ...]  # [layer][level] ascending samples
    glue_ms: np.ndarray  # (n_levels,) unmeasured time per layer call at each level
    level_bytes: np.ndarray  # (n_levels,) resident weight bytes under nested storage
    route_accuracy: dict[tuple[int, ...], float]  # test split (reported); empty when unavailable
    route_accuracy_interval: dict[str, tuple[float, float]]  # by route text ("0-1-1"): 95 %, test split
    decision_accuracy: dict[tuple[int, ...], float]  # validation split: what policies may use
    test_outcomes: tuple[np.ndarray, np.ndarray, np.ndarray] | None  # route codes, their per-sample hits, units
    idle_ms: np.ndarray  # ascending idle gaps (ms), from 0 ...
    idle_factor: np.ndarray  # ... (n_levels, n_gaps): each level's work multiplier after each (1 at 0)

    @classmethod
    def from_profile(cls, profile: Profile) -> ServiceModel:

        names = profile.layer_names
        gap = profile.end_to_end_gap().set_index("level")
        glue = np.array([max(0.0, gap.loc[k, "gap_ms"]) / len(names) for k in range(profile.n_levels)])
        samples = tuple(_layer_samples(profile, name) for name in names)
        level_bytes = profile.layers.groupby("level")["weight_bytes"].sum().sort_index().to_numpy()
        idle_ms, idle_factor = profile.idle_factors()
        accuracy, interval, decision = {}, {}, {}
        if profile.routes is not None:
            for row in profile.routes.itertuples(index=False):
                route = tuple(int(p) for p in row.route.split("-"))
                if row.split == "test":
                    accuracy[route] = float(row.accuracy)
                    interval[row.route] = (float(row.ci_low), float(row.ci_high))
                else:
                    decision[route] = float(row.accuracy)
        return cls(
            name=profile.meta.model,
            n_levels=profile.n_levels,
            n_segments=profile.n_segments,
            layer_segment=np.array([layer.segment for layer in profile.meta.layers]),
            sorted_samples_ms=samples,
            glue_ms=glue,
            level_bytes=level_bytes,
            route_accuracy=accuracy,
            route_accuracy_interval=interval,
            decision_accuracy=decision or accuracy,
            test_outcomes=None if profile.outcomes is None else (
                np.array([route_code(r, profile.n_levels) for r in profile.outcomes.routes], dtype=np.int64),
                profile.outcomes.hits, profile.outcomes.units),
            idle_ms=idle_ms,
            idle_factor=idle_factor,
        )

    @property
    def has_accuracy(self) -> bool:
        return bool(self.route_accuracy)

    def accuracy(self, route: tuple[int, ...]) -> float:
        """Measured accuracy of ``route``, or NaN when the profile has none for it."""
        return self.route_accuracy.get(route, float("nan"))

    def accuracy_by_code(self, split: str = "test") -> np.ndarray:
        """The measured accuracy of every route, indexed by its code
        (:func:`simqos.sim.serving.route_code`), on the ``test`` split (reported) or the
        ``validation`` one (what choices are made on: :attr:`decision_accuracy`); NaN where the
        profile has none."""
        table = {"test": self.route_accuracy, "validation": self.decision_accuracy}[split]
        codes = np.arange(self.n_levels**self.n_segments)
        digits = (codes[:, None] // self.n_levels ** np.arange(self.n_segments - 1, -1, -1)) % self.n_levels
        return np.array([table.get(tuple(int(d) for d in row), float("nan")) for row in digits])

    @functools.cached_property
    def record_routes(self) -> tuple[list[str], np.ndarray]:
        """Every route's text after "" (not served), and its accuracy (NaN for ""): records hold
        a route as a category, each request's a small integer (its route code + 1)."""

        texts = [route_text(c, self.n_levels, self.n_segments) for c in range(self.n_levels**self.n_segments)]
        return ["", *texts], np.concatenate(([np.nan], self.accuracy_by_code()))

    def segment_work_ms(self, uniforms: np.ndarray) -> np.ndarray:
        """Work (profiled ms) of every segment at every level for each request.

        ``uniforms`` is (n_requests, n_layers) in [0, 1); returns (n_requests, n_levels,
        n_segments).
        """
        flat, start, length = self._flat_samples
        return _segment_work(np.ascontiguousarray(uniforms, dtype=np.float64), flat, start, length,
                             self.layer_segment.astype(np.int64), self.glue_ms.astype(np.float64), self.n_segments)

    @functools.cached_property
    def _flat_samples(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every layer's samples at every level end to end, and where each (layer, level) starts
        and how many it has."""
        parts = [samples for per_level in self.sorted_samples_ms for samples in per_level]
        length = np.array([len(p) for p in parts], dtype=np.int64).reshape(len(self.sorted_samples_ms), self.n_levels)
        start = np.concatenate(([0], np.cumsum(length.ravel())[:-1])).reshape(length.shape)
        return np.concatenate(parts).astype(np.float64), start, length

    def remaining_quantile_ms(self, quantile: float) -> np.ndarray:
        """(n_levels, n_segments + 1): predicted work from segment s to the end at level k, as
        the sum of each remaining layer's ``quantile`` latency (plus glue); column S is 0."""
        out = np.zeros((self.n_levels, self.n_segments + 1))
        for j, per_level in enumerate(self.sorted_samples_ms):
            seg = self.layer_segment[j]
            for k, samples in enumerate(per_level):
                out[k, : seg + 1] += np.quantile(samples, quantile) + self.glue_ms[k]
        return out

    @functools.cached_property
    def mean_segment_work_ms(self) -> np.ndarray:
        """(n_levels, n_segments): a segment's mean work (profiled ms) at each level, exactly
        the mean of :meth:`segment_work_ms`'s draws (each layer's samples are equally likely)."""
        out = np.zeros((self.n_levels, self.n_segments))
        for j, per_level in enumerate(self.sorted_samples_ms):
            for k, samples in enumerate(per_level):
                out[k, self.layer_segment[j]] += float(np.mean(samples)) + self.glue_ms[k]
        return out

    def _work_draws(self, draws: int, seed: int) -> np.ndarray:
        """``draws`` requests' work per level and segment (:meth:`segment_work_ms`), from ``seed``."""
        return self.segment_work_ms(np.random.default_rng(seed).random((draws, len(self.sorted_samples_ms))))

    def segment_work_quantiles_ms(self, quantiles: np.ndarray, draws: int = 4096, seed: int = 0) -> np.ndarray:
        """(n_levels, n_segments, len(quantiles)): quantiles of each segment's work (profiled ms)
        at each level, as requests draw it (``draws`` requests from ``seed``)."""
        return np.ascontiguousarray(np.moveaxis(np.quantile(self._work_draws(draws, seed), np.asarray(quantiles), axis=0), 0, -1))

    def remaining_work_quantiles_ms(self, quantiles: np.ndarray, draws: int = 4096, seed: int = 0) -> np.ndarray:
        """(n_levels, n_segments + 1, len(quantiles)): quantiles of a request's remaining work
        (profiled ms) from segment s to the end at level k — of the sum, as requests draw it
        (:meth:`segment_work_ms`, ``draws`` requests from ``seed``), not a sum of quantiles.
        Column S is 0."""
        work = self._work_draws(draws, seed)
        remaining = np.concatenate([np.cumsum(work[:, :, ::-1], axis=2)[:, :, ::-1], np.zeros((draws, self.n_levels, 1))], axis=2)
        return np.moveaxis(np.quantile(remaining, np.asarray(quantiles), axis=0), 0, -1)

    def idle_factors_at(self, gap_ms: float) -> list[float]:
        """Each level's work multiplier for a request that finds the device idle ``gap_ms``."""
        if len(self.idle_ms) == 1:  # no idle table: no slowdown (the same bits as multiplying by 1)
            return [1.0] * self.n_levels
        return [float(idle_factor_at(self.idle_ms, row, gap_ms)) for row in self.idle_factor]

    @functools.cached_property
    def work_digest(self) -> str:
        """A digest of everything that sets a request's work (layer samples, glue, segments,
        idle slowdown): equal for two models whose requests draw the same work."""
        digest = hashlib.blake2b(digest_size=16)
        for array in (self.layer_segment, self.glue_ms, self.idle_ms, self.idle_factor,
                      *(samples for layer in self.sorted_samples_ms for samples in layer)):
            digest.update(np.ascontiguousarray(array, dtype=float).tobytes())
        return digest.hexdigest()

    @functools.cached_property
    def sparsest_median_ms(self) -> float:
        """Median work of a whole request at the sparsest level: what the late-drop check
        predicts a request needs at least (divided by the current speed)."""
        return float(self.remaining_quantile_ms(0.5)[self.n_levels - 1, 0])

    def routes_by_preference(self) -> list[tuple[int, ...]]:
        """Routes from most to least preferred: by accuracy on the validation split when known
        (never the test split that reports show), else by monotone routes from least sparse
        (most work) to sparsest."""
        if self.has_accuracy:
            return sorted(self.decision_accuracy, key=lambda r: (-self.decision_accuracy[r], sum(r)))
        routes = itertools.combinations_with_replacement(range(self.n_levels), self.n_segments)
        return sorted(routes, key=sum)
