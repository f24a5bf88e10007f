"""Waiting on a real clock, to the microsecond: what the profiler's idle gaps and the real
server's arrivals wait with (no torch here)."""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["IDLE_SPIN_S", "wait_until"]

IDLE_SPIN_S = 3e-4
"""The last stretch of a wait that is spun rather than slept: a sleep overshoots by tens of
microseconds."""


def wait_until(deadline: float, clock: Callable[[], float] = time.perf_counter) -> None:
    """Idle until ``deadline`` (a ``clock`` reading): asleep, but for the last
    :data:`IDLE_SPIN_S`, which are spun so that the wait ends on time."""
    while True:
        left = deadline - clock()
        if left <= 0:
            return
        if left > IDLE_SPIN_S + 1e-4:
            time.sleep(left - IDLE_SPIN_S)
