"""Sparse-matrix formats for a 2-D weight: build once, then multiply by dense columns.

Each format turns a masked weight matrix ``W`` (rows = output channels) into its own storage and
computes ``W @ X`` for a dense ``X`` of shape (columns of W, n). Which format is fastest depends
on the shape, the density and the machine, so the profiler tries them all. A format may also
compute a Linear layer's ``X @ W.T`` for ``X`` of shape (n, columns of W) itself
(``prepare_rows``); for the others the layer transposes ``X`` and the result around ``W @ X``.

- ``torch_csr``: ``torch.sparse_csr_tensor`` with int32 indices (int64 indices are converted on
  every call, 1.3-3x slower).
- ``torch_bsr``: ``torch`` block-sparse rows with the largest block size of 16, 8 or 4 that
  divides both dimensions; a block is stored whole if any of its weights is kept.
- ``scipy_csr``: ``scipy.sparse.csr_matrix`` (CPU only), via zero-copy numpy views.
- ``nested_sell``: sliced ELLPACK compiled with numba, the layout in which one copy of the
  least sparse level serves every level (:mod:`simqos.kernels.nested`); here built for one level.
  It takes a Linear layer's rows as they come (:meth:`NestedSell.matmul_rows`).
- ``semi_structured_2to4``: ``torch.sparse.to_sparse_semi_structured`` (CUDA only, float16 or
  bfloat16, at most 2 non-zeros in every group of 4 along a row); refuses any other weight
  with the reason.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse
import torch

from simqos.kernels.nested import NestedSell

__all__ = ["FORMATS", "SparseFormat"]

MatMul = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class SparseFormat:
    """A storage format: ``prepare(W)`` returns ``(matmul, resident_bytes)`` or raises ValueError
    with the reason the format cannot hold ``W``; ``devices`` lists where it runs;
    ``prepare_rows(W)``, where given, the same for ``X @ W.T`` with ``X`` (n, columns of W)."""

    name: str
    devices: tuple[str, ...]
    prepare: Callable[[torch.Tensor], tuple[MatMul, int]]
    prepare_rows: Callable[[torch.Tensor], tuple[MatMul, int]] | None = None


def _torch_csr(w: torch.Tensor) -> tuple[MatMul, int]:
    with warnings.catch_warnings():  # "beta state" and "invariant checks" notices, once per tensor
        warnings.simplefilter("ignore", UserWarning)
        csr = w.to_sparse_csr()
        crow, col = csr.crow_indices().to(torch.int32), csr.col_indices().to(torch.int32)
        a = torch.sparse_csr_tensor(crow, col, csr.values(), size=w.shape)
    nbytes = crow.numel() * 4 + col.numel() * 4 + csr.values().numel() * w.element_size()
    return (lambda x: a @ x), nbytes


def _torch_bsr(w: torch.Tensor) -> tuple[MatMul, int]:
    rows, cols = w.shape
    block = next((b for b in (16, 8, 4) if rows % b == 0 and cols % b == 0), None)
    if block is None:
        raise ValueError(f"shape {tuple(w.shape)} is not divisible by a block size of 16, 8 or 4")
    a = w.to_sparse_bsr((block, block))
    nbytes = (a.crow_indices().numel() + a.col_indices().numel()) * 8 + a.values().numel() * w.element_size()
    return (lambda x: a @ x), nbytes


def _scipy_csr(w: torch.Tensor) -> tuple[MatMul, int]:
    a = scipy.sparse.csr_matrix(w.detach().cpu().numpy())
    nbytes = a.data.nbytes + a.indices.nbytes + a.indptr.nbytes

    def matmul(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(np.asarray(a @ x.detach().numpy()))

    return matmul, nbytes


def _semi_structured_2to4(w: torch.Tensor) -> tuple[MatMul, int]:
    """2:4 semi-structured sparsity (cuSPARSELt/CUTLASS) — checked up front, with the reason."""
    if not w.is_cuda:
        raise ValueError("2:4 semi-structured kernels run on CUDA only")
    if w.dtype not in (torch.float16, torch.bfloat16):
        raise ValueError(f"2:4 semi-structured needs float16 or bfloat16 weights, not {w.dtype}")
    rows, cols = w.shape
    if rows % 32 or cols % 64:
        raise ValueError(f"2:4 semi-structured needs rows % 32 == 0 and columns % 64 == 0, not {tuple(w.shape)}")
    crowded = int(((w.reshape(-1, 4) != 0).sum(dim=1) > 2).sum())
    if crowded:
        raise ValueError(
            f"{crowded} of {w.numel() // 4} groups of 4 weights hold more than 2 non-zeros: this level's "
            "mask is not 2:4 (unstructured nested levels rarely are)"
        )
    from torch.sparse import to_sparse_semi_structured

    a = to_sparse_semi_structured(w)
    return (lambda x: a @ x), w.numel() // 2 * w.element_size() + w.numel() // 8


def _one_level(w: torch.Tensor) -> NestedSell:
    """This level alone in the nested SELL layout (:mod:`simqos.kernels.nested`)."""
    if w.is_cuda:
        raise ValueError("nested_sell runs on the CPU only")
    return NestedSell.from_ranks(w, torch.where(w != 0, 0, -1), n_levels=1)


def _nested_sell(w: torch.Tensor) -> tuple[MatMul, int]:
    matrix = _one_level(w)

    def matmul(x: torch.Tensor) -> torch.Tensor:
        xs = x.detach().numpy()
        return torch.from_numpy(matrix.matmul(0, xs[:, 0] if xs.shape[1] == 1 else xs).reshape(w.shape[0], -1))

    return matmul, matrix.nbytes


def _nested_sell_rows(w: torch.Tensor) -> tuple[MatMul, int]:
    matrix = _one_level(w)
    return (lambda x: torch.from_numpy(matrix.matmul_rows(0, x.detach().numpy()))), matrix.nbytes


FORMATS: dict[str, SparseFormat] = {
    f.name: f
    for f in (
        SparseFormat("torch_csr", ("cpu", "cuda"), _torch_csr),
        SparseFormat("torch_bsr", ("cpu", "cuda"), _torch_bsr),
        SparseFormat("scipy_csr", ("cpu",), _scipy_csr),
        SparseFormat("nested_sell", ("cpu",), _nested_sell, _nested_sell_rows),
        SparseFormat("semi_structured_2to4", ("cuda",), _semi_structured_2to4),
    )
}
"""Sparse formats by name."""
