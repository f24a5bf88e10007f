"""Batch-norm statistics per route prefix, re-estimated from unlabelled inputs after training.

A batch-norm module normalises with running statistics of the activations that reach it. In a
nested network those depend on the levels of every segment before it, not only its own: a
sparser tail after a less-sparse head sees larger, differently spread activations than after a
head at its own level. Normalised with its own level's statistics, such a tail is off scale,
and a 1D ResNet on MNIST-1D dropped to chance (13.9 % against 86.6 % for level 1) on a route
that switches level after its second segment.

So a network keeps statistics per **route prefix**: the batch-norm modules of segment ``s`` on
route ``r`` use the statistics measured along ``r[: s + 1]`` (:attr:`NestedNetwork.norm_stats`).
:func:`calibrate_norms` measures them for a list of routes: each route runs over the inputs in
batches with its batch-norm modules normalising by batch statistics, and the running statistics
are the plain average over the batches (``momentum=None``), from reset — the recalibration
commonly done after pruning (e.g. slimmable networks' post-training statistics). No label and
no gradient is used, and no weight moves. A prefix shared by several routes gets the same
statistics from each: its activations do not depend on what follows.

What it costs at run time: a few numbers per channel and prefix, beside weights that are
shared. A prefix that was not calibrated (a non-monotone one, when only monotone routes are)
falls back to its segment level's own statistics, those of the uniform route.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from simqos.nested.network import NORM_STATS, NestedNetwork, Route

__all__ = ["CALIBRATION_BATCH", "calibrate_norms"]

CALIBRATION_BATCH = 500
"""Inputs per batch while calibrating: batch statistics of this many samples are close to the
population's, so normalising by them shifts later segments' activations little."""


@torch.no_grad()
def calibrate_norms(net: NestedNetwork, x: torch.Tensor, routes: Sequence[Route], batched: bool = True) -> None:
    """Measure the batch-norm statistics of every prefix of ``routes`` on the inputs ``x``
    (batch first; ``batched=False``: ``x`` is one whole input, as a graph) and store them in
    ``net.norm_stats``, replacing what was there for those prefixes. Inputs beyond a whole
    number of :data:`CALIBRATION_BATCH` batches are not used, so every batch weighs the same."""
    if not net.norm_segments:
        return
    named = dict(net.module.named_modules())
    norms = {name: named[name] for name in net.norm_segments}
    if batched:
        whole = max(1, len(x) // CALIBRATION_BATCH) * CALIBRATION_BATCH
        batches = [x[i : i + CALIBRATION_BATCH] for i in range(0, min(whole, len(x)), CALIBRATION_BATCH)]
    else:
        batches = [x]
    was_training = net.module.training
    momenta = {name: m.momentum for name, m in norms.items()}
    net.module.eval()
    try:
        for m in norms.values():
            m.train()
            m.momentum = None  # the plain average over the batches
        for route in dict.fromkeys(tuple(r) for r in routes):
            route = net.check_route(route)
            buffers = {}
            for name, m in norms.items():
                buffers[f"{name}.running_mean"] = torch.zeros_like(m.running_mean)
                buffers[f"{name}.running_var"] = torch.ones_like(m.running_var)
                buffers[f"{name}.num_batches_tracked"] = torch.zeros_like(m.num_batches_tracked)
            tensors = net.masked_weights(route) | buffers
            for xb in batches:
                torch.func.functional_call(net.module, tensors, (xb,))
            for name, segment in net.norm_segments.items():
                prefix = route[: segment + 1]
                net.norm_stats.setdefault(prefix, {}).update(
                    {f"{name}.{b}": buffers[f"{name}.{b}"].clone() for b in NORM_STATS}
                )
    finally:
        for name, m in norms.items():
            m.momentum = momenta[name]
        net.module.train(was_training)
