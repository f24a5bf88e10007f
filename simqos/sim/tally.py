"""Streaming summaries: everything a run's summary and verdict need, accumulated chunk by chunk
in memory that does not grow with the number of requests.

A :class:`Tally` holds one policy's state over one replication (or, pooled, over several):

- per batch — each replication's requests after warm-up cut into
  :data:`~simqos.sim.metrics.BATCHES_PER_REPLICATION` contiguous, near-equal batches (kept request
  j of n in batch ``j * k // n``, k = min(10, n)) — the number of requests, met, missed, dropped
  and served, and the sum and sum of squares of the served requests' accuracy and of the
  accuracy at deadline (the route's accuracy if met, else 0): what the batch-means intervals
  of nines and accuracy and the verdict's paired differences are made of;
- a latency histogram on a fixed log grid, :data:`FINE_PER_DECADE` bins per decade from
  10^:data:`LOWEST_DECADE` to 10^:data:`HIGHEST_DECADE` ms (bins 1.15e-4 wide in log, so a
  percentile read from it is within about 0.006 % of the exact order statistic; the exact
  smallest and largest latency clamp it), and per batch the same grid :data:`COARSE` times
  coarser, which the bootstrap of the percentiles' intervals resamples;
- how many served and met requests took each route, and the reroutes.

A tally is filled by :class:`TallyBuilder` (compiled accumulation into dense arrays) and
stored sparse once its replication is complete. Tallies pool by concatenating their batches:
the pooled summary of replications run apart (in other processes, or on a cluster) is the one
of the same replications run together.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from simqos.jit import njit
from simqos.sim.metrics import (
    BATCHES_PER_REPLICATION,
    BOOTSTRAP_RESAMPLES,
    PERCENTILES,
    batch_design_effect,
    critical_value,
    nines,
    wilson_interval,
)
from simqos.sim.serving import DROPPED, MET, OUTCOMES, route_text

__all__ = [
    "COARSE",
    "FINE_PER_DECADE",
    "Tally",
    "TallyBuilder",
    "accuracy_sampling_half_width",
    "ccdf_table",
    "paired_difference",
    "per_replication",
    "percentile_intervals_ms",
    "percentiles_ms",
    "pooled",
    "summarize",
    "summary_row",
    "tallies_from_records",
]

LOWEST_DECADE, HIGHEST_DECADE = -4, 9
"""The latency histograms cover 10^-4 ms to 10^9 ms (about 12 days); a latency outside falls
in the end bin (the exact smallest and largest latencies are kept besides)."""
FINE_PER_DECADE = 20_000
COARSE = 16
"""Fine bins per coarse bin: the per-batch histograms have 1,250 bins per decade (0.18 %)."""
_N_FINE = (HIGHEST_DECADE - LOWEST_DECADE) * FINE_PER_DECADE
_N_COARSE = _N_FINE // COARSE
_STEP = math.log(10.0) / FINE_PER_DECADE  # width of a fine bin in log(ms)
_LOG_LO = LOWEST_DECADE * math.log(10.0)


def fine_edges_ms(first: int, last: int) -> np.ndarray:
    """The lower edges of fine bins ``first .. last`` (inclusive; ``last`` + 1 for an upper edge)."""
    return np.exp(_LOG_LO + _STEP * np.arange(first, last + 1))


@njit(nogil=True)
def _accumulate(first, n_kept, k, outcome, latency_ms, code, reroutes, accuracy,
                counts, sums, coarse, fine, routes_served, routes_met, extremes):  # fmt: skip
    """Fold one chunk of kept requests (kept indices ``first``, ``first`` + 1, ...) into the
    dense state; ``counts[b]`` = requests, met, missed, dropped, served of batch b; ``sums[b]``
    = accuracy sum and squares over served, accuracy-at-deadline sum and squares."""
    for j in range(len(outcome)):
        b = (first + j) * k // n_kept
        o = outcome[j]
        counts[b, 0] += 1
        if o == DROPPED:
            counts[b, 3] += 1
            continue
        counts[b, 4] += 1
        c = code[j]
        a = accuracy[c]
        sums[b, 0] += a
        sums[b, 1] += a * a
        routes_served[c] += 1
        extremes[2] += reroutes[j]
        if o == MET:
            counts[b, 1] += 1
            sums[b, 2] += a
            sums[b, 3] += a * a
            routes_met[b, c] += 1
        else:
            counts[b, 2] += 1
        x = latency_ms[j]
        extremes[0] = min(extremes[0], x)
        extremes[1] = max(extremes[1], x)
        i = int(math.floor((math.log(max(x, 1e-300)) - _LOG_LO) / _STEP))
        i = min(max(i, 0), _N_FINE - 1)
        fine[i] += 1
        coarse[b, i // COARSE] += 1


@dataclass(frozen=True)
class Tally:
    """One policy's summary state: per batch ``counts`` (requests, met, missed, dropped, served)
    and ``sums`` (accuracy and its square over served requests, accuracy at deadline and its
    square over all), the replication of each batch, the latency histograms (sparse: fine bin
    indices and counts; coarse ``batch * n_coarse + bin`` and counts), route counts served (by
    route code) and met (per batch and route code: a policy's score under any route accuracies,
    batch by batch), the total reroutes and the smallest and largest latency (ms)."""

    n_levels: int
    n_segments: int
    counts: np.ndarray  # (batches, 5) int64
    sums: np.ndarray  # (batches, 4) float64
    replication: np.ndarray  # (batches,) int64
    fine_bins: np.ndarray
    fine_counts: np.ndarray
    coarse_bins: np.ndarray
    coarse_counts: np.ndarray
    routes_served: np.ndarray
    batch_routes_met: np.ndarray  # (batches, route codes)
    reroutes: int
    latency_min_ms: float
    latency_max_ms: float

    @property
    def requests(self) -> int:
        return int(self.counts[:, 0].sum())

    @property
    def routes_met(self) -> np.ndarray:
        """Requests met on each route (by route code)."""
        return self.batch_routes_met.sum(axis=0)

    @classmethod
    def pool(cls, tallies: Sequence[Tally]) -> Tally:
        """The tallies (of one policy, different replications) as one, their batches in order."""
        first = tallies[0]
        offsets = np.cumsum([0] + [len(t.counts) for t in tallies[:-1]])
        fine_bins, fine_counts = _merged(np.concatenate([t.fine_bins for t in tallies]),
                                         np.concatenate([t.fine_counts for t in tallies]))
        return cls(
            first.n_levels,
            first.n_segments,
            np.concatenate([t.counts for t in tallies]),
            np.concatenate([t.sums for t in tallies]),
            np.concatenate([t.replication for t in tallies]),
            fine_bins,
            fine_counts,
            np.concatenate([t.coarse_bins + off * _N_COARSE for t, off in zip(tallies, offsets)]),
            np.concatenate([t.coarse_counts for t in tallies]),
            np.sum([t.routes_served for t in tallies], axis=0),
            np.concatenate([t.batch_routes_met for t in tallies]),
            int(sum(t.reroutes for t in tallies)),
            min(t.latency_min_ms for t in tallies),
            max(t.latency_max_ms for t in tallies),
        )


def pooled(tallies: Mapping[str, Sequence[Tally]]) -> dict[str, Tally]:
    """Each policy's tallies pooled over its replications."""
    return {label: Tally.pool(list(parts)) for label, parts in tallies.items()}


def _merged(bins: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    unique, where = np.unique(bins, return_inverse=True)
    return unique, np.bincount(where, weights=counts, minlength=len(unique)).astype(np.int64)


class TallyBuilder:
    """Fills one policy's :class:`Tally` for one replication of ``n_kept`` requests after
    warm-up, chunk by chunk, in request order (:meth:`add`), then :meth:`finish`.
    ``accuracy[code]``: the reported accuracy of each route (NaN when unavailable)."""

    def __init__(self, replication: int, n_kept: int, n_levels: int, n_segments: int, accuracy: np.ndarray) -> None:
        self.replication, self.n_kept = replication, n_kept
        self.n_levels, self.n_segments = n_levels, n_segments
        self.k = min(BATCHES_PER_REPLICATION, n_kept)
        self.accuracy = np.ascontiguousarray(accuracy, dtype=np.float64)
        n_routes = n_levels**n_segments
        self.counts = np.zeros((self.k, 5), dtype=np.int64)
        self.sums = np.zeros((self.k, 4))
        self.coarse = np.zeros((self.k, _N_COARSE), dtype=np.int64)
        self.fine = np.zeros(_N_FINE, dtype=np.int64)
        self.routes_served = np.zeros(n_routes, dtype=np.int64)
        self.routes_met = np.zeros((self.k, n_routes), dtype=np.int64)
        self.extremes = np.array([math.inf, -math.inf, 0.0])  # smallest, largest latency; reroutes
        self.added = 0

    def add(self, outcome: np.ndarray, latency_ms: np.ndarray, route_code: np.ndarray, reroutes: np.ndarray) -> None:
        """The next kept requests' outcome codes, latencies (ms), route codes and reroutes."""
        if self.added + len(outcome) > self.n_kept:
            raise ValueError(f"{self.added + len(outcome)} requests added to a tally of {self.n_kept}")
        _accumulate(self.added, self.n_kept, self.k, np.ascontiguousarray(outcome, dtype=np.int8),
                    np.ascontiguousarray(latency_ms, dtype=np.float64), np.ascontiguousarray(route_code, dtype=np.int64),
                    np.ascontiguousarray(reroutes, dtype=np.int64), self.accuracy, self.counts, self.sums,
                    self.coarse, self.fine, self.routes_served, self.routes_met, self.extremes)  # fmt: skip
        self.added += len(outcome)

    def finish(self) -> Tally:
        if self.added != self.n_kept:
            raise ValueError(f"a tally of {self.n_kept} requests finished after {self.added}")
        fine_bins = np.flatnonzero(self.fine)
        coarse_bins = np.flatnonzero(self.coarse)
        return Tally(
            self.n_levels, self.n_segments, self.counts, self.sums, np.full(self.k, self.replication, dtype=np.int64),
            fine_bins, self.fine[fine_bins], coarse_bins, self.coarse.ravel()[coarse_bins],
            self.routes_served, self.routes_met, int(self.extremes[2]), float(self.extremes[0]), float(self.extremes[1]),
        )  # fmt: skip


def tallies_from_records(records: pd.DataFrame, n_levels: int, n_segments: int, accuracy: np.ndarray) -> dict[str, list[Tally]]:
    """Per policy (in order of appearance), one tally per replication of a records table (the
    columns of :mod:`simqos.results`; warm-up rows are left out)."""
    out: dict[str, list[Tally]] = {}
    kept = records[~records["warmup"]]
    code_of = {route_text(c, n_levels, n_segments): c for c in range(n_levels**n_segments)}
    for (policy, replication), g in kept.groupby(["policy", "replication"], sort=False):
        g = g.sort_values("request")
        builder = TallyBuilder(int(replication), len(g), n_levels, n_segments, accuracy)
        outcome = g["outcome"].map({name: i for i, name in enumerate(OUTCOMES)}).to_numpy(dtype=np.int8)
        codes = g["route"].map(code_of).fillna(-1).to_numpy(dtype=np.int64)
        builder.add(outcome, g["latency_ms"].to_numpy(), codes, g["reroutes"].to_numpy())
        out.setdefault(policy, []).append(builder.finish())
    for policy, tallies in out.items():
        tallies.sort(key=lambda t: int(t.replication[0]))
    return out


# --- the summary -----------------------------------------------------------------------------


def _mean_interval(sums, squares, counts, route_share: Mapping[int, float], route_intervals: Mapping[int, tuple[float, float]] | None,
                   confidence: float) -> tuple[float, float, float]:  # fmt: skip
    """(point, low, high) of a mean accuracy; see :mod:`simqos.sim.metrics` (the two sources of its
    uncertainty, added in quadrature)."""
    n = counts.sum()
    point = float(sums.sum() / n)
    d = batch_design_effect(sums, squares, counts)
    variance = max(float(squares.sum() / n - point * point), 0.0)
    dof = int(np.flatnonzero(counts)[-1]) if d > 1.0 else None  # the last batch index, as the records' form counted
    simulation = critical_value(confidence, dof) * math.sqrt(variance * d / n)
    below = above = 0.0
    if route_intervals is not None and all(r in route_intervals for r in route_share):
        low = sum(share * route_intervals[r][0] for r, share in route_share.items())
        high = sum(share * route_intervals[r][1] for r, share in route_share.items())
        below, above = max(0.0, point - low), max(0.0, high - point)
    return point, max(0.0, point - math.hypot(below, simulation)), min(1.0, point + math.hypot(above, simulation))


def _order_statistic(j: float, cumulative: np.ndarray, bins: np.ndarray, counts: np.ndarray, lo: float, hi: float) -> float:
    """The ``j``-th smallest latency (0-based) read from a sparse fine histogram: log-linear
    within its bin, clamped to the exact extremes."""
    at = int(np.searchsorted(cumulative, j, side="right"))
    before = cumulative[at - 1] if at else 0
    within = (j - before + 0.5) / counts[at]
    return float(min(max(math.exp(_LOG_LO + _STEP * (bins[at] + within)), lo), hi))


def percentiles_ms(tally: Tally) -> dict[str, float]:
    """``p50_ms`` ... ``p99.99_ms`` of the served latencies, numpy's 'linear' rank read from the
    fine histogram; NaN when nothing was served."""
    n = int(tally.fine_counts.sum())
    if n == 0:
        return {f"p{p:g}_ms": math.nan for p in PERCENTILES}
    cumulative = np.cumsum(tally.fine_counts)
    out = {}
    for p in PERCENTILES:
        rank = p / 100.0 * (n - 1)
        j = math.floor(rank)
        low = _order_statistic(j, cumulative, tally.fine_bins, tally.fine_counts, tally.latency_min_ms, tally.latency_max_ms)
        high = low if j + 1 >= n else _order_statistic(j + 1, cumulative, tally.fine_bins, tally.fine_counts,
                                                       tally.latency_min_ms, tally.latency_max_ms)  # fmt: skip
        out[f"p{p:g}_ms"] = low + (rank - j) * (high - low)
    return out


def percentile_intervals_ms(tally: Tally, confidence: float = 0.95) -> dict[str, float]:
    """``p50_ms_low``, ``p50_ms_high``, ... : the bootstrap over batches of :mod:`simqos.sim.metrics`
    on the per-batch coarse histograms; NaN with fewer than two batches that served."""
    names = [f"p{p:g}_ms" for p in PERCENTILES]
    batch, column = np.divmod(tally.coarse_bins, _N_COARSE)
    used, batch = np.unique(batch, return_inverse=True)
    if len(used) < 2:
        return {f"{name}_{end}": math.nan for name in names for end in ("low", "high")}
    first, last = int(column.min()), int(column.max())
    counts = np.zeros((len(used), last - first + 1))
    np.add.at(counts, (batch, column - first), tally.coarse_counts)
    edges = fine_edges_ms(first * COARSE, (last + 1) * COARSE)[::COARSE]
    rng = np.random.default_rng(0)
    weights = rng.multinomial(len(used), np.full(len(used), 1.0 / len(used)), size=BOOTSTRAP_RESAMPLES)
    cumulative = np.cumsum(weights @ counts, axis=1)
    tail = (1.0 - confidence) / 2.0
    out = {}
    for name, p in zip(names, PERCENTILES):
        rank = p / 100.0 * (cumulative[:, -1] - 1.0)
        held = (cumulative <= rank[:, None]).sum(axis=1)
        out[f"{name}_low"] = float(edges[int(np.quantile(held, tail, method="lower"))])
        out[f"{name}_high"] = float(edges[int(np.quantile(held, 1.0 - tail, method="higher")) + 1])
    return out


def summary_row(
    tally: Tally,
    route_intervals: Mapping[str, tuple[float, float]] | None = None,
    percentile_intervals: bool = True,
    confidence: float = 0.95,
) -> dict[str, float]:
    """The summary of one policy from its (pooled) tally: the columns of
    :func:`summarize`."""
    n_levels, n_segments = tally.n_levels, tally.n_segments
    requests, met, missed, dropped, served = (tally.counts[:, i] for i in range(5))
    n, n_met, n_served = int(requests.sum()), int(met.sum()), int(served.sum())
    not_met = n - n_met
    miss_counts = (requests - met).astype(float)
    d = batch_design_effect(miss_counts, miss_counts, requests) if not_met else 1.0
    dof = len(requests) - 1 if d > 1.0 else None  # batches - 1, when the batches set the width
    point, low, high = nines(not_met, n, confidence, design_effect=d, dof=dof)
    row: dict[str, float] = {
        "requests": n,
        "met": n_met,
        "missed": int(missed.sum()),
        "dropped": int(dropped.sum()),
        "miss_rate": not_met / n,
        "nines": point,
        "nines_low": low,
        "nines_high": high,
        "miss_design_effect": d,
        **percentiles_ms(tally),
    }
    if percentile_intervals:
        row |= percentile_intervals_ms(tally, confidence)
    text = {c: route_text(c, n_levels, n_segments) for c in np.flatnonzero(tally.routes_served)}
    row |= _accuracy_columns(tally, text, route_intervals, confidence)
    segments = np.zeros(n_levels)
    for c in text:
        segments += tally.routes_served[c] * np.bincount(np.array(text[c].split("-"), dtype=int), minlength=n_levels)
    replications = pd.unique(tally.replication)
    per_rep = [1.0 - met[tally.replication == r].sum() / requests[tally.replication == r].sum() for r in replications]
    row |= {
        **{f"level_share_L{k}": float(segments[k] / segments.sum()) if segments.sum() else math.nan for k in range(n_levels)},
        "reroutes_per_request": tally.reroutes / n_served if n_served else math.nan,
        "rerouted_share": sum(tally.routes_served[c] for c, t in text.items() if len(set(t.split("-"))) > 1) / n_served
        if n_served else math.nan,
        "replication_miss_rate_std": float(np.std(per_rep, ddof=1)) if len(per_rep) > 1 else math.nan,
    }
    return row


def _accuracy_columns(tally: Tally, text: dict[int, str], route_intervals: Mapping[str, tuple[float, float]] | None,
                      confidence: float) -> dict[str, float]:
    """Mean accuracy of served requests and accuracy-at-deadline, each with its interval
    (``text``: the served routes' codes and texts; ``route_intervals``: each route's accuracy
    interval, when the profile has accuracy)."""
    requests, served = tally.counts[:, 0], tally.counts[:, 4]
    n, n_served = int(requests.sum()), int(served.sum())
    intervals = None if not route_intervals else {c: route_intervals[t] for c, t in text.items() if t in route_intervals}
    sums = tally.sums
    if n_served and np.isfinite(sums[:, 0]).all():
        share = {c: tally.routes_served[c] / n_served for c in text}
        acc = _mean_interval(sums[:, 0], sums[:, 1], served, share, intervals, confidence)
        met_share = {c: tally.routes_met[c] / n for c in np.flatnonzero(tally.routes_met)}
        at_deadline = _mean_interval(sums[:, 2], sums[:, 3], requests, met_share, intervals, confidence)
    elif route_intervals:  # the profile has accuracy, but nothing was served: every request counts as wrong
        acc = (math.nan,) * 3
        at_deadline = (0.0, 0.0, wilson_interval(0, n)[1])
    else:
        acc = at_deadline = (math.nan,) * 3
    return (dict(zip(("mean_accuracy", "mean_accuracy_low", "mean_accuracy_high"), acc))
            | dict(zip(("accuracy_at_deadline", "accuracy_at_deadline_low", "accuracy_at_deadline_high"), at_deadline)))


def paired_difference(tally: Tally, baseline: Tally, objective: str, confidence: float = 0.95,
                      accuracy: np.ndarray | None = None) -> tuple[float, float, float]:
    """(mean, low, high) of ``tally``'s policy's score minus ``baseline``'s over the same
    requests (accuracy at deadline, or met (1) / not (0) for ``nines``): the difference of
    their batch means, which are over the same requests (common random numbers), with a
    batch-means interval — the simulation's noise only (:func:`accuracy_sampling_half_width`
    adds the route accuracies' own). ``accuracy``: each route's (by code) to score with, in
    place of the reported (test) ones the tallies were made with — e.g. the validation split's."""
    def column(t: Tally) -> np.ndarray:
        if objective != "accuracy_at_deadline":
            return t.counts[:, 1].astype(float)
        return t.sums[:, 2] if accuracy is None else t.batch_routes_met @ np.nan_to_num(accuracy)

    counts = tally.counts[:, 0]
    if not np.array_equal(counts, baseline.counts[:, 0]):
        raise ValueError("paired differences need the same requests in the same batches")
    diff = column(tally) - column(baseline)
    point = float(diff.sum() / counts.sum())
    if len(counts) < 2:
        return point, math.nan, math.nan
    means = diff / counts
    half = critical_value(confidence, len(means) - 1) * float(means.std(ddof=1)) / math.sqrt(len(means))
    return point, point - half, point + half


def accuracy_sampling_half_width(tally: Tally, baseline: Tally, outcomes: tuple[np.ndarray, np.ndarray, np.ndarray],
                                 confidence: float = 0.95) -> float:
    """Half the 95 % interval of ``tally``'s accuracy-at-deadline minus ``baseline``'s that comes
    from measuring the route accuracies on a finite test set (the simulation's noise aside).

    ``outcomes``: the routes' codes, their per-sample hits and each sample's scored units
    (:class:`~simqos.bundle.RouteOutcomes`). The difference is Σ_r d_r acc_r with d_r the
    share of requests met on route r by one policy minus the other; every route is scored on
    the same samples, so it is Σ_i z_i / Σ_i u_i with z_i = Σ_r d_r hits[r, i]: a ratio of
    sample means, whose paired standard error is sqrt(n / (n - 1) Σ_i (z_i - Δ u_i)²) / Σ_i u_i.
    Samples are independent; units within a sample (tokens of a sentence) need not be."""
    codes, hits, units = outcomes
    d = (tally.routes_met[codes] - baseline.routes_met[codes]) / tally.requests
    z = d @ hits
    total = float(units.sum())
    delta = float(z.sum()) / total
    n = len(units)
    if n < 2:
        return math.nan
    se = math.sqrt(n / (n - 1) * float(np.sum((z - delta * units) ** 2))) / total
    return critical_value(confidence) * se


def summarize(
    tallies: Mapping[str, Sequence[Tally]],
    route_intervals: Mapping[str, tuple[float, float]] | None = None,
    percentile_intervals: bool = True,
) -> pd.DataFrame:
    """One row per policy (in the mapping's order) from its tallies pooled over replications.

    Columns: policy, requests, met, missed, dropped, miss_rate, nines, nines_low, nines_high,
    miss_design_effect, latency percentiles (served requests) with ``_low``/``_high`` ends,
    mean_accuracy (served requests), accuracy_at_deadline (a request that misses or is dropped
    counts as wrong), each with ``_low``/``_high`` ends, level_share_L{k} (share of segments
    run at level k), reroutes_per_request, rerouted_share (served requests whose route changes
    level after its first segment), and the spread over replications of the miss rate
    (replication_miss_rate_std). ``route_intervals`` maps a route (``0-1-1``) to the 95 %
    interval of its measured accuracy (the profile's ``routes.csv``); without it the accuracy
    intervals cover the simulation's uncertainty only. ``percentile_intervals=False`` leaves
    out the percentiles' ``_low``/``_high`` columns (the bootstrap is most of the cost). A
    policy with no request after warm-up has no row.
    """
    rows = []
    for policy, tally in pooled(tallies).items():
        if tally.requests:
            rows.append({"policy": policy, **summary_row(tally, route_intervals, percentile_intervals)})
    return pd.DataFrame(rows)


def per_replication(
    tallies: Mapping[str, Sequence[Tally]], route_intervals: Mapping[str, tuple[float, float]] | None = None
) -> pd.DataFrame:
    """:func:`summarize` of each replication alone: one row per replication x policy, with a
    ``replication`` column first (its intervals come from that replication's batches)."""
    rows = []
    for policy, parts in tallies.items():
        for tally in parts:
            if tally.requests:
                rows.append({"replication": int(tally.replication[0]), "policy": policy, **summary_row(tally, route_intervals)})
    return pd.DataFrame(rows).sort_values(["replication"], kind="stable", ignore_index=True)


def ccdf_table(tallies: Mapping[str, Tally]) -> pd.DataFrame:
    """Per policy (each tally pooled over its replications), the fraction of requests slower
    than ``latency_ms``, at the upper edge of every occupied bin of the coarse grid (0.18 %
    wide); a dropped request counts as infinitely late, so each policy's last fraction is its
    share dropped. Columns: policy, latency_ms, fraction_slower."""
    frames = []
    for policy, tally in tallies.items():
        n = tally.requests
        if not n or not len(tally.fine_bins):
            continue
        coarse, where = np.unique(tally.fine_bins // COARSE, return_inverse=True)
        counts = np.bincount(where, weights=tally.fine_counts)
        upper = np.exp(_LOG_LO + _STEP * COARSE * (coarse + 1.0))
        frames.append(pd.DataFrame({"policy": policy, "latency_ms": np.minimum(upper, tally.latency_max_ms),
                                    "fraction_slower": 1.0 - np.cumsum(counts) / n}))  # fmt: skip
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["policy", "latency_ms", "fraction_slower"])
