"""Pure functions over per-request records: percentiles, nines of QoS, accuracy, and their
95 % intervals.

No state, no I/O: every function takes counts or arrays and returns numbers.

Intervals. Requests of one replication are not independent — a throttled spell or an eviction
makes misses come in clusters — so an interval that treats them as independent draws is too
narrow. Each replication's requests (warm-up excluded) are cut into
:data:`BATCHES_PER_REPLICATION` contiguous batches (the batch-means method), and the spread of
the batches sets the intervals:

- miss rate and nines: the Wilson interval on the *effective* sample size ``n / d``, where the
  design effect ``d >= 1`` is the variance of the batch miss rates relative to what independent
  requests would give, with Student's t on batches - 1 degrees of freedom in place of the
  normal quantile (the variance is estimated from few batches). With zero misses the interval
  is Wilson's at ``n`` (nothing to cluster).
- latency percentiles: a bootstrap over batches (whole batches resampled with replacement,
  :data:`BOOTSTRAP_RESAMPLES` times, from a fixed seed: the same records give the same
  interval) on a log-spaced histogram of :data:`HISTOGRAM_BINS` bins, each end widened to its
  bin's edge; the point estimates are exact.
- accuracy: its uncertainty has two sources, the routes' accuracies measured on a finite test
  set (their Wilson intervals, from the profile, mixed by how often each route ran) and the
  simulation's (batch means); the two half-widths are added in quadrature.

The batches must be longer than the device's slowest fluctuation for ``d`` to capture the
clustering; ``replication_miss_rate_std`` (the spread over independent replications) is the
check. Replications are the independent units: more of them, not more requests per
replication, is what narrows an interval honestly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd
from scipy.stats import norm
from scipy.stats import t as t_dist

__all__ = [
    "BATCHES_PER_REPLICATION",
    "PERCENTILES",
    "batch_index",
    "cluster_design_effect",
    "critical_value",
    "design_effect",
    "latency_percentiles_ms",
    "nines",
    "per_replication",
    "percentile_intervals_ms",
    "summarize",
    "wilson_interval",
]

BATCHES_PER_REPLICATION = 10
BOOTSTRAP_RESAMPLES = 1000
HISTOGRAM_BINS = 4096
PERCENTILES = (50.0, 90.0, 99.0, 99.9, 99.99)
"""Latency percentiles every summary reports."""


def critical_value(confidence: float, dof: int | None = None) -> float:
    """The two-sided critical value: normal, or Student's t with ``dof`` degrees of freedom."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence(={confidence}) must be in (0, 1)")
    return float(norm.ppf(0.5 + confidence / 2.0) if dof is None else t_dist.ppf(0.5 + confidence / 2.0, dof))


def cluster_design_effect(correct: np.ndarray, units: np.ndarray) -> float:
    """How much more a proportion scored in clusters varies than independent units would:
    the ratio estimator's variance over the binomial one, at least 1 (and exactly 1 when every
    cluster is one unit). ``correct[i]`` of ``units[i]`` scored units are right in cluster i —
    e.g. the tokens of one translated sentence, which stand or fall together."""
    correct, units = np.asarray(correct, dtype=float), np.asarray(units, dtype=float)
    m, n = len(units), units.sum()
    if m < 2 or units.max() <= 1 or n == 0:
        return 1.0
    p = correct.sum() / n
    if p in (0.0, 1.0):
        return 1.0
    ratio_var = m / (m - 1) * np.sum((correct - p * units) ** 2) / n**2
    return max(1.0, float(ratio_var / (p * (1 - p) / n)))


def wilson_interval(
    successes: int, n: int, confidence: float = 0.95, design_effect: float = 1.0, dof: int | None = None
) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion ``successes / n``.

    Unlike the normal approximation it stays inside [0, 1] and is informative at 0 and n
    successes, which is what a miss rate of zero needs. ``design_effect`` (>= 1) divides the
    sample size, for draws that are positively correlated; when it is estimated from batches,
    ``dof`` (batches - 1) puts Student's t in place of the normal quantile. Returns
    ``(low, high)``.

    Raises ValueError if ``n < 1``, ``successes`` is outside ``[0, n]``, ``confidence`` is
    outside (0, 1) or ``design_effect < 1``.
    """
    if n < 1:
        raise ValueError(f"n(={n}) must be >= 1")
    if not 0 <= successes <= n:
        raise ValueError(f"successes(={successes}) must be in [0, n(={n})]")
    if not design_effect >= 1.0:
        raise ValueError(f"design_effect(={design_effect}) must be >= 1")
    z = critical_value(confidence, dof)
    p = successes / n
    n_eff = n / design_effect
    denom = 1.0 + z * z / n_eff
    centre = (p + z * z / (2 * n_eff)) / denom
    half = z * math.sqrt(p * (1 - p) / n_eff + z * z / (4 * n_eff * n_eff)) / denom
    # Clamp the rounding error at the ends so that 0 and n give exactly 0 and 1.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


def nines(
    misses: int, n: int, confidence: float = 0.95, design_effect: float = 1.0, dof: int | None = None
) -> tuple[float | None, float, float | None]:
    """Nines of QoS, ``-log10(miss rate)``, with the Wilson interval mapped through it.

    Returns ``(point, low, high)``. With zero misses the point and the upper end are ``None``
    (unbounded: never infinity in a table) and ``low`` is a lower bound; with every request
    missed the point is 0.
    """
    low_rate, high_rate = wilson_interval(misses, n, confidence, design_effect, dof)
    point = None if misses == 0 else 0.0 - math.log10(misses / n)  # 0.0 - 0.0: no "-0.00" in a table
    high = None if low_rate == 0 else 0.0 - math.log10(low_rate)
    return point, 0.0 - math.log10(high_rate), high


def batch_index(replication: np.ndarray, per_replication: int = BATCHES_PER_REPLICATION) -> np.ndarray:
    """Batch of each record: ``per_replication`` contiguous, near-equal batches per replication
    (records in request order within each replication); batches are numbered 0, 1, ..."""
    replication = np.asarray(replication)
    out = np.empty(len(replication), dtype=np.int64)
    offset = 0
    for r in pd.unique(replication):
        where = np.flatnonzero(replication == r)
        k = min(per_replication, len(where))
        out[where] = offset + np.arange(len(where)) * k // len(where)
        offset += k
    return out


def design_effect(values: np.ndarray, batch: np.ndarray) -> float:
    """How much the spread of batch means exceeds that of independent draws (>= 1).

    ``var(batch means) * mean batch size / var(values)``, floored at 1; 1 when there are fewer
    than two batches or the values do not vary.
    """
    values = np.asarray(values, dtype=float)
    counts = np.bincount(batch)
    used = counts > 0
    spread = float(values.var())
    if used.sum() < 2 or spread == 0.0:
        return 1.0
    means = np.bincount(batch, weights=values)[used] / counts[used]
    counts = counts[used]
    return max(1.0, float(means.var(ddof=1)) * float(counts.mean()) / spread)


def latency_percentiles_ms(latency_ms: np.ndarray) -> dict[str, float]:
    """``p50`` ... ``p99.99`` of the finite latencies (ms); NaN when there are none."""
    finite = latency_ms[np.isfinite(latency_ms)]
    values = np.percentile(finite, PERCENTILES) if len(finite) else [math.nan] * len(PERCENTILES)
    return {f"p{p:g}_ms": float(v) for p, v in zip(PERCENTILES, values)}


def percentile_intervals_ms(latency_ms: np.ndarray, batch: np.ndarray, confidence: float = 0.95) -> dict[str, float]:
    """``p50_ms_low``, ``p50_ms_high``, ... : batch-bootstrap intervals of the percentiles of
    the finite latencies (see the module doc); NaN when there are fewer than two batches."""
    keep = np.isfinite(latency_ms)
    latency_ms, batch = latency_ms[keep], batch[keep]
    _, batch = np.unique(batch, return_inverse=True)
    n_batches = int(batch.max()) + 1 if len(batch) else 0
    names = [f"p{p:g}_ms" for p in PERCENTILES]
    if n_batches < 2:
        return {f"{name}_{end}": math.nan for name in names for end in ("low", "high")}
    log = np.log(np.maximum(latency_ms, 1e-9))
    lowest, step = float(log.min()), max(float(log.max() - log.min()), 1e-12) / HISTOGRAM_BINS
    edges = np.exp(lowest + step * np.arange(HISTOGRAM_BINS + 1))
    bins = np.clip(((log - lowest) / step).astype(np.int64), 0, HISTOGRAM_BINS - 1)
    counts = np.bincount(batch * HISTOGRAM_BINS + bins, minlength=n_batches * HISTOGRAM_BINS)
    counts = counts.reshape(n_batches, HISTOGRAM_BINS).astype(float)
    rng = np.random.default_rng(0)
    weights = rng.multinomial(n_batches, np.full(n_batches, 1.0 / n_batches), size=BOOTSTRAP_RESAMPLES)
    cumulative = np.cumsum(weights @ counts, axis=1)
    tail = (1.0 - confidence) / 2.0
    out = {}
    for name, p in zip(names, PERCENTILES):
        # Index of the bin holding each resample's percentile (numpy's 'linear' rank).
        rank = p / 100.0 * (cumulative[:, -1] - 1.0)
        held = (cumulative <= rank[:, None]).sum(axis=1)
        out[f"{name}_low"] = float(edges[int(np.quantile(held, tail, method="lower"))])
        out[f"{name}_high"] = float(edges[int(np.quantile(held, 1.0 - tail, method="higher")) + 1])
    return out


def _accuracy_interval(
    values: np.ndarray,
    batch: np.ndarray,
    route_share: Mapping[str, float],
    route_intervals: Mapping[str, tuple[float, float]] | None,
    confidence: float,
) -> tuple[float, float, float]:
    """(point, low, high) of the mean of per-request accuracies ``values``; see the module doc."""
    point = float(np.mean(values))
    d = design_effect(values, batch)
    simulation = critical_value(confidence, int(batch.max()) if d > 1.0 else None) * math.sqrt(float(values.var()) * d / len(values))
    below = above = 0.0
    if route_intervals is not None and all(r in route_intervals for r in route_share):
        low = sum(share * route_intervals[r][0] for r, share in route_share.items())
        high = sum(share * route_intervals[r][1] for r, share in route_share.items())
        below, above = max(0.0, point - low), max(0.0, high - point)
    return point, max(0.0, point - math.hypot(below, simulation)), min(1.0, point + math.hypot(above, simulation))


def summarize(
    records: pd.DataFrame,
    n_levels: int,
    route_intervals: Mapping[str, tuple[float, float]] | None = None,
    percentile_intervals: bool = True,
) -> pd.DataFrame:
    """One row per policy (in order of appearance) from per-request records, warm-up excluded.

    Columns: requests, met, missed, dropped, miss_rate, nines, nines_low, nines_high,
    miss_design_effect, latency percentiles (served requests) with ``_low``/``_high`` ends,
    mean_accuracy (served requests), accuracy_at_deadline (a request that misses or is dropped
    counts as wrong), each with ``_low``/``_high`` ends, level_share_L{k} (share of segments
    run at level k), reroutes_per_request, and the spread over replications of the miss rate
    (replication_miss_rate_std). ``route_intervals`` maps a route (``0-1-1``) to the 95 %
    interval of its measured accuracy (the profile's ``routes.csv``); without it the accuracy
    intervals cover the simulation's uncertainty only. ``percentile_intervals=False`` leaves
    out the percentiles' ``_low``/``_high`` columns (the bootstrap is most of the cost).
    """
    rows = []
    kept = records[~records["warmup"]]
    for policy, g in kept.groupby("policy", sort=False):
        n = len(g)
        outcome = g["outcome"].to_numpy()
        batch = batch_index(g["replication"].to_numpy())
        met_mask = outcome == "met"
        met = int(met_mask.sum())
        missed_or_dropped = n - met
        d = design_effect(~met_mask, batch) if missed_or_dropped else 1.0
        dof = int(batch.max()) if d > 1.0 else None  # batches - 1, when the batches set the width
        point, low, high = nines(missed_or_dropped, n, design_effect=d, dof=dof)
        served_mask = outcome != "dropped"
        served = g[served_mask]
        latency = served["latency_ms"].to_numpy()
        counts = served["route"].value_counts()  # few distinct routes: split each once
        segments = np.zeros(n_levels)
        for route, count in counts.items():
            segments += count * np.bincount(np.array(route.split("-"), dtype=int), minlength=n_levels)
        per_rep = g.groupby("replication")["outcome"].apply(lambda o: float((o != "met").mean()))
        accuracy = g["accuracy"].to_numpy()
        row = {
            "policy": policy,
            "requests": n,
            "met": met,
            "missed": int((outcome == "missed").sum()),
            "dropped": int((outcome == "dropped").sum()),
            "miss_rate": missed_or_dropped / n,
            "nines": point,
            "nines_low": low,
            "nines_high": high,
            "miss_design_effect": d,
            **latency_percentiles_ms(latency),
        }
        if percentile_intervals:
            row |= percentile_intervals_ms(latency, batch[served_mask])
        available = len(served) and not np.isnan(accuracy[served_mask]).any()
        if available:
            share = (counts / len(served)).to_dict()
            acc = _accuracy_interval(accuracy[served_mask], batch[served_mask], share, route_intervals, 0.95)
            on_time = np.where(met_mask, accuracy, 0.0)
            met_share = (g.loc[met_mask, "route"].value_counts() / n).to_dict()
            at_deadline = _accuracy_interval(on_time, batch, met_share, route_intervals, 0.95)
        elif route_intervals:  # the profile has accuracy, but nothing was served: every request counts as wrong
            acc = (math.nan,) * 3
            at_deadline = (0.0, 0.0, wilson_interval(0, n)[1])
        else:
            acc = at_deadline = (math.nan,) * 3
        row |= dict(zip(("mean_accuracy", "mean_accuracy_low", "mean_accuracy_high"), acc))
        row |= dict(zip(("accuracy_at_deadline", "accuracy_at_deadline_low", "accuracy_at_deadline_high"), at_deadline))
        row |= {
            **{f"level_share_L{k}": float(segments[k] / segments.sum()) if segments.sum() else math.nan for k in range(n_levels)},
            "reroutes_per_request": float(served["reroutes"].mean()) if len(served) else math.nan,
            "replication_miss_rate_std": float(per_rep.std(ddof=1)) if len(per_rep) > 1 else math.nan,
        }
        rows.append(row)
    return pd.DataFrame(rows)


def per_replication(
    records: pd.DataFrame, n_levels: int, route_intervals: Mapping[str, tuple[float, float]] | None = None
) -> pd.DataFrame:
    """:func:`summarize` of each replication alone: one row per replication x policy, with a
    ``replication`` column first (its intervals come from that replication's batches)."""
    frames = [
        summarize(g, n_levels, route_intervals).assign(replication=r)
        for r, g in records.groupby("replication", sort=True)
    ]
    table = pd.concat(frames, ignore_index=True)
    return table[["replication", *[c for c in table.columns if c != "replication"]]]
