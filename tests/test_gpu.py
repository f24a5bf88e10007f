"""CUDA profiling; skipped cleanly where no CUDA device exists (see conftest.py)."""

import pytest
from typer.testing import CliRunner

from conftest import TINY_PROFILE_ARGS
from simqos.cli import app
from simqos.bundle import load_profile


@pytest.mark.gpu
def test_profile_on_cuda(tmp_path):
    out = tmp_path / "gpu"
    result = CliRunner().invoke(
        app, ["profile", "mlp", "--device", "cuda", "--kernels", "dense,torch_csr,torch_bsr", "--out", str(out), *TINY_PROFILE_ARGS]
    )
    assert result.exit_code == 0, result.output
    p = load_profile(out)
    assert p.meta.provenance.settings.device == "cuda" and p.meta.provenance.gpu
    assert "scipy_csr" not in set(p.kernels["kernel"])


def test_cuda_request_without_a_gpu_is_a_clear_error(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    result = CliRunner().invoke(app, ["profile", "mlp", "--device", "cuda", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2
    assert "no CUDA device" in result.output
