"""Lower a :class:`~simqos.nested.network.NestedNetwork` to the nested runtime and run it.

``torch.fx`` traces the module; every node becomes an op of :mod:`simqos.kernels.runtime.program`:

- ``Conv1d``/``Conv2d`` (groups 1, numeric zero padding) and ``Linear`` on a flat input: the
  prunable layers, with all their levels in one nested copy of the weights;
- batch norm (eval), ReLU, and the sum of two activations: an *epilogue* — a per-channel scale
  and shift, a residual, a ReLU — fused into the op that produces its input where that op has no
  other consumer (conv → batch norm → + identity → ReLU is one op);
- global average pooling (``mean`` over every spatial dimension, ``AdaptiveAvgPool`` to 1) and
  max pooling; ``flatten``, ``view``/``reshape`` to a flat vector, dropout and identity are free.

Anything else raises :class:`Unsupported` with the node that stopped it, so the profiler keeps
torch's eager path for that model and says why.

Batch norm runs on the statistics of the route's prefix up to its segment, as the torch model
does (:meth:`~simqos.nested.network.NestedNetwork.norm_buffers`): each (norm, prefix) gets its
folded scale and shift once, at build time, so a route's epilogue table is a list of offsets.
A layer's bias is folded into the same scale and shift. An op runs in the segment of the last
prunable layer at or before it, which is where the torch model's batch norms run too
(:func:`~simqos.nested.network.find_norms`); so the ops of a segment are contiguous, and
rerouting between segments is choosing the next segment's level.
"""

from __future__ import annotations

import itertools
import operator
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from simqos.kernels.nested import SHORT_RUN, NestedConv, NestedSell
from simqos.nested.network import NestedNetwork, Route
from simqos.kernels.runtime.program import FIELDS, OP_CONV, OP_EPILOGUE, OP_LINEAR, OP_MAXPOOL, OP_MEAN, forward, run_ops

__all__ = ["CompiledNetwork", "Unsupported", "compile_network"]

RUNTIME = "simqos-nested"
"""The runtime's name in a profile's provenance."""


class Unsupported(ValueError):
    """The network has an op the nested runtime cannot run; the message names it."""


@dataclass
class _Op:
    """An op while lowering (mutable: fusion merges epilogues into their producers)."""

    kind: int
    segment: int
    input: int
    output: int
    c: int
    h: int
    w: int
    c_out: int
    h_out: int
    w_out: int
    layer: int = -1
    residual: int = -1
    relu: bool = False
    norm: str | None = None
    bias: np.ndarray | None = None
    extra: dict = field(default_factory=dict)


def _chw(shape: Sequence[int]) -> tuple[int, int, int]:
    """A per-sample shape as channels x height x width (a vector is C x 1 x 1, a 1-D signal C x 1 x L)."""
    dims = tuple(int(d) for d in shape)
    if len(dims) == 1:
        return dims[0], 1, 1
    if len(dims) == 2:
        return dims[0], 1, dims[1]
    if len(dims) == 3:
        return dims
    raise Unsupported(f"activation of per-sample shape {list(dims)}: the runtime handles up to 3 dimensions")


def _pair(v: object) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else tuple(int(a) for a in v)  # type: ignore[return-value]


class _Lowering:
    """Walks the traced graph once, allocating activations and collecting ops and weights."""

    def __init__(self, net: NestedNetwork, example: torch.Tensor) -> None:
        self.net = net
        self.layer_index = {layer.name: i for i, layer in enumerate(net.layers)}
        self.n_levels = net.n_levels
        self.size = 0  # floats per sample in the activation arena
        self.buffer: dict[fx.Node, int] = {}
        self.shape: dict[fx.Node, tuple[int, ...]] = {}
        self.ops: list[_Op] = []
        self.fw: list[np.ndarray] = []
        self.ic: list[np.ndarray] = []
        self.iw: list[np.ndarray] = []
        self.fw_size = self.ic_size = self.iw_size = 0
        self.segment = 0
        self.longest_row = 1
        self.example = example
        self.layer_bytes: dict[str, int] = {}

    def alloc(self, n: int) -> int:
        at, self.size = self.size, self.size + int(n)
        return at

    def put(self, kind: str, a: np.ndarray) -> int:
        store = getattr(self, kind)
        at = getattr(self, f"{kind}_size")
        store.append(a)
        setattr(self, f"{kind}_size", at + a.size)
        return at

    def output_of(self, node: fx.Node) -> int:
        at = self.alloc(int(np.prod(self.shape[node])) + 8)  # + the tail a whole-vector epilogue writes
        self.buffer[node] = at
        return at

    def add(self, op: _Op) -> None:
        self.ops.append(op)

    # --- nodes ---------------------------------------------------------------------------------

    def lower(self, gm: fx.GraphModule) -> tuple[int, fx.Node]:
        """Every node; returns the input's offset and the output node."""
        inputs, output = [], None
        for node in gm.graph.nodes:
            meta = node.meta.get("tensor_meta")
            if meta is not None and hasattr(meta, "shape"):
                if len(meta.shape) < 1 or meta.shape[0] != self.example.shape[0]:
                    raise Unsupported(f"{node.format_node()}: its output has no leading batch dimension")
                self.shape[node] = tuple(int(d) for d in meta.shape[1:])
            if node.op == "placeholder":
                inputs.append(self.output_of(node))
            elif node.op == "output":
                output = node.args[0]
            elif node.op == "call_module":
                self.module(node, gm.get_submodule(node.target))
            elif node.op in ("call_function", "call_method"):
                self.function(node)
            else:
                raise Unsupported(f"{node.format_node()}: {node.op} nodes are not supported")
        if len(inputs) != 1 or not isinstance(output, fx.Node):
            raise Unsupported("the runtime runs models of one input tensor and one output tensor")
        return inputs[0], output

    def module(self, node: fx.Node, mod: nn.Module) -> None:
        x = node.args[0]
        if isinstance(mod, (nn.Conv1d, nn.Conv2d)):
            self.conv(node, mod)
        elif isinstance(mod, nn.Linear):
            self.linear(node, mod)
        elif isinstance(mod, nn.modules.batchnorm._BatchNorm):
            if not mod.track_running_stats:
                raise Unsupported(f"{node.target}: batch norm without running statistics")
            self.epilogue(node, x, norm=str(node.target))
        elif isinstance(mod, nn.ReLU):
            self.epilogue(node, x, relu=True)
        elif isinstance(mod, (nn.Flatten, nn.Dropout, nn.Identity)):
            self.alias(node, x)
        elif isinstance(mod, (nn.MaxPool1d, nn.MaxPool2d)):
            if mod.ceil_mode or _pair(mod.dilation) != (1, 1):
                raise Unsupported(f"{node.target}: max pooling with ceil_mode or dilation")
            one_d = isinstance(mod, nn.MaxPool1d)
            self.maxpool(node, x, mod.kernel_size, mod.stride, mod.padding, one_d)
        elif isinstance(mod, (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)) and int(np.prod(self.shape[node])) == self.shape[x][0]:
            self.mean(node, x)
        else:
            raise Unsupported(f"{node.target}: {type(mod).__name__} is not supported by the nested runtime")

    def function(self, node: fx.Node) -> None:
        target, args, kwargs = node.target, node.args, node.kwargs
        if target in (torch.relu, F.relu, "relu"):
            self.epilogue(node, args[0], relu=True)
        elif target in (operator.add, torch.add, "add") and len(args) == 2 and all(isinstance(a, fx.Node) for a in args) \
                and not kwargs and self.shape[args[0]] == self.shape[args[1]]:
            self.epilogue(node, args[0], residual=args[1])
        elif target in (torch.flatten, "flatten", "view", "reshape", "contiguous", F.dropout, "dropout"):
            if target in (torch.flatten, "flatten") and int(args[1] if len(args) > 1 else kwargs.get("start_dim", 0)) == 0:
                raise Unsupported(f"{node.format_node()}: flattening the batch dimension")
            if target in ("view", "reshape") and (len(self.shape[node]) != 1):
                raise Unsupported(f"{node.format_node()}: a view or reshape other than to (batch, features)")
            self.alias(node, args[0])
        elif target in (torch.mean, "mean") and int(np.prod(self.shape[node])) == self.shape[args[0]][0]:
            self.mean(node, args[0])
        elif target in (torch.max_pool2d, F.max_pool2d, torch.max_pool1d, F.max_pool1d):
            names = ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode")
            given = dict(zip(names, args)) | dict(kwargs)
            if given.get("ceil_mode") or _pair(given.get("dilation", 1)) != (1, 1) or given.get("return_indices"):
                raise Unsupported(f"{node.format_node()}: max pooling with ceil_mode, dilation or indices")
            stride = given.get("stride") or given["kernel_size"]
            one_d = target in (torch.max_pool1d, F.max_pool1d)
            self.maxpool(node, args[0], given["kernel_size"], stride, given.get("padding", 0), one_d)
        else:
            raise Unsupported(f"{node.format_node()}: {getattr(target, '__name__', target)} is not supported by the nested runtime")

    def alias(self, node: fx.Node, x: fx.Node) -> None:
        self.buffer[node] = self.buffer[x]

    def geometry(self, node: fx.Node, x: fx.Node) -> tuple[int, ...]:
        return (*_chw(self.shape[x]), *_chw(self.shape[node]))

    def epilogue(self, node: fx.Node, x: fx.Node, relu: bool = False, norm: str | None = None, residual: fx.Node | None = None) -> None:
        c, h, w, *_ = self.geometry(node, x)
        self.add(_Op(OP_EPILOGUE, self.segment, self.buffer[x], self.output_of(node), c, h, w, c, h, w,
                     residual=-1 if residual is None else self.buffer[residual], relu=relu, norm=norm))

    def mean(self, node: fx.Node, x: fx.Node) -> None:
        c, h, w, *_ = self.geometry(node, x)
        self.add(_Op(OP_MEAN, self.segment, self.buffer[x], self.output_of(node), c, h, w, c, 1, 1))

    def maxpool(self, node: fx.Node, x: fx.Node, kernel, stride, padding, one_d: bool) -> None:
        c, h, w, c_out, h_out, w_out = self.geometry(node, x)
        k, s, p = ((1, int(_pair(v)[0])) if one_d else _pair(v) for v in (kernel, stride, padding))
        self.add(_Op(OP_MAXPOOL, self.segment, self.buffer[x], self.output_of(node), c, h, w, c_out, h_out, w_out,
                     extra={"kernel_h": k[0], "kernel_w": k[1], "stride_h": s[0], "stride_w": s[1], "pad_h": p[0], "pad_w": p[1]}))

    def prunable(self, node: fx.Node) -> tuple[int, torch.Tensor, torch.Tensor]:
        name = str(node.target)
        if name not in self.layer_index:
            raise Unsupported(f"{name}: a layer the nested network does not list as prunable")
        i = self.layer_index[name]
        self.segment = self.net.layers[i].segment
        weight = dict(self.net.module.named_parameters())[f"{name}.weight"].detach().cpu().float()
        return i, weight, self.net.ranks[f"{name}.weight"].cpu()

    def conv(self, node: fx.Node, mod: nn.Conv1d | nn.Conv2d) -> None:
        if mod.groups != 1 or mod.padding_mode != "zeros" or isinstance(mod.padding, str):
            raise Unsupported(f"{node.target}: convolution with groups, string padding or non-zero padding mode")
        layer, weight, ranks = self.prunable(node)
        x = node.args[0]
        c, h, w, c_out, h_out, w_out = self.geometry(node, x)
        if isinstance(mod, nn.Conv1d):
            kernel, stride, padding, dilation = (1, mod.kernel_size[0]), (1, mod.stride[0]), (0, mod.padding[0]), (1, mod.dilation[0])
        else:
            kernel, stride, padding, dilation = (_pair(getattr(mod, a)) for a in ("kernel_size", "stride", "padding", "dilation"))
        shape4 = (weight.shape[0], weight.shape[1], *kernel)
        nested = NestedConv.from_ranks(weight.reshape(shape4), ranks.reshape(shape4), self.n_levels, stride, padding, dilation)
        copy = padding != (0, 0) or kernel != (1, 1) or stride != (1, 1)  # else the input is read in place
        (sh, sw), (dh, dw) = stride, dilation
        hq, wq = (-(-(h + 2 * padding[0]) // sh), -(-(w + 2 * padding[1]) // sw)) if copy else (h, w)
        tail = wq + dw * kernel[1] + SHORT_RUN  # the last phase's rows overrun into it; short rows read whole vectors
        padded = self.alloc(c * sh * sw * hq * wq + tail) if copy else -1
        ky, kx = np.divmod(nested.window.astype(np.int64), kernel[1])
        ky, kx = ky * dh, kx * dw  # tap position in the padded input
        phase = (ky % sh) * sw + kx % sw
        offsets = (nested.channel.astype(np.int64) * sh * sw + phase) * hq * wq + (ky // sh) * wq + kx // sw
        taps_y, taps_x = np.meshgrid(np.arange(kernel[0]) * dh, np.arange(kernel[1]) * dw, indexing="ij")
        read = np.unique((taps_y % sh) * sw + taps_x % sw)  # the phases some tap reads (a 1x1 stride-2 one: only the first)
        self.longest_row = max(self.longest_row, c_out * 8 * -(-h_out * wq // 8))  # every channel's row, in whole vectors
        self.layer_bytes[str(node.target)] = nested.values.nbytes + 4 * offsets.size + nested.start.nbytes + nested.stop.nbytes
        op = _Op(OP_CONV, self.segment, self.buffer[x], self.output_of(node), c, h, w, c_out, h_out, w_out, layer=layer,
                 bias=None if mod.bias is None else mod.bias.detach().cpu().numpy().astype(np.float32),
                 extra={"values": self.put("fw", nested.values), "index": self.put("ic", offsets.astype(np.uint32)),
                        "start": self.put("iw", nested.start), "stop": self.put("iw", nested.stop.ravel()),
                        "padded": padded, "pad_h": padding[0], "pad_w": padding[1], "plane_h": hq, "plane_w": wq,
                        "phases": int(np.bitwise_or.reduce(1 << read)),
                        "stride_h": sh, "stride_w": sw})
        self.add(op)

    def linear(self, node: fx.Node, mod: nn.Linear) -> None:
        x = node.args[0]
        if len(self.shape[x]) != 1:
            raise Unsupported(f"{node.target}: a linear layer over per-sample shape {list(self.shape[x])} (the runtime's are on flat vectors)")
        layer, weight, ranks = self.prunable(node)
        sell = NestedSell.from_ranks(weight, ranks, self.n_levels)
        self.layer_bytes[str(node.target)] = sell.values.nbytes + 4 * sell.cols.size + sum(
            a.nbytes for a in (sell.ptr, sell.full, sell.span, sell.lane_len, sell.rows))
        op = _Op(OP_LINEAR, self.segment, self.buffer[x], self.output_of(node), weight.shape[1], 1, 1, weight.shape[0], 1, 1,
                 layer=layer, bias=None if mod.bias is None else mod.bias.detach().cpu().numpy().astype(np.float32),
                 extra={"values": self.put("fw", sell.values), "index": self.put("ic", sell.cols.astype(np.uint32)),
                        "chunk_ptr": self.put("iw", sell.ptr), "chunk_full": self.put("iw", sell.full.ravel()),
                        "chunk_span": self.put("iw", sell.span.ravel()), "lane_len": self.put("iw", sell.lane_len.ravel()),
                        "chunks": len(sell.ptr), "rows": self.put("iw", sell.rows)})
        self.add(op)

    # --- fusion --------------------------------------------------------------------------------

    def fuse(self, output: int) -> None:
        """Merge each epilogue into the op producing its input, where that op has no other
        consumer and its own epilogue comes before this one's (scale, then residual, then ReLU)."""
        readers: dict[int, int] = {output: 1}
        for op in self.ops:
            for b in (op.input, op.residual):
                if b >= 0:
                    readers[b] = readers.get(b, 0) + 1
        kept: list[_Op] = []
        index = {}  # buffer -> position in kept of its producer
        for op in self.ops:
            target = None
            if op.kind == OP_EPILOGUE:
                candidates = [op.input] + ([op.residual] if op.residual >= 0 else [])
                # a sum fuses into the op making its later operand (the earlier one is then ready
                # to be read as the residual), never into the other
                candidates = sorted(candidates, key=lambda b: index.get(b, -1), reverse=True)[:1]
                for b in candidates:
                    p = kept[index[b]] if b in index else None
                    if p is None or readers.get(b, 0) != 1 or p.segment != op.segment or p.kind not in (OP_CONV, OP_LINEAR, OP_EPILOGUE):
                        continue
                    if op.norm and (p.norm or p.residual >= 0 or p.relu):
                        continue
                    if op.residual >= 0 and (p.residual >= 0 or p.relu):
                        continue
                    target = (p, b)
                    break
            if target is None:
                index[op.output] = len(kept)
                kept.append(op)
                continue
            p, b = target
            other = op.residual if b == op.input else op.input
            p.norm = p.norm or op.norm
            p.residual = other if op.residual >= 0 else p.residual
            p.relu = p.relu or op.relu
            del index[p.output]
            p.output = op.output
            index[p.output] = kept.index(p)
        self.ops = kept


@dataclass(frozen=True)
class CompiledNetwork:
    """A nested network lowered to the runtime: run a route, or a route segment by segment.

    Built for a batch of at most ``capacity`` samples of the example's per-sample shape. Not
    reentrant: one activation arena.
    """

    ops: np.ndarray
    fw: np.ndarray
    ic: np.ndarray
    iw: np.ndarray
    act: np.ndarray
    acc: np.ndarray
    input_at: int
    input_shape: tuple[int, ...]
    output_at: int
    output_shape: tuple[int, ...]
    output_size: int  # floats per sample
    segment_ops: tuple[tuple[int, int], ...]  # (first, past last) op of each segment
    layer_names: tuple[str, ...]
    layer_bytes: dict[str, int]  # each layer's nested weights, indices and level extents (all levels)
    _epilogues: dict  # route -> it as an array, and its epilogue table (int64 per op)
    _slots: dict  # (op, prefix) -> offset of its scale in fw

    @property
    def capacity(self) -> int:
        return self.act.shape[0]

    @property
    def n_segments(self) -> int:
        return len(self.segment_ops)

    @property
    def weight_nbytes(self) -> int:
        """Bytes of every layer's nested weights, indices and level extents, all levels together
        (not the folded batch-norm scales)."""
        return self.fw.nbytes + self.ic.nbytes + self.iw.nbytes

    def epilogue(self, route: Route) -> np.ndarray:
        """The epilogue table of ``route``: each op's scale offset in ``fw`` (-1: none)."""
        return self._tables(route)[1]

    def levels(self, route: Route) -> np.ndarray:
        """``route`` as the int64 array the compiled code takes."""
        return self._tables(route)[0]

    def _tables(self, route: Route) -> tuple[np.ndarray, np.ndarray]:
        tables = self._epilogues.get(route)
        if tables is None:
            table = np.full(len(self.ops), -1, dtype=np.int64)
            for (i, prefix), at in self._slots.items():
                if prefix == tuple(route[: len(prefix)]):
                    table[i] = at
            tables = self._epilogues[tuple(route)] = (np.array(route, dtype=np.int64), table)
        return tables

    def load(self, x: np.ndarray) -> int:
        """Copy the batch ``x`` (batch, *input_shape) into the arena; returns its size."""
        n = x.shape[0]
        if n > self.capacity or tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(f"input of shape {list(x.shape)}: the runtime was built for up to {self.capacity} x {list(self.input_shape)}")
        self.act[:n, self.input_at : self.input_at + int(np.prod(self.input_shape))] = x.reshape(n, -1)
        return n

    def run_ops(self, lo: int, hi: int, route: Sequence[int], batch: int, op_ns: np.ndarray | None = None) -> None:
        """Run ops ``lo..hi`` of ``route`` on the loaded batch (the ops before them have run);
        with ``op_ns``, add each op's wall time (ns) to it."""
        run_ops(self.ops, lo, hi, self.levels(route), self.epilogue(route), self.fw, self.ic, self.iw,
                self.act, batch, self.acc, _EMPTY if op_ns is None else op_ns, op_ns is not None)

    def run_segment(self, segment: int, route: Sequence[int], batch: int) -> None:
        """Run one segment of ``route`` on the loaded batch (the segments before it have run)."""
        self.run_ops(*self.segment_ops[segment], route, batch)

    def result(self, batch: int) -> np.ndarray:
        """The output of the last run, (batch, *output_shape), copied."""
        return self.act[:batch, self.output_at : self.output_at + self.output_size].reshape(batch, *self.output_shape).copy()

    def run(self, x: np.ndarray | torch.Tensor, route: Sequence[int], op_ns: np.ndarray | None = None) -> np.ndarray:
        """The network's output on ``x`` along ``route``: input, every segment and output in
        one compiled call. ``route`` is a tuple (its epilogue table is looked up by it)."""
        xn = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x
        if xn.shape[1:] != self.input_shape or len(xn) > self.capacity or xn.dtype != np.float32:
            raise ValueError(f"input of shape {list(xn.shape)} ({xn.dtype}): the runtime was built for up to "
                             f"{self.capacity} x {list(self.input_shape)} float32")
        out = np.empty((len(xn), self.output_size), dtype=np.float32)
        forward(self.ops, self.levels(route), self.epilogue(route), self.fw, self.ic, self.iw, self.act, self.acc,
                np.ascontiguousarray(xn).reshape(len(xn), -1), self.input_at, out, self.output_at,
                _EMPTY if op_ns is None else op_ns, op_ns is not None)
        return out.reshape(len(xn), *self.output_shape)

    def op_layers(self) -> np.ndarray:
        """The prunable layer each op runs (-1: a pooling or unfused epilogue op)."""
        return self.ops[:, FIELDS.index("layer")].copy()


_EMPTY = np.zeros(0, dtype=np.int64)


def _fold(net: NestedNetwork, op: _Op, route: Route) -> tuple[np.ndarray, np.ndarray]:
    """The scale and shift of ``op``'s epilogue along ``route``: its batch norm's running
    statistics for the route's prefix, with the layer's bias folded in."""
    scale = np.ones(op.c_out, dtype=np.float64)
    shift = np.zeros(op.c_out) if op.bias is None else op.bias.astype(np.float64)
    if op.norm is not None:
        bn = net.module.get_submodule(op.norm)
        stats = net.norm_buffers(route)
        mean = stats.get(f"{op.norm}.running_mean", bn.running_mean).detach().cpu().double().numpy()
        var = stats.get(f"{op.norm}.running_var", bn.running_var).detach().cpu().double().numpy()
        gamma = np.ones(op.c_out) if bn.weight is None else bn.weight.detach().cpu().double().numpy()
        beta = np.zeros(op.c_out) if bn.bias is None else bn.bias.detach().cpu().double().numpy()
        s = gamma / np.sqrt(var + bn.eps)
        scale, shift = s, shift * s + beta - mean * s
    return scale.astype(np.float32), shift.astype(np.float32)


def _traced(module: nn.Module, example: torch.Tensor) -> fx.GraphModule:
    """``module`` traced by torch.fx in eval mode, each node's shape propagated from ``example``;
    raises :class:`Unsupported` when it cannot be traced."""
    was_training = module.training
    module.eval()
    try:
        gm = fx.symbolic_trace(module)
    except Exception as exc:  # noqa: BLE001 - fx raises many kinds; all mean "cannot trace"
        raise Unsupported(f"torch.fx cannot trace {type(module).__name__}: {str(exc).splitlines()[0]}") from None
    example = example.detach().cpu()
    try:
        with torch.no_grad():
            ShapeProp(gm).propagate(example.float() if example.is_floating_point() else example)  # token ids stay ids
    except Exception as exc:  # noqa: BLE001 - any op the propagation cannot run means the same
        raise Unsupported(f"torch.fx cannot follow shapes through {type(module).__name__}: {str(exc).splitlines()[0]}") from None
    finally:
        module.train(was_training)
    return gm


def compile_network(net: NestedNetwork, example: torch.Tensor) -> CompiledNetwork:
    """Lower ``net`` for inputs shaped like ``example`` (its first dimension: the largest batch);
    raises :class:`Unsupported` naming the first op the runtime cannot run."""
    if sys.platform == "win32":  # its compiled code reads the clock with clock_gettime (simqos.jit.clock_ns)
        raise Unsupported("the nested runtime runs on Linux and macOS, not Windows")
    lowering = _Lowering(net, example)
    input_at, output = lowering.lower(_traced(net.module, example))
    output_at = lowering.buffer[output]
    lowering.fuse(output_at)
    ops = lowering.ops
    segments = [op.segment for op in ops]
    if segments != sorted(segments):
        raise Unsupported("an op runs after a later segment's layer but belongs to an earlier segment")
    n_seg = net.n_segments
    segment_ops = tuple((segments.index(s) if s in segments else 0, len(segments) - segments[::-1].index(s) if s in segments else 0)
                        for s in range(n_seg))
    # each op's epilogue for every prefix of the route up to its segment (batch norm), or one for all
    slots: dict[tuple[int, Route], int] = {}
    for i, op in enumerate(ops):
        if op.norm is None and op.bias is None:
            continue
        norm_segment = None if op.norm is None else net.norm_segments.get(op.norm)
        prefixes = [()] if norm_segment is None else itertools.product(range(net.n_levels), repeat=norm_segment + 1)
        for prefix in prefixes:
            route = tuple(prefix) + (0,) * (n_seg - len(prefix))
            scale, shift = _fold(net, op, route)
            slots[(i, tuple(prefix))] = lowering.put("fw", np.concatenate([scale, shift]))
    table = np.zeros((len(ops), len(FIELDS)), dtype=np.int64)
    for i, op in enumerate(ops):
        row = {"op": op.kind, "segment": op.segment, "layer": op.layer, "input": op.input, "output": op.output,
               "residual": op.residual, "relu": int(op.relu), "c": op.c, "h": op.h, "w": op.w, "c_out": op.c_out,
               "h_out": op.h_out, "w_out": op.w_out} | op.extra
        for name, value in row.items():
            table[i, FIELDS.index(name)] = value
    cat = lambda parts, dtype: np.concatenate(parts).astype(dtype) if parts else np.zeros(1, dtype)  # noqa: E731
    capacity = int(example.shape[0])
    in_shape = tuple(int(d) for d in example.shape[1:])
    return CompiledNetwork(
        ops=table, fw=cat(lowering.fw, np.float32), ic=cat(lowering.ic, np.uint32), iw=cat(lowering.iw, np.int64),
        act=np.zeros((capacity, lowering.size + SHORT_RUN), dtype=np.float32),  # + short rows' whole vectors past the last buffer
        acc=np.zeros(lowering.longest_row + 8, dtype=np.float32),  # + the tail a whole-vector epilogue reads
        input_at=input_at, input_shape=in_shape, output_at=output_at, output_shape=lowering.shape[output], output_size=int(np.prod(lowering.shape[output])),
        segment_ops=segment_ops, layer_names=tuple(layer.name for layer in net.layers), layer_bytes=lowering.layer_bytes,
        _epilogues={}, _slots=slots,
    )
