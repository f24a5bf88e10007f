"""Whole-model passes of several setups taking turns, with stalls found, re-run and recorded.

A *setup* is one way to run the model (a level on its kernels, the dense baseline, the nested
runtime at a level); a *pass* runs it once and reports its wall time and each layer's time
inside it (:class:`PassTime`). :func:`time_passes` warms every setup up, then runs ``n_passes``
each, the setups taking turns in blocks of :data:`IN_MODEL_BLOCK` passes in a rotating order: a
machine whose speed drifts slows every setup alike, so their ratios — what rerouting trades on —
stay true, and within a block a setup runs back to back, as a server runs a stream of requests.

**Stalls.** Now and then the thread does not run for a while — another process took the core,
the kernel did housekeeping. Such a sample is the machine's noise, not the layer's latency, and
one is enough to wreck a profile: a single 2.6 ms sample in a 0.037 ms layer capped every
policy using that level at two nines; the IQR warning, which looks at the middle half, never saw
it. A sample is a stall when it exceeds its setup's median for that layer (or the whole pass)
by more than :data:`STALL_FACTOR` times that median and by at least :data:`STALL_MIN_MS`. A
pass holding one is dropped and run again (up to :data:`REPEAT_ROUNDS` rounds); a stall that
comes back every time is kept — it is how that layer runs — and said so. Every stall is
returned as a :class:`Stall` for the warnings and the profile's provenance, which also says how
busy the machine was (:func:`load_average`). Rare stalls are modelled where they belong: in a
scenario's ``device.noise`` (``simqos validate`` fits them, :mod:`simqos.validate.noise`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["IN_MODEL_BLOCK", "PassTime", "REPEAT_ROUNDS", "STALL_FACTOR", "STALL_MIN_MS", "Stall", "find_stalls",
           "load_average", "time_passes"]

IN_MODEL_BLOCK = 10
"""Whole-model passes a setup runs back to back before the next takes its turn."""

STALL_FACTOR = 4.0
"""A sample more than this many times its median above the median is a stall (with STALL_MIN_MS)."""

STALL_MIN_MS = 0.1
"""... and more than this many ms above it: a descheduled thread loses at least a scheduler tick's
fraction, far above a fast layer's jitter."""

REPEAT_ROUNDS = 3
"""Rounds of re-running the passes that held a stall."""


@dataclass(frozen=True)
class PassTime:
    """One pass: its wall time and each layer's time inside it (seconds)."""

    seconds: float
    layers: dict[str, float]


@dataclass(frozen=True)
class Stall:
    """A sample far above its median: ``setup``'s ``what`` (a layer, or ``end to end``) in its
    ``pass_index``-th pass; ``kept`` when re-running never got rid of it."""

    setup: str
    what: str
    pass_index: int
    latency_ms: float
    median_ms: float
    kept: bool = False

    def text(self) -> str:
        fate = "kept: it came back every time the pass was run again" if self.kept else "dropped, the pass run again"
        return (f"{self.setup}: {self.what} took {self.latency_ms:.4g} ms in pass {self.pass_index}, "
                f"{self.latency_ms / self.median_ms:.0f}x its median of {self.median_ms:.4g} ms — a stall; {fate}")


def find_stalls(setup: str, passes: Sequence[PassTime]) -> list[Stall]:
    """The stalls among ``passes`` of one setup (module docstring), against their own medians."""
    if not passes:
        return []
    series = {"end to end": np.array([p.seconds for p in passes])}
    series |= {name: np.array([p.layers[name] for p in passes]) for name in passes[0].layers}
    found = []
    for what, seconds in series.items():
        ms = seconds * 1e3
        median = float(np.median(ms))
        limit = median + max(STALL_FACTOR * median, STALL_MIN_MS)
        found += [Stall(setup, what, int(i), float(ms[i]), median) for i in np.flatnonzero(ms > limit)]
    return found


def load_average() -> tuple[float, float, float] | None:
    """The machine's 1-, 5- and 15-minute load averages (runnable threads), where the OS says."""
    try:
        return os.getloadavg()
    except (AttributeError, OSError):
        return None


def time_passes(
    keys: Sequence[Hashable],
    run_pass: Callable[[Hashable], PassTime],
    warm_up: Callable[[Hashable], None],
    n_passes: int,
    names: dict[Hashable, str] | None = None,
) -> tuple[dict[Hashable, list[PassTime]], list[Stall]]:
    """``n_passes`` clean passes of each setup in ``keys`` (module docstring), after
    ``warm_up(key)`` for each; returns them with every stall found on the way, each named by
    its setup's ``names[key]`` (else ``str(key)``)."""
    names = names or {}
    for key in keys:
        warm_up(key)
    order = list(keys)
    passes: dict[Hashable, list[PassTime]] = {key: [] for key in order}
    for b, first in enumerate(range(0, n_passes, IN_MODEL_BLOCK)):
        for key in order[b % len(order):] + order[: b % len(order)]:
            passes[key] += [run_pass(key) for _ in range(min(IN_MODEL_BLOCK, n_passes - first))]
    stalls: list[Stall] = []
    for key in order:
        for round_ in range(REPEAT_ROUNDS + 1):
            found = find_stalls(names.get(key, str(key)), passes[key])
            if not found:
                break
            if round_ == REPEAT_ROUNDS:
                stalls += [Stall(s.setup, s.what, s.pass_index, s.latency_ms, s.median_ms, kept=True) for s in found]
                break
            stalls += found
            bad = {s.pass_index for s in found}
            passes[key] = [p for i, p in enumerate(passes[key]) if i not in bad]
            warm_up(key)  # the setups before it took the caches
            passes[key] += [run_pass(key) for _ in bad]
    return passes, stalls
