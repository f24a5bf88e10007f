"""Anchors: the same model on a runtime users deploy instead, timed in the same run.

A profile that only compares a nested level with torch's own dense kernels cannot tell a user
whether nested sparsity beats what they would ship. Two runtimes users deploy on edge CPUs are
anchors: ONNX Runtime (each level exported with ``torch.onnx.export`` — its weights masked, its
batch norm on the level's statistics — and run by the CPU provider, sequential, every graph
optimisation on) and ExecuTorch with its XNNPACK backend (``torch.export``, lowered to XNNPACK,
run by ExecuTorch's runtime), each with the profile's thread count. Their kernels are dense: a
level's zeros cost what its non-zeros do, so each level runs as fast as the dense model there —
the anchor a nested level has to beat.

Both are an optional extra (``pip install -e '.[anchors]'``); without one, or for a model that
does not export, there is no such anchor and the profile says why.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import time
import warnings
from collections.abc import Callable, Sequence

import numpy as np
import torch

from simqos.nested.network import NestedNetwork
from simqos.profiler.passes import PassTime, time_passes

__all__ = ["ANCHORS", "Anchor", "anchors", "time_alongside"]


class Anchor:
    """A network's uniform routes, one per level, on another runtime: ``runs[k]()`` runs level
    k on the profile's input once and returns its output."""

    def __init__(self, name: str, runs: list[Callable[[], np.ndarray]]) -> None:
        self.name, self.runs = name, runs

    def run(self, level: int) -> np.ndarray:
        return self.runs[level]()



def time_alongside(anchors: Sequence[Anchor], deployed: Anchor, n_passes: int, warmup_s: float,
                   clock: Callable[[], float] = time.perf_counter) -> dict[str, list[float]]:
    """Every level of every anchor and of the ``deployed`` runtime (its levels as an Anchor),
    all taking turns in the same blocks (:func:`~simqos.profiler.passes.time_passes`, stalls
    dropped), so that the machine's drift — by half over minutes on a shared host — weighs on
    all alike: each runtime's whole-model median (ms) per level, by name."""
    runs = {(a.name, k): run for a in (*anchors, deployed) for k, run in enumerate(a.runs)}

    def run_pass(key) -> PassTime:
        begin = clock()
        runs[key]()
        return PassTime(clock() - begin, {})

    def warm_up(key) -> None:
        start = clock()
        while clock() - start < warmup_s:
            runs[key]()

    passes, _ = time_passes(list(runs), run_pass, warm_up, n_passes, {key: f"{key[0]}, level {key[1]}" for key in runs})
    medians: dict[str, list[float]] = {}
    for (name, _level), ps in passes.items():
        medians.setdefault(name, []).append(float(np.median([p.seconds for p in ps])) * 1e3)
    return medians


def _onnxruntime(net: NestedNetwork, x: torch.Tensor, threads: int) -> Anchor:
    import onnxruntime as ort

    feed = {"x": np.ascontiguousarray(x.detach().cpu().numpy())}  # its own dtype: token ids stay integers
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sessions = [ort.InferenceSession(_export(net, net.uniform_route(k), x), options, providers=["CPUExecutionProvider"])
                for k in range(net.n_levels)]
    return Anchor(f"onnxruntime {ort.__version__}", [lambda s=s: s.run(None, feed)[0] for s in sessions])


def _executorch(net: NestedNetwork, x: torch.Tensor, threads: int) -> Anchor:
    from importlib.metadata import version

    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower
    from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool
    from executorch.runtime import Runtime

    _unsafe_reset_threadpool(threads)
    runtime, inputs, methods = Runtime.get(), [x.detach().cpu().contiguous()], []
    for k in range(net.n_levels):
        module = _on_route(net, net.uniform_route(k))
        lowered = to_edge_transform_and_lower(torch.export.export(module, tuple(inputs)), partitioner=[XnnpackPartitioner()])
        program = lowered.to_executorch().buffer  # the loaded program reads it in place: it must outlive the method
        methods.append((program, runtime.load_program(program).load_method("forward")))
    return Anchor(f"executorch {version('executorch')} xnnpack", [lambda m=m: m[1].execute(inputs)[0].numpy() for m in methods])


def _on_route(net: NestedNetwork, route: Sequence[int]) -> torch.nn.Module:
    """A copy of the module holding ``route``'s masked weights and batch-norm statistics."""
    module = copy.deepcopy(net.module).eval()
    with torch.no_grad():
        for name, tensor in net.route_tensors(route).items():
            owner, _, leaf = name.rpartition(".")
            getattr(module.get_submodule(owner), leaf).copy_(tensor)
    return module


def _export(net: NestedNetwork, route: Sequence[int], x: torch.Tensor) -> bytes:
    """The module along ``route`` (masked weights, the route's batch-norm statistics) as ONNX."""
    module = _on_route(net, route)
    buffer = io.BytesIO()
    onnx_log = logging.getLogger("torch.onnx")
    level = onnx_log.level
    onnx_log.setLevel(logging.ERROR)  # e.g. "torchvision is not installed. Skipping torchvision::nms"
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):  # the exporter reports its steps
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (x.detach().cpu(),), buffer, input_names=["x"], dynamo=True, external_data=False,
                          verbose=False, report=False)
    onnx_log.setLevel(level)
    return buffer.getvalue()


ANCHORS = {"onnxruntime": ("onnxruntime", _onnxruntime), "executorch": ("executorch", _executorch)}
"""Each anchor: the package it needs and how it is built."""


def anchors(net: NestedNetwork, x: torch.Tensor, threads: int) -> tuple[list[Anchor], list[str]]:
    """Every anchor that runs ``net`` here, and why each other one does not."""
    built, notes = [], []
    for name, (package, build) in ANCHORS.items():
        try:
            __import__(package)
        except ImportError:
            notes.append(f"no {name} anchor: {package} is not installed (pip install -e '.[anchors]')")
            continue
        try:
            with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                anchor = build(net, x, threads)
                for level in range(net.n_levels):  # a model that exports but does not run is refused here, not mid-timing
                    anchor.run(level)
            built.append(anchor)
        except Exception as exc:  # noqa: BLE001 - export and session errors come in many kinds
            notes.append(f"no {name} anchor: the model does not run there ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})")
    return built, notes
