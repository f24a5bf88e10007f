"""Every paper family's trained instance, at tiny sizes: its task is generated deterministically,
it trains sparse-first, and its routes are scored on both held-out splits; the generators make
what their docstrings say."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from simqos.models import build_model
from simqos.models.graphs import make_graph
from simqos.models.shapes import CLASSES, make_shapes
from simqos.models.spec import IGNORE
from simqos.nested import TrainConfig, train_nested
from simqos.nested.routes import route_accuracies

TINY = {
    "resnet1d": ({"width": 8, "samples": 400}, {"keep_dense": ("conv1", "fc")}),
    "cnn1d": ({"channels": 8, "samples": 400}, {"keep_dense": ("conv1",)}),
    "pointnet2_shapes": ({"samples": 160}, {"keep_dense": ("sa1.mlp.0", "fc3"), "scope": "global"}),
    "gnmt_grammar": ({"hidden": 16, "samples": 300}, {}),
    "gat_sbm": ({"nodes": 420, "features": 60}, {"keep_dense": ("layer2.proj",)}),
}


@pytest.mark.parametrize("name", list(TINY))
def test_each_family_trains_nested_and_is_scored_on_both_splits(name):
    kwargs, config = TINY[name]
    spec = build_model(name, **kwargs)
    epochs = {"epochs_dense": 2, "epochs_sparsest": 1, "epochs_grow": 1} if spec.batch_dim is not None else \
        {"epochs_dense": 5, "epochs_sparsest": 3, "epochs_grow": 3}
    net = train_nested(spec, (0.4, 0.2), TrainConfig(batch_size=32, **epochs, **config))
    assert {a.split for a in net.dense_accuracy} == {"validation", "test"}
    batched = spec.batch_dim is not None
    for split in ("validation", "test"):
        accs = route_accuracies(net, spec.dataset, [net.uniform_route(0), net.uniform_route(1)], split, batched)
        assert all(0.0 <= a.accuracy <= 1.0 and a.n > 0 for a in accs)
    fractions = [net.kept_fraction(k) for k in range(2)]
    assert fractions[0] > fractions[1]
    for layer in config.get("keep_dense", ()):
        weights = [w for ly in net.layers if ly.name == layer for w in ly.weights]
        assert all(bool((net.ranks[w] == 1).all()) for w in weights), "a layer kept dense is whole at every level"


def test_growth_keeps_each_sparser_levels_batch_norm_statistics():
    """Batch norm runs on per-level statistics: growing level 0 leaves level 1's exactly as the
    sparsest phase left them, and level 0 gets statistics of its own."""
    spec = build_model("resnet1d", width=8, samples=300)
    captured = {}

    def snapshot(phase, _epoch, _loss):
        if phase == "sparsest":  # the last call is the end of the sparsest phase
            captured.update({k: v.clone() for k, v in spec.module.state_dict().items() if "running_" in k})

    net = train_nested(spec, (0.5, 0.25), TrainConfig(epochs_dense=1, epochs_sparsest=1, epochs_grow=1, keep_dense=("conv1", "fc"),
                                                      calibration_samples=0), on_epoch=snapshot)
    level1, level0 = net.norm_buffers(net.uniform_route(1)), net.norm_buffers(net.uniform_route(0))
    assert set(level1) == set(captured)
    for key, value in captured.items():
        assert torch.equal(level1[key], value), key
    assert any(not torch.equal(level0[k], v) for k, v in captured.items()), "level 0 has its own"


def test_the_shapes_are_what_the_docstring_says():
    x, y = make_shapes(3, 128, seed=5)
    assert x.shape == (3 * len(CLASSES), 128, 3) and sorted(np.bincount(y)) == [3] * len(CLASSES)
    assert np.allclose(x.mean(axis=1), 0, atol=1e-5)
    assert np.allclose(np.linalg.norm(x, axis=2).max(axis=1), 1.0)
    again, _ = make_shapes(3, 128, seed=5)
    assert np.array_equal(x, again)


def test_the_graph_labels_few_nodes_and_its_features_carry_the_class():
    edges, x, labels = make_graph(nodes=700, edges=1400, features=300, seed=2)
    assert edges.shape[0] == 2 and int(edges.max()) < 700
    same = (labels[edges[0]] == labels[edges[1]]).float().mean()
    assert same > 0.75  # 80 % of edges inside a community (and self-loops)
    spec = build_model("gat_sbm", nodes=700, features=300)
    assert int((spec.dataset.y_train != IGNORE).sum()) == 140
    scored = [(spec.dataset.split(s)[1] != IGNORE) for s in ("train", "validation", "test")]
    assert not (scored[0] & scored[1]).any() and not (scored[1] & scored[2]).any()


def test_mnist1d_at_another_length_is_the_same_task_sampled_finer(monkeypatch, tmp_path):
    from simqos.models.mnist1d import load_mnist1d

    monkeypatch.setenv("SIMQOS_CACHE_DIR", str(tmp_path))
    short, long = load_mnist1d(splits=(20, 10, 10)), load_mnist1d(splits=(20, 10, 10), length=80)
    assert short.x_train.shape == (20, 1, 40) and long.x_train.shape == (20, 1, 80)
    assert torch.equal(short.y_train, long.y_train)  # the same samples, labels and order
    assert "80 points each" in long.name and "points" not in short.name
    assert len(list((tmp_path / "datasets").glob("*.npz"))) == 2
