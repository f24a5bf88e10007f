import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from simqos.kernels import build_kernel, kernel_names


def _masked(module, density, seed):
    g = torch.Generator().manual_seed(seed)
    return {
        n: p.detach() * (torch.rand(p.shape, generator=g) < density)
        for n, p in module.named_parameters()
        if n.startswith("weight")
    }


@st.composite
def linear_or_conv(draw):
    kind = draw(st.sampled_from(["linear", "conv1d", "conv2d"]))
    torch.manual_seed(draw(st.integers(0, 1000)))
    if kind == "linear":
        i, o = draw(st.integers(1, 64)), draw(st.integers(1, 64))
        return nn.Linear(i, o, bias=draw(st.booleans())), torch.randn(draw(st.integers(1, 4)), i)
    c, o, k = draw(st.integers(1, 8)), draw(st.integers(1, 16)), draw(st.integers(1, 3))
    stride, pad, dil = draw(st.integers(1, 2)), draw(st.integers(0, 2)), draw(st.integers(1, 2))
    cls = nn.Conv1d if kind == "conv1d" else nn.Conv2d
    m = cls(c, o, k, stride=stride, padding=pad, dilation=dil, bias=draw(st.booleans()))
    size = (k - 1) * dil + 1 + draw(st.integers(0, 6))
    shape = (draw(st.integers(1, 2)), c, size) if kind == "conv1d" else (draw(st.integers(1, 2)), c, size, size + 1)
    return m, torch.randn(shape)


@settings(max_examples=80, deadline=None)
@given(linear_or_conv(), st.floats(0.0, 1.0), st.integers(0, 1000))
def test_every_kernel_equals_the_dense_masked_layer(case, density, seed):
    module, x = case
    weights = _masked(module, density, seed)
    expected = torch.func.functional_call(module, weights, (x,))
    for name in kernel_names():
        try:
            built = build_kernel(name, module, weights)
        except ValueError:
            # BSR refuses shapes no block size divides; 2:4 runs on CUDA only; direct: convs only
            assert name in ("torch_bsr", "semi_structured_2to4", "nested_lstm", "nested_attention") or (
                name == "nested_direct" and isinstance(module, nn.Linear)
            )
            continue
        got = built.fn(x)
        assert got.shape == expected.shape, name
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5, msg=name)


def test_unsupported_kernels_say_why():
    lstm = nn.LSTM(4, 4)
    with pytest.raises(ValueError, match="Linear and Conv"):
        build_kernel("torch_csr", lstm, _masked(lstm, 0.5, 0))
    grouped = nn.Conv2d(4, 4, 3, groups=2)
    with pytest.raises(ValueError, match="groups=1"):
        build_kernel("scipy_csr", grouped, _masked(grouped, 0.5, 0))
    odd = nn.Linear(7, 5)
    with pytest.raises(ValueError, match="block size"):
        build_kernel("torch_bsr", odd, _masked(odd, 0.5, 0))
    with pytest.raises(ValueError, match="runs on"):
        build_kernel("scipy_csr", odd, _masked(odd, 0.5, 0), device="cuda")


def test_sparse_formats_store_fewer_bytes_than_dense_when_sparse():
    layer = nn.Linear(256, 256)
    weights = _masked(layer, 0.1, 0)
    dense = build_kernel("dense", layer, weights).resident_bytes
    assert build_kernel("torch_csr", layer, weights).resident_bytes < dense / 4
    assert build_kernel("scipy_csr", layer, weights).resident_bytes < dense / 4


def test_two_to_four_says_why_it_cannot_run():
    layer = nn.Linear(64, 32)
    with pytest.raises(ValueError, match="CUDA only"):
        build_kernel("semi_structured_2to4", layer, _masked(layer, 0.5, 0), device="cuda")


@pytest.mark.gpu
def test_two_to_four_on_cuda():
    layer = nn.Linear(128, 64).cuda().half()
    w = layer.weight.detach().clone()
    w.view(-1, 4)[:, 2:] = 0  # a 2:4 pattern
    built = build_kernel("semi_structured_2to4", layer, {"weight": w}, device="cuda")
    x = torch.randn(8, 128, device="cuda", dtype=torch.half)
    torch.testing.assert_close(built.fn(x), torch.nn.functional.linear(x, w, layer.bias), rtol=1e-2, atol=1e-2)
    unstructured = w.clone()
    unstructured.view(-1, 4)[:, 2] = 1.0
    with pytest.raises(ValueError, match="not 2:4"):
        build_kernel("semi_structured_2to4", layer, {"weight": unstructured}, device="cuda")


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 12), st.integers(1, 10), st.booleans(), st.booleans(), st.integers(1, 3), st.sampled_from([1, 4]),
       st.booleans(), st.floats(0, 1), st.integers(0, 99))
def test_nested_lstm_equals_the_dense_masked_lstm(inputs, hidden, bidirectional, batch_first, batch, steps, from_state,
                                                   density, seed):
    """Whole sequences and single steps (a decoder's), from zeros or from a given state."""
    torch.manual_seed(seed)
    lstm = nn.LSTM(inputs, hidden, bidirectional=bidirectional, batch_first=batch_first)
    weights = _masked(lstm, density, seed)
    x = torch.randn(batch, steps, inputs) if batch_first else torch.randn(steps, batch, inputs)
    directions = 2 if bidirectional else 1
    state = (torch.randn(directions, batch, hidden), torch.randn(directions, batch, hidden)) if from_state else None
    expected = torch.func.functional_call(lstm, weights, (x, state))
    got = build_kernel("nested_lstm", lstm, weights).fn(x, state)
    for g, e in zip((got[0], *got[1]), (expected[0], *expected[1])):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-5)


@settings(max_examples=25, deadline=None)
@given(st.sampled_from([1, 2, 4]), st.integers(1, 4), st.booleans(), st.booleans(), st.booleans(), st.floats(0.05, 1), st.integers(0, 99))
def test_nested_attention_equals_the_dense_masked_attention(heads, head_dim, batch_first, self_attention, need_weights, density, seed):
    torch.manual_seed(seed)
    e = heads * head_dim
    mha = nn.MultiheadAttention(e, heads, batch_first=batch_first, kdim=None if self_attention else e).eval()
    weights = {n: p.detach() * (torch.rand(p.shape) < density) for n, p in mha.named_parameters() if n.endswith("weight")}
    q = torch.randn(2, 5, e) if batch_first else torch.randn(5, 2, e)
    kv = q if self_attention else (torch.randn(2, 3, e) if batch_first else torch.randn(3, 2, e))
    with torch.no_grad():
        expected = torch.func.functional_call(mha, weights, (q, kv, kv), {"need_weights": need_weights})
        got = build_kernel("nested_attention", mha, weights).fn(q, kv, kv, need_weights=need_weights)
    torch.testing.assert_close(got[0], expected[0], rtol=1e-4, atol=1e-5)
    if need_weights:
        torch.testing.assert_close(got[1], expected[1], rtol=1e-4, atol=1e-5)
    else:
        assert got[1] is None and expected[1] is None


@pytest.mark.parametrize("cls, shape", [(nn.BatchNorm1d, (3, 5)), (nn.BatchNorm1d, (3, 5, 7)), (nn.BatchNorm2d, (2, 5, 4, 3))])
@pytest.mark.parametrize("affine", [True, False])
def test_a_batch_norm_runs_as_its_per_channel_affine(cls, shape, affine):
    from simqos.profiler.measure import ChannelAffine

    torch.manual_seed(0)
    norm = cls(5, affine=affine).eval()
    with torch.no_grad():
        norm.running_mean.normal_()
        norm.running_var.uniform_(0.5, 2.0)
        if affine:
            norm.weight.normal_()
            norm.bias.normal_()
    x = torch.randn(shape)
    torch.testing.assert_close(ChannelAffine(norm)(x), norm(x), rtol=1e-5, atol=1e-5)


def test_the_timed_model_computes_what_the_network_does():
    """swap_layers' copy (each layer a kernel, each batch norm its affine) runs level 0 as the
    nested network does, on the route's own statistics."""
    from simqos.models import build_model
    from simqos.nested import NestedNetwork
    from simqos.profiler.measure import layer_weights, swap_layers

    spec = build_model("resnet1d", width=8, samples=60)
    net = NestedNetwork.from_magnitude(spec.module.eval(), (0.5, 0.2), spec.example_input, spec.reroute_after)
    for name, norm in net.module.named_modules():
        if isinstance(norm, nn.BatchNorm1d):
            with torch.no_grad():
                norm.running_mean.normal_(0, 0.1)
                norm.running_var.uniform_(0.5, 2.0)

    def kernel(layer):
        built = build_kernel("nested_direct" if layer.kind == "conv1d" else "dense",
                             net.module.get_submodule(layer.name), layer_weights(net, layer, 0))
        wrapper = nn.Module()
        wrapper.forward = built.fn
        return wrapper

    x = spec.dataset.x_test[:4]
    with torch.no_grad():
        torch.testing.assert_close(swap_layers(net, kernel)(x), net.forward(x, net.uniform_route(0)), rtol=1e-4, atol=1e-4)


def test_the_lstm_gates_exponential_is_exp_within_float32_rounding():
    """The vectorised exponential the LSTM's gates use, over the whole float32 range it clamps to,
    and a sigmoid and tanh at their saturations through it."""
    from simqos.kernels.nested import _exp_into

    x = np.concatenate([np.linspace(-87.0, 88.0, 20_001), [0.0, -1e-6, 1e-6]]).astype(np.float32)
    out, bits = np.empty_like(x), np.empty(len(x), np.int32)
    _exp_into(x, out, bits)
    np.testing.assert_allclose(out, np.exp(x.astype(np.float64)), rtol=1e-6)
    big = np.array([-1e4, 1e4], dtype=np.float32)  # clamped, still finite
    _exp_into(big, out[:2], bits)
    assert np.isfinite(out[:2]).all() and 2.0 / (1.0 + out[0]) - 1.0 == pytest.approx(1.0) and 1.0 / (1.0 + out[1]) == pytest.approx(0.0)
