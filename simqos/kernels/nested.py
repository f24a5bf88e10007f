"""Nested sliced-ELLPACK storage: one copy of the least sparse level serves every level.

Layout (SELL-C-σ, C = 16 rows per chunk, σ = all rows). Within each row the non-zeros are
ordered from the sparsest level to the least sparse (by rank, descending), so every level is a
*prefix* of every row. The rows are stored sorted by their length at level 0, then at level 1
and so on (``rows[i]`` is the matrix row stored i-th): a chunk's rows then have nearly equal
lengths, so the padding to the chunk's longest row, which storage and a product pay for,
shrinks — on the trained MLP and ResNet-1D from 1.4-1.5x the non-zeros at level 0 to 1.01-1.07x,
and at level 1 from 1.6-2.0x to 1.2-1.4x. (Sorting by level 1's length first would take level 1
to 1.02-1.1x but level 0, and the storage, to 1.1-1.2x: one copy of the weights comes first.) Chunk c stores its rows' j-th non-zeros side by side in slot j, ``values[ptr[c] + j*C +
lane]`` with its column index (16-bit where the row length allows, else 32-bit), padded with
zeros to the chunk's longest row. Per level, ``lane_len[k, c, lane]`` is the prefix length of that row.
A level-k product runs each chunk's slots up to the shortest level-k prefix in the chunk
unmasked (``full[k, c]``), then the remaining slots up to the longest (``span[k, c]``) with a
per-lane length test — so switching level costs nothing, and the levels together cost the
level-0 arrays plus one int32 per row and level.

The kernels (numba, compiled once and cached on disk) vectorise across the C lanes of a slot:
a gather of C inputs and one fused multiply-add per lane, instead of one scalar multiply-add
per non-zero as CSR does. Products: ``W_k @ x`` for x of shape (columns,) or (columns, n);
``x @ W_k.T`` for a Linear layer's rows (``matmul_rows``); an LSTM's recurrence with W_k as its
recurrent weight (``lstm_steps``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

from simqos.jit import njit
from simqos.kernels.vector import VEC8, fma8, load8, splat8, store8

__all__ = ["CHUNK_ROWS", "SHORT_RUN", "NestedConv", "NestedSell", "add_runs", "finish_short_runs", "sum_short_runs"]

CHUNK_ROWS = 16


@njit(fastmath=True, boundscheck=False)
def _spmv(values, cols, ptr, full, span, lane_len, rows, x, y):
    n_rows = y.shape[0]
    acc = np.zeros(CHUNK_ROWS, np.float32)
    for c in range(ptr.shape[0]):
        acc[:] = 0.0
        base = ptr[c]
        # slices, so that every index is a non-negative loop counter: numba then drops its
        # negative-index wrap-around checks, which otherwise block vectorisation
        for j in range(full[c]):
            vs = values[base + j * CHUNK_ROWS : base + (j + 1) * CHUNK_ROWS]
            cs = cols[base + j * CHUNK_ROWS : base + (j + 1) * CHUNK_ROWS]
            for lane in range(CHUNK_ROWS):
                acc[lane] += vs[lane] * x[cs[lane]]
        lens = lane_len[c]
        for j in range(full[c], span[c]):
            vs = values[base + j * CHUNK_ROWS : base + (j + 1) * CHUNK_ROWS]
            cs = cols[base + j * CHUNK_ROWS : base + (j + 1) * CHUNK_ROWS]
            for lane in range(CHUNK_ROWS):
                keep = np.float32(1.0) if j < lens[lane] else np.float32(0.0)
                acc[lane] += keep * vs[lane] * x[cs[lane]]
        r0 = c * CHUNK_ROWS
        for lane in range(min(CHUNK_ROWS, n_rows - r0)):
            y[rows[r0 + lane]] = acc[lane]


def _sum_terms(builder, values, index, signed, start, count, step, src, scale, src_at, tiles):
    """The vector sums of :func:`_weighted_sum` (LLVM values, one per tile of 8): each value and
    index read once, summed in two sets of registers, alternating, to hide the multiply-add's
    latency."""
    i64 = ir.IntType(64)
    widen = builder.sext if signed else builder.zext
    sums = [[cgutils.alloca_once_value(builder, ir.Constant(VEC8, [0.0] * 8)) for _ in range(tiles)] for _ in range(2)]

    def add_term(j, totals):
        k = builder.add(start, builder.mul(j, step))
        at = builder.add(builder.mul(widen(builder.load(builder.gep(index, [k])), i64), scale), src_at)
        v = splat8(builder, builder.load(builder.gep(values, [k])))
        for t, total in enumerate(totals):
            x_vec = load8(builder, src, builder.add(at, ir.Constant(i64, 8 * t)))
            builder.store(builder.call(fma8(builder), [x_vec, v, builder.load(total)]), total)

    two = ir.Constant(i64, 2)
    with cgutils.for_range(builder, builder.sdiv(count, two)) as loop:
        j = builder.mul(loop.index, two)
        add_term(j, sums[0])
        add_term(builder.add(j, ir.Constant(i64, 1)), sums[1])
    with builder.if_then(builder.icmp_signed("!=", builder.srem(count, two), ir.Constant(i64, 0))):
        add_term(builder.sub(count, ir.Constant(i64, 1)), sums[0])
    return [builder.fadd(builder.load(sums[0][t]), builder.load(sums[1][t])) for t in range(tiles)]


def _weighted_sum(tiles: int):
    """An intrinsic ``(out, out_at, values, index, start, count, step, src, scale, src_at)``:
    ``out[out_at : out_at + 8 * tiles] = sum over j < count of values[k] * src[a : a + 8 * tiles]``
    with ``k = start + j * step`` and ``a = index[k] * scale + src_at`` — a row's non-zeros
    against 8 x ``tiles`` of x's columns (``src`` x flattened, ``scale`` its row length), or a
    convolution channel's weights against their runs over a short row (``scale`` 1), summed in
    vector registers and stored once. Reads 8 x ``tiles`` floats from every ``a``."""

    @intrinsic
    def weighted_sum(typingctx, out, out_at, values, index, start, count, step, src, scale, src_at):
        def codegen(context, builder, signature, args):
            out_, out_at_, values_, index_, start_, count_, step_, src_, scale_, src_at_ = args
            data = [context.make_array(signature.args[i])(context, builder, args[i]).data for i in (0, 2, 3, 7)]
            totals = _sum_terms(builder, data[1], data[2], signature.args[3].dtype.signed, start_, count_, step_,
                                data[3], scale_, src_at_, tiles)
            for t, total in enumerate(totals):
                store8(builder, total, data[0], builder.add(out_at_, ir.Constant(ir.IntType(64), 8 * t)))
            return context.get_dummy_value()

        return types.void(out, out_at, values, index, start, count, step, src, scale, src_at), codegen

    return weighted_sum


def _finished_sum(tiles: int):
    """An intrinsic ``(a, out_at, values, index, start, count, src, scale, shift, res_at, lo)``:
    a convolution channel's short row (:func:`_weighted_sum`'s sum with step and scale 1) and
    its epilogue in the same registers — ``a[out_at + i] = max(sum_i * scale + shift (+
    a[res_at + i] where res_at >= 0), lo)`` for i < 8 x ``tiles`` — so the row is never stored
    before its batch norm, residual and ReLU."""

    @intrinsic
    def finished_sum(typingctx, a, out_at, values, index, start, count, src, scale, shift, res_at, lo):
        def codegen(context, builder, signature, args):
            a_, out_at_, values_, index_, start_, count_, src_, scale_, shift_, res_at_, lo_ = args
            data = [context.make_array(signature.args[i])(context, builder, args[i]).data for i in (0, 2, 3, 6)]
            i64 = ir.IntType(64)
            one, zero = ir.Constant(i64, 1), ir.Constant(i64, 0)
            totals = _sum_terms(builder, data[1], data[2], signature.args[3].dtype.signed, start_, count_, one,
                                data[3], one, zero, tiles)
            scale8, shift8, floor = splat8(builder, scale_), splat8(builder, shift_), splat8(builder, lo_)
            with_residual = builder.icmp_signed(">=", res_at_, zero)
            residual_at = builder.select(with_residual, res_at_, out_at_)  # a valid address either way
            for t, total in enumerate(totals):
                at = ir.Constant(i64, 8 * t)
                v = builder.call(fma8(builder), [total, scale8, shift8])
                residual = load8(builder, data[0], builder.add(residual_at, at))
                v = builder.fadd(v, builder.select(with_residual, residual, ir.Constant(VEC8, [0.0] * 8)))
                v = builder.select(builder.fcmp_ordered(">", v, floor), v, floor)
                store8(builder, v, data[0], builder.add(out_at_, at))
            return context.get_dummy_value()

        return types.void(a, out_at, values, index, start, count, src, scale, shift, res_at, lo), codegen

    return finished_sum


_sum8, _sum16, _sum24, _sum32, _sum40, _sum48 = (_weighted_sum(tiles) for tiles in range(1, 7))
_fin8, _fin16, _fin24, _fin32, _fin40, _fin48 = (_finished_sum(tiles) for tiles in range(1, 7))


SHORT_RUN = 48
"""A convolution row at most this long is summed in registers (:func:`sum_short_runs`)."""


@njit(fastmath=True, boundscheck=False, nogil=True)
def sum_short_runs(out, out_at, values, offsets, plane, start, stop, length):
    """``out[out_at : out_at + length]`` (at most :data:`SHORT_RUN`) set to the runs' sum, in
    whole vectors of 8 (``out`` must hold them; ``plane`` extend :data:`SHORT_RUN` floats past
    any run)."""
    tiles, count = (length + 7) // 8, stop - start
    if tiles == 1:
        _sum8(out, out_at, values, offsets, start, count, 1, plane, 1, 0)
    elif tiles == 2:
        _sum16(out, out_at, values, offsets, start, count, 1, plane, 1, 0)
    elif tiles == 3:
        _sum24(out, out_at, values, offsets, start, count, 1, plane, 1, 0)
    elif tiles == 4:
        _sum32(out, out_at, values, offsets, start, count, 1, plane, 1, 0)
    elif tiles == 5:
        _sum40(out, out_at, values, offsets, start, count, 1, plane, 1, 0)
    else:
        _sum48(out, out_at, values, offsets, start, count, 1, plane, 1, 0)


@njit(fastmath=True, boundscheck=False, nogil=True, inline="always")
def finish_short_runs(a, out_at, values, offsets, plane, start, stop, length, scale, shift, res_at, lo):
    """:func:`sum_short_runs` of ``length`` values (at most :data:`SHORT_RUN`) with its epilogue
    in registers: ``a[out_at + i] = max(sum_i * scale + shift (+ a[res_at + i] where res_at >=
    0), lo)``, written (and the residual read) in whole vectors of 8 (``a`` must hold them)."""
    tiles, count = (length + 7) // 8, stop - start
    if tiles == 1:
        _fin8(a, out_at, values, offsets, start, count, plane, scale, shift, res_at, lo)
    elif tiles == 2:
        _fin16(a, out_at, values, offsets, start, count, plane, scale, shift, res_at, lo)
    elif tiles == 3:
        _fin24(a, out_at, values, offsets, start, count, plane, scale, shift, res_at, lo)
    elif tiles == 4:
        _fin32(a, out_at, values, offsets, start, count, plane, scale, shift, res_at, lo)
    elif tiles == 5:
        _fin40(a, out_at, values, offsets, start, count, plane, scale, shift, res_at, lo)
    else:
        _fin48(a, out_at, values, offsets, start, count, plane, scale, shift, res_at, lo)


COLUMN_BLOCK = 128
"""Columns of x a batched product takes at a time: x's block (its rows x 128 floats, 256 KB
for 500 rows) stays in cache while every row of W reads it (on the GAT's projection, 6,000
columns, 128 measured a little faster than 64 or 256, and 1.3x faster than whole rows)."""


@njit(fastmath=True, boundscheck=False)
def _rows_times_columns(values, cols, ptr, lane_len, rows, flat, n, lo, hi, y):
    """``y[:, lo:hi] = W x[:, lo:hi]`` for x flattened (``flat``, ``n`` columns a row) and
    ``hi - lo`` a multiple of 8, in explicit 8-float vector operations (numba's own loops leave a
    row of 16 to a scalar remainder): per row and 8 to 32 columns, the row's non-zeros summed in
    registers and stored once."""
    n_rows = y.shape[0]
    for c in range(ptr.shape[0]):
        base = ptr[c]
        r0 = c * CHUNK_ROWS
        for lane in range(min(CHUNK_ROWS, n_rows - r0)):
            yr = y[rows[r0 + lane]]
            count = lane_len[c, lane]
            t0 = lo
            while t0 + 32 <= hi:
                _sum32(yr, t0, values, cols, base + lane, count, CHUNK_ROWS, flat, n, t0)
                t0 += 32
            if t0 + 16 <= hi:
                _sum16(yr, t0, values, cols, base + lane, count, CHUNK_ROWS, flat, n, t0)
                t0 += 16
            if t0 < hi:
                _sum8(yr, t0, values, cols, base + lane, count, CHUNK_ROWS, flat, n, t0)


@njit(fastmath=True, boundscheck=False)
def _spmm(values, cols, ptr, lane_len, rows, x, y):
    """``y = W x`` for x (columns, n), in blocks of :data:`COLUMN_BLOCK` columns that stay in
    cache while every row of W reads them. Columns past a multiple of 8: scalar."""
    n_rows, n = y.shape
    n8 = n - n % 8
    flat = x.ravel()
    y[:, :] = 0.0
    for lo in range(0, n8, COLUMN_BLOCK):
        _rows_times_columns(values, cols, ptr, lane_len, rows, flat, n, lo, min(lo + COLUMN_BLOCK, n8), y)
    if n8 == n:
        return
    for c in range(ptr.shape[0]):
        base = ptr[c]
        r0 = c * CHUNK_ROWS
        for lane in range(min(CHUNK_ROWS, n_rows - r0)):
            yr = y[rows[r0 + lane]]
            for j in range(lane_len[c, lane]):
                k = base + lane + j * CHUNK_ROWS
                v, xc = values[k], x[cols[k]]
                for t in range(n8, n):
                    yr[t] += v * xc[t]


@njit(fastmath=True, boundscheck=False)
def _spmm_rows(values, cols, ptr, lane_len, rows, x, y):
    """``y = x W^T`` for x (n, columns) and y (n, rows of W), as a Linear layer's batch: each
    block of :data:`COLUMN_BLOCK` of x's rows is turned into columns in a buffer that stays in
    cache, multiplied as :func:`_spmm` does, and turned back into y's rows — where transposing
    the whole x and y around the product cost as much as the product (the GAT's 6,000 x 500
    input: 6 ms of 12.6 ms at level 0)."""
    n, n_in = x.shape
    n_out = y.shape[1]
    block_x = np.zeros((n_in, COLUMN_BLOCK), np.float32)
    block_y = np.empty((n_out, COLUMN_BLOCK), np.float32)
    flat = block_x.ravel()
    for lo in range(0, n, COLUMN_BLOCK):
        width = min(COLUMN_BLOCK, n - lo)
        if width < COLUMN_BLOCK:
            block_x[:, :] = 0.0
        for j in range(width):
            for k in range(n_in):
                block_x[k, j] = x[lo + j, k]
        _rows_times_columns(values, cols, ptr, lane_len, rows, flat, COLUMN_BLOCK, 0, (width + 7) // 8 * 8, block_y)
        for j in range(width):
            for r in range(n_out):
                y[lo + j, r] = block_y[r, j]


_LOG2E, _LN2_HI, _LN2_LO = np.float32(1.4426950408889634), np.float32(0.693359375), np.float32(-2.12194440e-4)


@njit(fastmath=True, boundscheck=False)
def _exp_into(x, out, bits):
    """``out = exp(x)`` elementwise, float32, within 1e-6 relative over [-87, 88] (x is clamped to
    it): 2^n times Cephes' degree-6 polynomial of the remainder, in a loop the compiler
    turns into vector code (``np.exp`` is a scalar call per element: 6 µs of an LSTM step's gates
    at hidden 128, against 0.14 µs). ``bits``: int32 scratch of x's length."""
    scale = bits.view(np.float32)
    for j in range(x.shape[0]):
        v = min(max(x[j], np.float32(-87.0)), np.float32(88.0))
        n = np.floor(v * _LOG2E + np.float32(0.5))
        r = v - n * _LN2_HI - n * _LN2_LO
        p = np.float32(1.9875691500e-4)
        p = p * r + np.float32(1.3981999507e-3)
        p = p * r + np.float32(8.3334519073e-3)
        p = p * r + np.float32(4.1665795894e-2)
        p = p * r + np.float32(1.6666665459e-1)
        p = p * r + np.float32(5.0000001201e-1)
        bits[j] = (np.int32(n) + np.int32(127)) << np.int32(23)
        out[j] = (p * r * r + r + np.float32(1.0)) * scale[j]


@njit(fastmath=True, boundscheck=False)
def _lstm_steps(values, cols, ptr, full, span, lane_len, rows, pre, h, c, out, reverse):
    """An LSTM's recurrence (gates i, f, g, o, as torch orders them) with this SELL matrix as
    its recurrent weight: ``pre`` (batch, steps, 4 hidden) the input part and both biases, ``h``
    and ``c`` (batch, hidden) updated in place, ``out`` (batch, steps, hidden). Each step's
    sigmoids, ``1 / (1 + e^-z)``, and tanhs, ``2 / (1 + e^-2z) - 1``, take their exponentials in
    one vector pass (:func:`_exp_into`)."""
    batch, steps, four = pre.shape
    hid = four // 4
    g, e, bits = np.empty(four, np.float32), np.empty(four, np.float32), np.empty(four, np.int32)
    slope = np.full(four, np.float32(-1.0))  # e^(slope z): sigmoid for i, f, o; tanh for g
    slope[2 * hid : 3 * hid] = -2.0
    top = -slope  # gate = top / (1 + e) - (top - 1)
    for s in range(steps):
        t = steps - 1 - s if reverse else s
        for b in range(batch):
            _spmv(values, cols, ptr, full, span, lane_len, rows, h[b], g)
            for j in range(four):
                g[j] = slope[j] * (g[j] + pre[b, t, j])
            _exp_into(g, e, bits)
            for j in range(four):
                g[j] = top[j] / (np.float32(1.0) + e[j]) - (top[j] - np.float32(1.0))
            for j in range(hid):
                c[b, j] = g[hid + j] * c[b, j] + g[j] * g[2 * hid + j]
                e[j] = np.float32(-2.0) * c[b, j]
            _exp_into(e[:hid], e[hid : 2 * hid], bits)
            for j in range(hid):
                h[b, j] = g[3 * hid + j] * (np.float32(2.0) / (np.float32(1.0) + e[hid + j]) - np.float32(1.0))
                out[b, t, j] = h[b, j]


@dataclass(frozen=True)
class NestedSell:
    """A 2-D weight's nested levels in sliced ELLPACK (see the module docstring)."""

    shape: tuple[int, int]
    values: np.ndarray  # float32, padded slots
    cols: np.ndarray  # uint16 or int32
    ptr: np.ndarray  # int64 (chunks,) offset of each chunk
    full: np.ndarray  # int64 (levels, chunks) slots every lane uses at that level
    span: np.ndarray  # int64 (levels, chunks) slots some lane uses at that level
    lane_len: np.ndarray  # int64 (levels, chunks, C) prefix length of each row (0 past the last row)
    rows: np.ndarray  # int64 (rows,) the matrix row stored at each position

    @classmethod
    def from_ranks(cls, weight: torch.Tensor, ranks: torch.Tensor, n_levels: int) -> NestedSell:
        """Build from a 2-D weight and its nested ranks (-1: pruned; k: held by levels <= k)."""
        w = weight.detach().cpu().numpy().astype(np.float32)
        rk = ranks.detach().cpu().numpy().astype(np.int64)
        rows, n_cols = w.shape
        n_chunks = -(-rows // CHUNK_ROWS)
        row_len = np.stack([(rk >= k).sum(axis=1) for k in range(n_levels)]).astype(np.int64)  # (levels, rows)
        order = np.lexsort([-row_len[k] for k in reversed(range(n_levels))])  # by level 0's length, then level 1's ...
        per_row = []
        for r in order:
            held = np.flatnonzero(rk[r] >= 0)
            per_row.append(held[np.lexsort((held, -rk[r, held]))])  # sparsest level first
        lengths = row_len[0, order]
        padded = np.concatenate([lengths, np.zeros(n_chunks * CHUNK_ROWS - rows, dtype=np.int64)])
        chunk_max = padded.reshape(n_chunks, CHUNK_ROWS).max(axis=1)
        ptr = np.concatenate([[0], np.cumsum(chunk_max * CHUNK_ROWS)[:-1]]).astype(np.int64)
        total = int(chunk_max.sum() * CHUNK_ROWS)
        values = np.zeros(total, dtype=np.float32)
        cols = np.zeros(total, dtype=np.uint16 if n_cols <= 1 << 16 else np.int32)
        for i, held in enumerate(per_row):
            c, lane = divmod(i, CHUNK_ROWS)
            slots = ptr[c] + np.arange(len(held)) * CHUNK_ROWS + lane
            values[slots] = w[order[i], held]
            cols[slots] = held
        lens = np.concatenate([row_len[:, order], np.zeros((n_levels, n_chunks * CHUNK_ROWS - rows), dtype=np.int64)], axis=1)
        lens = lens.reshape(n_levels, n_chunks, CHUNK_ROWS)
        # A row's slots past its level-0 length are zero padding, and need no mask; a sparser
        # level's slots between its prefix and that length hold less sparse weights and must be
        # masked. So a chunk runs unmasked up to the shortest prefix of the rows that are cut
        # at that level (all of them, at level 0 none: a layer kept dense is never masked).
        cut = lens < lens[0]
        full = np.where(cut.any(axis=2), np.where(cut, lens, np.iinfo(np.int64).max).min(axis=2), lens.max(axis=2))
        return cls((rows, n_cols), values, cols, ptr, full, lens.max(axis=2), np.ascontiguousarray(lens), order.astype(np.int64))

    @property
    def n_levels(self) -> int:
        return self.lane_len.shape[0]

    @property
    def nbytes(self) -> int:
        """Bytes of every array: all levels together."""
        return sum(a.nbytes for a in (self.values, self.cols, self.ptr, self.full, self.span, self.lane_len, self.rows))

    def level_nbytes(self, level: int) -> int:
        """Bytes a single level would need on its own in this format (for comparison)."""
        slots = int(self.span[level].sum() * CHUNK_ROWS)
        return slots * (4 + self.cols.itemsize) + self.ptr.nbytes + self.lane_len[level].nbytes + self.rows.nbytes

    def matmul(self, level: int, x: np.ndarray) -> np.ndarray:
        """``W_level @ x`` for x of shape (columns,) or (columns, n), float32."""
        if x.ndim == 1:
            y = np.empty(self.shape[0], dtype=np.float32)
            _spmv(self.values, self.cols, self.ptr, self.full[level], self.span[level], self.lane_len[level], self.rows, x, y)
        else:
            y = np.empty((self.shape[0], x.shape[1]), dtype=np.float32)
            _spmm(self.values, self.cols, self.ptr, self.lane_len[level], self.rows, np.ascontiguousarray(x), y)
        return y

    def lstm_steps(self, level: int, pre: np.ndarray, h: np.ndarray, c: np.ndarray, reverse: bool = False) -> np.ndarray:
        """A one-layer LSTM's recurrence with this matrix (4 hidden x hidden) as its recurrent
        weight, the whole sequence in one compiled call: ``pre`` (batch, steps, 4 hidden) float32,
        the input part with both biases; ``h`` and ``c`` (batch, hidden) float32, the states,
        updated in place. Returns the outputs (batch, steps, hidden)."""
        out = np.empty((pre.shape[0], pre.shape[1], self.shape[1]), dtype=np.float32)
        _lstm_steps(self.values, self.cols, self.ptr, self.full[level], self.span[level], self.lane_len[level], self.rows,
                    np.ascontiguousarray(pre), h, c, out, reverse)
        return out

    def matmul_rows(self, level: int, x: np.ndarray) -> np.ndarray:
        """``x @ W_level.T`` for x of shape (n, columns), float32: a Linear layer's batch, with
        no whole transposed copy of x or of the result (one row: the vector product)."""
        if x.shape[0] == 1:
            return self.matmul(level, np.ascontiguousarray(x[0]))[None]
        y = np.empty((x.shape[0], self.shape[0]), dtype=np.float32)
        _spmm_rows(self.values, self.cols, self.ptr, self.lane_len[level], self.rows, np.ascontiguousarray(x), y)
        return y


@njit(fastmath=True, boundscheck=False, nogil=True)
def add_runs(row, values, offsets, plane, start, stop, length):
    """``row[:length] += values[e] * plane[offsets[e] : offsets[e] + length]`` for every e in
    ``start..stop``: four weights a pass over the row, vectorised along it."""
    e = start
    while e + 4 <= stop:
        v0, v1, v2, v3 = values[e], values[e + 1], values[e + 2], values[e + 3]
        s0 = plane[offsets[e] : offsets[e] + length]
        s1 = plane[offsets[e + 1] : offsets[e + 1] + length]
        s2 = plane[offsets[e + 2] : offsets[e + 2] + length]
        s3 = plane[offsets[e + 3] : offsets[e + 3] + length]
        for p in range(length):
            row[p] += v0 * s0[p] + v1 * s1[p] + v2 * s2[p] + v3 * s3[p]
        e += 4
    while e < stop:
        v = values[e]
        s = plane[offsets[e] : offsets[e] + length]
        for p in range(length):
            row[p] += v * s[p]
        e += 1


@njit(fastmath=True, boundscheck=False)
def _conv_rows(values, offsets, start, stop, padded, out, row_step, col_step, out_w):
    """out[o, i*out_w + j] = sum_e values[e] * padded[offsets[e] + i*row_step + j*col_step]."""
    n_out, length = out.shape
    rows = length // out_w
    for o in range(n_out):
        row = out[o]
        row[:] = 0.0
        if col_step == 1 and row_step == out_w:
            # stride 1 on the padded width: one contiguous run per weight, four weights at once
            add_runs(row, values, offsets, padded, start[o], stop[o], length)
        else:
            for e in range(start[o], stop[o]):
                v = values[e]
                for i in range(rows):
                    s = padded[offsets[e] + i * row_step :]
                    r = row[i * out_w : (i + 1) * out_w]
                    for j in range(out_w):
                        r[j] += v * s[j * col_step]


@dataclass(frozen=True)
class NestedConv:
    """A kxk convolution's nested levels for direct sparse convolution (no unfold).

    Per output channel the non-zero weights are ordered sparsest level first, so level k is a
    prefix ``[start[o], stop[k, o])``. Each weight is stored with its input channel and its
    position in the kernel window (16-bit each); for a given input size these become offsets
    into the zero-padded input plane stack (computed once, cached). Computing a weight adds a
    shifted input plane, times the weight, to the output plane — vectorised over pixels. With
    stride 1 the output is computed on the padded width (a few wasted columns) so that every
    weight is one contiguous run. Groups must be 1. A call is not reentrant (module docstring
    of :meth:`conv`).
    """

    in_channels: int
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    values: np.ndarray  # float32
    channel: np.ndarray  # uint16 (nnz,) input channel of each stored weight (int32 past 65,536)
    window: np.ndarray  # uint16 (nnz,) its position ky * kw + kx in the kernel window
    start: np.ndarray  # int64 (out,)
    stop: np.ndarray  # int64 (levels, out)
    _plans: dict = field(default_factory=dict, compare=False, repr=False)  # by input (H, W): see _plan

    @classmethod
    def from_ranks(cls, weight: torch.Tensor, ranks: torch.Tensor, n_levels: int, stride, padding, dilation) -> NestedConv:
        """Build from a conv2d weight (out, in, kh, kw) and its nested ranks."""
        w = weight.detach().cpu().numpy().astype(np.float32)
        rk = ranks.detach().cpu().numpy().astype(np.int64)
        out_c = w.shape[0]
        values, taps, starts, stops = [], [], [], np.zeros((n_levels, out_c), dtype=np.int64)
        count = 0
        for o in range(out_c):
            held = np.argwhere(rk[o] >= 0)
            order = np.lexsort((np.arange(len(held)), -rk[o][tuple(held.T)]))
            held = held[order]
            starts.append(count)
            values.append(w[o][tuple(held.T)])
            taps.append(held)
            for k in range(n_levels):
                stops[k, o] = count + int((rk[o] >= k).sum())
            count += len(held)
        taps_all = np.concatenate(taps).astype(np.int64) if count else np.zeros((0, 3), np.int64)
        return cls(
            in_channels=w.shape[1],
            kernel=(w.shape[2], w.shape[3]),
            stride=tuple(stride),
            padding=tuple(padding),
            dilation=tuple(dilation),
            values=np.concatenate(values).astype(np.float32) if count else np.zeros(0, np.float32),
            channel=taps_all[:, 0].astype(np.uint16 if w.shape[1] <= 1 << 16 else np.int32),
            window=(taps_all[:, 1] * w.shape[3] + taps_all[:, 2]).astype(np.uint16),
            start=np.array(starts, dtype=np.int64),
            stop=stops,
        )

    @property
    def nbytes(self) -> int:
        """Bytes as stored: float32 values, 16-bit channel and window indices, level extents.
        (A call also caches, per input size, one 32-bit input offset per weight.)"""
        return self.values.nbytes + self.channel.nbytes + self.window.nbytes + self.start.nbytes + self.stop.nbytes

    def conv(self, level: int, x: np.ndarray) -> np.ndarray:
        """Level ``level`` convolution of x (N, C, H, W) float32 -> (N, out, H_out, W_out).

        Not reentrant: the zero-padded input and the output rows are buffers kept per input
        size (a call at batch 1 spent as long allocating them as computing)."""
        n, _, h, w = x.shape
        plan = self._plans.get((h, w))
        if plan is None:  # the same input size comes back every call: work it out once
            plan = self._plans[(h, w)] = self._plan(h, w)
        offsets, h_out, w_out, out_w, row_step, padded, planes, out = plan
        ph, pw = self.padding
        result = np.empty((n, len(self.start), h_out, w_out), dtype=np.float32)
        for b in range(n):
            planes[:, ph : ph + h, pw : pw + w] = x[b]  # the padding around stays zero
            _conv_rows(self.values, offsets, self.start, self.stop[level], padded, out, row_step, self.stride[1], out_w)
            result[b] = out.reshape(-1, h_out, out_w)[:, :, :w_out]
        return result

    def _plan(self, h: int, w: int) -> tuple:
        """For inputs of ``h`` x ``w``: each weight's offset into the zero-padded input plane
        stack, the output's size, and the buffers a call fills."""
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = self.kernel, self.stride, self.padding, self.dilation
        hp, wp = h + 2 * ph, w + 2 * pw
        h_out = (hp - dh * (kh - 1) - 1) // sh + 1
        w_out = (wp - dw * (kw - 1) - 1) // sw + 1
        out_w = wp if sh == 1 and sw == 1 else w_out  # stride 1: computed on the padded width
        ky, kx = np.divmod(self.window.astype(np.int64), kw)
        offsets = (self.channel.astype(np.int64) * hp * wp + ky * dh * wp + kx * dw).astype(np.int32)
        padded = np.zeros(self.in_channels * hp * wp + wp + dw * kw, dtype=np.float32)  # tail: the wide rows' overrun
        planes = padded[: self.in_channels * hp * wp].reshape(self.in_channels, hp, wp)
        out = np.empty((len(self.start), h_out * out_w), dtype=np.float32)
        return offsets, h_out, w_out, out_w, sh * wp, padded, planes, out
