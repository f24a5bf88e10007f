import pytest
import torch

from simqos.errors import SimqosError
from simqos.models import build_model
from simqos.nested import NestedNetwork, TrainConfig
from simqos.nested.checkpoint import StaleCheckpoint, checkpoint_path, load_checkpoint, save_checkpoint, trained_network

KWARGS = {"hidden": 16, "depth": 1}
CONFIG = TrainConfig(epochs_dense=1, epochs_sparsest=1, epochs_grow=1)


def test_checkpoint_round_trip_and_cache_hit():
    net, spec, path, seconds, _, cached = trained_network("mlp", KWARGS, (0.5, 0.2), CONFIG)
    assert seconds > 0 and not cached
    assert path == checkpoint_path("mlp", KWARGS, (0.5, 0.2), CONFIG) and path.exists()
    again, _, _, seconds_again, _, cached = trained_network("mlp", KWARGS, (0.5, 0.2), CONFIG)  # loaded, not retrained
    assert cached and seconds_again == seconds
    x = spec.dataset.x_test[:4]
    for level in range(2):
        assert torch.equal(net.forward(x, net.uniform_route(level)), again.forward(x, again.uniform_route(level)))
    other = checkpoint_path("mlp", KWARGS, (0.5, 0.2), TrainConfig(epochs_dense=1, epochs_sparsest=1, epochs_grow=1, seed=1))
    assert other != path


def test_tampered_checkpoint_is_rejected(tmp_path):
    spec = build_model("mlp", **KWARGS)
    net = NestedNetwork.from_magnitude(spec.module, (0.5, 0.2), spec.example_input)
    path = tmp_path / "c.pt"
    save_checkpoint(path, "mlp", KWARGS, CONFIG, net)
    saved = torch.load(path, weights_only=True)
    saved["network"]["ranks"]["fc1.weight"].fill_(1)  # every weight claims the sparsest level
    torch.save(saved, path)
    with pytest.raises(SimqosError, match="fc1.weight: level 0 holds 1024 weights"):
        load_checkpoint(path)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(SimqosError, match="unreadable"):
        load_checkpoint(path)
    with pytest.raises(SimqosError, match="no such file"):
        load_checkpoint(tmp_path / "missing.pt")


def test_a_checkpoint_from_an_older_simqos_is_retrained():
    """One written before per-level batch-norm statistics (no ``norm_segments``) is stale: load
    says so in one line, and trained_network trains afresh instead of crashing."""
    path = trained_network("mlp", KWARGS, (0.5, 0.2), CONFIG).path
    saved = torch.load(path, weights_only=True)
    del saved["network"]["norm_segments"]
    torch.save(saved, path)
    with pytest.raises(StaleCheckpoint, match="older simqos.*--retrain"):
        load_checkpoint(path)
    net, _, again, *_ = trained_network("mlp", KWARGS, (0.5, 0.2), CONFIG)
    assert again == path and "norm_segments" in torch.load(path, weights_only=True)["network"]


def test_a_setting_added_later_keeps_existing_checkpoints_at_its_old_value():
    """A checkpoint's name hashes every training setting. weight_decay came later: at 0 (how
    every earlier checkpoint trained) the name is what it was, hashed without the field; so for
    clip_grad_norm and distill."""
    import hashlib
    import json
    from dataclasses import asdict

    config = TrainConfig(epochs_dense=3)
    before = {k: v for k, v in asdict(config).items() if k not in ("weight_decay", "clip_grad_norm", "distill")}
    digest = hashlib.sha256(json.dumps(["mlp", {}, [0.5, 0.25], before], sort_keys=True).encode()).hexdigest()[:12]
    assert checkpoint_path("mlp", {}, (0.5, 0.25), config).name == f"mlp-sparse-first-{digest}.pt"
    decayed = checkpoint_path("mlp", {}, (0.5, 0.25), TrainConfig(epochs_dense=3, weight_decay=5e-4))
    assert decayed != checkpoint_path("mlp", {}, (0.5, 0.25), config)
    with pytest.raises(SimqosError, match="weight_decay"):
        TrainConfig(weight_decay=-1.0)
    distilled = checkpoint_path("mlp", {}, (0.5, 0.25), TrainConfig(epochs_dense=3, distill=0.5))
    assert distilled not in (decayed, checkpoint_path("mlp", {}, (0.5, 0.25), config))
    with pytest.raises(SimqosError, match="distill: 1.5 must be between 0 and 1"):
        TrainConfig(distill=1.5)


FACTORY = '''
import torch
from torch import nn
from simqos.models import Dataset, ModelSpec

NOISE = {noise}


def noisy_digits():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(120, 8, generator=g)
    y = (x[:, 0] > 0).long()
    x = x + NOISE * torch.randn(120, 8, generator=g)
    data = Dataset("noisy", x[:80], y[:80], x[80:100], y[80:100], x[100:], y[100:])
    module = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    return ModelSpec("noisy", module, x[:1], None, data, "a user's model with a generated dataset")
'''


def test_a_factory_whose_dataset_changed_is_trained_again(tmp_path, monkeypatch):
    """Issue 35: the user lowered the noise inside their dataset generator (same arguments); the
    cached network and its accuracies must not be reused. Unchanged, the cache is."""
    import importlib
    import sys

    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "noisy_factory.py").write_text(FACTORY.format(noise=1.0))
    first = trained_network("noisy_factory:noisy_digits", {}, (0.5, 0.25), CONFIG)
    assert not first.cached
    assert trained_network("noisy_factory:noisy_digits", {}, (0.5, 0.25), CONFIG).cached  # the same code and data
    (tmp_path / "noisy_factory.py").write_text(FACTORY.format(noise=0.1))
    sys.modules.pop("noisy_factory")
    importlib.invalidate_caches()
    again = trained_network("noisy_factory:noisy_digits", {}, (0.5, 0.25), CONFIG)
    assert again.path == first.path and not again.cached  # same settings, other data: trained again
