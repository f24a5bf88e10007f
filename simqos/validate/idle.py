"""The idle slowdown as this machine shows it at the scenario's arrival rate.

A profile times how much slower a level runs after the device idled a given gap than back to
back (``idle.csv``: a long streak of passes, then each gap). Served at a scenario's rate, the
machine is in another regime: it alternates short busy spells with idle gaps, and even a
request that follows another at once is far slower than in a long back-to-back streak (on the
build machine, at 300 requests/s, about 1.4 times at level 0), while the gaps' extra slowdown
on top of that is smaller than the profile's (about 1.2 times after 5 ms, not 1.8). With the
profile's table the simulator had queues drain too fast — requests after a gap too slow,
queued ones too fast, for the same mean — and its tails too light.

:func:`regime_idle` reads the table again from the calibration's probes at the scenario's
gaps (:func:`simqos.validate.real.calibrate`): each probe, at the level it ran, goes to the
profile's gap nearest its own idle gap, and those probes are the table's samples, so the
factor at gap 0 is a queued request's in this regime. Gaps too few probes reached (fewer than
:data:`MIN_PROBES` at some level) are left out: the table holds the gaps the scenario visits.
When too few probes found the device busy to set gap 0, there is no table (None) and the
profile's stands.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["MIN_PROBES", "regime_idle"]

MIN_PROBES = 10
"""A gap is kept when every level has at least this many probes nearest to it."""


def regime_idle(probes: pd.DataFrame, grid_ms: np.ndarray) -> pd.DataFrame | None:
    """``idle.csv`` rows (level, idle_ms, sample, latency_ms) from ``probes`` (columns level,
    idle_ms, took_ms: one load state's, at the scenario's gaps) on the gaps ``grid_ms``
    (ascending, from 0: the profile's); None without a gap-0 reference."""
    grid_ms = np.asarray(grid_ms, dtype=float)
    edges = (grid_ms[1:] + grid_ms[:-1]) / 2
    nearest = np.searchsorted(edges, probes["idle_ms"].to_numpy(dtype=float), side="right")
    counts = pd.crosstab(nearest, probes["level"].to_numpy())
    kept = [j for j in counts.index if (counts.loc[j] >= MIN_PROBES).all()]
    if 0 not in kept:
        return None
    chosen = np.isin(nearest, kept)
    return pd.DataFrame({
        "level": probes["level"].to_numpy()[chosen],
        "idle_ms": grid_ms[nearest[chosen]],
        "sample": np.arange(int(chosen.sum())),
        "latency_ms": probes["took_ms"].to_numpy(dtype=float)[chosen],
    })
