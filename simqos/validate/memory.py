"""Memory pressure played for real: the real server's levels evicted and reloaded as the
scenario's memory schedule says, so that the simulator's memory model is validated too.

The simulator's model (:func:`simqos.sim.device.resident_trace`): when the memory left for the model
shrinks, every level whose weights no longer fit is evicted at once; when it grows, the levels
come back one at a time, sparsest first, each after reading its extra non-zeros over the next
sparser level (nested storage: level k's weights are level k+1's plus those) at the scenario's
``storage_bandwidth_mb_s``; a change of memory abandons a reload in progress. A request whose
chosen level is not resident waits for it.

Here that is done to the real model (:mod:`simqos.validate.real`):

- :class:`WeightStore` serializes each level's extra non-zeros (the sparsest level's: all of
  its own) to a file, positions and values, before the runs; each level's kernels are built
  once from those files, sparsest first, each level's weights its sparser neighbour's plus its
  extra non-zeros read back.
- :class:`RealResidency` plays the memory schedule in real time from a thread kept off the
  serving core. An eviction takes the levels' kernels out of the served model. A reload reads
  the level's file in chunks paced so that the last byte arrives after the level's extra bytes
  *as the profile counts them* (its ``level_bytes`` difference) over the bandwidth, and then
  gives the level's kernels back. They are not rebuilt from the bytes read: building the
  kernels' structures is CPU work the simulator's model does not have (a deployment would store
  its kernels' own format and only read it); what building took here is in the report.
- The serving thread applies what the player decided at each reroute point
  (:meth:`RealResidency.sync`), so a segment runs on the kernels resident when it began; the
  policy sees the least sparse resident level; a chosen level that is not resident is waited
  for (:meth:`RealResidency.wait_for`).

On the nested runtime (a profile that deployed it) there are no per-level kernels to take out:
every level is the runtime's one copy of the weights, so an eviction only withholds the level
from the policy and from requests, which wait for its reload as above.

What stays in memory regardless: the trained network, and each level's kernels, held aside
while evicted, so this plays the *timing* of memory pressure — what is resident when, how long
a reload reads, who waits — not a limit on the process's memory.
"""

from __future__ import annotations

import io
import math
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from simqos.sim.device import fits
from simqos.kernels import BuiltKernel, build_kernel
from simqos.nested.network import NestedNetwork
from simqos.profiler.measure import local_weights
from simqos.validate.real import RealModel

__all__ = ["CHUNK_BYTES", "RealResidency", "WeightStore", "reload_mb"]

CHUNK_BYTES = 1 << 16
"""A reload reads its file this much at a time, each chunk no earlier than its share of the
paced time."""


def reload_mb(sizes_mb: np.ndarray, level: int) -> float:
    """What a reload of ``level`` reads (MB): its weights beyond the next sparser level's, or all
    of them for the sparsest (``sizes_mb``: each level's resident MB)."""
    return float(sizes_mb[level] - (sizes_mb[level + 1] if level + 1 < len(sizes_mb) else 0.0))


class WeightStore:
    """Each level's weights as stored for reloading, one ``.npz`` file per level in ``folder``:
    for each prunable weight, the flat positions and values of the non-zeros the level adds to
    the next sparser one (the sparsest level's: all of its own)."""

    def __init__(self, net: NestedNetwork, folder: Path) -> None:
        self.net = net
        self.paths: list[Path] = []
        params = dict(net.module.named_parameters())
        last = net.n_levels - 1
        for level in range(net.n_levels):
            arrays = {}
            for name, rank in net.ranks.items():
                adds = (rank >= level) if level == last else (rank == level)
                index = torch.nonzero(adds.flatten()).flatten()
                arrays[f"{name}:index"] = index.numpy().astype(np.int64)
                arrays[f"{name}:value"] = params[name].detach().flatten()[index].numpy()
            path = folder / f"level{level}.npz"
            np.savez(path, **arrays)
            self.paths.append(path)

    def read(self, level: int, seconds: float, until: float, clock: Callable[[], float]) -> dict[str, np.ndarray] | None:
        """Read level ``level``'s file paced to take ``seconds`` (the last chunk no earlier than
        that after the start), or None when it could not end before the ``clock`` reads
        ``until`` (the memory changed again: the reload is abandoned there)."""
        start = clock()
        path = self.paths[level]
        size = max(os.path.getsize(path), 1)
        chunks, got = [], 0
        with path.open("rb") as file:
            while chunk := file.read(CHUNK_BYTES):
                chunks.append(chunk)
                got += len(chunk)
                due = start + seconds * got / size
                if due >= until:
                    _sleep_until(until, clock)
                    return None
                _sleep_until(due, clock)
        with np.load(io.BytesIO(b"".join(chunks))) as data:
            return {key: data[key] for key in data.files}


def _sleep_until(t: float, clock: Callable[[], float]) -> None:
    """Sleep until ``clock`` reads ``t``. Not :func:`~simqos.realtime.wait_until`: its
    last stretch is spun, and a spinning reader would hold the interpreter lock that the
    serving thread needs, at every chunk."""
    left = t - clock()
    if left > 0:
        time.sleep(left)


class RealResidency:
    """The real model's resident levels under a memory schedule (see the module doc).

    ``level_bytes``: each level's resident bytes as the profile counts them (what the
    simulator's model reads at ``bandwidth_mb_s``); ``cores``: where the player runs (off the
    serving core; empty: where it is started). Each level's kernels are built once, from the
    stored non-zeros (``build_ms``: how long that took per level); :meth:`reset` makes the first
    memory state's levels resident before a run; :meth:`play` (a context manager) plays the
    schedule from a ``clock`` reading ``t0``; ``applied`` holds each memory change as it
    happened (seconds after ``t0``, MB) and ``log`` each eviction and reload (seconds after
    ``t0``, event, level, milliseconds reading).
    """

    def __init__(self, real: RealModel, net: NestedNetwork, store: WeightStore, level_bytes: np.ndarray,
                 bandwidth_mb_s: float, cores: set[int], clock: Callable[[], float] = time.perf_counter) -> None:  # fmt: skip
        self.real, self.store, self.clock, self.cores = real, store, clock, cores
        self.sizes_mb = np.asarray(level_bytes, dtype=float) / 1e6
        self.bandwidth_mb_s = float(bandwidth_mb_s)
        self.n_levels = net.n_levels
        self._kept, self.build_ms = _kernels_from_store(real, net, store)
        self._cond = threading.Condition()
        self.floor = 0  # the least sparse resident level, as the player has decided
        self.target = 0  # the least sparse level the memory now holds
        self.done = True  # the schedule has no more changes to come
        self._ready: set[int] = set()  # reloaded levels whose kernels the serving thread has yet to take
        self.applied: list[tuple[float, float]] = []
        self.log: list[tuple[float, str, int, float]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.t0 = 0.0

    def reset(self, memory_mb: float) -> None:
        """Before a run: every level that fits in ``memory_mb`` resident, the others evicted
        (the model was loaded before the run, as the simulator has it)."""
        level = fits(self.sizes_mb, memory_mb)
        for j, switch in enumerate(self.real.switches):
            for k in range(self.n_levels):
                switch.kernels[k] = None if k < level else self._kept[k][j]
        self.floor = self.target = level
        self._ready = set()
        self.applied, self.log = [], []

    # the serving thread's side

    def sync(self) -> int:
        """Apply what the player has decided — drop evicted levels' kernels, take reloaded
        ones — and return the least sparse resident level. Called by the serving thread at each
        reroute point, so only it changes the kernels a request runs."""
        with self._cond:
            for j, switch in enumerate(self.real.switches):
                for k in range(self.floor):
                    switch.kernels[k] = None
                for k in self._ready:
                    switch.kernels[k] = self._kept[k][j]
            self._ready = set()
            return self.floor

    def wait_for(self, level: int) -> bool:
        """Wait until ``level`` is resident (True), or until it is clear it never will be in
        this run: the schedule has no change to come and its last memory does not hold the
        level (False)."""
        with self._cond:
            while self.floor > level:
                if self.done and self.target > level:
                    return False
                self._cond.wait(timeout=0.05)
        self.sync()
        return True

    # the player's side

    def play(self, times_s: list[float], memory_mb: list[float], t0: float, until_s: float) -> RealResidency:
        """Set up playing memory ``memory_mb[k]`` from ``t0 + times_s[k]`` (changes before
        ``until_s``); use as a context manager, which starts the player and stops it on exit."""
        self.t0 = t0
        steps = [(t, mb) for t, mb in zip(times_s, memory_mb) if t < until_s]
        self.done = False
        self._stop.clear()
        self._thread = threading.Thread(target=self._play, args=(steps,), name="simqos-memory-schedule", daemon=True)
        return self

    def __enter__(self) -> RealResidency:
        assert self._thread is not None, "call play() first"
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join()
        with self._cond:
            self.done = True
            self._cond.notify_all()

    def _play(self, steps: list[tuple[float, float]]) -> None:
        if self.cores:
            os.sched_setaffinity(0, self.cores)
        try:
            for j, (t, mb) in enumerate(steps):
                if self._stop.wait(max(0.0, self.t0 + t - self.clock())):
                    return
                self._change(mb)
                until = self.t0 + steps[j + 1][0] if j + 1 < len(steps) else math.inf
                while self.floor > self.target and not self._stop.is_set():
                    if not self._reload(self.floor - 1, until):
                        break
        finally:
            with self._cond:
                self.done = True
                self._cond.notify_all()

    def _change(self, memory_mb: float) -> None:
        now = self.clock() - self.t0
        target = fits(self.sizes_mb, memory_mb)
        with self._cond:
            self.applied.append((now, float(memory_mb)))
            self.target = target
            if target > self.floor:  # evicted at once
                self.log.append((now, "evicted", target, 0.0))
                self.floor = target
                self._ready = {k for k in self._ready if k >= target}
            self._cond.notify_all()

    def _reload(self, level: int, until: float) -> bool:
        """Read ``level`` (the next less sparse one) back; False when abandoned."""
        seconds = reload_mb(self.sizes_mb, level) / self.bandwidth_mb_s
        begun = self.clock()
        if self.store.read(level, seconds, until, self.clock) is None or self._stop.is_set():
            return False
        finished = self.clock()
        with self._cond:
            self._ready.add(level)
            self.floor = level
            self.log.append((finished - self.t0, "reloaded", level, (finished - begun) * 1e3))
            self._cond.notify_all()
        return True


def _kernels_from_store(real: RealModel, net: NestedNetwork, store: WeightStore) -> tuple[list[list[BuiltKernel]], list[float]]:
    """Each level's kernels (in the order of ``real.switches``), built from the stored non-zeros
    — the sparsest level's, then each less sparse level's extra ones added — and the
    milliseconds each level's build took."""
    weights = {name: torch.zeros_like(p) for name, p in net.module.named_parameters() if name in net.ranks}
    kept: list[list[BuiltKernel]] = [[] for _ in range(net.n_levels)]
    if real.compiled is not None:  # one copy of every level: nothing to build per level
        return kept, [0.0] * net.n_levels
    build_ms = [0.0] * net.n_levels
    for level in reversed(range(net.n_levels)):
        stored = store.read(level, 0.0, math.inf, time.perf_counter)
        assert stored is not None
        begun = time.perf_counter()
        weights = {name: w.clone() for name, w in weights.items()}
        for name, w in weights.items():
            w.view(-1)[torch.from_numpy(stored[f"{name}:index"])] = torch.from_numpy(stored[f"{name}:value"])
        for switch in real.switches:
            layer = switch.layer
            module = net.module.get_submodule(layer.name)
            kept[level].append(build_kernel(real.kernel_names[(layer.name, level)], module, local_weights(layer, weights)))
        build_ms[level] = (time.perf_counter() - begun) * 1e3
    return kept, build_ms
