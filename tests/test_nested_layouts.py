"""Nested layouts (SELL for matrices, direct convolution): every level of one shared copy
equals the dense masked computation."""

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from simqos.kernels.nested import NestedSell
from simqos.nested.masks import nested_ranks
from strategies import densities


def _nested(rows: int, cols: int, levels, seed: int):
    """A random weight pruned to nested ``levels``, its ranks and its SELL layout, and the
    generator to draw inputs from."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(rows, cols, generator=g)
    ranks = nested_ranks(w.abs() * torch.rand(rows, cols, generator=g), levels)
    w = w * (ranks >= 0)
    return g, w, ranks, NestedSell.from_ranks(w, ranks, len(levels))


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 70), st.integers(1, 90), densities(max_levels=3), st.integers(0, 3), st.integers(0, 10_000))
def test_every_level_equals_the_dense_masked_product(rows, cols, levels, n, seed):
    g, w, ranks, matrix = _nested(rows, cols, levels, seed)
    x = torch.randn(cols, generator=g) if n == 0 else torch.randn(cols, n, generator=g)
    for k in range(len(levels)):
        expected = ((w * (ranks >= k)) @ x).numpy()
        np.testing.assert_allclose(matrix.matmul(k, x.numpy()), expected, rtol=1e-4, atol=1e-4)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 40), st.integers(1, 60), densities(max_levels=3), st.sampled_from([7, 8, 15, 16, 24, 31, 32, 40, 64, 67]),
       st.integers(0, 10_000))
def test_batched_products_of_every_width(rows, cols, levels, n, seed):
    """Both batched schemes (rows summed in registers below 32 columns, rows of x added above)
    and the scalar columns past a multiple of 8."""
    g, w, ranks, matrix = _nested(rows, cols, levels, seed)
    x = torch.randn(cols, n, generator=g)
    for k in range(len(levels)):
        np.testing.assert_allclose(matrix.matmul(k, x.numpy()), ((w * (ranks >= k)) @ x).numpy(), rtol=1e-4, atol=1e-4)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 40), st.integers(1, 60), densities(max_levels=3), st.sampled_from([1, 7, 8, 127, 128, 129, 300]),
       st.integers(0, 10_000))
def test_a_linear_layers_rows_times_every_level(rows, cols, levels, n, seed):
    """``x @ W_k.T`` for x (n, columns): blocks of 128 rows, a last block shorter and not a
    multiple of 8."""
    g, w, ranks, matrix = _nested(rows, cols, levels, seed)
    x = torch.randn(n, cols, generator=g)
    for k in range(len(levels)):
        np.testing.assert_allclose(matrix.matmul_rows(k, x.numpy()), (x @ (w * (ranks >= k)).T).numpy(), rtol=1e-4, atol=1e-4)


def test_a_layer_kept_whole_is_never_masked_and_a_cut_row_is_masked_from_its_prefix():
    """10 rows (a chunk of 16 with 6 absent) of 4 columns: every row kept at both levels, so each
    level runs all 4 slots unmasked; then row 3 cut to 1 weight at level 1, which masks the chunk
    from slot 1 on."""
    w = torch.arange(1, 41, dtype=torch.float32).reshape(10, 4)
    ranks = torch.ones(10, 4, dtype=torch.int64)
    whole = NestedSell.from_ranks(w, ranks, 2)
    assert whole.full.tolist() == [[4], [4]] and whole.span.tolist() == [[4], [4]]
    ranks[3, 1:] = 0
    cut = NestedSell.from_ranks(w, ranks, 2)
    assert cut.full.tolist() == [[4], [1]] and cut.span.tolist() == [[4], [4]]
    x = np.arange(4, dtype=np.float32)
    assert np.allclose(cut.matmul(1, x), (w * (ranks >= 1)).numpy() @ x)


def test_all_levels_cost_little_more_than_level_0_alone():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(1024, 1024, generator=g)
    ranks = nested_ranks(w.abs(), [0.134, 0.054])
    matrix = NestedSell.from_ranks(w * (ranks >= 0), ranks, 2)
    assert matrix.nbytes <= 1.05 * matrix.level_nbytes(0)
    assert matrix.cols.dtype == np.uint16  # rows of 1,024 columns fit 16-bit indices


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 5), st.integers(1, 6), st.integers(1, 3), st.integers(1, 2), st.integers(0, 2), st.integers(1, 2),
    st.integers(3, 9), densities(max_levels=3), st.integers(0, 10_000),
)
def test_direct_convolution_equals_conv2d_at_every_level(c, o, k, stride, pad, dil, size, levels, seed):
    from simqos.kernels.nested import NestedConv

    g = torch.Generator().manual_seed(seed)
    w = torch.randn(o, c, k, k, generator=g)
    ranks = nested_ranks(w.abs() * torch.rand(w.shape, generator=g), levels)
    w = w * (ranks >= 0)
    size = max(size, (k - 1) * dil + 1)
    x = torch.randn(2, c, size, size + 1, generator=g)
    conv = NestedConv.from_ranks(w, ranks, len(levels), (stride, stride), (pad, pad), (dil, dil))
    for level in range(len(levels)):
        expected = torch.nn.functional.conv2d(x, w * (ranks >= level), None, stride, pad, dil).numpy()
        np.testing.assert_allclose(conv.conv(level, x.numpy()), expected, rtol=1e-4, atol=1e-4)
