"""One wording for what pydantic finds, wherever the input came from: a misspelt key gets the
closest known one, and a bad value is named with what it got — in a scenario, a policy's
parameters, a sweep file and a command's options alike."""

from __future__ import annotations

import pytest
import yaml
from typer.testing import CliRunner

from bundles import scenario_dict
from simqos.cli import app
from simqos.errors import SimqosError
from simqos.scenario import parse_scenario
from simqos.sim.plan import build_plan
from simqos.sweep import load_sweep


def test_a_misspelt_key_is_worded_the_same_everywhere(two_level, tmp_path):
    with pytest.raises(SimqosError) as scenario:
        parse_scenario(scenario_dict(two_level, replicatons=2))
    with pytest.raises(SimqosError) as policy:
        build_plan(parse_scenario(scenario_dict(two_level, policies=[{"kind": "deadline_aware", "quantil": 0.9}])))
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({"base": "x.yaml", "gird": {"seed": [1]}}))
    with pytest.raises(SimqosError) as sweep:
        load_sweep(path)
    assert str(scenario.value) == "scenario: replicatons: unknown key — did you mean 'replications'?"
    assert str(policy.value) == "scenario: policies[0].quantil: unknown key — did you mean 'quantile'?"
    assert str(sweep.value).startswith(f"{path}: gird: unknown key — did you mean 'grid'?")


def test_a_bad_value_is_named_with_what_it_got_everywhere(two_level):
    with pytest.raises(SimqosError) as scenario:
        parse_scenario(scenario_dict(two_level, replications=0))
    with pytest.raises(SimqosError) as policy:
        build_plan(parse_scenario(scenario_dict(two_level, policies=[{"kind": "greedy", "quantile": 1.5}])))
    option = CliRunner().invoke(app, ["train", "mlp", "--clip-grad-norm", "-1"])
    assert str(scenario.value) == "scenario: replications: Input should be greater than or equal to 1 (got 0)"
    assert str(policy.value) == "scenario: policies[0].quantile: Input should be less than 1 (got 1.5)"
    assert option.exit_code == 2 and "--clip-grad-norm: Input should be greater than or equal to 0 (got -1.0)" in option.output
