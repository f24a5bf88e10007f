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
:class:`simqos.kernels.nested.NestedSell`, whose levels are prefixes of each row. A convolution
with one output row (every 1-D one) sums each channel's row and applies its epilogue in vector
registers, inlined into the loop over channels: a call per channel, or a second pass over the
channels' sums, cost as much as a sparse level's arithmetic and did not shrink with the level.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

from simqos.jit import clock_ns, njit
from simqos.kernels.nested import CHUNK_ROWS, SHORT_RUN, add_runs, finish_short_runs, sum_short_runs
from simqos.kernels.vector import fma8, load8, splat8, store8

__all__ = ["FIELDS", "OP_CONV", "OP_EPILOGUE", "OP_LINEAR", "OP_MAXPOOL", "OP_MEAN", "forward", "run_ops"]

OP_CONV, OP_LINEAR, OP_EPILOGUE, OP_MEAN, OP_MAXPOOL = range(5)

FIELDS = (
    # every op
    "op", "segment", "layer", "input", "output", "residual", "relu",
    "c", "h", "w", "c_out", "h_out", "w_out",
    # convolution: its weights, its padded input's stride phases (-1: reads its input in
    # place), the padding, a phase's size, which phases its taps read (bit (y % sh) * sw + x % sw)
    "values", "index", "start", "stop", "padded", "pad_h", "pad_w", "plane_h", "plane_w", "phases",
    # linear (sliced ELLPACK): values, index (columns), then these in iw
    "chunk_ptr", "chunk_full", "chunk_span", "lane_len", "chunks", "rows",
    # convolution and max pooling
    "stride_h", "stride_w",
    # max pooling
    "kernel_h", "kernel_w",
)
"""The columns of an op row; unused ones are 0 (a buffer offset that is absent is -1)."""
(F_OP, F_SEG, F_LAYER, F_IN, F_OUT, F_RES, F_RELU, F_C, F_H, F_W, F_CO, F_HO, F_WO,
 F_VAL, F_IDX, F_START, F_STOP, F_PAD, F_PH, F_PW, F_HP, F_WP, F_PHASES,
 F_PTR, F_FULL, F_SPAN, F_LANE, F_CHUNKS, F_ROWS, F_SH, F_SW, F_KH, F_KW) = range(len(FIELDS))


@intrinsic
def _finish_vectors(typingctx, a, out_at, w_out, res_at, src, src_at, step, fw, scale_at, c_out, lo):
    """Every output channel's epilogue over one row, in whole vectors of 8: ``a[out_at + o * w_out
    + i] = max(src[src_at + o * step + i] * fw[scale_at + o] + fw[scale_at + c_out + o]
    (+ a[res_at + o * w_out + i] where res_at >= 0), lo)`` for i < w_out rounded up to 8. A
    channel's last vector runs into the next channel's outputs, which are written after it, and
    the last channel's into the buffer's tail; the residual and ``src`` are read as far."""
    def codegen(context, builder, signature, args):
        a_, out_at_, w_out_, res_at_, src_, src_at_, step_, fw_, scale_at_, c_out_, lo_ = args
        arena = context.make_array(signature.args[0])(context, builder, a_).data
        rows = context.make_array(signature.args[4])(context, builder, src_).data
        weights = context.make_array(signature.args[7])(context, builder, fw_).data
        i64, eight = ir.IntType(64), ir.Constant(ir.IntType(64), 8)
        tiles = builder.sdiv(builder.add(w_out_, ir.Constant(i64, 7)), eight)
        floor = splat8(builder, lo_)

        def channels(residual: bool) -> None:
            with cgutils.for_range(builder, c_out_) as channel:
                o = channel.index
                scale = splat8(builder, builder.load(builder.gep(weights, [builder.add(scale_at_, o)])))
                shift = splat8(builder, builder.load(builder.gep(weights, [builder.add(builder.add(scale_at_, c_out_), o)])))
                out0, row0 = builder.add(out_at_, builder.mul(o, w_out_)), builder.add(src_at_, builder.mul(o, step_))
                with cgutils.for_range(builder, tiles) as tile:
                    at = builder.mul(tile.index, eight)
                    v = builder.call(fma8(builder), [load8(builder, rows, builder.add(row0, at)), scale, shift])
                    if residual:
                        v = builder.fadd(v, load8(builder, arena, builder.add(builder.add(res_at_, builder.mul(o, w_out_)), at)))
                    v = builder.select(builder.fcmp_ordered(">", v, floor), v, floor)
                    store8(builder, v, arena, builder.add(out0, at))

        with builder.if_else(builder.icmp_signed(">=", res_at_, ir.Constant(i64, 0))) as (with_residual, without):
            with with_residual:
                channels(True)
            with without:
                channels(False)
        return context.get_dummy_value()

    return types.void(a, out_at, w_out, res_at, src, src_at, step, fw, scale_at, c_out, lo), codegen


@intrinsic
def _copy_every(typingctx, a, dst, src, n, step):
    """``a[dst : dst + n] = a[src : src + n * step : step]`` for ``step`` 1 or 2, in vectors of 8:
    a stride-2 vector is the even lanes of 16 floats loaded. The last vector keeps the floats
    past ``dst + n`` as they were (a blend with what is there), so a zero-padded row's border
    stays zero; the source is read up to 16 floats past its last element."""
    def codegen(context, builder, signature, args):
        a_, dst_, src_, n_, step_ = args
        data = context.make_array(signature.args[0])(context, builder, a_).data
        i64, eight = ir.IntType(64), ir.Constant(ir.IntType(64), 8)
        lanes = ir.Constant(ir.VectorType(ir.IntType(64), 8), list(range(8)))
        evens = ir.Constant(ir.VectorType(ir.IntType(32), 8), list(range(0, 16, 2)))
        pair = builder.icmp_signed("==", step_, ir.Constant(i64, 2))
        with cgutils.for_range(builder, builder.sdiv(builder.add(n_, ir.Constant(i64, 7)), eight)) as tile:
            at = builder.mul(tile.index, eight)
            read = builder.add(src_, builder.mul(at, step_))
            first = load8(builder, data, read)
            second = load8(builder, data, builder.add(read, eight))
            v = builder.select(pair, builder.shuffle_vector(first, second, evens), first)
            write = builder.add(dst_, at)
            inside = builder.icmp_signed("<", lanes, splat8(builder, builder.sub(n_, at)))
            v = builder.select(inside, v, load8(builder, data, write))
            store8(builder, v, data, write)
        return context.get_dummy_value()

    return types.void(a, dst, src, n, step), codegen


@njit(fastmath=True, boundscheck=False, nogil=True)
def _finish(a, op, src, src_at, step, fw, scale_at, length):
    """Every output channel's epilogue: channel o's computed rows (``length`` values, h_out rows
    of ``length // h_out``, the first w_out of each kept) at ``src[src_at + o * step:]``, times
    its scale plus its shift, plus the residual, ReLU'd, into the output. One loop over all
    channels (a call per channel costs more than its arithmetic), in vectors where each channel
    is one row (:func:`_finish_vectors`)."""
    c_out, h_out, w_out = op[F_CO], op[F_HO], op[F_WO]
    row_w, size, out_at, res_at = length // h_out, h_out * w_out, op[F_OUT], op[F_RES]
    lo = np.float32(0.0) if op[F_RELU] else np.float32(-np.inf)
    if h_out == 1 and scale_at >= 0:
        _finish_vectors(a, out_at, w_out, res_at, src, src_at, step, fw, scale_at, c_out, lo)
        return
    for o in range(c_out):
        scale, shift = np.float32(1.0), np.float32(0.0)
        if scale_at >= 0:
            scale, shift = fw[scale_at + o], fw[scale_at + c_out + o]
        for i in range(h_out):
            row = src[src_at + o * step + i * row_w : src_at + o * step + i * row_w + w_out]
            dst = a[out_at + o * size + i * w_out : out_at + o * size + (i + 1) * w_out]
            if res_at >= 0:
                res = a[res_at + o * size + i * w_out : res_at + o * size + (i + 1) * w_out]
                for j in range(w_out):
                    dst[j] = max(row[j] * scale + shift + res[j], lo)
            else:
                for j in range(w_out):
                    dst[j] = max(row[j] * scale + shift, lo)


@njit(fastmath=True, boundscheck=False, nogil=True)
def _to_phases(a, op):
    """Scatter a convolution's input into its zero-padded stride phases (their borders are never
    written): padded position (y, x) goes to phase (y % sh, x % sw) at (y // sh, x // sw), so
    that every weight reads one contiguous run of its phase. Only the phases a tap reads."""
    c_in, h, w = op[F_C], op[F_H], op[F_W]
    sh, sw, hq, wq = op[F_SH], op[F_SW], op[F_HP], op[F_WP]
    ph, pw = op[F_PH], op[F_PW]
    plane = hq * wq
    for i in range(h):
        y = i + ph
        row0 = op[F_PAD] + (y % sh) * sw * plane + (y // sh) * wq  # channel 0's row, phase column 0
        for px in range(sw):  # column phase px holds padded columns px, px + sw, ...: input columns j = x - pw
            if not (op[F_PHASES] >> ((y % sh) * sw + px)) & 1:
                continue  # no tap reads it
            first = max(0, -(-(pw - px) // sw))
            last = (w - 1 + pw - px) // sw
            for c in range(c_in):
                s0 = op[F_IN] + c * h * w + i * w + px - pw
                d0 = row0 + c * sh * sw * plane + px * plane
                if sw <= 2:
                    _copy_every(a, d0 + first, s0 + first * sw, last + 1 - first, sw)
                else:
                    for jj in range(first, last + 1):
                        a[d0 + jj] = a[s0 + jj * sw]


@njit(fastmath=True, boundscheck=False, nogil=True)
def _conv(a, op, level, fw, ic, iw, scale_at, acc):
    c_out, h_out, wq = op[F_CO], op[F_HO], op[F_WP]
    src = op[F_IN]
    if op[F_PAD] >= 0:
        _to_phases(a, op)
        src = op[F_PAD]
    values, offsets, plane_in = fw[op[F_VAL] :], ic[op[F_IDX] :], a[src:]
    first, last = op[F_START], op[F_STOP] + level * c_out  # channel o's weights: iw[first + o] .. iw[last + o]
    w_out = op[F_WO]
    if h_out == 1 and w_out <= SHORT_RUN:
        # one output row: each channel's w_out values summed and finished in registers (a call
        # per channel, or a pass over the channels' sums, cost more than a sparse level's sum)
        lo = np.float32(0.0) if op[F_RELU] else np.float32(-np.inf)
        out_at, res_at = op[F_OUT], op[F_RES]
        for o in range(c_out):
            scale, shift = np.float32(1.0), np.float32(0.0)
            if scale_at >= 0:
                scale, shift = fw[scale_at + o], fw[scale_at + c_out + o]
            finish_short_runs(a, out_at + o * w_out, values, offsets, plane_in, iw[first + o], iw[last + o], w_out,
                              scale, shift, res_at + o * w_out if res_at >= 0 else -1, lo)
        return
    # every channel's rows first (in vector registers where short), computed on the phase width
    # (the columns past w_out are dropped), then every epilogue: the channel loops stay tight
    length = h_out * wq
    if length <= SHORT_RUN:
        step = 8 * ((length + 7) // 8)
        for o in range(c_out):
            sum_short_runs(acc, o * step, values, offsets, plane_in, iw[first + o], iw[last + o], length)
    else:
        step = length
        acc[: c_out * length] = 0.0
        for o in range(c_out):
            add_runs(acc[o * length : (o + 1) * length], values, offsets, plane_in, iw[first + o], iw[last + o], length)
    _finish(a, op, acc, 0, step, fw, scale_at, length)


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
    _finish(a, op, a, op[F_IN], size, fw, scale_at, size)


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
    ``acc`` is scratch for every channel's rows of the largest output (computed on its input phase's width); with ``timed``, each op's wall time (ns, all
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
