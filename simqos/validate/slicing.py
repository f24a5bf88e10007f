"""CPU time-slicing as this machine's scheduler does it, measured from the calibration's probes:
each load state's speed for queued work, and the slice (:mod:`simqos.sim.timeslice`).

Under competing processes the serving thread gets the core a slice at a time and between its
slices waits out the competitors' turns; a thread that slept is scheduled at once when it
wakes, with a whole slice. The calibration's probes under load arrive as a Poisson stream with
the scenario's mean gap, so some queue and some wake, and their times show the slices: at a
quarter of the core a 5 ms request takes about 17 ms or about 30 ms, one round of turns or two,
rarely anything between, and a woken one mostly the shorter.

:func:`fit_slicing` reads, for each loaded state (target speed below 1) and level, the speed
of its queued probes (predicted time over the time they took, level 0's the one the
simulator's speed trace carries; over the quiet state's, the share of the core the competitors
left, as :func:`simqos.validate.compare.shares` replays it), then the slice for
which the simulator's model (:func:`simqos.sim.timeslice.sliced_work`, the slice left carried from
probe to probe in the order they ran) gives the probe times the distribution they had: the
slice with the least distance between sorted model and sorted measured times, over a grid,
each state's, level's, queued and woken probes weighing the same. At each slice tried, the
woken probes under each number of competitors get the wake-wait fraction that fits them best
(``device.wake_wait``, :func:`simqos.sim.timeslice.wake_wait_ms`: under one competitor the
scheduler places a woken thread behind the running one, which a whole slice at once misses);
a probe's place in the slice cycle is its start time, as the simulator has it. States with no
competitors have no slicing; their speed stays the calibration's, over all their probes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from simqos.sim.timeslice import waited_ms, wake_waited

__all__ = ["MIN_GROUP", "MIN_PROBES", "SLICES_MS", "Slicing", "WAKE_FRACTIONS", "fit_slicing", "probe_times_ms"]

MIN_PROBES = 20
"""Queued probes a state needs at each level for its slicing to be read."""

MIN_GROUP = MIN_PROBES // 2
"""Probes a group (a state's queued, or woken, probes at a level) needs to count in the fit."""

SLICES_MS = np.arange(0.25, 12.01, 0.25)
"""The slices tried (ms of work)."""


@dataclass(frozen=True)
class Slicing:
    """What :func:`fit_slicing` measured: ``speeds`` — for each loaded state, each level's speed
    for queued work; ``slice_ms`` — the fitted slice (0 when nothing could be read);
    ``distance`` and ``unsliced_distance`` — the mean distance between model and measured
    probe times, relative to their mean, with the slice and with a speed factor alone;
    ``wake_wait`` — the fraction of the running competitor's slice a woken request waits, by
    the number of competitors (``device.wake_wait``; empty when nothing could be read);
    ``table`` — per state and level: queued and woken probes, the queued speed, the measured
    and modelled mean and p90 times of each."""

    speeds: dict[float, np.ndarray]
    slice_ms: float
    wake_wait: list[float]
    distance: float
    unsliced_distance: float
    table: pd.DataFrame


def probe_times_ms(work_ms: np.ndarray, woken: np.ndarray, share: np.ndarray, speed: np.ndarray, slice_ms: float,
                   woke_ms: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
    """Each probe's time (ms) as the simulator runs it: ``work_ms`` sliced at its state's
    ``share`` of the core (:func:`~simqos.sim.timeslice.sliced_work`, below 1) at the speed
    ``speed``, the probes taken in the order they ran (:func:`~simqos.sim.timeslice.waited_ms`),
    a woken one after its wake wait (``woke_ms``, :func:`~simqos.sim.timeslice.wake_waited`;
    none without); ``slice_ms`` 0: the work at the speed alone."""
    if slice_ms <= 0.0:
        return work_ms / speed
    woke_ms = np.zeros(len(work_ms)) if woke_ms is None else woke_ms
    return (share * work_ms + (1.0 - share) * waited_ms(work_ms, woken, slice_ms, woke_ms)) / speed


def _distance(model_ms: np.ndarray, took_ms: np.ndarray, groups: list[np.ndarray]) -> float:
    """The mean over groups of the mean |sorted model - sorted measured| within the group over
    its mean measured time: each group weighs the same, however few its probes."""
    return float(np.mean([np.abs(np.sort(model_ms[g]) - np.sort(took_ms[g])).mean() / took_ms[g].mean() for g in groups]))


def fit_slicing(probes: pd.DataFrame) -> Slicing:
    """The queued speeds and the slice from the calibration's probes (columns target_speed,
    gaps, level, woken, took_ms, predicted_ms, in the order they ran; the states at the
    scenario's gaps with a target speed below 1 are read): the module doc."""
    loaded = probes[(probes["gaps"] != "none") & (probes["target_speed"] < 1.0)]
    speeds: dict[float, np.ndarray] = {}
    for target, state in loaded.groupby("target_speed", sort=False):
        queued = [state[(state["level"] == k) & ~state["woken"]] for k in sorted(state["level"].unique())]
        if all(len(q) >= MIN_PROBES for q in queued):
            speeds[float(target)] = np.array([q["predicted_ms"].sum() / q["took_ms"].sum() for q in queued])
    read = loaded[loaded["target_speed"].isin(list(speeds))]
    columns = ["target_speed", "level", "woken", "probes", "queued_speed", "mean_ms", "model_mean_ms", "p90_ms", "model_p90_ms"]
    if not len(read):
        return Slicing(speeds, 0.0, [], float("nan"), float("nan"), pd.DataFrame(columns=columns))
    quiet = probes[(probes["gaps"] != "none") & (probes["target_speed"] >= 1.0) & (probes["level"] == 0)]
    quiet_speed = float(quiet["predicted_ms"].sum() / quiet["took_ms"].sum()) if len(quiet) else 1.0
    target = read["target_speed"].to_numpy(dtype=float)
    level = read["level"].to_numpy(dtype=np.int64)
    speed = np.array([speeds[t][0] for t in target])
    share = np.minimum(speed / quiet_speed, 1.0)  # the core the competitors left, as the simulation replays it
    # as the simulator runs it: the work at level k is the prediction scaled to run at level k's own speed
    work = read["predicted_ms"].to_numpy(dtype=float) * speed / np.array([speeds[t][k] for t, k in zip(target, level)])
    woken = read["woken"].to_numpy(dtype=bool)
    took = read["took_ms"].to_numpy(dtype=float)
    keys = list(zip(target, level, woken))
    groups = [g for g in (np.flatnonzero([key == k for key in keys]) for k in dict.fromkeys(keys)) if len(g) >= MIN_GROUP]
    begin_s = read["begin_s"].to_numpy(dtype=float)
    competitors = np.maximum(1, np.rint(1.0 / share - 1.0)).astype(np.int64)
    fits = [_wake_fit(work, woken, share, speed, q, begin_s, competitors, took, groups) for q in SLICES_MS]
    best = int(np.argmin([distance for distance, _, _ in fits]))
    slice_ms, (distance, fractions, woke) = float(SLICES_MS[best]), fits[best]
    model = probe_times_ms(work, woken, share, speed, slice_ms, woke)
    rows = []
    for g in groups:
        t, k, w = keys[g[0]]
        rows.append({"target_speed": float(t), "level": int(k), "woken": bool(w), "probes": len(g), "queued_speed": float(speeds[t][k]),
                     "mean_ms": float(took[g].mean()), "model_mean_ms": float(model[g].mean()), "p90_ms": float(np.percentile(took[g], 90)),
                     "model_p90_ms": float(np.percentile(model[g], 90))})  # fmt: skip
    unsliced = _distance(probe_times_ms(work, woken, share, speed, 0.0), took, groups)
    table = pd.DataFrame(rows, columns=columns).sort_values(["target_speed", "level", "woken"], ascending=[False, True, True])
    return Slicing(speeds, slice_ms, _by_count(fractions), distance, unsliced, table.reset_index(drop=True))


WAKE_FRACTIONS = np.linspace(0.0, 1.0, 11)
"""The wake-wait fractions tried for each number of competitors."""


def _wake_fit(work: np.ndarray, woken: np.ndarray, share: np.ndarray, speed: np.ndarray, slice_ms: float, begin_s: np.ndarray,
              competitors: np.ndarray, took: np.ndarray, groups: list[np.ndarray]) -> tuple[float, dict[int, float], np.ndarray]:  # fmt: skip
    """At ``slice_ms``, the wake-wait fraction for each number of competitors that brings the
    model's woken probes closest to the measured ones (a probe's wait does not move the others'),
    the distance over all groups with them, the fractions and each probe's wait (as work)."""
    whole = np.array([wake_waited(t, a, slice_ms, np.ones(1)) if w else 0.0 for t, a, w in zip(begin_s, share, woken)])
    fractions: dict[int, float] = {}
    for n in sorted(set(competitors[woken].tolist())):
        mine = [g for g in groups if woken[g[0]] and competitors[g[0]] == n]
        if not mine:
            continue
        tried = [_distance(probe_times_ms(work, woken, share, speed, slice_ms, whole * f), took, mine) for f in WAKE_FRACTIONS]
        fractions[n] = float(WAKE_FRACTIONS[int(np.argmin(tried))])
    woke = whole * np.array([fractions.get(int(n), 0.0) for n in competitors])
    return _distance(probe_times_ms(work, woken, share, speed, slice_ms, woke), took, groups), fractions, woke


def _by_count(fractions: dict[int, float]) -> list[float]:
    """``device.wake_wait`` from fractions by number of competitors: one per count from 1 to
    the largest measured, a count not measured taking the nearest fewer one's (the first's below it)."""
    if not fractions:
        return []
    known = sorted(fractions)
    return [fractions[max([k for k in known if k <= n], default=known[0])] for n in range(1, known[-1] + 1)]
