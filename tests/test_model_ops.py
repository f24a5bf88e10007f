"""The weightless parts of the GAT and PointNet++ (simqos/kernels/graph.py, points.py): by hand,
and against the per-edge and per-point definitions on any input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from simqos.kernels.points import ball_group, farthest_points


def test_a_gat_layer_is_a_softmax_over_each_nodes_in_edges():
    """Three nodes, one head of width 1, projection 1, attention weights 1 and 0: node 0 hears 1
    and 2 with softmax weights over leaky_relu(x_src) — by hand, e^1 : e^2 — and the sparse
    product's gradient is the per-edge sum's, p_j (1 + x_j - mean) for each source j."""
    from simqos.models.paper import GAT

    edges = torch.tensor([[2, 1, 0, 2], [0, 0, 1, 2]])  # 2->0, 1->0, 0->1, 2->2 (unsorted on purpose)
    gat = GAT(edges, features=1, classes=1, hidden=1)
    layer = gat.layer1
    layer.heads = 1
    with torch.no_grad():
        layer.proj = torch.nn.Linear(1, 1, bias=False)
        layer.proj.weight.fill_(1.0)
        layer.att_src = torch.nn.Parameter(torch.ones(1, 1))
        layer.att_dst = torch.nn.Parameter(torch.zeros(1, 1))
    x = torch.tensor([[3.0], [1.0], [2.0]], requires_grad=True)
    out = layer(x, gat.src, gat.dst, gat.rows)[:, 0, 0]
    w1, w2 = np.exp(1.0), np.exp(2.0)
    expected = [(1.0 * w1 + 2.0 * w2) / (w1 + w2), 3.0, 2.0]
    assert out.detach().numpy() == pytest.approx(expected, rel=1e-6)
    out[0].backward()  # d/dx of node 0's mean: through both the values and the softmax weights
    p1, p2 = w1 / (w1 + w2), w2 / (w1 + w2)
    mean = p1 * 1.0 + p2 * 2.0
    assert x.grad.numpy()[:, 0] == pytest.approx([0.0, p1 + p1 * (1.0 - mean), p2 + p2 * (2.0 - mean)], abs=1e-6)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 30), st.integers(0, 90), st.integers(1, 4), st.integers(1, 12), st.integers(0, 10_000))
def test_the_in_edge_sum_is_the_per_edge_sum_and_its_gradient(nodes, edges, heads, width, seed):
    """Any graph (isolated nodes, repeated edges): forward and gradients equal gathering every
    edge's features and adding them into its destination."""
    from simqos.kernels.graph import in_edge_sum, in_edges

    g = torch.Generator().manual_seed(seed)
    src, dst, rows = in_edges(torch.randint(nodes, (2, edges), generator=g), nodes)
    share = torch.rand(edges, heads, generator=g, requires_grad=True)
    h = torch.randn(nodes, heads, width, generator=g, requires_grad=True)
    out = in_edge_sum(rows, src, dst, share, h)
    expected = torch.zeros(nodes, heads, width).index_add(0, dst, h[src] * share[..., None])
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    weights = torch.randn(nodes, heads, width, generator=g)
    grads = torch.autograd.grad((out * weights).sum(), (share, h))
    torch.testing.assert_close(grads, torch.autograd.grad((expected * weights).sum(), (share, h)), rtol=1e-5, atol=1e-5)



def test_farthest_points_by_hand():
    """On a line at 0, 1, 3, 10 (and 10 again): start at 0, then the farthest (10, the first of
    the two), then 3 (3 from the nearest chosen, against 1 for the point at 1)."""
    xyz = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [3, 0, 0], [10, 0, 0], [10, 0, 0]]])
    assert farthest_points(xyz, 3).tolist() == [[0, 3, 2]]


def test_ball_group_by_hand():
    """The first k points within the radius, in cloud order, padded with the first found; a
    centre with none gets point 0."""
    xyz = torch.tensor([[[0.0, 0, 0], [5, 0, 0], [0.5, 0, 0], [0, 0.9, 0], [0, 1.0, 0]]])
    centres = torch.tensor([[[0.0, 0, 0], [5, 0.5, 0], [50, 0, 0]]])
    assert ball_group(xyz, centres, 1.0, 4).tolist() == [[[0, 2, 3, 4], [1, 1, 1, 1], [0, 0, 0, 0]]]


def _reference_farthest(xyz: torch.Tensor, n: int) -> torch.Tensor:
    b, p, _ = xyz.shape
    chosen, dist, last = torch.zeros(b, n, dtype=torch.long), torch.full((b, p), float("inf")), torch.zeros(b, dtype=torch.long)
    for i in range(n):
        chosen[:, i] = last
        dist = torch.minimum(dist, ((xyz - xyz[torch.arange(b), last][:, None, :]) ** 2).sum(-1))
        last = dist.argmax(dim=1)
    return chosen


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 3), st.integers(1, 80), st.integers(0, 10_000), st.floats(0.1, 1.0), st.integers(1, 12))
def test_sampling_and_grouping_equal_their_definitions(batch, points, seed, radius, k):
    g = torch.Generator().manual_seed(seed)
    xyz = torch.randn(batch, points, 3, generator=g)
    n = max(1, points // 3)
    chosen = farthest_points(xyz, n)
    assert torch.equal(chosen, _reference_farthest(xyz, n))
    centres = xyz[torch.arange(batch)[:, None], chosen]
    inside = ((centres[:, :, None] - xyz[:, None]) ** 2).sum(-1) <= radius**2  # (B, S, P)
    idx = ball_group(xyz, centres, radius, k)
    for s in range(batch):
        for c in range(n):
            found = torch.nonzero(inside[s, c]).squeeze(1)[:k].tolist()  # every centre finds itself
            assert idx[s, c].tolist() == found + [found[0]] * (k - len(found))


def test_the_in_edge_sum_refuses_row_pointers_for_another_graph():
    """A node past the last one any edge names would be read beyond the row pointers."""
    from simqos.kernels.graph import in_edge_sum

    src, dst = torch.tensor([0, 1]), torch.tensor([0, 1])
    rows = torch.tensor([0, 1, 2])  # two nodes
    with pytest.raises(ValueError, match="cover 2 nodes"):
        in_edge_sum(rows, src, dst, torch.ones(2, 1), torch.ones(3, 1, 4))
