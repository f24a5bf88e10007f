"""Per-layer x level measurement: time every kernel, keep the fastest exact one, count bytes and FLOPs.

Units: latencies in milliseconds, sizes in bytes, FLOPs as 2 x multiply-adds of the pruned
weights (biases, activations and attention scores are not counted).

**Resident weight bytes under nested storage** (``weight_bytes``): level k's non-zeros stored
once, as float32 values plus column indices (16-bit where a row is at most 65,536 long, else
32-bit), plus one 32-bit row extent per row, plus the layer's unpruned parameters (biases). A
sparser level's weights are a subset, so its bytes never exceed a less sparse level's. The
chosen kernel may hold its own copy in another format: that size is ``kernel_weight_bytes``.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import nn

from simqos.kernels import BuiltKernel, build_kernel
from simqos.kernels.runtime import RUNTIME, CompiledNetwork
from simqos.nested.network import NestedNetwork, PrunableLayer
from simqos.profiler.passes import PassTime, Stall, time_passes
from simqos.profiler.timer import Measurement, measure, torch_threads
from simqos.realtime import wait_until

__all__ = [
    "CapturedCall",
    "InModelTiming",
    "KernelTrial",
    "LayerLevelResult",
    "TimerOptions",
    "capture_layer_calls",
    "layer_weights",
    "local_weights",
    "profile_layer_level",
    "swap_layers",
    "tensors_in",
    "time_after_idle",
    "time_compiled",
    "time_compiled_alone",
    "time_in_model",
    "torch_pass",
]


@dataclass(frozen=True)
class TimerOptions:
    """Keyword arguments for :func:`simqos.profiler.timer.measure`."""

    n_samples: int = 30
    min_sample_s: float = 1e-3
    warmup_s: float = 0.05
    threads: int = 1
    device: str = "cpu"

    def sync(self) -> None:
        """Wait for queued device work (CUDA); nothing on the CPU."""
        if self.device == "cuda":
            torch.cuda.synchronize()

    def measure(self, fn: Callable[[], object], label: str) -> Measurement:
        return measure(
            fn,
            label=label,
            n_samples=self.n_samples,
            min_sample_s=self.min_sample_s,
            warmup_s=self.warmup_s,
            threads=self.threads,
            sync=self.sync,
            cuda_events=self.device == "cuda",
        )


@dataclass(frozen=True)
class CapturedCall:
    """The real arguments of one prunable layer's first call in a forward pass, its output, and
    how many times the pass calls it (a decoder's layers, once per generated token)."""

    args: tuple
    kwargs: dict
    output: object
    calls_per_pass: int = 1


def tensors_in(obj: object) -> list[torch.Tensor]:
    """Every tensor inside ``obj`` (nested tuples, lists, dicts), in order."""
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (tuple, list)):
        return [t for item in obj for t in tensors_in(item)]
    if isinstance(obj, dict):
        return [t for item in obj.values() for t in tensors_in(item)]
    return []


def capture_layer_calls(net: NestedNetwork, x: torch.Tensor) -> dict[str, CapturedCall]:
    """Run ``net`` at level 0 on ``x`` and record each prunable layer's first call and its
    number of calls."""
    calls: dict[str, CapturedCall] = {}
    hooks = []
    for layer in net.layers:
        module = net.module.get_submodule(layer.name)

        def hook(_m, args, kwargs, output, name=layer.name):
            if name not in calls:
                calls[name] = CapturedCall(tuple(args), dict(kwargs), output)
            else:
                calls[name] = replace(calls[name], calls_per_pass=calls[name].calls_per_pass + 1)

        hooks.append(module.register_forward_hook(hook, with_kwargs=True))
    try:
        with torch.no_grad():
            net.forward(x, net.uniform_route(0))
    finally:
        for h in hooks:
            h.remove()
    return calls


@dataclass(frozen=True)
class KernelTrial:
    """One candidate kernel for a layer x level: its median alone (ms) or why it was not timed,
    its weight storage, and (once compared inside the model) its median there."""

    kernel: str
    status: str  # "chosen", "exact", "inexact" or "unsupported: <reason>"
    median_ms: float | None
    resident_bytes: int | None = None
    in_model_median_ms: float | None = None


@dataclass(frozen=True)
class LayerLevelResult:
    """Everything the bundle records for one layer at one level."""

    layer: str
    level: int
    kernel: str
    nnz: int
    n_weights: int
    flops: int
    weight_bytes: int
    kernel_weight_bytes: int
    activation_bytes: int
    measurement: Measurement
    trials: list[KernelTrial] = field(default_factory=list)
    """``measurement`` times the chosen kernel alone (repeated calls, samples of at least
    ``min_sample_s``); it decides the kernel. The simulator's samples come from
    :func:`time_in_model`."""


def layer_weights(net: NestedNetwork, layer: PrunableLayer, level: int) -> dict[str, torch.Tensor]:
    """The layer's weights masked at ``level``, keyed by the layer module's own parameter names."""
    params = dict(net.module.named_parameters())
    return local_weights(layer, {w: (params[w] * (net.ranks[w] >= level)).detach() for w in layer.weights})


def local_weights(layer: PrunableLayer, weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The layer's tensors among ``weights`` (keyed by the network's parameter names), keyed by
    the layer module's own names, as a kernel is built from them."""
    prefix = f"{layer.name}." if layer.name else ""
    return {w[len(prefix) :]: weights[w] for w in layer.weights}


def _uses_per_weight(module: nn.Module, kind: str, call: CapturedCall) -> int:
    """How many times each weight is multiplied in one call (output positions x batch); a pass
    makes ``call.calls_per_pass`` such calls."""
    x = call.args[0] if call.args else next(iter(call.kwargs.values()))
    out = tensors_in(call.output)[0]
    if kind == "linear":
        return x.numel() // module.in_features
    if kind in ("conv1d", "conv2d"):
        return out.numel() // module.out_channels
    if kind == "lstm":
        return x.numel() // module.input_size
    return x.numel() // module.embed_dim  # attention, assuming self-attention


def _nested_bytes(weight: torch.Tensor, nnz: int) -> int:
    rows = weight.shape[0]
    row_length = weight.numel() // rows
    index_bytes = 2 if row_length <= 1 << 16 else 4
    return nnz * (weight.element_size() + index_bytes) + rows * 4


def profile_layer_level(
    net: NestedNetwork,
    layer: PrunableLayer,
    level: int,
    call: CapturedCall,
    kernels: list[str],
    timer: TimerOptions,
) -> LayerLevelResult:
    """Time every kernel in ``kernels`` on the real call of ``layer`` at ``level``; choose the
    fastest one whose output equals the dense masked layer's (``dense`` is always a candidate)."""
    module = net.module.get_submodule(layer.name)
    weights = layer_weights(net, layer, level)
    reference = build_kernel("dense", module, weights, timer.device)
    with torch.no_grad():
        expected = tensors_in(reference.fn(*call.args, **call.kwargs))
    trials: list[KernelTrial] = []
    timed: dict[str, tuple[Measurement, BuiltKernel]] = {}
    for name in dict.fromkeys(["dense", *kernels]):
        trial = _try_kernel(name, reference, expected, module, weights, call, timer, f"{layer.name}@{level}:{name}")
        if isinstance(trial, tuple):
            timed[name] = trial
            trial = KernelTrial(name, "exact", trial[0].median_ms, trial[1].resident_bytes)
        trials.append(trial)
    chosen = min(timed, key=lambda n: timed[n][0].median_ms)
    trials = [replace(t, status="chosen") if t.kernel == chosen else t for t in trials]
    measurement, built = timed[chosen]

    params = dict(net.module.named_parameters())
    nnz = sum(int((net.ranks[w] >= level).sum()) for w in layer.weights)
    prefix = f"{layer.name}." if layer.name else ""
    unpruned_bytes = sum(
        p.numel() * p.element_size() for n, p in module.named_parameters() if f"{prefix}{n}" not in layer.weights
    )
    uses = _uses_per_weight(module, layer.kind, call) * call.calls_per_pass
    return LayerLevelResult(
        layer=layer.name,
        level=level,
        kernel=chosen,
        nnz=nnz,
        n_weights=sum(params[w].numel() for w in layer.weights),
        flops=2 * uses * nnz,
        weight_bytes=sum(_nested_bytes(params[w], int((net.ranks[w] >= level).sum())) for w in layer.weights)
        + unpruned_bytes,
        kernel_weight_bytes=built.resident_bytes,
        activation_bytes=sum(t.numel() * t.element_size() for t in tensors_in((call.args, call.kwargs, call.output))),
        measurement=measurement,
        trials=trials,
    )


def _try_kernel(name: str, reference: BuiltKernel, expected: list[torch.Tensor], module: nn.Module, weights, call: CapturedCall,
                timer: TimerOptions, label: str) -> tuple[Measurement, BuiltKernel] | KernelTrial:
    """Kernel ``name`` built for the layer and timed on the real call — or, when it cannot be
    built or its output is not the dense masked layer's (``expected``), the trial that says so."""
    try:
        built = reference if name == "dense" else build_kernel(name, module, weights, timer.device)
    except ValueError as exc:
        return KernelTrial(name, f"unsupported: {exc}", None)
    with torch.no_grad():
        got = tensors_in(built.fn(*call.args, **call.kwargs))
    scale = max(1.0, max(float(t.abs().max()) for t in expected))
    if len(got) != len(expected) or not all(torch.allclose(g, e, rtol=1e-4, atol=1e-4 * scale) for g, e in zip(got, expected)):
        return KernelTrial(name, "inexact", None)
    return timer.measure(lambda: built.fn(*call.args, **call.kwargs), label), built


def swap_layers(net: NestedNetwork, make: Callable[[PrunableLayer], nn.Module]) -> nn.Module:
    """A copy of the network's module, in eval mode, with each prunable layer replaced by
    ``make(layer)`` and each batch-norm module by its per-channel affine
    (:class:`ChannelAffine`), as an inference runtime runs it; the rest of the model —
    activations, pooling, residual adds — runs unchanged."""
    model = copy.deepcopy(net.module).eval()
    for layer in net.layers:
        if not layer.name:  # the model is a single prunable layer
            return make(layer)
        _replace(model, layer.name, make(layer))
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.track_running_stats:
            _replace(model, name, ChannelAffine(module))
    return model


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name), child, new)


class ChannelAffine(nn.Module):
    """An eval-mode batch norm as the one multiply-add per channel it is, ``x * scale + shift``:
    torch's batch norm costs about 13 µs a call at batch 1, this about 2 µs. Equal to the
    module within float32 rounding, for the statistics it holds when built."""

    def __init__(self, norm: nn.modules.batchnorm._BatchNorm) -> None:
        super().__init__()
        with torch.no_grad():
            scale = torch.rsqrt(norm.running_var + norm.eps)
            if norm.affine:
                scale = scale * norm.weight
            shift = -norm.running_mean * scale + (norm.bias if norm.affine else 0.0)
        self.scale, self.shift = scale.detach(), shift.detach()
        self._by_dim: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        views = self._by_dim.get(x.dim())
        if views is None:  # shaped once per input rank: the channel is the dimension after the batch
            shape = (-1,) + (1,) * (x.dim() - 2)
            views = self._by_dim[x.dim()] = (self.shift.view(shape), self.scale.view(shape))
        return torch.addcmul(views[0], x, views[1])


class _TimedKernel(nn.Module):
    """Stands in for a prunable layer: runs a built kernel and adds each call's time to the
    current pass's (``pass_s``, seconds: a layer called once per generated token makes one
    sample of all its calls); :meth:`take_pass` reads it and starts the next pass."""

    def __init__(self, built: BuiltKernel, clock: Callable[[], float], sync: Callable[[], None]) -> None:
        super().__init__()
        self.built, self.clock, self.sync = built, clock, sync
        self.pass_s = 0.0

    def forward(self, *args, **kwargs):
        start = self.clock()
        out = self.built.fn(*args, **kwargs)
        self.sync()
        self.pass_s += self.clock() - start
        return out

    def take_pass(self) -> float:
        """This pass's time (s), after which the next pass starts from 0."""
        seconds, self.pass_s = self.pass_s, 0.0
        return seconds


IDLE_SETTLE_PASSES = 3
"""Passes at a new idle gap before its samples count: a device's state (clock speed, caches)
follows the recent rhythm of work, and takes a pass or two to settle into a new one."""


def torch_pass(net: NestedNetwork, level: int, kernel_by_layer: dict[str, str], x: torch.Tensor, timer: TimerOptions) -> Callable[[], object]:
    """One whole-model pass at ``level`` with each layer on its kernel, called by torch (eager)."""
    def plain(layer: PrunableLayer) -> nn.Module:
        built = build_kernel(kernel_by_layer[layer.name], net.module.get_submodule(layer.name), layer_weights(net, layer, level), timer.device)
        return _TimedKernel(built, time.perf_counter, timer.sync)

    model = swap_layers(net, plain)

    def run() -> object:
        with torch.no_grad():
            out = model(x)
        timer.sync()
        return out

    return run


def time_after_idle(
    run: Callable[[], object],
    timer: TimerOptions,
    gaps_ms: tuple[float, ...],
    n_samples: int,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[float, tuple[float, ...]]:
    """Whole-model passes (``run``: one pass, on the deployed runtime), each after the device
    idled a given gap since the previous one (:func:`~simqos.realtime.wait_until`: asleep
    but for its last 0.3 ms).

    The gaps are taken in blocks — a run of passes at one gap, as a stream of requests with that
    spacing would see — first in ascending order and then descending, half the ``n_samples``
    each time, so that slow drift weighs on every gap alike; each block's first
    :data:`IDLE_SETTLE_PASSES` passes are not kept. Gap 0 is back to back. Returns the samples
    (ms) per gap.
    """
    samples: dict[float, list[float]] = {gap: [] for gap in gaps_ms}
    halves = ((n_samples + 1) // 2, n_samples // 2)
    with torch_threads(timer.threads):
        start = clock()
        while clock() - start < timer.warmup_s:
            run()
        for order, count in zip((list(gaps_ms), list(reversed(gaps_ms))), halves):
            for gap in order:
                for i in range(IDLE_SETTLE_PASSES + count):
                    wait_until(clock() + gap / 1e3, clock)
                    begin = clock()
                    run()
                    if i >= IDLE_SETTLE_PASSES:
                        samples[gap].append((clock() - begin) * 1e3)
    return {gap: tuple(times) for gap, times in samples.items()}


@dataclass(frozen=True)
class InModelTiming:
    """Whole-model forward passes (``end_to_end``), each layer's time inside them, and the
    stalls dropped from them (or kept: :mod:`simqos.profiler.passes`)."""

    end_to_end: Measurement
    layers: dict[str, Measurement]
    stalls: tuple[Stall, ...] = ()


def _setup_names(label: str, keys) -> dict:
    """Each setup's name in stall warnings: the label and the level (-1: the dense baseline)."""
    return {key: f"{label}, " + ("dense baseline" if key == -1 else f"level {key}" if isinstance(key, int) else str(key)) for key in keys}


def _timings(passes: dict, stalls: list[Stall], label: str, threads: int) -> dict:
    """:func:`~simqos.profiler.passes.time_passes`'s passes as an InModelTiming per setup."""
    names = _setup_names(label, passes)
    def as_measurement(times_s, what: str) -> Measurement:
        return Measurement(f"{label}:{what}", tuple(float(t) * 1e3 for t in times_s), calls_per_sample=1, threads=threads)

    return {
        key: InModelTiming(
            end_to_end=as_measurement([p.seconds for p in runs], f"{key}:end to end"),
            layers={name: as_measurement([p.layers[name] for p in runs], f"{key}:{name}") for name in runs[0].layers},
            stalls=tuple(s for s in stalls if s.setup == names[key]),
        )
        for key, runs in passes.items()
    }


def time_in_model(
    net: NestedNetwork,
    setups: dict,
    x: torch.Tensor,
    timer: TimerOptions,
    n_passes: int,
    label: str,
    clock: Callable[[], float] = time.perf_counter,
) -> dict:
    """Run the whole model ``n_passes`` times in each setup — ``setups[key] = (level,
    kernel_by_layer)``: every layer at ``level`` on its kernel; keys are any labels — timing each
    pass and each layer inside it (all of its calls in a pass make one sample). Returns an
    InModelTiming per key.

    Inside the model, a layer finds the caches as the layers before it left them; timed alone
    and repeated, it finds its own weights still cached, which flatters memory-bound layers. So
    these are the samples the simulator draws from. The setups take turns in blocks
    (:func:`~simqos.profiler.passes.time_passes`, which also drops stalls): taking turns pass by
    pass made every pass follow another setup's, whose weights had taken the caches — the dense
    baseline's above all, which a nested deployment never runs: level 1 of the ResNet-1D
    measured 0.84x level 0 so, and 0.70x back to back. Each setup warms up for
    ``timer.warmup_s`` first.
    """
    models, timed = _timed_models(net, setups, timer, clock)

    def warm_up(key) -> None:
        start = clock()
        models[key](x)
        while clock() - start < timer.warmup_s:
            models[key](x)
        for t in timed[key].values():
            t.take_pass()

    def run_pass(key) -> PassTime:
        begin = clock()
        models[key](x)
        timer.sync()
        seconds = clock() - begin
        return PassTime(seconds, {name: t.take_pass() for name, t in timed[key].items()})

    with torch_threads(timer.threads), torch.no_grad():
        passes, stalls = time_passes(list(setups), run_pass, warm_up, n_passes, _setup_names(label, setups))
    return _timings(passes, stalls, label, timer.threads)


def _timed_models(net: NestedNetwork, setups: dict, timer: TimerOptions, clock: Callable[[], float]) -> tuple[dict, dict]:
    """For each setup of :func:`time_in_model`, the model with each layer on its kernel, each
    kernel wrapped to time its calls; and those wrapped kernels, by setup and layer."""
    timed: dict = {}
    models: dict = {}
    for key, (level, kernel_by_layer) in setups.items():
        timed[key] = {}

        def timed_layer(layer: PrunableLayer, key=key, level=level, kernel_by_layer=kernel_by_layer) -> nn.Module:
            module = net.module.get_submodule(layer.name)
            built = build_kernel(kernel_by_layer[layer.name], module, layer_weights(net, layer, level), timer.device)
            timed[key][layer.name] = _TimedKernel(built, clock, timer.sync)
            return timed[key][layer.name]

        models[key] = swap_layers(net, timed_layer)
    return models, timed


def time_compiled(
    compiled: CompiledNetwork,
    levels: Sequence[int],
    x: torch.Tensor,
    timer: TimerOptions,
    n_passes: int,
    label: str,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[int, InModelTiming]:
    """:func:`time_in_model` on the nested runtime: each level's uniform route run whole (one
    compiled call a pass), the levels taking turns in the same blocks after the same warm-up. A
    layer's time inside a pass is its op's, read from the runtime's own clock (its fused batch
    norm, residual and ReLU included); the pass's time includes copying the input in and the
    output out."""
    xn = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
    layer_of_op = compiled.op_layers()
    ops_of = {name: np.flatnonzero(layer_of_op == i) for i, name in enumerate(compiled.layer_names)}
    op_ns = np.zeros(len(compiled.ops), dtype=np.int64)

    def route(level: int) -> tuple[int, ...]:
        return (level,) * compiled.n_segments

    def warm_up(level) -> None:
        start = clock()
        compiled.run(xn, route(level), op_ns)
        while clock() - start < timer.warmup_s:
            compiled.run(xn, route(level), op_ns)

    def run_pass(level) -> PassTime:
        op_ns[:] = 0
        begin = clock()
        compiled.run(xn, route(level), op_ns)
        seconds = clock() - begin
        return PassTime(seconds, {name: float(op_ns[ops].sum()) / 1e9 for name, ops in ops_of.items()})

    passes, stalls = time_passes(list(levels), run_pass, warm_up, n_passes, _setup_names(label, levels))
    return _timings(passes, stalls, label, 1)


def time_compiled_alone(compiled: CompiledNetwork, level: int, x: torch.Tensor, timer: TimerOptions) -> dict[str, Measurement]:
    """Each prunable layer's op of the nested runtime timed alone at ``level`` (repeated on the
    input the ops before it left), as :func:`profile_layer_level` times a torch kernel alone —
    by the runtime's own clock around the op, so a sample is the op's time without Python's
    call into compiled code (which a whole pass pays once)."""
    route = (level,) * compiled.n_segments
    batch = compiled.load(np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32))
    compiled.run_ops(0, len(compiled.ops), route, batch)  # every op's input in place
    layer_of_op = compiled.op_layers()
    op_ns = np.zeros(len(compiled.ops), dtype=np.int64)
    out = {}
    for i, name in enumerate(compiled.layer_names):
        ops = [int(op) for op in np.flatnonzero(layer_of_op == i)]

        def run(ops=ops) -> None:
            for op in ops:
                compiled.run_ops(op, op + 1, route, batch, op_ns)

        out[name] = measure(run, label=f"{RUNTIME}:{name}@{level}", n_samples=timer.n_samples, min_sample_s=timer.min_sample_s,
                            warmup_s=timer.warmup_s, threads=1, clock=lambda: op_ns.sum() / 1e9)
    return out
