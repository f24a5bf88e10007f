"""Anchors: the same model on a runtime users deploy instead, timed in the same run.

A profile that only compares a nested level with torch's own dense kernels cannot tell a user
whether nested sparsity beats what they would ship. ONNX Runtime is that runtime on most edge
CPUs: each level is exported (``torch.onnx.export``; its weights masked, its batch norm on the
level's statistics) and run by ONNX Runtime's CPU provider with the profile's thread count,
sequential execution and every graph optimisation (batch norm folded, activations fused). Its
kernels are dense: a level's zeros cost what its non-zeros do, so each level runs as fast as the
dense model there — the anchor a nested level has to beat.

ONNX Runtime is an optional extra (``pip install -e '.[anchors]'``); without it, or for a model
that does not export, there is no anchor and the profile says why. ExecuTorch (XNNPACK) is not
an anchor yet: see profiles/README.md.
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
from simqos.profiler.timer import Measurement

__all__ = ["Anchor", "onnxruntime_anchor"]


class Anchor:
    """ONNX Runtime sessions of a network's uniform routes, one per level, on one input."""

    def __init__(self, net: NestedNetwork, x: torch.Tensor, threads: int) -> None:
        import onnxruntime as ort

        self.name = f"onnxruntime {ort.__version__}"
        self.feed = {"x": np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)}
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.sessions = [ort.InferenceSession(_export(net, net.uniform_route(k), x), options, providers=["CPUExecutionProvider"])
                         for k in range(net.n_levels)]

    def run(self, level: int) -> np.ndarray:
        return self.sessions[level].run(None, self.feed)[0]

    def time(self, n_passes: int, warmup_s: float, clock: Callable[[], float] = time.perf_counter) -> list[Measurement]:
        """Each level's whole-model samples (ms), the levels taking turns in blocks, stalls
        dropped (:func:`~simqos.profiler.passes.time_passes`)."""
        def run_pass(level) -> PassTime:
            begin = clock()
            self.run(level)
            return PassTime(clock() - begin, {})

        def warm_up(level) -> None:
            start = clock()
            while clock() - start < warmup_s:
                self.run(level)

        levels = list(range(len(self.sessions)))
        passes, _ = time_passes(levels, run_pass, warm_up, n_passes, {k: f"{self.name}, level {k}" for k in levels})
        return [Measurement(f"{self.name}:level {k}", tuple(p.seconds * 1e3 for p in passes[k]), 1, 1) for k in levels]


def _export(net: NestedNetwork, route: Sequence[int], x: torch.Tensor) -> bytes:
    """The module along ``route`` (masked weights, the route's batch-norm statistics) as ONNX."""
    module = copy.deepcopy(net.module).eval()
    with torch.no_grad():
        for name, tensor in net.route_tensors(route).items():
            owner, _, leaf = name.rpartition(".")
            getattr(module.get_submodule(owner), leaf).copy_(tensor)
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


def onnxruntime_anchor(net: NestedNetwork, x: torch.Tensor, threads: int) -> tuple[Anchor | None, str]:
    """An :class:`Anchor` for ``net``, or None and why there is none."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return None, "no anchor: onnxruntime is not installed (pip install -e '.[anchors]')"
    try:
        return Anchor(net, x, threads), ""
    except Exception as exc:  # noqa: BLE001 - export and session errors come in many kinds
        return None, f"no anchor: the model does not run on onnxruntime ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})"
