"""The paper's four families: they run, nest at the paper's densities, and profile."""

import pytest
import torch
from typer.testing import CliRunner

from simqos.cli import app
from simqos.models import build_model
from simqos.nested import NestedNetwork
from simqos.bundle import load_profile

SEGMENTS = {"resnet50": 18, "pointnet2": 6, "gnmt": 6, "gat": 2}


@pytest.mark.parametrize("name", list(SEGMENTS))
def test_paper_model_nests_at_the_papers_densities(name):
    spec = build_model(name)
    net = NestedNetwork.from_magnitude(spec.module, [0.1338, 0.0538], spec.example_input, spec.reroute_after)
    assert net.n_segments == SEGMENTS[name]
    assert net.kept_fraction(0) == pytest.approx(0.1338, abs=5e-4)
    assert net.kept_fraction(1) == pytest.approx(0.0538, abs=5e-4)
    with torch.no_grad():
        assert torch.isfinite(net.forward(spec.example_input, net.uniform_route(1))).all()


def test_gat_profiles_without_a_batch_dimension(tmp_path):
    out = tmp_path / "gat"
    args = ["profile", "gat", "--levels", "0.1338,0.0538", "--samples", "2", "--min-sample-ms", "0.05",
            "--passes", "3", "--kernels", "dense,torch_csr,nested_sell", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    p = load_profile(out)
    assert not p.meta.accuracy.available and p.meta.input_shape == [2708, 1433]
    summary = p.level_summary().set_index("level")
    assert summary.loc[0, "weights_fraction"] == pytest.approx(0.1338, abs=5e-4)
    assert summary.loc[1, "flops_fraction"] < summary.loc[0, "flops_fraction"] < 0.2
    wrong = CliRunner().invoke(app, [*args[:-2], "--batch-size", "4", "--out", str(tmp_path / "x")])
    assert wrong.exit_code == 2 and "no batch dimension" in wrong.output
