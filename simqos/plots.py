"""Figures (matplotlib only here). Each function returns a figure; colours follow policy order."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files, not windows: also safe on machines without a display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FuncFormatter, NullFormatter, PercentFormatter  # noqa: E402

__all__ = ["accuracy_vs_percentile", "latency_ccdf", "policy_colours"]


def policy_colours(policies: list[str]) -> dict[str, str]:
    """One stable colour per policy, in the order the scenario lists them."""
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    return {p: cycle[i % len(cycle)] for i, p in enumerate(policies)}


def latency_ccdf(records: pd.DataFrame, deadline_ms: float | None = None) -> Figure:
    """P(latency > x) per policy on log axes (the tail), warm-up excluded; dropped requests
    count as infinitely late, so every curve ends at the policy's loss rate."""
    kept = records[~records["warmup"]]
    policies = list(dict.fromkeys(kept["policy"]))
    colours = policy_colours(policies)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for policy in policies:
        lat = kept.loc[kept["policy"] == policy, "latency_ms"].to_numpy()
        lat = np.where(np.isnan(lat), np.inf, lat)
        x = np.sort(lat)
        ccdf = 1.0 - np.arange(1, len(x) + 1) / len(x)
        finite = np.isfinite(x) & (ccdf > 0)
        ax.step(x[finite], ccdf[finite], where="post", label=policy, color=colours[policy])
    if deadline_ms is not None:
        ax.axvline(deadline_ms, color="black", linestyle="--", linewidth=1)
        ax.text(deadline_ms, 1.0, " deadline", va="top", fontsize=9)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("latency, arrival to finish (ms)")
    ax.set_ylabel("fraction of requests slower (CCDF)")
    ax.set_title("Latency tail per policy")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def accuracy_vs_percentile(summary: pd.DataFrame) -> Figure:
    """Mean accuracy against latency p50, p99 and p99.9: one panel per percentile, one point
    per policy. Empty panels say so when the profile has no accuracy."""
    colours = policy_colours(list(summary["policy"]))
    fig, axes = plt.subplots(1, 3, figsize=(12, 4), sharey=True)
    for ax, col in zip(axes, ("p50_ms", "p99_ms", "p99.9_ms")):
        for _, row in summary.iterrows():
            ax.scatter(row[col], row["mean_accuracy"], color=colours[row["policy"]], label=row["policy"], s=50)
        ax.set_xlabel(f"latency {col.removesuffix('_ms')} (ms)")
        ax.set_xscale("log")
        plain = FuncFormatter(lambda v, _: f"{v:g}")  # 1.5, not 1.5x10^0
        ax.xaxis.set_major_formatter(plain)
        ax.xaxis.set_minor_formatter(plain if ax.get_xlim()[1] / ax.get_xlim()[0] < 10 else NullFormatter())
        ax.grid(True, which="both", alpha=0.3)
        if summary["mean_accuracy"].isna().all():
            ax.text(0.5, 0.5, "accuracy unavailable\nin this profile", transform=ax.transAxes, ha="center")
    axes[0].set_ylabel("mean top-1 accuracy of served requests")
    axes[0].yaxis.set_major_formatter(PercentFormatter(1.0, decimals=2))
    axes[0].legend(fontsize=8)
    fig.suptitle("Accuracy vs latency percentile per policy")
    fig.tight_layout()
    return fig
