"""Pure functions over per-request records: percentiles, nines of QoS and their intervals, accuracy.

No state, no I/O: every function takes counts or arrays and returns numbers.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.stats import norm

__all__ = ["PERCENTILES", "latency_percentiles_ms", "nines", "summarize", "wilson_interval"]


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion ``successes / n``.

    Unlike the normal approximation it stays inside [0, 1] and is informative at 0 and n
    successes, which is what a miss rate of zero needs. Returns ``(low, high)``.

    Raises ValueError if ``n < 1``, ``successes`` is outside ``[0, n]`` or ``confidence`` is
    outside (0, 1).
    """
    if n < 1:
        raise ValueError(f"n(={n}) must be >= 1")
    if not 0 <= successes <= n:
        raise ValueError(f"successes(={successes}) must be in [0, n(={n})]")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence(={confidence}) must be in (0, 1)")
    z = float(norm.ppf(0.5 + confidence / 2.0))
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # Clamp the rounding error at the ends so that 0 and n give exactly 0 and 1.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


PERCENTILES = (50.0, 90.0, 99.0, 99.9, 99.99)
"""Latency percentiles every summary reports."""


def nines(misses: int, n: int, confidence: float = 0.95) -> tuple[float | None, float, float | None]:
    """Nines of QoS, ``-log10(miss rate)``, with the Wilson interval mapped through it.

    Returns ``(point, low, high)``. With zero misses the point and the upper end are ``None``
    (unbounded: never infinity in a table) and ``low`` is a lower bound; with every request
    missed the point is 0.
    """
    low_rate, high_rate = wilson_interval(misses, n, confidence)
    point = None if misses == 0 else -math.log10(misses / n)
    high = None if low_rate == 0 else -math.log10(low_rate)
    return point, -math.log10(high_rate), high


def latency_percentiles_ms(latency_ms: np.ndarray) -> dict[str, float]:
    """``p50`` ... ``p99.99`` of the finite latencies (ms); NaN when there are none."""
    finite = latency_ms[np.isfinite(latency_ms)]
    values = np.percentile(finite, PERCENTILES) if len(finite) else [math.nan] * len(PERCENTILES)
    return {f"p{p:g}_ms": float(v) for p, v in zip(PERCENTILES, values)}


def summarize(records: pd.DataFrame, n_levels: int) -> pd.DataFrame:
    """One row per policy (in order of appearance) from per-request records, warm-up excluded.

    Columns: requests, met, missed, dropped, miss_rate, nines, nines_low, nines_high,
    latency percentiles (served requests), mean_accuracy (served requests), accuracy_at_deadline
    (a request that misses or is dropped counts as wrong), level_share_L{k} (share of segments
    run at level k), reroutes_per_request, and the spread over replications of the miss rate
    (replication_miss_rate_std).
    """
    rows = []
    kept = records[~records["warmup"]]
    for policy, g in kept.groupby("policy", sort=False):
        n = len(g)
        met = int((g["outcome"] == "met").sum())
        missed_or_dropped = n - met
        point, low, high = nines(missed_or_dropped, n)
        served = g[g["outcome"] != "dropped"]
        accuracy = g["accuracy"].to_numpy()
        on_time = np.where(g["outcome"].to_numpy() == "met", accuracy, 0.0)
        counts = served["route"].value_counts()  # few distinct routes: split each once
        segments = np.zeros(n_levels)
        for route, count in counts.items():
            segments += count * np.bincount(np.array(route.split("-"), dtype=int), minlength=n_levels)
        per_rep = g.groupby("replication")["outcome"].apply(lambda o: float((o != "met").mean()))
        row = {
            "policy": policy,
            "requests": n,
            "met": met,
            "missed": int((g["outcome"] == "missed").sum()),
            "dropped": int((g["outcome"] == "dropped").sum()),
            "miss_rate": missed_or_dropped / n,
            "nines": point,
            "nines_low": low,
            "nines_high": high,
            **latency_percentiles_ms(served["latency_ms"].to_numpy()),
            "mean_accuracy": float(np.nanmean(served["accuracy"])) if served["accuracy"].notna().any() else math.nan,
            "accuracy_at_deadline": float(np.mean(on_time)) if not np.isnan(accuracy[g["outcome"] == "met"]).any() else math.nan,
            **{f"level_share_L{k}": float(segments[k] / segments.sum()) if segments.sum() else math.nan for k in range(n_levels)},
            "reroutes_per_request": float(served["reroutes"].mean()) if len(served) else math.nan,
            "replication_miss_rate_std": float(per_rep.std(ddof=1)) if len(per_rep) > 1 else math.nan,
        }
        rows.append(row)
    return pd.DataFrame(rows)
