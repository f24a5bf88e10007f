"""A graph attention layer's weighted sum over each node's in-edges, the part of a GAT no weight
touches: ``out[i] = sum over edges e into i of share[e] * h[src[e]]``, every head at once.

Edges are sorted by destination, with CSR row pointers ``rows``. The forward pass is one
compiled loop that reads each edge's source features once and adds them into the destination's
row, which stays in cache: 1.0 ms for the SBM GAT's 30,000 edges x 8 heads x 32, against 6.3 ms
for a torch CSR product per head and 39 ms for gathering every edge's features first (one
thread). The backward pass works edge by edge in torch (torch's own backward for a sparse
product's values forms the dense nodes x nodes gradient: 1.6 s a training step).
"""

from __future__ import annotations

import numpy as np
import torch

from simqos.jit import njit

__all__ = ["in_edge_sum", "in_edges"]


@njit(fastmath=True, boundscheck=False, nogil=True)
def _in_edge_sum(rows, src, share, h, out):
    n, heads, width = h.shape
    for i in range(n):
        total = out[i]
        total[:, :] = 0.0
        for e in range(rows[i], rows[i + 1]):
            s = src[e]
            for k in range(heads):
                w = share[e, k]
                for c in range(width):
                    total[k, c] += w * h[s, k, c]


class _InEdgeSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx, rows: torch.Tensor, src: torch.Tensor, dst: torch.Tensor, share: torch.Tensor,
                h: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(src, dst, share, h)
        out = np.empty(tuple(h.shape), dtype=np.float32)
        _in_edge_sum(rows.numpy(), src.numpy(), share.detach().contiguous().numpy(), h.detach().contiguous().numpy(), out)
        return torch.from_numpy(out)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        src, dst, share, h = ctx.saved_tensors
        to_edges = grad[dst]
        grad_share = (to_edges * h[src]).sum(-1) if ctx.needs_input_grad[3] else None
        grad_h = torch.zeros_like(h).index_add_(0, src, to_edges * share[..., None]) if ctx.needs_input_grad[4] else None
        return None, None, None, grad_share, grad_h


def in_edges(edges: torch.Tensor, nodes: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``edges`` (2, E: sources, destinations) sorted by destination, then source, and their CSR
    row pointers over ``nodes``: ``src, dst, rows`` as :func:`in_edge_sum` takes them."""
    src, dst = edges[:, torch.argsort(edges[1] * nodes + edges[0])]
    rows = torch.cat([torch.zeros(1, dtype=torch.int64), torch.bincount(dst, minlength=nodes).cumsum(0)])
    return src, dst, rows


def in_edge_sum(rows: torch.Tensor, src: torch.Tensor, dst: torch.Tensor, share: torch.Tensor,
                h: torch.Tensor) -> torch.Tensor:
    """``out[i, k] = sum over edges e into i of share[e, k] * h[src[e], k]`` for ``h`` (nodes,
    heads, width) float32 on the CPU and ``share`` (edges, heads); ``src`` and ``dst`` (int64)
    sorted by destination, ``rows`` their CSR row pointers. Differentiable in ``share`` and
    ``h``. Raises ValueError when ``rows`` does not point into one row per node of ``h``."""
    if rows.numel() != h.shape[0] + 1 or int(rows[-1]) != src.numel():
        raise ValueError(f"the edges' row pointers cover {rows.numel() - 1} nodes and {int(rows[-1])} edges; "
                         f"the features have {h.shape[0]} nodes and there are {src.numel()} edges")
    return _InEdgeSum.apply(rows, src, dst, share, h)
