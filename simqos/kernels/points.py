"""PointNet++'s sampling and grouping, the part of it no weight touches, as compiled loops.

Farthest-point sampling is sequential: each new centre is the point farthest from those chosen.
In torch every one of its steps is four calls over the whole cloud (about 25 µs a step on one
thread, 1.75 ms of the shapes model's 3.8 ms); here one loop runs them all. The ball query
takes, for each centre, the first ``k`` points (in cloud order) within the radius, padded with
the first one found, as PointNet++'s does; distances are summed squares, where ``torch.cdist``
may use a matrix product (a point on the sphere's edge may fall either side of it).
"""

from __future__ import annotations

import numpy as np
import torch

from simqos.jit import njit

__all__ = ["ball_group", "farthest_points"]


@njit(fastmath=False, boundscheck=False, nogil=True)
def _farthest_points(xyz, n, chosen):
    b, p, _ = xyz.shape
    dist = np.empty(p, np.float32)
    for s in range(b):
        dist[:] = np.inf
        last = 0
        for i in range(n):
            chosen[s, i] = last
            lx, ly, lz = xyz[s, last, 0], xyz[s, last, 1], xyz[s, last, 2]
            best, best_at = np.float32(-1.0), 0
            for q in range(p):
                dx, dy, dz = xyz[s, q, 0] - lx, xyz[s, q, 1] - ly, xyz[s, q, 2] - lz
                d = dx * dx + dy * dy + dz * dz
                if d < dist[q]:
                    dist[q] = d
                if dist[q] > best:
                    best, best_at = dist[q], q
            last = best_at


@njit(fastmath=False, boundscheck=False, nogil=True)
def _ball_group(xyz, centres, radius_sq, idx):
    b, s_count, k = idx.shape
    p = xyz.shape[1]
    for s in range(b):
        for c in range(s_count):
            cx, cy, cz = centres[s, c, 0], centres[s, c, 1], centres[s, c, 2]
            found = 0
            for q in range(p):
                dx, dy, dz = xyz[s, q, 0] - cx, xyz[s, q, 1] - cy, xyz[s, q, 2] - cz
                if dx * dx + dy * dy + dz * dz <= radius_sq:
                    idx[s, c, found] = q
                    found += 1
                    if found == k:
                        break
            first = idx[s, c, 0] if found else 0
            for j in range(found, k):
                idx[s, c, j] = first


def farthest_points(xyz: torch.Tensor, n: int) -> torch.Tensor:
    """Indices (B, n) of farthest-point sampling of ``xyz`` (B, P, 3), starting at point 0; a
    tie goes to the first point, as ``argmax`` gives it."""
    chosen = np.empty((xyz.shape[0], n), dtype=np.int64)
    _farthest_points(np.ascontiguousarray(xyz.detach().numpy(), dtype=np.float32), n, chosen)
    return torch.from_numpy(chosen)


def ball_group(xyz: torch.Tensor, centres: torch.Tensor, radius: float, k: int) -> torch.Tensor:
    """Indices (B, S, k) of the first ``k`` points of ``xyz`` (B, P, 3) within ``radius`` of
    each of ``centres`` (B, S, 3), padded with the first one found (point 0 if none is)."""
    idx = np.empty((centres.shape[0], centres.shape[1], k), dtype=np.int64)
    _ball_group(np.ascontiguousarray(xyz.detach().numpy(), dtype=np.float32),
                np.ascontiguousarray(centres.detach().numpy(), dtype=np.float32), np.float32(radius**2), idx)
    return torch.from_numpy(idx)
