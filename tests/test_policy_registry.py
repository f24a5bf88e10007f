"""A built-in policy is one module of simqos.policies and its registration (import) line: the
scenario takes it by name, the fast path runs its compiled decision, and the accuracy frontier
draws it with no other edit. A compiled decision's parameters are packed and read by one
declared layout."""

from __future__ import annotations

import importlib
import sys
import textwrap

import numpy as np
import pytest

import simqos.policies
from bundles import scenario_dict
from simqos.sim.plan import build_plan
from simqos.policies import POLICIES
from simqos.policies.lookahead import AT, Header
from simqos.policies.planning.goals import typical_deadline_s
from simqos.experiments import frontier_table
from simqos.scenario import parse_scenario
from simqos.sim.workload import planning_rate_hz

THROWAWAY = '''
"""``least_sparse_resident``: the least sparse resident level, every segment (a throwaway)."""

from __future__ import annotations

from simqos.policies.base import Policy
from simqos.policies.registry import register_policy
from simqos.sim.serving import Decision, decide_jit


@decide_jit
def least_sparse_resident_decide(state: Decision, params, table) -> int:
    return min(state.min_resident_level, state.n_levels - 1)


@register_policy("least_sparse_resident")
class LeastSparseResident(Policy):
    decide = staticmethod(least_sparse_resident_decide)
'''


@pytest.fixture
def throwaway(tmp_path, monkeypatch):
    """``simqos.policies.throwaway``: one new file, imported as a built-in module is."""
    (tmp_path / "throwaway.py").write_text(textwrap.dedent(THROWAWAY))
    monkeypatch.setattr(simqos.policies, "__path__", [*simqos.policies.__path__, str(tmp_path)])
    yield importlib.import_module("simqos.policies.throwaway")  # the registration line
    POLICIES.pop("least_sparse_resident", None)
    sys.modules.pop("simqos.policies.throwaway", None)


def test_a_new_built_in_is_one_file_and_appears_in_the_frontier_unlisted(two_level, throwaway):
    scenario = parse_scenario(scenario_dict(two_level, requests=300, policies=[{"kind": "static", "level": 0}]))
    table = frontier_table(scenario)
    mine = table[table["family"] == "least_sparse_resident"]
    assert len(mine) == 1 and mine["requests"].iloc[0] > 0 and mine["style"].iloc[0] == "auto"
    # the same rule as static L0 on a device that keeps every level resident: the same numbers
    static0 = table[(table["family"] == "static") & (table["knob"] == 0)]
    assert mine["accuracy_at_deadline"].iloc[0] == static0["accuracy_at_deadline"].iloc[0]
    # and by name in a scenario, on the fast path
    listed = build_plan(parse_scenario(scenario_dict(two_level, requests=50, policies=[{"kind": "least_sparse_resident"}])))
    assert list(listed.labels) == ["least_sparse_resident"] and type(listed.policy_factories[0]()).compiled()


def test_the_frontier_draws_a_users_policy_only_when_listed(two_level):
    """A plugin's policy (not a module of simqos.policies) is the user's choice to draw."""
    plain = scenario_dict(two_level, requests=300, plugins=["user_policies"], policies=[{"kind": "static", "level": 0}])
    families = set(frontier_table(parse_scenario(plain))["family"])
    assert "sparsest_after_compiled" in POLICIES and not {"sparsest_after", "sparsest_after_compiled"} & families
    assert {"static", "greedy", "deadline_aware", "lookahead", "dp", "clairvoyant"} <= families


def test_lookaheads_parameters_are_packed_and_read_by_field_name(two_level):
    """The header a compiled decision reads is packed by name: each field lands where ``AT``
    says, whatever the order of the NamedTuple's fields."""
    scenario = parse_scenario(scenario_dict(two_level, requests=50, policies=[{"kind": "lookahead", "quantiles": 3, "queue": 4}]))
    policy = build_plan(scenario).policy_factories[0]()
    params, _ = policy.prepared()
    assert list(AT) == list(range(len(Header._fields)))
    assert params[AT.quantiles] == 3 and params[AT.queue] == 4 and params[AT.back_up] == 0
    assert params[AT.rate_hz] == planning_rate_hz(scenario.workload.arrival, "lookahead")
    assert params[AT.deadline_s] == typical_deadline_s(scenario)
    assert params[AT.segments] == policy.model.n_segments
    n_states = int(params[AT.n_states])
    assert np.array_equal(params[len(Header._fields):len(Header._fields) + n_states], [1.0] * n_states)  # a constant device
