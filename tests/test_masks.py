import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from simqos.errors import SimqosError
from simqos.nested import NestedNetwork, check_nested, level_mask, nested_ranks, validate_densities
from simqos.nested.masks import PRUNED, Pruning, grow_ranks, keep_count
from strategies import densities, layer_cases


def test_nested_ranks_hand_computed():
    scores = torch.tensor([0.1, 0.9, 0.5, 0.7, 0.3, 0.0, 0.8, 0.2, 0.6, 0.4])
    ranks = nested_ranks(scores, [0.5, 0.2])
    # top 5: 0.9 0.8 0.7 0.6 0.5 ; top 2: 0.9 0.8
    assert ranks.tolist() == [-1, 1, 0, 0, -1, -1, 1, -1, 0, -1]
    assert ranks.dtype == torch.int8


def test_grow_ranks_keeps_existing_and_adds_best_free():
    ranks = torch.tensor([1, -1, -1, 1, -1], dtype=torch.int8)
    scores = torch.tensor([0.0, 0.2, 0.9, 0.0, 0.5])
    grown = grow_ranks(ranks, scores, level=0, count=4)
    assert grown.tolist() == [1, -1, 0, 1, 0]


@pytest.mark.parametrize(
    "bad, fragment",
    [([], "no density"), ([0.5, 0.5], "strictly decrease"), ([0.1, 0.2], "strictly decrease"), ([1.5], "outside (0, 1]"), ([0.0], "outside")],
)
def test_validate_densities_names_the_problem(bad, fragment):
    with pytest.raises(SimqosError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        validate_densities(bad)


def _make(kind, args):
    cls = {"linear": nn.Linear, "conv1d": nn.Conv1d, "conv2d": nn.Conv2d, "lstm": nn.LSTM, "attention": nn.MultiheadAttention}[kind]
    return cls(**args)


class _Wrap(nn.Module):
    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def forward(self, x):
        out = self.layer(x, x, x)[0] if isinstance(self.layer, nn.MultiheadAttention) else self.layer(x)
        return out[0] if isinstance(out, tuple) else out


@settings(max_examples=60, deadline=None)
@given(layer_cases(), densities(), st.integers(0, 2**31 - 1))
def test_levels_are_nested_in_positions_and_values(case, levels, seed):
    kind, args, shape = case
    torch.manual_seed(seed)
    module = _Wrap(_make(kind, args))
    net = NestedNetwork.from_magnitude(module, levels, torch.randn(shape))
    params = dict(module.named_parameters())
    for layer in net.layers:
        for w in layer.weights:
            n = params[w].numel()
            for k in range(len(levels)):
                mask = level_mask(net.ranks[w], k)
                assert int(mask.sum()) == keep_count(n, levels[k])
                if k + 1 < len(levels):
                    sparser = level_mask(net.ranks[w], k + 1)
                    assert not (sparser & ~mask).any(), "a sparser level holds a position the less sparse one lacks"
                    level_k = net.masked_weights(net.uniform_route(k))[w]
                    level_k1 = net.masked_weights(net.uniform_route(k + 1))[w]
                    assert torch.equal(level_k1[sparser], level_k[sparser]), "values differ between levels"
    # every kind runs along every route
    out = net.forward(torch.randn(shape), net.uniform_route(len(levels) - 1))
    assert torch.isfinite(out).all()


def test_lstm_and_attention_prune_every_gate_matrix():
    lstm = NestedNetwork.from_magnitude(_Wrap(nn.LSTM(4, 6, num_layers=2)), [0.5], torch.randn(3, 1, 4))
    assert set(lstm.layers[0].weights) == {"layer.weight_ih_l0", "layer.weight_hh_l0", "layer.weight_ih_l1", "layer.weight_hh_l1"}
    attn = NestedNetwork.from_magnitude(_Wrap(nn.MultiheadAttention(8, 2)), [0.5], torch.randn(3, 1, 8))
    assert set(attn.layers[0].weights) == {"layer.in_proj_weight", "layer.out_proj.weight"}


def test_check_nested_rejects_corrupt_bookkeeping():
    w = torch.randn(4, 5)
    ranks = nested_ranks(w.abs(), [0.5, 0.2])
    w = w * (ranks >= 0)
    check_nested("w", w, ranks, 2)
    pruning = Pruning((0.5, 0.2))
    pruning.check({"w": ranks})
    with pytest.raises(SimqosError, match="level 1 holds"):
        bad = ranks.clone()
        bad[bad == 0] = 1
        pruning.check({"w": bad})
    with pytest.raises(SimqosError, match="pruned positions hold non-zero"):
        stray = w.clone()
        stray[ranks == PRUNED] = 1.0
        check_nested("w", stray, ranks, 2)
    with pytest.raises(SimqosError, match="outside"):
        check_nested("w", w, ranks.clone().fill_(5), 2)


def test_global_scope_prunes_by_magnitude_across_tensors():
    # "a" holds the 4 largest values of all 10: a global 40 % level keeps all of "a", and one
    # weight of "b" (no level may empty a tensor)
    scores = {"a": torch.tensor([9.0, 8.0, 7.0, 6.0]), "b": torch.tensor([1.0, 2.0, 0.5, 0.1, 0.2, 0.3])}
    ranks = Pruning((0.4, 0.2), "global").ranks(scores)
    assert ranks["a"].tolist() == [1, 1, 0, 0]
    assert ranks["b"].tolist() == [-1, 1, -1, -1, -1, -1]
    Pruning((0.4, 0.2), "global").check(ranks)
    layerwise = Pruning((0.5, 0.25)).ranks(scores)
    assert [int((r >= 0).sum()) for r in layerwise.values()] == [2, 3]


def test_global_growth_reopens_the_best_free_slots_of_all_tensors():
    pruning = Pruning((0.6, 0.2), "global")
    scores = {"a": torch.tensor([5.0, 4.0, 0.1, 0.2, 0.3]), "b": torch.tensor([3.0, 0.4, 2.5, 0.0, 0.0])}
    sparsest = pruning.ranks(scores, [0.2])
    ranks = {w: torch.where(r == 0, 1, PRUNED).to(torch.int8) for w, r in sparsest.items()}
    grown = pruning.grow(ranks, scores, 0)
    # sparsest: a's 5 and 4, and b's best (3), since no level may empty b; level 0 holds 6 of
    # 10: the three best free slots of either tensor (2.5, 0.4, 0.3)
    assert grown["a"].tolist() == [1, 1, -1, -1, 0] and grown["b"].tolist() == [1, 0, 0, -1, -1]
    pruning.check(grown)


@settings(max_examples=40, deadline=None)
@given(layer_cases(), densities(), st.sampled_from(["layer", "global"]), st.integers(0, 2**31 - 1))
def test_every_scope_nests_and_keeps_dense_layers_whole(case, levels, scope, seed):
    kind, args, shape = case
    torch.manual_seed(seed)
    module = nn.Sequential(_Wrap(_make(kind, args)))
    first = NestedNetwork.from_magnitude(module, levels, torch.randn(shape), scope=scope)
    names = [layer.name for layer in first.layers]
    net = NestedNetwork.from_magnitude(module, levels, torch.randn(shape), scope=scope, keep_dense=names[:1])
    for w in net.layers[0].weights:
        assert bool((net.ranks[w] == len(levels) - 1).all()), "a layer kept dense must be whole at every level"
    for w, r in net.ranks.items():
        for k in range(len(levels) - 1):
            assert not ((r >= k + 1) & (r < k)).any()
    fractions = [net.kept_fraction(k) for k in range(len(levels))]
    assert fractions == sorted(fractions, reverse=True)


def test_keep_dense_names_must_be_layers():
    with pytest.raises(SimqosError, match="not prunable layers"):
        NestedNetwork.from_magnitude(nn.Sequential(nn.Linear(4, 4)), [0.5], torch.randn(1, 4), keep_dense=["fc9"])
