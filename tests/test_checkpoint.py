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
    clip_grad_norm."""
    import hashlib
    import json
    from dataclasses import asdict

    config = TrainConfig(epochs_dense=3)
    before = {k: v for k, v in asdict(config).items() if k not in ("weight_decay", "clip_grad_norm")}
    digest = hashlib.sha256(json.dumps(["mlp", {}, [0.5, 0.25], before], sort_keys=True).encode()).hexdigest()[:12]
    assert checkpoint_path("mlp", {}, (0.5, 0.25), config).name == f"mlp-sparse-first-{digest}.pt"
    decayed = checkpoint_path("mlp", {}, (0.5, 0.25), TrainConfig(epochs_dense=3, weight_decay=5e-4))
    assert decayed != checkpoint_path("mlp", {}, (0.5, 0.25), config)
    with pytest.raises(SimqosError, match="weight_decay"):
        TrainConfig(weight_decay=-1.0)
