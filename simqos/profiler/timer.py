"""Timing harness in the manner of ``torch.utils.benchmark``: explicit threads, warm-up, raw samples.

:func:`measure` warms a function up, then picks how many calls make one sample last at least
``min_sample_s`` (so timer resolution and call overhead stay small against it), then takes
``n_samples`` samples. Each sample is the mean time of one call within it, in milliseconds; the
raw samples are kept, and :class:`Measurement` reports their median and inter-quartile range
and warns when the spread is large. Samples of sub-millisecond calls are thus means over
several calls, which narrows their tail: a profile says how many calls each sample holds.

The clock and the synchronisation are arguments, so the bookkeeping is testable with a fake
clock and the same code times CUDA work (``sync=torch.cuda.synchronize``).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["Measurement", "measure", "torch_threads"]

SPREAD_WARNING = 0.10
"""IQR / median above which a measurement carries a warning."""


@dataclass(frozen=True)
class Measurement:
    """Raw per-call latency samples (ms) of one timed function, and how they were taken."""

    label: str
    samples_ms: tuple[float, ...]
    calls_per_sample: int
    threads: int

    @property
    def median_ms(self) -> float:
        return float(np.median(self.samples_ms))

    @property
    def iqr_ms(self) -> float:
        q1, q3 = np.percentile(self.samples_ms, [25, 75])
        return float(q3 - q1)

    @property
    def relative_spread(self) -> float:
        """IQR divided by the median."""
        return self.iqr_ms / self.median_ms

    @property
    def warnings(self) -> list[str]:
        """Human-readable reasons to distrust this measurement (empty if none)."""
        if self.relative_spread > SPREAD_WARNING:
            return [
                f"{self.label}: IQR is {self.relative_spread:.0%} of the median "
                f"({self.iqr_ms:.4g} of {self.median_ms:.4g} ms); the machine may be busy"
            ]
        return []


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(threads)``, restoring the old count after."""
    if threads < 1:
        raise ValueError(f"threads(={threads}) must be >= 1")
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(old)

def _timed_calls(fn: Callable[[], object], clock: Callable[[], float], sync: Callable[[], None], cuda_events: bool,
                 calls: int) -> float:  # fmt: skip
    """Seconds ``calls`` calls of ``fn`` take: by ``clock`` after ``sync``, or by CUDA events
    recorded around them on the current stream."""
    if cuda_events:
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
        for _ in range(calls):
            fn()
        end.record()
        end.synchronize()
        return begin.elapsed_time(end) / 1e3
    start = clock()
    for _ in range(calls):
        fn()
    sync()
    return clock() - start



def measure(
    fn: Callable[[], object],
    *,
    label: str = "",
    n_samples: int = 30,
    min_sample_s: float = 1e-3,
    warmup_s: float = 0.05,
    threads: int = 1,
    clock: Callable[[], float] = time.perf_counter,
    sync: Callable[[], None] = lambda: None,
    max_calls_per_sample: int = 1 << 20,
    cuda_events: bool = False,
) -> Measurement:
    """Time ``fn()``; see the module docstring. Times are seconds in, milliseconds out.

    Warm-up calls ``fn`` until ``warmup_s`` has passed (at least once). Calibration doubles the
    calls per sample from 1 until one batch of calls takes ``min_sample_s``. With
    ``cuda_events`` each batch is timed by CUDA events recorded around it on the current
    stream (the GPU's own clock) instead of ``clock``.
    """
    if n_samples < 1:
        raise ValueError(f"n_samples(={n_samples}) must be >= 1")
    if min_sample_s <= 0:
        raise ValueError(f"min_sample_s(={min_sample_s}) must be > 0")

    run = functools.partial(_timed_calls, fn, clock, sync, cuda_events)
    with torch_threads(threads):
        with torch.no_grad():
            start = clock()
            run(1)
            while clock() - start < warmup_s:
                run(1)
            calls = 1
            while run(calls) < min_sample_s and calls < max_calls_per_sample:
                calls *= 2
            samples = tuple(run(calls) / calls * 1e3 for _ in range(n_samples))
    return Measurement(label=label, samples_ms=samples, calls_per_sample=calls, threads=threads)
