"""The nested runtime's interpreter: a network as a table of ops, run by one compiled call.

A lowered network (:mod:`simqos.kernels.runtime.lowering`) is a table ``ops`` of int64 rows, one per
op, in execution order, and four flat arrays: ``fw`` (float32: the nested weight values of every
layer, biases and per-route batch-norm scales and shifts), ``ic`` (uint32: a convolution
weight's offset into its zero-padded input, a linear weight's column), ``iw`` (int64: where
each output channel's or row chunk's weights start and stop at each level), and the activation
arena ``act`` (float32, one row per sample: every intermediate value at its own offset, plus
each convolution's zero-padded input). :func:`run_ops` runs ops ``lo..hi`` — one
segment, or a whole route — for a batch, each at the level its segment has in ``route``, with
the epilogue (batch norm folded to a scale and shift, residual add, ReLU) of the route's
``epilogue`` table, and optionally adds each op's wall time (ns) to ``op_ns``.

Why an interpreter and not generated code: the table is data, so one compiled function (cached
on disk) serves every network, and the cost of an op's dispatch is a few nanoseconds of
branching instead of torch's tens of microseconds.

Layouts (per sample): an activation of C channels is C x H x W floats, channel-major; a flat
vector is C = features, H = W = 1. Convolutions (2-D; a 1-D one is 1 x W) use the direct
nested scheme of :class:`simqos.kernels.nested.NestedConv` — each weight adds a shifted input
run, times itself, to its output channel — on the zero-padded input split into its stride
phases, so that a strided convolution's runs are contiguous too; linear layers the sliced ELLPACK of
:class:`simqos.kernels.nested.NestedSell`, whose levels are prefixes of each row.
"""

from __future__ import annotations

import numpy as np

from simqos.compiled import clock_ns, njit
from simqos.kernels.nested import CHUNK_ROWS, SHORT_RUN, add_runs, add_short_runs

__all__ = ["FIELDS", "OP_CONV", "OP_EPILOGUE", "OP_LINEAR", "OP_MAXPOOL", "OP_MEAN", "forward", "run_ops"]

OP_CONV, OP_LINEAR, OP_EPILOGUE, OP_MEAN, OP_MAXPOOL = range(5)

FIELDS = (
    # every op
    "op", "segment", "layer", "input", "output", "residual", "relu",
    "c", "h", "w", "c_out", "h_out", "w_out",
    # convolution: its weights, its padded input's stride phases (-1: reads its input in
    # place), the padding, a phase's size
    "values", "index", "start", "stop", "padded", "pad_h", "pad_w", "plane_h", "plane_w",
    # linear (sliced ELLPACK): values, index (columns), then these in iw
    "chunk_ptr", "chunk_full", "chunk_span", "lane_len", "chunks", "rows",
    # convolution and max pooling
    "stride_h", "stride_w",
    # max pooling
    "kernel_h", "kernel_w",
)
"""The columns of an op row; unused ones are 0 (a buffer offset that is absent is -1)."""
(F_OP, F_SEG, F_LAYER, F_IN, F_OUT, F_RES, F_RELU, F_C, F_H, F_W, F_CO, F_HO, F_WO,
 F_VAL, F_IDX, F_START, F_STOP, F_PAD, F_PH, F_PW, F_HP, F_WP,
 F_PTR, F_FULL, F_SPAN, F_LANE, F_CHUNKS, F_ROWS, F_SH, F_SW, F_KH, F_KW) = range(len(FIELDS))


@njit(fastmath=True, boundscheck=False, nogil=True)
def _finish(a, op, o, row, fw, scale_at, out_len):
    """Channel or row ``o``'s epilogue: ``row`` (its computed values, out_len of them at the
    output's row stride) times its scale plus its shift, plus the residual, ReLU'd, into the
    output."""
    scale, shift = np.float32(1.0), np.float32(0.0)
    if scale_at >= 0:
        scale, shift = fw[scale_at + o], fw[scale_at + op[F_CO] + o]
    h_out, w_out, row_w = op[F_HO], op[F_WO], out_len // op[F_HO]
    out = a[op[F_OUT] + o * h_out * w_out : op[F_OUT] + (o + 1) * h_out * w_out]
    res_at = op[F_RES]
    for i in range(h_out):
        src = row[i * row_w : i * row_w + w_out]
        dst = out[i * w_out : (i + 1) * w_out]
        if res_at >= 0:
            res = a[res_at + o * h_out * w_out + i * w_out : res_at + o * h_out * w_out + (i + 1) * w_out]
            for j in range(w_out):
                dst[j] = src[j] * scale + shift + res[j]
        else:
            for j in range(w_out):
                dst[j] = src[j] * scale + shift
        if op[F_RELU]:
            for j in range(w_out):
                dst[j] = max(dst[j], np.float32(0.0))


@njit(fastmath=True, boundscheck=False, nogil=True)
def _conv(a, op, level, fw, ic, iw, scale_at, acc):
    c_in, h, w, c_out, h_out = op[F_C], op[F_H], op[F_W], op[F_CO], op[F_HO]
    sh, sw, hq, wq = op[F_SH], op[F_SW], op[F_HP], op[F_WP]
    src = op[F_IN]
    if op[F_PAD] >= 0:
        # scatter into the zero-padded input's stride phases (their borders are never written):
        # padded position (y, x) goes to phase (y % sh, x % sw) at (y // sh, x // sw), so that
        # every weight reads one contiguous run of its phase
        ph, pw = op[F_PH], op[F_PW]
        plane = hq * wq
        for c in range(c_in):
            for i in range(h):
                y = i + ph
                s0 = src + c * h * w + i * w
                row0 = op[F_PAD] + (c * sh * sw + (y % sh) * sw) * plane + (y // sh) * wq
                if sw == 1:
                    a[row0 + pw : row0 + pw + w] = a[s0 : s0 + w]
                else:  # column phase px holds padded columns px, px + sw, ...: input columns j = x - pw
                    for px in range(sw):
                        first = max(0, -(-(pw - px) // sw))
                        last = (w - 1 + pw - px) // sw
                        dst = a[row0 + px * plane :]
                        for jj in range(first, last + 1):
                            dst[jj] = a[s0 + jj * sw + px - pw]
        src = op[F_PAD]
    length = h_out * wq  # rows computed on the phase width: the columns past w_out are dropped
    values = fw[op[F_VAL] :]
    offsets = ic[op[F_IDX] :]
    plane_in = a[src:]
    for o in range(c_out):
        row = acc[: max(length, SHORT_RUN)]
        if length > SHORT_RUN:
            row[:] = 0.0
        start, stop = iw[op[F_START] + o], iw[op[F_STOP] + level * c_out + o]
        if length <= SHORT_RUN:
            add_short_runs(row, values, offsets, plane_in, start, stop, length)
        else:
            add_runs(row, values, offsets, plane_in, start, stop, length)
        _finish(a, op, o, row, fw, scale_at, length)


@njit(fastmath=True, boundscheck=False, nogil=True)
def _linear(a, op, level, fw, ic, iw, scale_at, acc):
    n_rows, n_chunks = op[F_CO], op[F_CHUNKS]
    x = a[op[F_IN] : op[F_IN] + op[F_C]]
    values, cols = fw[op[F_VAL] :], ic[op[F_IDX] :]
    lanes = np.zeros(CHUNK_ROWS, np.float32)
    for c in range(n_chunks):
        lanes[:] = 0.0
        base = iw[op[F_PTR] + c]
        full, span = iw[op[F_FULL] + level * n_chunks + c], iw[op[F_SPAN] + level * n_chunks + c]
        for j in range(full):
            vs = values[base + j * CHUNK_ROWS : base + (j + 1) * CHUNK_ROWS]
            cs = cols[base + j * CHUNK_ROWS : base + (j + 1) * CHUNK_ROWS]
            for lane in range(CHUNK_ROWS):
                lanes[lane] += vs[lane] * x[cs[lane]]
        lens = iw[op[F_LANE] + (level * n_chunks + c) * CHUNK_ROWS : op[F_LANE] + (level * n_chunks + c + 1) * CHUNK_ROWS]
        for j in range(full, span):
            vs = values[base + j * CHUNK_ROWS : base + (j + 1) * CHUNK_ROWS]
            cs = cols[base + j * CHUNK_ROWS : base + (j + 1) * CHUNK_ROWS]
            for lane in range(CHUNK_ROWS):
                keep = np.float32(1.0) if j < lens[lane] else np.float32(0.0)
                lanes[lane] += keep * vs[lane] * x[cs[lane]]
        for lane in range(min(CHUNK_ROWS, n_rows - c * CHUNK_ROWS)):  # the epilogue, one number a row
            r = iw[op[F_ROWS] + c * CHUNK_ROWS + lane]
            v = lanes[lane] * fw[scale_at + r] + fw[scale_at + n_rows + r] if scale_at >= 0 else lanes[lane]
            if op[F_RES] >= 0:
                v += a[op[F_RES] + r]
            a[op[F_OUT] + r] = max(v, np.float32(0.0)) if op[F_RELU] else v


@njit(fastmath=True, boundscheck=False, nogil=True)
def _epilogue(a, op, fw, scale_at):
    size = op[F_HO] * op[F_WO]
    for o in range(op[F_CO]):
        _finish(a, op, o, a[op[F_IN] + o * size : op[F_IN] + (o + 1) * size], fw, scale_at, size)


@njit(fastmath=True, boundscheck=False, nogil=True)
def _mean(a, op):
    size = op[F_H] * op[F_W]
    for c in range(op[F_C]):
        s = a[op[F_IN] + c * size : op[F_IN] + (c + 1) * size]
        total = np.float32(0.0)
        for p in range(size):
            total += s[p]
        a[op[F_OUT] + c] = total / size


@njit(fastmath=True, boundscheck=False, nogil=True)
def _maxpool(a, op):
    h, w, h_out, w_out = op[F_H], op[F_W], op[F_HO], op[F_WO]
    for c in range(op[F_C]):
        plane = a[op[F_IN] + c * h * w : op[F_IN] + (c + 1) * h * w]
        out = a[op[F_OUT] + c * h_out * w_out : op[F_OUT] + (c + 1) * h_out * w_out]
        for i in range(h_out):
            for j in range(w_out):
                best = -np.inf
                for di in range(op[F_KH]):
                    y = i * op[F_SH] - op[F_PH] + di
                    if 0 <= y < h:
                        for dj in range(op[F_KW]):
                            x = j * op[F_SW] - op[F_PW] + dj
                            if 0 <= x < w:
                                best = max(best, plane[y * w + x])
                out[i * w_out + j] = best


@njit(fastmath=True, boundscheck=False, nogil=True)
def run_ops(ops, lo, hi, route, epilogue, fw, ic, iw, act, batch, acc, op_ns, timed):
    """Run ops ``lo..hi`` for samples ``0..batch`` of ``act``: op i at level
    ``route[ops[i, segment]]`` with epilogue scale and shift at ``fw[epilogue[i]:]`` (-1: none).
    ``acc`` is scratch as long as the longest output plane (computed on its input phase's width); with ``timed``, each op's wall time (ns, all
    samples) is added to ``op_ns[i]``."""
    for i in range(lo, hi):
        t0 = clock_ns() if timed else 0
        op = ops[i]
        kind, level, scale_at = op[F_OP], route[op[F_SEG]], epilogue[i]
        for b in range(batch):
            a = act[b]
            if kind == OP_CONV:
                _conv(a, op, level, fw, ic, iw, scale_at, acc)
            elif kind == OP_LINEAR:
                _linear(a, op, level, fw, ic, iw, scale_at, acc)
            elif kind == OP_EPILOGUE:
                _epilogue(a, op, fw, scale_at)
            elif kind == OP_MEAN:
                _mean(a, op)
            else:
                _maxpool(a, op)
        if timed:
            op_ns[i] += clock_ns() - t0


@njit(fastmath=True, boundscheck=False, nogil=True)
def forward(ops, route, epilogue, fw, ic, iw, act, acc, x, input_at, out, output_at, op_ns, timed):
    """A whole route in one call: the batch ``x`` (batch, input floats) into the arena at
    ``input_at``, every op (:func:`run_ops`), the output at ``output_at`` into ``out``."""
    batch = x.shape[0]
    for b in range(batch):
        act[b, input_at : input_at + x.shape[1]] = x[b]
    run_ops(ops, 0, ops.shape[0], route, epilogue, fw, ic, iw, act, batch, acc, op_ns, timed)
    for b in range(batch):
        out[b] = act[b, output_at : output_at + out.shape[1]]
