"""The PointNet++ family on procedurally generated 3D shapes (no download).

Eight classes of surfaces — sphere, cube, cylinder, cone, torus, square pyramid, octahedron,
helix (a coiled tube) — each sampled at ``points`` points, then made hard the way real scans
are: a random rotation (uniform on SO(3)), an independent scale per axis in [0.7, 1.3],
Gaussian jitter of standard deviation 0.03, and, for half of the shapes, a partial view (the
points beyond a random plane are cut away, 20-50 % of them, as a sensor sees one side); the
kept points are resampled to ``points``, centred and scaled into the unit ball. Generation is
vectorised numpy from one seed (``numpy.random.default_rng``), so the same seed gives the same
shapes on any machine.

Split: 6,000 training, 1,500 validation and 5,000 test shapes, balanced over the classes.

The model is :class:`simqos.models.paper.PointNet2` (single-scale grouping) at reduced size:
256 points; SA1 64 centres, radius 0.25, 16 neighbours, MLP 32-32-64; SA2 16 centres, radius
0.5, 16 neighbours, MLP 64-64-128; global SA MLP 128-256-512; FC 256-128-8. A reroute point
after each set abstraction and each hidden FC layer, as in the full-size profile.
"""

from __future__ import annotations

import numpy as np
import torch

from simqos.models.paper import PointNet2
from simqos.models.spec import Dataset, ModelSpec

__all__ = ["CLASSES", "load_shapes", "make_shapes", "pointnet2_shapes"]

CLASSES = ("sphere", "cube", "cylinder", "cone", "torus", "pyramid", "octahedron", "helix")
SPLITS = (6_000, 1_500, 5_000)
"""Training, validation and test shapes."""


def _surface(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` points on the unit-sized surface of ``kind``, shape (n, 3)."""
    u, v = rng.random(n), rng.random(n)
    if kind == "sphere":
        p = rng.normal(size=(n, 3))
        return p / np.linalg.norm(p, axis=1, keepdims=True)
    if kind == "cube":
        face, sign = rng.integers(0, 3, n), rng.choice([-1.0, 1.0], n)
        p = rng.uniform(-1, 1, (n, 3))
        p[np.arange(n), face] = sign
        return p
    if kind in ("cylinder", "cone"):
        angle = 2 * np.pi * u
        on_cap = rng.random(n) < (0.25 if kind == "cylinder" else 0.3)
        z = 2 * v - 1
        radius = np.ones(n) if kind == "cylinder" else (1 - z) / 2
        cap_r = np.sqrt(rng.random(n))
        radius = np.where(on_cap, cap_r, radius)
        z = np.where(on_cap, np.where((rng.random(n) < 0.5) & (kind == "cylinder"), 1.0, -1.0), z)
        return np.stack([radius * np.cos(angle), radius * np.sin(angle), z], axis=1)
    if kind == "torus":
        theta, phi = 2 * np.pi * u, 2 * np.pi * v
        ring = 0.7 + 0.3 * np.cos(phi)
        return np.stack([ring * np.cos(theta), ring * np.sin(theta), 0.3 * np.sin(phi)], axis=1)
    if kind == "pyramid":
        on_base = rng.random(n) < 0.3
        base = np.stack([2 * u - 1, 2 * v - 1, -np.ones(n)], axis=1)
        # a side face: the triangle (corner a, corner b, apex), by barycentric coordinates
        side = rng.integers(0, 4, n)
        corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=float)
        a, b = corners[side], corners[(side + 1) % 4]
        s, t = rng.random(n), rng.random(n)
        flip = s + t > 1
        s, t = np.where(flip, 1 - s, s), np.where(flip, 1 - t, t)
        xy = a * (1 - s - t)[:, None] + b * s[:, None]
        sides = np.column_stack([xy, -1 + 2 * t])
        return np.where(on_base[:, None], base, sides)
    if kind == "octahedron":
        w = rng.dirichlet(np.ones(3), n)
        return w * rng.choice([-1.0, 1.0], (n, 3))
    if kind == "helix":
        t = 4 * np.pi * u
        tube = rng.normal(size=(n, 3)) * 0.08
        return np.stack([np.cos(t), np.sin(t), t / (2 * np.pi) - 1], axis=1) + tube
    raise ValueError(f"unknown shape {kind!r}")


def _rotations(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` rotation matrices uniform on SO(3) (QR of Gaussian matrices, signs fixed)."""
    q, r = np.linalg.qr(rng.normal(size=(n, 3, 3)))
    q = q * np.sign(np.diagonal(r, axis1=1, axis2=2))[:, None, :]
    det = np.linalg.det(q)
    q[det < 0, :, 0] *= -1
    return q


def make_shapes(n_per_class: int, points: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n_per_class`` shapes of every class, shuffled: points (N, points, 3) float32 and
    labels (N,) int64, made as the module docstring says."""
    rng = np.random.default_rng(seed)
    clouds, labels = [], []
    oversample = 2 * points  # a partial view keeps at least half
    for label, kind in enumerate(CLASSES):
        raw = _surface(kind, n_per_class * oversample, rng).reshape(n_per_class, oversample, 3)
        raw = raw * rng.uniform(0.7, 1.3, (n_per_class, 1, 3))
        raw = np.einsum("nij,npj->npi", _rotations(n_per_class, rng), raw)
        raw = raw + rng.normal(scale=0.03, size=raw.shape)
        for cloud in raw:
            if rng.random() < 0.5:
                normal = rng.normal(size=3)
                height = cloud @ (normal / np.linalg.norm(normal))
                cloud = cloud[height <= np.quantile(height, rng.uniform(0.5, 0.8))]
            cloud = cloud[rng.choice(len(cloud), points, replace=len(cloud) < points)]
            cloud = cloud - cloud.mean(axis=0)
            clouds.append(cloud / np.linalg.norm(cloud, axis=1).max())
            labels.append(label)
    order = rng.permutation(len(labels))
    return np.stack(clouds)[order].astype(np.float32), np.array(labels, dtype=np.int64)[order]


def load_shapes(points: int = 256, seed: int = 0, splits: tuple[int, int, int] = SPLITS) -> Dataset:
    """The shapes of the module docstring: inputs (N, points, 3), labels (N,); each split is
    made from its own seed (``seed``, ``seed + 1``, ``seed + 2``)."""
    parts = []
    for i, size in enumerate(splits):
        x, y = make_shapes(max(1, size // len(CLASSES)), points, seed + i)
        parts += [torch.from_numpy(x), torch.from_numpy(y)]
    return Dataset(
        f"procedural 3D shapes ({len(CLASSES)} classes, {points} points; random pose, scale, jitter, partial views), "
        f"seed {seed}, split {'/'.join(map(str, splits))}",
        *parts,
    )


def pointnet2_shapes(seed: int = 0, samples: int = sum(SPLITS)) -> ModelSpec:
    """PointNet++ on the procedural shapes (module docstring); ``samples`` shrinks the data (tests)."""
    torch.manual_seed(seed)
    module = PointNet2(
        classes=len(CLASSES),
        centres=(64, 16),
        radii=(0.25, 0.5),
        neighbours=(16, 16),
        widths=((32, 32, 64), (64, 64, 128), (128, 256, 512)),
        fc=(256, 128),
    )
    total = sum(SPLITS)
    data = load_shapes(splits=tuple(max(len(CLASSES), samples * s // total) for s in SPLITS))
    ends = ("sa1.mlp.6", "sa2.mlp.6", "sa3.mlp.6", "fc1", "fc2")
    return ModelSpec(
        "pointnet2_shapes", module, data.x_test[:1].clone(), ends, data,
        "PointNet++ SSG on procedural 3D shapes, 256 points, 8 classes",
    )
