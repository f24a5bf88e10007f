"""Figures drawn from tables with nothing to show on an axis still draw."""

from bundles import scenario_dict
from simqos import plots
from simqos.experiments import frontier_table
from simqos.scenario import parse_scenario


def test_a_frontier_where_no_policy_misses_still_draws(two_level, tmp_path):
    """Deadlines no request misses: every policy's nines are only bounded below (no miss to
    count), and the frontier, which reads them, drew nothing but a traceback once (a new user's
    run); it draws each policy at its lower bound."""
    scenario = parse_scenario(scenario_dict(two_level, requests=300, workload={
        "arrival": {"kind": "poisson", "rate_hz": 50}, "deadline": {"kind": "constant", "ms": 1e5}}))
    table = frontier_table(scenario)
    assert table.loc[table["family"] != "static", "nines"].isna().all()
    figure = plots.accuracy_frontier(table, {"accuracy_at_deadline": 0.95, "met": 300, "requests": 300})
    figure.savefig(tmp_path / "frontier.png")
    whole = figure.axes[3]
    low = float(table["nines_low"].iloc[0])
    assert whole.get_xlim()[0] < low < whole.get_xlim()[1]


def _sweep(nines, low, high, x="ms"):
    import pandas as pd

    return pd.DataFrame({"policy": "p", x: [1.0, 2.0, 3.0], "nines": nines, "nines_low": low, "nines_high": high})


def test_a_zero_miss_point_is_a_lower_bound_the_line_does_not_fall_to():
    """4.59 nines at a 2 ms deadline, then no miss at 3 ms (only "≥ 4.01"): the line stops at 2
    ms and 3 ms is a ▲ at 4.01 — a line down to it read as nines falling as the deadline loosens."""
    import math

    figure = plots.nines_vs(_sweep([3.0, 4.59, math.nan], [2.9, 4.4, 4.01], [3.1, 4.8, math.nan]), "ms", "deadline (ms)", "t")
    line = figure.axes[0].get_lines()[0]
    assert math.isnan(line.get_ydata()[2]) and line.get_ydata()[1] == 4.59
    (triangles,) = figure.axes[0].collections[1:]
    assert triangles.get_offsets().tolist() == [[3.0, 4.01]]


def test_nines_that_rise_with_load_get_a_note_that_says_why():
    from simqos.report import rising_with_load

    rising = _sweep([0.8, 1.5, 3.1], [0.7, 1.4, 2.9], [0.9, 1.6, 3.3], x="fps")
    note = rising_with_load(rising, "fps", idle=True)
    assert note.startswith("nines rise with load for `p` (0.80 → 3.10 [2.90, 3.30] from 1 to 3)") and "idle table" in note
    assert "queue's rules" in rising_with_load(rising, "fps", idle=False)
    assert rising_with_load(_sweep([3.1, 1.5, 0.8], [2.9, 1.4, 0.7], [3.3, 1.6, 0.9], x="fps"), "fps", idle=True) is None
    assert rising_with_load(_sweep([1.0, 1.1, 1.2], [0.8, 0.8, 0.8], [1.3, 1.3, 1.3], x="fps"), "fps", idle=True) is None  # within
    figure = plots.nines_vs(rising, "fps", "frame rate", "t", note=note.split(":")[0])
    assert any("nines rise with load" in t.get_text() for t in figure.texts)


def test_route_labels_on_a_timeline_are_spaced_so_that_they_do_not_overlap():
    times_s = [0.0, 0.01, 0.02, 1.0, 1.05, 2.5, 2.6, 4.0]
    assert plots._spaced(times_s, 1.0) == [0, 3, 5, 7]
    assert plots._spaced([], 1.0) == []
