"""Figures drawn from tables with nothing to show on an axis still draw."""

from bundles import scenario_dict
from simqos import plots
from simqos.report import _knob_table
from simqos.scenario import parse_scenario


def test_a_frontier_where_no_policy_misses_still_draws(two_level, tmp_path):
    """Deadlines no request misses: every policy's nines are only bounded below (no miss to
    count), and the frontier, which reads them, drew nothing but a traceback once (a new user's
    run); it draws each policy at its lower bound."""
    scenario = parse_scenario(scenario_dict(two_level, requests=300, workload={
        "arrival": {"kind": "poisson", "rate_hz": 50}, "deadline": {"kind": "constant", "ms": 1e5}}))
    table = _knob_table(scenario)
    assert table.loc[table["family"] != "static", "nines"].isna().all()
    figure = plots.accuracy_frontier(table, {"accuracy_at_deadline": 0.95, "met": 300, "requests": 300})
    figure.savefig(tmp_path / "frontier.png")
    whole = figure.axes[3]
    low = float(table["nines_low"].iloc[0])
    assert whole.get_xlim()[0] < low < whole.get_xlim()[1]
