"""Shared fixtures: a private checkpoint cache, one torch thread, tiny models and bundles."""

from __future__ import annotations

import numpy as np
import pytest

from bundles import write_bundle


def pytest_collection_modifyitems(config, items):
    """Skip tests marked ``gpu`` when no CUDA device is present."""
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Checkpoints go to a per-session temporary cache, never the user's: set before any other
    session fixture (the tiny profile trains a model)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SIMQOS_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))
        yield


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """One torch thread, where torch is installed: the simulator's tests run without it."""
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(1)


TINY_PROFILE_ARGS = [
    "--model-arg", "hidden=32", "--model-arg", "depth=2", "--epochs", "10,10,5",
    "--levels", "0.6,0.3", "--samples", "3", "--min-sample-ms", "0.05", "--passes", "20", "--choice-passes", "3",
    "--idle-samples", "4",
]
"""`simqos profile mlp` options that make a real but tiny profile in a few seconds."""


@pytest.fixture(scope="session")
def tiny_profile_dir(tmp_path_factory):
    """A real profile bundle of a tiny trained MLP, made once per session through the CLI."""
    from typer.testing import CliRunner

    from simqos.cli import app

    out = tmp_path_factory.mktemp("profiles") / "tiny"
    result = CliRunner().invoke(app, ["profile", "mlp", "--out", str(out), *TINY_PROFILE_ARGS])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="session")
def two_level(tmp_path_factory):
    """A hand-made bundle: two layers, two segments, two levels; level 1 about half as slow;
    accuracy per route."""
    rng = np.random.default_rng(0)
    samples = {
        ("a", 0): list(rng.uniform(1.0, 3.0, 50)), ("b", 0): list(rng.uniform(1.0, 3.0, 50)),
        ("a", 1): list(rng.uniform(0.5, 1.5, 50)), ("b", 1): list(rng.uniform(0.5, 1.5, 50)),
    }
    accuracy = {"0-0": 0.95, "0-1": 0.93, "1-0": 0.90, "1-1": 0.92}
    return write_bundle(tmp_path_factory.mktemp("b") / "two", samples, {"a": 0, "b": 1}, accuracy=accuracy)
