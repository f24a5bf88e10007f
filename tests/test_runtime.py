"""The nested runtime (simqos.kernels.runtime): a lowered network's output equals the torch model's on
every route, segment by segment as in one call, in every family it runs; what it cannot run is
named."""

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from simqos.models.digits import DigitsCNN
from simqos.models.paper import BottleneckResNet
from simqos.nested.masks import nested_ranks
from simqos.nested.network import NestedNetwork, find_norms
from simqos.kernels.runtime import Unsupported, compile_network
from strategies import densities

TOLERANCE = {"rtol": 1e-4, "atol": 1e-4}


def _nested(module: nn.Module, example: torch.Tensor, reroute_after=None, levels=(0.4, 0.15), seed=0) -> NestedNetwork:
    """``module`` with random nested levels; its batch norms get random statistics, distinct
    for every route prefix, so that a route's folding is tested, not a default."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    net = NestedNetwork.from_magnitude(module, list(levels), example, reroute_after)
    norms = {n: m for n, m in module.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}
    if norms:
        net.norm_segments = find_norms(module, example, net.layers)
        for prefix_len in range(1, net.n_segments + 1):
            for prefix in itertools.product(range(net.n_levels), repeat=prefix_len):
                net.norm_stats[prefix] = {
                    f"{n}.{b}": (torch.rand(m.num_features, generator=g) + 0.5 if b == "running_var" else torch.randn(m.num_features, generator=g))
                    for n, m in norms.items() if net.norm_segments[n] == prefix_len - 1 for b in ("running_mean", "running_var")
                }
    module.eval()
    return net


def _check_every_route(net: NestedNetwork, x: torch.Tensor, max_routes: int = 64) -> None:
    compiled = compile_network(net, x)
    routes = list(itertools.product(range(net.n_levels), repeat=net.n_segments))[:max_routes]
    for route in routes:
        with torch.no_grad():
            expected = net.forward(x, route).numpy()
        np.testing.assert_allclose(compiled.run(x, route), expected, **TOLERANCE, err_msg=f"route {route}")
        # rerouting: the same route segment by segment, as a server decides it
        batch = compiled.load(x.numpy())
        for segment in range(net.n_segments):
            compiled.run_segment(segment, route, batch)
        np.testing.assert_allclose(compiled.result(batch), expected, **TOLERANCE, err_msg=f"route {route}, by segment")


def test_a_linear_layer_by_hand():
    layer = nn.Linear(3, 2)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, -2.0, 0.5], [0.0, 3.0, -1.0]]))
        layer.bias.copy_(torch.tensor([0.25, -0.5]))
    module = nn.Sequential(layer)
    x = torch.tensor([[2.0, 1.0, 4.0]])
    # level 0 keeps 4 of 6 weights (|w| >= 1), level 1 the 2 largest (-2 and 3)
    net = NestedNetwork.from_magnitude(module, [4 / 6, 2 / 6], x)
    compiled = compile_network(net, x)
    assert compiled.run(x, (0,)).tolist() == [[2.0 - 2.0 + 0.25, 3.0 - 4.0 - 0.5]]
    assert compiled.run(x, (1,)).tolist() == [[-2.0 + 0.25, 3.0 - 0.5]]


def test_the_resnet_family_1d():
    module = BottleneckResNet(1, 1, 8, 5, 1, (4, 8), (1, 2), 10)
    x = torch.randn(3, 1, 40, generator=torch.Generator().manual_seed(1))
    _check_every_route(_nested(module, x[:1], module.block_ends()), x)


def test_the_resnet_family_2d_with_its_max_pool():
    module = BottleneckResNet(2, 3, 8, 7, 2, (4, 8), (1, 1), 10)
    x = torch.randn(2, 3, 20, 18, generator=torch.Generator().manual_seed(2))
    _check_every_route(_nested(module, x[:1], module.block_ends()), x)


def test_the_digits_cnn_and_mlps():
    cnn = DigitsCNN(4, 16)
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    _check_every_route(_nested(cnn, x[:1]), x)
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(40, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    x = torch.randn(4, 1, 40, generator=torch.Generator().manual_seed(4))
    _check_every_route(_nested(mlp, x[:1]), x)


def test_a_1d_cnn_with_strides_and_biases():
    layers, ch = [], 1
    for kernel, stride in ((5, 1), (3, 2), (3, 2), (3, 2)):
        layers += [nn.Conv1d(ch, 6, kernel, stride, kernel // 2), nn.ReLU()]
        ch = 6
    module = nn.Sequential(*layers, nn.Flatten(), nn.Linear(6 * 5, 10))
    x = torch.randn(2, 1, 40, generator=torch.Generator().manual_seed(5))
    _check_every_route(_nested(module, x[:1]), x)


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 4), st.integers(1, 5), st.integers(1, 3), st.integers(1, 3), st.integers(1, 3), st.integers(0, 2),
    st.integers(1, 2), st.integers(3, 9), st.booleans(), densities(max_levels=3), st.integers(0, 10_000),
)
def test_a_convolution_of_any_geometry(c, o, kh, kw, stride, pad, dil, size, bias, levels, seed):
    size = max(size, (max(kh, kw) - 1) * dil + 1)
    module = nn.Sequential(nn.Conv2d(c, o, (kh, kw), stride, pad, dil, bias=bias))
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, c, size, size + 1, generator=g)
    net = NestedNetwork.from_magnitude(module, list(levels), x[:1])
    with torch.no_grad():  # a random order of the weights, not their magnitude, decides the levels
        w = module[0].weight
        net.ranks["0.weight"] = nested_ranks(torch.rand(w.shape, generator=g), list(levels))
        w.copy_(torch.randn(w.shape, generator=g) * (net.ranks["0.weight"] >= 0))
    module.eval()
    _check_every_route(net, x)


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 5), st.integers(1, 12), st.integers(1, 5), st.integers(1, 3), st.integers(0, 3), st.integers(1, 2),
    st.integers(1, 70), st.sampled_from(["bias", "norm", "none"]), st.booleans(), densities(max_levels=3), st.integers(0, 10_000),
)
def test_a_1d_convolution_of_any_geometry(c, o, k, stride, pad, dil, size, epilogue, relu, levels, seed):
    """One output row, finished in registers: widths on both sides of a whole vector and of the
    longest row summed in registers (48), strides 1-3 (the copy into the stride phases in
    vectors, its borders kept zero), with a bias, a batch norm or neither, with and without ReLU."""
    size = max(size, (k - 1) * dil + 1)
    layers = [nn.Conv1d(c, o, k, stride, pad, dil, bias=epilogue == "bias")]
    layers += [nn.BatchNorm1d(o)] if epilogue == "norm" else []
    layers += [nn.ReLU()] if relu else []
    module = nn.Sequential(*layers)
    x = torch.randn(2, c, size, generator=torch.Generator().manual_seed(seed))
    _check_every_route(_nested(module, x[:1], levels=tuple(levels), seed=seed), x)


def test_the_runtime_times_each_layer_inside_the_pass():
    module = BottleneckResNet(1, 1, 8, 5, 1, (4,), (1,), 10)
    x = torch.randn(1, 1, 40)
    net = _nested(module, x, module.block_ends())
    compiled = compile_network(net, x)
    op_ns = np.zeros(len(compiled.ops), dtype=np.int64)
    compiled.run(x, (0, 0, 0), op_ns)
    layers = compiled.op_layers()
    assert sorted(set(layers[layers >= 0])) == list(range(len(net.layers)))  # every layer is one op at least
    assert (op_ns > 0).all()


def test_the_levels_share_one_copy_of_the_weights():
    def stored(levels):
        torch.manual_seed(0)
        mlp = nn.Sequential(nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
        x = torch.randn(1, 256)
        return compile_network(NestedNetwork.from_magnitude(mlp, list(levels), x), x).weight_nbytes

    # level 1 costs its level extents, not a second copy of its 5.4 % of the weights
    assert stored((0.134, 0.054)) <= 1.05 * stored((0.134,))


@pytest.mark.parametrize("factory", ["attention_block", "lstm"])
def test_what_the_runtime_cannot_run_is_named(factory):
    if factory == "lstm":
        class Recurrent(nn.Module):
            def __init__(self):
                super().__init__()
                self.lstm = nn.LSTM(8, 16, batch_first=True)
                self.fc = nn.Linear(16, 4)

            def forward(self, x):
                return self.fc(self.lstm(x)[0][:, -1])

        module, x, name = Recurrent(), torch.randn(1, 5, 8), "lstm"
    else:
        from user_models import attention_block

        module, x, name = attention_block(), torch.randn(1, 6, 32), "attn"
    net = NestedNetwork.from_magnitude(module, [0.5, 0.2], x)
    with pytest.raises(Unsupported, match=name):
        compile_network(net, x)


def test_a_model_fed_token_ids_is_followed_as_ids_or_refused_by_name():
    """An embedding's input stays integer while shapes are propagated (it failed as floats, and
    `simqos profile gnmt` ended in a traceback); what the runtime cannot run is named."""
    from simqos.models.paper import GNMT

    tokens = torch.randint(50, (1, 8))
    net = NestedNetwork.from_magnitude(GNMT(vocab=50, hidden=16, src_len=4), [0.5, 0.2], tokens)
    with pytest.raises(Unsupported, match="not supported by the nested runtime"):
        compile_network(net, tokens)


def test_an_input_of_another_shape_is_refused():
    mlp = nn.Sequential(nn.Linear(8, 4))
    x = torch.randn(2, 8)
    compiled = compile_network(_nested(mlp, x[:1]), x)
    with pytest.raises(ValueError, match="built for up to 2 x \\[8\\]"):
        compiled.run(torch.randn(3, 8), (0,))


@pytest.mark.parametrize("name", ["onnxruntime", "executorch"])
def test_an_anchor_runs_each_level(name):
    from simqos.profiler.anchors import ANCHORS, anchors

    pytest.importorskip(ANCHORS[name][0])
    module = BottleneckResNet(1, 1, 8, 5, 1, (4,), (1,), 10)
    x = torch.randn(1, 1, 40, generator=torch.Generator().manual_seed(6))
    net = _nested(module, x, module.block_ends())
    built, notes = anchors(net, x, threads=1)
    anchor = next((a for a in built if a.name.startswith(name)), None)
    assert anchor is not None, notes
    for level in range(net.n_levels):
        with torch.no_grad():
            expected = net.forward(x, net.uniform_route(level)).numpy()
        np.testing.assert_allclose(anchor.run(level), expected, **TOLERANCE)
    from simqos.profiler.anchors import Anchor, time_alongside

    medians = time_alongside([anchor], Anchor("deployed", [lambda: None, lambda: None]), n_passes=12, warmup_s=0.01)
    assert set(medians) == {anchor.name, "deployed"} and all(len(m) == 2 for m in medians.values())


@pytest.mark.parametrize("name", ["onnxruntime"])  # ExecuTorch takes about ten minutes to lower the GNMT
def test_an_anchor_of_a_token_model_runs_on_token_ids_or_says_why_not(name, monkeypatch):
    """The GNMT's input is token ids (int64): an anchor feeds them as they are, and one that
    exports but cannot run is a note at build time, never a failure in the middle of timing."""
    from simqos.models import gnmt_grammar
    from simqos.profiler import anchors as anchors_module
    from simqos.profiler.anchors import ANCHORS, anchors

    pytest.importorskip(ANCHORS[name][0])
    monkeypatch.setattr(anchors_module, "ANCHORS", {name: ANCHORS[name]})  # build this anchor alone
    spec = gnmt_grammar(hidden=16, samples=300)
    x = spec.example_input
    assert x.dtype == torch.int64
    net = _nested(spec.module, x, spec.reroute_after)
    built, notes = anchors(net, x, threads=1)
    anchor = next((a for a in built if a.name.startswith(name)), None)
    if anchor is None:
        assert any(n.startswith(f"no {name} anchor: the model does not run there") for n in notes), notes
        return
    for level in range(net.n_levels):
        with torch.no_grad():
            expected = net.forward(x, net.uniform_route(level)).numpy()
        np.testing.assert_allclose(anchor.run(level), expected, **TOLERANCE)
