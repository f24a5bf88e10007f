"""Pure functions behind the summaries: nines of QoS, batches, design effects, and the 95 %
intervals of nines, percentiles and accuracy.

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
  interval) on each batch's log-spaced latency histogram, each end widened to its bin's edge
  (:mod:`simqos.sim.tally`, which keeps the histograms).
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

import numpy as np
from scipy.stats import norm
from scipy.stats import t as t_dist

__all__ = [
    "BATCHES_PER_REPLICATION",
    "PERCENTILES",
    "cluster_design_effect",
    "critical_value",
    "batch_design_effect",
    "design_effect",
    "nines",
    "wilson_interval",
]

BATCHES_PER_REPLICATION = 10
BOOTSTRAP_RESAMPLES = 1000
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


def batch_design_effect(sums: np.ndarray, squares: np.ndarray, counts: np.ndarray) -> float:
    """How much the spread of batch means exceeds that of independent draws (>= 1), from each
    batch's count, sum and sum of squares of the values.

    ``var(batch means) * mean batch size / var(values)`` over the batches that hold values,
    floored at 1; 1 when fewer than two batches hold values or the values do not vary (to
    rounding).
    """
    sums, squares, counts = (np.asarray(a, dtype=float) for a in (sums, squares, counts))
    used = counts > 0
    if used.sum() < 2:
        return 1.0
    n = counts.sum()
    mean = sums.sum() / n
    spread = float(squares.sum() / n - mean * mean)
    if spread <= 1e-12 * max(1.0, mean * mean):
        return 1.0
    means = sums[used] / counts[used]
    return max(1.0, float(means.var(ddof=1)) * float(counts[used].mean()) / spread)


def design_effect(values: np.ndarray, batch: np.ndarray) -> float:
    """:func:`batch_design_effect` of ``values`` cut into batches (``batch[i]``: the batch of value i)."""
    values = np.asarray(values, dtype=float)
    return batch_design_effect(np.bincount(batch, weights=values), np.bincount(batch, weights=values * values),
                               np.bincount(batch))
