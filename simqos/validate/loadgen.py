"""A background load generator that makes this CPU's compute fluctuate on a schedule.

The serving thread is pinned to one core; *competitors* — busy processes pinned to the same
core — take turns with it under the kernel's fair scheduler, so it runs at about
``w / (w + sum of the competitors' weights)`` of its speed alone, where a process's weight
follows its nice value (1024 at nice 0, about 1.25 times less per nice step). A target speed
factor is therefore met by a number of competitors and one nice value (:func:`competitors_for`);
each speed of a schedule gets its own group of competitors, idle (blocked on an event) until
its state is switched on. What the serving thread actually receives is measured separately
(:mod:`simqos.validate.real`'s calibration probe), not assumed.

Safety: the competitors only spin on arithmetic — no files, no network. They are stopped by
:meth:`LoadGenerator.close` (also on Ctrl-C, on SIGTERM, and on any error, since the generator
is a context manager), are daemon processes (terminated when the parent exits normally), and
each checks that its parent is still alive — every 0.3 ms while it spins, every 0.2 s while
switched off — so even a parent killed with SIGKILL leaves nothing running.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

__all__ = ["CFS_WEIGHTS", "Competitors", "LoadGenerator", "SchedulePlayer", "competitors_for", "pinned", "serving_core"]

CFS_WEIGHTS = (
    1024, 820, 655, 526, 423, 335, 272, 215, 172, 137, 110, 87, 70, 56, 45, 36, 29, 23, 18, 15,
)
"""The Linux fair scheduler's weight of a process at nice 0, 1, ..., 19."""

MAX_COMPETITORS = 8
SPIN_CHUNK_S = 3e-4
"""How long a competitor spins between looks at its switch (and at its parent)."""


@dataclass(frozen=True)
class Competitors:
    """How a speed factor is produced: ``count`` busy processes at ``nice``; ``expected`` is the
    fair scheduler's share for the serving thread (1.0 with none)."""

    count: int
    nice: int
    expected: float


def competitors_for(speed: float) -> Competitors:
    """The competitors whose fair share leaves the serving thread closest to ``speed``.

    Raises ValueError for a speed above 1 (this CPU cannot run faster than it was profiled) or
    below what :data:`MAX_COMPETITORS` at nice 0 give.
    """
    lowest = 1.0 / (1 + MAX_COMPETITORS)
    if not lowest - 1e-9 <= speed <= 1.0 + 1e-9:
        raise ValueError(f"speed {speed:g} cannot be produced here: it must be in [{lowest:.3f}, 1] (1 = as profiled)")
    if speed >= 1.0 - 1e-9:
        return Competitors(0, 0, 1.0)
    options = (
        Competitors(n, nice, CFS_WEIGHTS[0] / (CFS_WEIGHTS[0] + n * CFS_WEIGHTS[nice]))
        for n in range(1, MAX_COMPETITORS + 1)
        for nice in range(len(CFS_WEIGHTS))
    )
    return min(options, key=lambda c: (abs(c.expected - speed), c.count))


def serving_core() -> int:
    """The core the serving thread and the competitors share: the last one this process may use."""
    return max(os.sched_getaffinity(0))


def _compete(core: int, nice: int, switch, stop, parent: int) -> None:
    """A competitor's life: pinned and niced, it spins while ``switch`` is set."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    os.sched_setaffinity(0, {core})
    os.nice(nice)
    x = 0
    while not stop.is_set() and os.getppid() == parent:
        if not switch.wait(timeout=0.2):
            continue
        until = time.perf_counter() + SPIN_CHUNK_S
        while time.perf_counter() < until:
            x = (x * 1103515245 + 12345) & 0x7FFFFFFF


class LoadGenerator:
    """Groups of competitors on one core, one group per speed factor; :meth:`apply` switches
    to a speed (its group on, every other off). Use as a context manager."""

    def __init__(self, speeds: list[float], core: int | None = None) -> None:
        self.all_cores = set(os.sched_getaffinity(0))
        self.core = serving_core() if core is None else core
        self.plans = {s: competitors_for(s) for s in sorted(set(speeds))}
        ctx = mp.get_context("spawn")
        self._stop = ctx.Event()
        self._switches = {s: ctx.Event() for s in self.plans}
        self._processes = [
            ctx.Process(target=_compete, args=(self.core, plan.nice, self._switches[s], self._stop, os.getpid()), daemon=True)
            for s, plan in self.plans.items()
            for _ in range(plan.count)
        ]
        self.speed: float | None = None
        self._closed = False
        self._previous_term = None

    def __enter__(self) -> LoadGenerator:
        self._previous_term = signal.signal(signal.SIGTERM, self._on_term) if threading.current_thread() is threading.main_thread() else None
        for p in self._processes:
            p.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _on_term(self, signum: int, frame: object) -> None:
        self.close()
        raise SystemExit(128 + signum)

    def apply(self, speed: float) -> None:
        """Switch the competitors of ``speed`` on and every other group off."""
        for s, switch in self._switches.items():
            if s != speed:
                switch.clear()
        if speed in self._switches:
            self._switches[speed].set()
        self.speed = speed

    def close(self) -> None:
        """Stop and reap every competitor (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        for switch in self._switches.values():
            switch.clear()
        for p in self._processes:
            if p.pid is not None:
                p.join(timeout=1.0)
                if p.is_alive():
                    p.kill()
                    p.join()
        if self._previous_term is not None:
            signal.signal(signal.SIGTERM, self._previous_term)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._processes if p.pid is not None]


class SchedulePlayer:
    """Plays a speed schedule in real time — ``speeds[k]`` from ``t0 + times_s[k]`` (``clock``
    readings) until ``until_s`` — from a thread kept off the serving core; ``applied`` holds
    each switch as it really happened: (seconds after ``t0``, speed)."""

    def __init__(
        self,
        load: LoadGenerator,
        times_s: list[float],
        speeds: list[float],
        t0: float,
        until_s: float,
        clock=time.perf_counter,
    ) -> None:
        self.load, self.t0, self.clock = load, t0, clock
        self.steps = [(t, s) for t, s in zip(times_s, speeds) if t < until_s]
        self.applied: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._play, name="simqos-load-schedule", daemon=True)

    def _play(self) -> None:
        others = self.load.all_cores - {self.load.core}
        if others:
            os.sched_setaffinity(0, others)
        for t, speed in self.steps:
            if self._stop.wait(max(0.0, self.t0 + t - self.clock())):
                return
            self.load.apply(speed)
            self.applied.append((self.clock() - self.t0, speed))

    def __enter__(self) -> SchedulePlayer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.load.apply(1.0)


@contextmanager
def pinned(core: int) -> Iterator[None]:
    """Run the calling thread on ``core`` only, and restore its affinity afterwards."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {core})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)
