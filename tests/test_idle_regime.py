"""The idle slowdown read again at the scenario's rate (simqos.validate.idle): each probe goes
to the profile's gap nearest its own, the gaps some level reached too seldom are left out, and
without enough busy probes there is no table."""

import numpy as np
import pandas as pd

from simqos.validate.idle import MIN_PROBES, regime_idle

GRID = np.array([0.0, 0.5, 1.0, 2.0, 5.0])


def _probes(gaps_ms, took_ms, levels=2):
    return pd.DataFrame({"level": np.arange(len(gaps_ms)) % levels, "idle_ms": gaps_ms, "took_ms": took_ms})


def test_probes_go_to_the_nearest_gap_and_rare_gaps_are_left_out():
    """Each probe goes to the nearest of the profile's gaps (beyond the last, to the last, whose
    factor holds there); a gap some level reached too seldom is left out."""
    n = 4 * MIN_PROBES
    gaps = np.r_[np.full(n, 0.02), np.full(n, 0.8), np.full(n, 4.0), [2.1, 2.1]]  # queued, ~1 ms, ~5 ms, two at ~2 ms
    took = np.r_[np.full(n, 1.5), np.full(n, 1.6), np.full(n, 1.8), [9.0, 9.0]]
    rows = regime_idle(_probes(gaps, took), GRID)
    assert sorted(set(rows["idle_ms"])) == [0.0, 1.0, 5.0]  # 0.8 ms is nearest 1; 2 ms reached by too few probes
    assert (rows.groupby(["level", "idle_ms"]).size() == n // 2).all()
    medians = rows.groupby(["level", "idle_ms"])["latency_ms"].median().unstack()
    factors = medians.div(medians[0.0], axis=0)  # as a profile reads idle.csv
    np.testing.assert_allclose(factors.to_numpy(), [[1.0, 1.6 / 1.5, 1.8 / 1.5]] * 2)
    assert list(rows.columns) == ["level", "idle_ms", "sample", "latency_ms"] and rows["sample"].is_unique


def test_without_enough_busy_probes_there_is_no_table():
    gaps = np.r_[np.full(MIN_PROBES, 0.02), np.full(8 * MIN_PROBES, 4.0)]  # half the busy ones per level: too few
    assert regime_idle(_probes(gaps, np.ones(len(gaps))), GRID) is None
