"""Figures (matplotlib only here). Each function returns a figure; colours follow policy order."""

from __future__ import annotations

import sys
import textwrap

import matplotlib

if "ipykernel" not in sys.modules:  # files, not windows (notebooks keep their inline backend)
    matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogFormatter, PercentFormatter  # noqa: E402

__all__ = ["save", "accuracy_frontier", "accuracy_vs_percentile", "latency_ccdf", "nines_facets", "nines_vs", "policy_colours", "profile_gap", "profile_layers", "timeline", "trust",
           "validation_ccdf"]


def policy_colours(policies: list[str]) -> dict[str, str]:
    """One stable colour per policy, in the order the scenario lists them."""
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    return {p: cycle[i % len(cycle)] for i, p in enumerate(policies)}


def latency_ccdf(ccdf: pd.DataFrame, deadline_ms: float | None = None) -> Figure:
    """P(latency > x) per policy on log axes (the tail), from a results folder's
    ``latency_ccdf.csv`` (:func:`simqos.sim.tally.ccdf_table`: warm-up excluded, every request of
    the run); dropped requests count as infinitely late, so every curve ends at the policy's
    loss rate."""
    policies = list(dict.fromkeys(ccdf["policy"]))
    colours = policy_colours(policies)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    drawn = 0
    for policy in policies:
        mine = ccdf[(ccdf["policy"] == policy) & (ccdf["fraction_slower"] > 0)]
        ax.step(mine["latency_ms"], mine["fraction_slower"], where="post", label=policy, color=colours[policy])
        drawn += len(mine)
    if deadline_ms is not None:
        ax.axvline(deadline_ms, color="black", linestyle="--", linewidth=1)
        ax.text(deadline_ms, 1.0, " deadline", va="top", fontsize=9)
    if drawn:  # log axes need a point; with none, say why the panel is empty
        ax.set_xscale("log")
        ax.set_yscale("log")
    else:
        ax.text(0.5, 0.5, "no request finished after warm-up", transform=ax.transAxes, ha="center")
    ax.set_xlabel("latency, arrival to finish (ms)")
    ax.set_ylabel("fraction of requests slower (CCDF)")
    ax.set_title("Latency tail per policy", fontsize=11)
    ax.annotate("a curve ends where the requests left are those dropped (never finished)", (0.0, -0.2), xycoords="axes fraction",
                fontsize=7, color="dimgray")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def _ccdf(latency_ms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted latencies (dropped = infinitely late) and the fraction slower than each, finite part."""
    x = np.sort(np.where(np.isnan(latency_ms), np.inf, latency_ms))
    ccdf = 1.0 - np.arange(1, len(x) + 1) / len(x)
    keep = np.isfinite(x) & (ccdf > 0)
    return x[keep], ccdf[keep]


def validation_ccdf(real: pd.DataFrame, simulated: pd.DataFrame, deadline_ms: float | None = None) -> Figure:
    """Per policy, the latency CCDF measured on the device (solid) and simulated from the
    profile on the same arrivals and load schedule (dashed)."""
    policies = list(dict.fromkeys(real["policy"]))
    colours = policy_colours(policies)
    fig, axes = plt.subplots(1, len(policies), figsize=(4.3 * len(policies) + 0.8, 4.0), sharey=True, squeeze=False)
    for ax, policy in zip(axes[0], policies):
        for table, style, name in ((real, "-", "real"), (simulated, "--", "simulated")):
            kept = table[(table["policy"] == policy) & ~table["warmup"]]
            x, y = _ccdf(kept["latency_ms"].to_numpy())
            ax.step(x, y, style, where="post", color=colours[policy], label=name, linewidth=1.4 if name == "real" else 1.2)
        if deadline_ms is not None:
            ax.axvline(deadline_ms, color="black", linestyle=":", linewidth=1, label="deadline")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))  # 2, not 2x10^0
        ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if f"{v:.0e}"[0] in "25" else ""))
        ax.tick_params(axis="x", which="minor", labelsize=7)
        ax.set_title(policy, fontsize=9)
        ax.set_xlabel("latency (ms)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("fraction of requests slower (CCDF)")
    fig.suptitle("Real device vs simulator: same arrivals, same applied load schedule", fontsize=10)
    fig.tight_layout()
    return fig


PERCENTILE_PANELS = ("p50_ms", "p99_ms", "p99.9_ms")
MARKERS = "osD^vPX*<>h"
"""One marker per policy, in order, where points may sit on one another."""


def _accuracy_panels(axes, table: pd.DataFrame) -> None:
    """Axes of the accuracy-vs-percentile panels: latency on x (log only where the values span
    a decade or more), accuracy in % on y, and a note when the profile has no accuracy."""
    for ax, col in zip(axes, PERCENTILE_PANELS):
        if table[col].max() / table[col].min() >= 10:
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))  # 1.5, not 1.5x10^0
        ax.set_xlabel(f"latency {col.removesuffix('_ms')} (ms)")
        ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=1))
        ax.grid(True, which="both", alpha=0.3)
        if table["mean_accuracy"].isna().all():
            ax.text(0.5, 0.5, "accuracy unavailable\nin this profile", transform=ax.transAxes, ha="center")
    axes[0].set_ylabel("mean top-1 accuracy of served requests")
    axes[0].legend(fontsize=8)


def _error_bar(row: pd.Series, column: str) -> list[list[float]] | None:
    """``[[below], [above]]`` from ``column_low`` / ``column_high`` when the row has them."""
    low, high = row.get(f"{column}_low"), row.get(f"{column}_high")
    if low is None or high is None or pd.isna(low) or pd.isna(high) or pd.isna(row[column]):
        return None
    return [[max(0.0, row[column] - low)], [max(0.0, high - row[column])]]


def accuracy_vs_percentile(summary: pd.DataFrame) -> Figure:
    """Mean accuracy against latency p50, p99 and p99.9: one panel per percentile, one point
    per policy. Empty panels say so when the profile has no accuracy."""
    colours = policy_colours(list(summary["policy"]))
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.6), sharey=True)
    for ax, col in zip(axes, PERCENTILE_PANELS):
        for k, (_, row) in enumerate(summary.iterrows()):
            xerr = _error_bar(row, col)
            yerr = _error_bar(row, "mean_accuracy")
            ax.errorbar(row[col], row["mean_accuracy"], xerr=xerr, yerr=yerr, fmt=MARKERS[k % len(MARKERS)],
                        color=colours[row["policy"]], markerfacecolor="none", markeredgewidth=1.5,  # hollow: overlaps stay visible
                        label=row["policy"], markersize=8, capsize=3, elinewidth=1)
    _accuracy_panels(axes, summary)
    axes[0].get_legend().remove()
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize=8, frameon=False)
    fig.suptitle("Accuracy vs latency percentile per policy (bars: 95 % intervals)")
    fig.tight_layout(rect=(0, 0.06 + 0.035 * ((len(labels) - 1) // 4), 1, 1))  # the legend below the panels
    return fig


def _shown_nines(table: pd.DataFrame) -> pd.Series:
    """Each row's nines as a figure draws them: where nothing missed (no finite nines, only a
    lower bound) at ``nines_low``."""
    point = table["nines"].astype(float)
    return point.where(point.notna(), table["nines_low"].astype(float))


def _nines_lines(ax, table: pd.DataFrame, x: str, colours: dict[str, str]) -> None:
    """Nines against ``x`` per policy on ``ax``, the 95 % interval as a band; a zero-miss point
    (no finite nines) is an upward triangle at its lower bound. Each policy has its own marker
    and dash, so that lines lying on each other stay readable."""
    for i, policy in enumerate(colours):
        t = table[table["policy"] == policy].sort_values(x)
        if t.empty:
            continue
        point = t["nines"].astype(float)
        high = t["nines_high"].astype(float)
        shown = _shown_nines(t)
        # the line joins finite nines only: a zero-miss point is a lower bound (its ▲), and a line down to it would
        # read as nines falling
        ax.plot(t[x], point, color=colours[policy], label=policy, marker="osD*PXph"[i % 8], markersize=5, markerfacecolor="none",
                linestyle=("-", "--", "-.", ":")[i % 4])
        ax.fill_between(t[x], t["nines_low"], high.where(high.notna(), shown), color=colours[policy], alpha=0.15)
        bound = point.isna()
        if bound.any():
            ax.scatter(t.loc[bound, x], t.loc[bound, "nines_low"], marker="^", s=60, color=colours[policy], zorder=3)
    ax.grid(True, alpha=0.3)


_NINES_NOTE = "(bands: 95 % interval; ▲: no miss, a lower bound)"


def nines_vs(table: pd.DataFrame, x: str, xlabel: str, title: str, marker_x: float | None = None,
             note: str | None = None) -> Figure:
    """Nines of QoS against ``x`` per policy, with the 95 % interval as a band; ``note``: a line
    under the axes (why the curves do what they do)."""
    colours = policy_colours(list(dict.fromkeys(table["policy"])))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    _nines_lines(ax, table, x, colours)
    if marker_x is not None:
        ax.axvline(marker_x, color="black", linestyle=":", linewidth=1)
        ax.text(marker_x, ax.get_ylim()[0], " scenario", va="bottom", fontsize=8)  # at the foot: the legend sits at the top
    ax.set_xlabel(xlabel)
    ax.set_ylabel("nines of QoS, −log10(miss rate)")
    ax.set_title(f"{title}\n{_NINES_NOTE}", fontsize=10)
    ax.legend(fontsize=8)
    if note:
        fig.text(0.01, 0.01, textwrap.fill(note.replace("`", ""), 110), fontsize=7, va="bottom")
        fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig


_UNITS = {"ms": "ms", "s": "s", "hz": "Hz", "mb": "MB", "mb_s": "MB/s", "fps": "frames/s"}


def field_label(dotted: str) -> str:
    """A scenario field's dotted path as an axis label: ``workload.deadline.ms`` -> ``deadline
    (ms)``, ``workload.arrival.rate_hz`` -> ``arrival rate (Hz)``."""
    parts = dotted.split(".")
    last = parts[-1]
    for suffix in sorted(_UNITS, key=len, reverse=True):
        if last == suffix:  # a unit alone names the field before it
            return f"{parts[-2].replace('_', ' ') if len(parts) > 1 else last} ({_UNITS[suffix]})"
        if last.endswith("_" + suffix):
            name = last[: -len(suffix) - 1].replace("_", " ")
            return f"{parts[-2] + ' ' if len(parts) > 2 else ''}{name} ({_UNITS[suffix]})"  # below a section: its parent too
    return last.replace("_", " ")


FACETS_PER_ROW = 3


def nines_facets(table: pd.DataFrame, x: str, facet: str | None, title: str) -> Figure:
    """Nines against column ``x`` (a dotted field path) per policy, one panel per value of column
    ``facet`` (a sweep's second varied field; one panel when ``None``), :data:`FACETS_PER_ROW`
    to a row, shared y axis, one legend below."""
    colours = policy_colours(list(dict.fromkeys(table["policy"])))
    values = [None] if facet is None else sorted(table[facet].unique())
    columns = min(len(values), FACETS_PER_ROW)
    rows = -(-len(values) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.4 * columns + 0.8, 3.9 * rows + 1.0), sharey=True, squeeze=False)
    for ax, value in zip(axes.flat, values):
        _nines_lines(ax, table if facet is None else table[table[facet] == value], x, colours)
        ax.set_xlabel(field_label(x))
        if facet is not None:
            ax.set_title(f"{field_label(facet)} = {value:g}" if isinstance(value, float) else f"{field_label(facet)} = {value}", fontsize=10)
    for ax in axes.flat[len(values):]:
        ax.set_visible(False)
    for row in axes:
        row[0].set_ylabel("nines of QoS, −log10(miss rate)")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    for ax in axes.flat[: len(values)]:
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize=8, frameon=False)
    fig.suptitle(f"{title}\n{_NINES_NOTE}", fontsize=10)
    fig.tight_layout(rect=(0, 0.05 + 0.03 * ((len(labels) - 1) // 4) / rows, 1, 1))
    return fig


def profile_layers(layers: pd.DataFrame, kernels: pd.DataFrame, layer_order: list[str]) -> Figure:
    """Left: each layer's median latency inside the model per level (ms, log colour scale),
    with its kernel. Right: its speedup over the dense kernel (both timed alone)."""
    from matplotlib.colors import LogNorm

    levels = sorted(layers["level"].unique())
    lat = layers.pivot(index="layer", columns="level", values="latency_median_ms").loc[layer_order]
    kernel = layers.pivot(index="layer", columns="level", values="kernel").loc[layer_order]
    dense = kernels[kernels["kernel"] == "dense"].pivot(index="layer", columns="level", values="median_ms").loc[layer_order]
    alone = layers.pivot(index="layer", columns="level", values="isolated_median_ms").loc[layer_order]
    speedup = dense / alone
    height = max(3.0, 0.28 * len(layer_order) + 1.5)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, height), sharey=True)
    im = left.imshow(lat.to_numpy(), aspect="auto", cmap="viridis", norm=LogNorm())
    fig.colorbar(im, ax=left, label="median latency in the model (ms)")
    small = len(layer_order) <= 30
    for (i, j), value in np.ndenumerate(kernel.to_numpy()):
        if small:
            left.text(j, i, value, ha="center", va="center", fontsize=7, color="white")
    sp = right.imshow(speedup.to_numpy(), aspect="auto", cmap="RdYlGn", vmin=0, vmax=max(2.0, float(np.nanmax(speedup.to_numpy()))))
    fig.colorbar(sp, ax=right, label="speedup over dense (alone)")
    for (i, j), value in np.ndenumerate(speedup.to_numpy()):
        if small:
            right.text(j, i, f"{value:.1f}x", ha="center", va="center", fontsize=7)
    for ax in (left, right):
        ax.set_xticks(range(len(levels)), [f"level {k}" for k in levels])
    left.set_yticks(range(len(layer_order)), layer_order, fontsize=7 if small else 5)
    left.set_title("latency per layer and level (kernel chosen)", fontsize=10)
    right.set_title("where sparsity pays: speedup over dense", fontsize=10)
    fig.tight_layout()
    return fig


def profile_gap(gap: pd.DataFrame, dense_ms: float) -> Figure:
    """Per level: the sum of layer medians against the whole model's median, and the dense
    baseline — what the per-layer samples miss."""
    fig, ax = plt.subplots(figsize=(6, 4))
    x = np.arange(len(gap))
    ax.bar(x - 0.2, gap["sum_of_layers_ms"], 0.4, label="sum of layer medians")
    ax.bar(x + 0.2, gap["end_to_end_ms"], 0.4, label="whole model (median)")
    ax.axhline(dense_ms, color="black", linestyle="--", linewidth=1, label="dense baseline")
    for xi, row in zip(x, gap.itertuples(index=False)):
        ax.text(xi + 0.2, row.end_to_end_ms, f"{row.gap_fraction:+.0%}, {row.end_to_end_ms / dense_ms:.2f}x dense's time",
                ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x, [f"level {int(k)}" for k in gap["level"]])
    ax.set_ylabel("latency (ms)")
    ax.set_ylim(0, max(dense_ms, gap["end_to_end_ms"].max()) * 1.3)  # room for the labels and the legend
    ax.set_title("Sum of layers vs whole model (gap in %)", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    fig.text(0.5, 0.01, "The whole model's speedup over dense is smaller than the per-layer ones (profile_layers, each\n"
             "layer timed alone) by the time outside the layers: the gap, which every level pays.", ha="center", fontsize=7.5)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return fig


def trust(table: pd.DataFrame) -> Figure:
    """Every real run of a folder of validations (:func:`simqos.validate.trust.collect`): its
    predicted p99 and nines (out of sample, with the 95 % predictive interval) against the real
    ones, coloured by policy and shaped by scenario, with the y = x line and its ±10 % band. A
    run with no real miss has nines beyond what it can show: drawn at the top, as a lower bound."""
    fig, (p99, nines) = plt.subplots(1, 2, figsize=(11, 5.2))
    colours = policy_colours(list(dict.fromkeys(table["policy"])))
    shapes = dict(zip(dict.fromkeys(table["scenario"]), "osD^vP*X"))
    with np.errstate(divide="ignore"):
        real_nines = -np.log10(table["real_miss_rate"].to_numpy(dtype=float))
        predicted = -np.log10(table[["pred_miss_rate", "miss_high", "miss_low"]].to_numpy(dtype=float))
    finite = np.concatenate([real_nines, predicted.ravel()])
    top = float(np.nanmax(finite[np.isfinite(finite)], initial=1.0)) + 0.5
    real_nines, predicted = np.minimum(real_nines, top), np.minimum(predicted, top)
    for i, row in enumerate(table.itertuples(index=False)):
        style = {"color": colours[row.policy], "marker": shapes[row.scenario], "markersize": 5, "capsize": 2, "linewidth": 0.8}
        p99.errorbar(row.real_p99_ms, row.pred_p99_ms, yerr=[[row.pred_p99_ms - row.p99_low], [row.p99_high - row.pred_p99_ms]],
                     **style)  # fmt: skip
        nines.errorbar(real_nines[i], predicted[i, 0], yerr=[[predicted[i, 0] - predicted[i, 1]], [predicted[i, 2] - predicted[i, 0]]],
                       mfc="white" if real_nines[i] >= top else None, **style)  # fmt: skip
    low, high = float(table[["real_p99_ms", "p99_low"]].min().min()) * 0.8, float(table[["real_p99_ms", "p99_high"]].max().max()) * 1.25
    line = np.geomspace(low, high, 50)
    p99.plot(line, line, color="black", linewidth=0.8)
    p99.fill_between(line, line * 0.9, line * 1.1, color="0.85", zorder=0, label="within 10 %")
    p99.set(xscale="log", yscale="log", xlim=(low, high), ylim=(low, high), xlabel="real p99 (ms)",
            ylabel="predicted p99 (ms), 95 % predictive interval", title="p99 latency")  # fmt: skip
    for axis in (p99.xaxis, p99.yaxis):  # 1, 2, 5, 10, 20, 50 ...: the other minor ticks unlabelled
        axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        axis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if f"{v:.0e}"[0] in "25" else ""))
    nines.plot([0, top], [0, top], color="black", linewidth=0.8)
    nines.axhline(top, color="0.6", linestyle=":", linewidth=0.8)
    nines.set(xlim=(0, top + 0.1), ylim=(0, top + 0.1), xlabel="real nines (−log10 miss rate; hollow: no miss, a lower bound)",
              ylabel="predicted nines, 95 % predictive interval", title="nines of QoS")  # fmt: skip
    handles = [plt.Line2D([], [], color=c, marker="o", linestyle="", label=p) for p, c in colours.items()]
    handles += [plt.Line2D([], [], color="0.3", marker=m, linestyle="", label=s) for s, m in shapes.items()]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 5), fontsize=8, frameon=False)
    fig.suptitle(f"Trust: {len(table)} real runs against their out-of-sample predictions")
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig


def save(fig: Figure, path) -> None:
    """Write ``fig`` as a PNG (120 dpi) and free it."""
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def timeline(
    records: pd.DataFrame,
    policy: str,
    speed: tuple[np.ndarray, np.ndarray],
    resident: tuple[np.ndarray, np.ndarray],
    start_s: float,
    window_s: float,
    deadline_ms: float | None = None,
) -> Figure:
    """Why a request missed: the device's speed factor and least sparse resident level over
    ``[start_s, start_s + window_s]`` (top), and ``policy``'s requests in that window (bottom:
    latency at arrival, coloured by outcome, shaped by route; rerouted ones ringed).

    ``speed`` and ``resident`` are (breakpoint times s, values) of piecewise-constant traces.
    """
    end_s = start_s + window_s
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6.6), sharex=True, gridspec_kw={"height_ratios": [1, 2]})
    _device_panel(top, speed, resident, start_s, end_s)
    top.set_title(f"Device and requests under {policy}", fontsize=10)
    r = records[(records["policy"] == policy) & (records["arrival_s"] >= start_s) & (records["arrival_s"] <= end_s)]
    _request_points(bottom, r)
    _deadline_line(bottom, deadline_ms)
    bottom.set_yscale("log")
    bottom.yaxis.set_major_formatter(LogFormatter(labelOnlyBase=False))  # 20, not 2x10^1
    bottom.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))
    bottom.set_xlabel("arrival time (s)")
    bottom.set_ylabel("latency (ms)")
    bottom.legend(fontsize=7, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.14))  # below the axes: never over a request
    bottom.grid(True, alpha=0.3)
    fig.tight_layout()
    return fig


def _request_points(bottom, r: pd.DataFrame) -> None:
    """Each request at its arrival and latency, coloured by outcome and shaped by route (the
    ones never served along the top); rerouted ones ringed, the first few labelled with their route."""
    colours = {"met": "tab:green", "missed": "tab:red", "dropped": "tab:gray"}
    shapes = {"least sparse": "o", "mixed": "s", "sparsest": "^"}
    route_class = r["route"].fillna("").map(
        lambda route: "" if not route else ("least sparse" if set(route.split("-")) == {"0"} else ("mixed" if len(set(route.split("-"))) > 1 else "sparsest"))
    )
    top_y = float(np.nanmax(r["latency_ms"])) * 1.2 if r["latency_ms"].notna().any() else 1.0
    for outcome, colour in colours.items():
        for cls, shape in shapes.items():
            pick = (r["outcome"] == outcome) & (route_class == cls)
            if pick.any():
                bottom.scatter(r.loc[pick, "arrival_s"], r.loc[pick, "latency_ms"], c=colour, marker=shape, s=18, label=f"{outcome}, {cls}")
        dropped = (r["outcome"] == outcome) & (route_class == "")
        if dropped.any():
            bottom.scatter(r.loc[dropped, "arrival_s"], np.full(int(dropped.sum()), top_y), c=colour, marker="v", s=18, label=f"{outcome} (not served)")
    rerouted = r["reroutes"] > 0
    if rerouted.any():
        bottom.scatter(r.loc[rerouted, "arrival_s"], r.loc[rerouted, "latency_ms"], facecolors="none", edgecolors="black", s=60,
                       label="rerouted (its route: level per segment)")
        span_s = float(r["arrival_s"].max() - r["arrival_s"].min()) or 1.0
        labelled = _spaced(r.loc[rerouted, "arrival_s"].to_numpy(dtype=float), span_s / ROUTE_LABELS)
        for k, row in enumerate(r[rerouted].iloc[labelled].itertuples()):  # the route's shape; above and below by turns
            bottom.annotate(row.route, (row.arrival_s, row.latency_ms), xytext=(4, 4 if k % 2 == 0 else -10),
                            textcoords="offset points", fontsize=6)


ROUTE_LABELS = 12
"""At most this many rerouted requests are labelled with their route on a timeline, at least
1/12 of its width apart, so that the labels do not overlap."""


def _spaced(times_s: np.ndarray, gap_s: float) -> list[int]:
    """The positions of ``times_s`` (ascending) picked first to last, each at least ``gap_s``
    after the one picked before."""
    picked: list[int] = []
    for i, t in enumerate(times_s):
        if not picked or t - times_s[picked[-1]] >= gap_s:
            picked.append(i)
    return picked


def _device_panel(top, speed: tuple[np.ndarray, np.ndarray], resident: tuple[np.ndarray, np.ndarray], start_s: float,
                  end_s: float) -> None:
    """The speed factor (left axis) and the least sparse resident level (right) between the two times."""
    for (times, values), ax, label, colour in (
        (speed, top, "speed factor", "tab:blue"),
        (resident, top.twinx(), "least sparse resident level", "tab:purple"),
    ):
        inside = (times < end_s) & (np.append(times[1:], np.inf) > start_s)
        t = np.clip(times[inside], start_s, None)
        ax.step(np.append(t, end_s), np.append(values[inside], values[inside][-1]), where="post", color=colour)
        ax.set_ylabel(label, color=colour, fontsize=8)
        if ax is not top:  # levels are indices
            ax.set_yticks(range(int(values.max()) + 1))
            ax.set_ylim(-0.3, max(1, int(values.max())) + 0.3)


def _deadline_line(ax, deadline_ms: float | None) -> None:
    """A dashed line at the deadline, labelled at the right."""
    if deadline_ms is not None:
        ax.axhline(deadline_ms, color="black", linestyle="--", linewidth=1)
        ax.annotate(f"deadline {deadline_ms:g} ms", (1.0, deadline_ms), xycoords=("axes fraction", "data"), xytext=(-4, 3),
                    textcoords="offset points", ha="right", fontsize=7)


def accuracy_frontier(table: pd.DataFrame, bound: dict | None = None) -> Figure:
    """What each policy family can reach. Top row: mean accuracy of served requests vs latency
    p50 / p99 / p99.9. Bottom row: the objective, accuracy-at-deadline vs nines of QoS, with the
    offline optimum (``bound``, :mod:`simqos.bound`) drawn as the limits no policy can pass; on
    its right the same panel zoomed on the rerouting policies, with 95 % interval bars (where
    they cluster, the bars say whether they differ). ``table`` has columns family, knob, the
    percentiles, mean_accuracy, accuracy_at_deadline and nines (and their ``_low`` / ``_high``
    where known), and style (:attr:`simqos.policies.Policy.frontier_style`): a family of style
    ``levels`` (static) is a point per level, ``reference`` (the clairvoyant) a dashed line, any
    other a line through its settings (a quantile, a margin), or a marker if it has one. A policy that missed nothing has no nines, only a lower
    bound (``nines_low``): it is drawn there."""
    if "nines_low" in table:  # a column of a table where nothing missed holds no number at all
        table = table.assign(nines=_shown_nines(table), nines_low=table["nines_low"].astype(float),
                             nines_high=table["nines_high"].astype(float))
    families = list(dict.fromkeys(table["family"]))
    fig = plt.figure(figsize=(13, 8.8))
    grid = fig.add_gridspec(2, 6, height_ratios=[1, 1.25])
    top = [fig.add_subplot(grid[0, 2 * k : 2 * k + 2]) for k in range(3)]
    whole, zoom = fig.add_subplot(grid[1, :3]), fig.add_subplot(grid[1, 3:])
    for ax, col in zip(top, PERCENTILE_PANELS):
        _frontier_points(ax, table, families, col, "mean_accuracy", bars=False)
    _accuracy_panels(top, table)
    for ax in (whole, zoom):
        _frontier_points(ax, table, families, "nines", "accuracy_at_deadline", bars=ax is zoom)
        ax.set_xlabel("nines of QoS")
        ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=1))
        ax.grid(True, alpha=0.3)
    whole.set_ylabel("accuracy-at-deadline (a miss counts as wrong)")
    _optimum_lines(whole, zoom, table, bound)
    whole.legend(fontsize=8, loc="lower right")
    fig.suptitle("What the built-in policy families reach on this scenario, listed or not, and its own policies (static: a point per level; "
                 "greedy, deadline_aware: lines through quantiles;\nclairvoyant: margin ms; dotted red: the offline optimum; "
                 "bottom right: the rerouting policies up close, bars 95 % intervals; a policy with no miss sits at its "
                 "nines' lower bound)", fontsize=10)
    fig.tight_layout()
    return fig


def _optimum_lines(whole, zoom, table: pd.DataFrame, bound: dict | None) -> None:
    """The offline optimum as dotted limits on both objective panels, the zoom set on the
    rerouting policies, and its frame marked on the whole panel."""
    accuracy = None if bound is None else bound.get("accuracy_at_deadline")
    known = accuracy is not None and not pd.isna(accuracy)
    for ax in (whole, zoom):
        if known:
            ax.axhline(accuracy, color="firebrick", linewidth=1.2, linestyle=":", label="offline optimum (bound)")
        if bound is not None and bound["met"] < bound["requests"]:
            ax.axvline(-np.log10(1 - bound["met"] / bound["requests"]), color="firebrick", linewidth=1.2, linestyle=":")
    if known:
        low, high = whole.get_ylim()
        whole.set_ylim(low, max(high, accuracy + 0.06 * (high - low)))  # the line inside the frame
    _zoom_on_rerouting(zoom, table, accuracy if known else None)
    (x0, x1), (y0, y1) = whole.get_xlim(), whole.get_ylim()
    (zx0, zx1), (zy0, zy1) = zoom.get_xlim(), zoom.get_ylim()
    zx0, zx1, zy0, zy1 = max(zx0, x0), min(zx1, x1), max(zy0, y0), min(zy1, y1)  # the part of the zoom inside the frame
    if zx1 > zx0 and zy1 > zy0:
        whole.indicate_inset([zx0, zy0, zx1 - zx0, zy1 - zy0], inset_ax=zoom, edgecolor="grey")


def _frontier_points(ax, table: pd.DataFrame, families: list[str], x: str, y: str, bars: bool) -> None:
    """One panel of :func:`accuracy_frontier`: each family as points or a line (see there);
    with ``bars``, 95 % interval bars on the points that stand alone."""
    style = table.groupby("family", sort=False)["style"].first()
    singles = [f for f in families if style[f] == "auto" and (table["family"] == f).sum() == 1]
    colours = policy_colours(families)
    for family in families:
        t = table[table["family"] == family].sort_values(x)
        levels = style[family] == "levels"
        if style[family] == "reference":
            ax.plot(t[x], t[y], "--", color="black", linewidth=1.5, label=f"{family} (reference)")
        elif levels or len(t) == 1:
            marker = "D" if levels else "*PXh"[singles.index(family) % 4]
            # overlaps stay legible: a static level's small filled diamond is drawn over the
            # rerouting policies' larger hollow markers (a policy that always picks it sits on it)
            hollow = {} if levels else {"markerfacecolor": "none", "markeredgewidth": 1.6}
            for k, (_, row) in enumerate(t.iterrows()):
                ax.errorbar(row[x], row[y], xerr=_error_bar(row, x) if bars else None, yerr=_error_bar(row, y) if bars else None,
                            fmt=marker, color=colours[family], markersize=7 if levels else 11, capsize=3,
                            elinewidth=1, label=family if k == 0 else None, zorder=4 if levels else 3, **hollow)
                if levels:
                    ax.annotate(f"L{int(row['knob'])}", (row[x], row[y]), fontsize=8, xytext=(4, 4), textcoords="offset points",
                                annotation_clip=True)
        else:
            ax.plot(t[x], t[y], "-o", color=colours[family], linewidth=1, markersize=3.5, alpha=0.85, label=family)
    ax.margins(0.1)  # room for the level labels inside the frame


def _zoom_on_rerouting(ax, table: pd.DataFrame, bound_accuracy: float | None) -> None:
    """Limit the zoomed objective panel to the rerouting policies' points and intervals (every
    family but the static levels and the reference), padded; the bound, when above the frame,
    is written at its top."""
    mine = table[table["style"] == "auto"]
    if mine.empty or mine["accuracy_at_deadline"].isna().all():
        return
    xs = pd.concat([mine["nines"], mine.get("nines_low", mine["nines"]), mine.get("nines_high", mine["nines"])]).dropna()
    ys = pd.concat([mine["accuracy_at_deadline"], mine.get("accuracy_at_deadline_low", mine["accuracy_at_deadline"]),
                    mine.get("accuracy_at_deadline_high", mine["accuracy_at_deadline"])]).dropna()
    xs, ys = xs[np.isfinite(xs)], ys[np.isfinite(ys)]
    pad_x, pad_y = max(0.15 * (xs.max() - xs.min()), 0.02), max(0.15 * (ys.max() - ys.min()), 0.002)
    ax.set_xlim(xs.min() - pad_x, xs.max() + pad_x)
    ax.set_ylim(ys.min() - pad_y, ys.max() + pad_y)
    if bound_accuracy is not None and bound_accuracy > ys.max() + pad_y:
        ax.annotate(f"offline optimum {bound_accuracy:.1%} (above)", (0.5, 0.98), xycoords="axes fraction", ha="center",
                    va="top", fontsize=8, color="firebrick")
    ax.set_title("the rerouting policies up close", fontsize=9)
