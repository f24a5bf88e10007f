"""CPU time-slicing: how a request's work stretches when competing processes share the core
(``device.slice_ms``).

With a slice set, a speed process value ``s`` below 1 is the share of the core that competing
processes leave, and the core alternates as a fair scheduler runs it: the server runs a slice
of ``slice_ms`` of work at the whole core, then waits while the competitors take theirs,
``slice_ms * (1/s - 1)``, and so on. A request's *first* run depends on how it started: one
that found the server idle (woken) runs a whole slice first — a thread that slept is
scheduled at once with a fresh slice —, one that queued continues the slice the request before
it left. So a request of work ``W`` (profiled ms at the whole core, after its idle slowdown)
waits out ``count = ceil((W - first) / slice_ms)`` competitor turns when ``W > first`` (else
none) and takes ``W + count * slice_ms * (1/s - 1)``: as work at the speed ``s`` the engine
runs, ``s * W + (1 - s) * count * slice_ms`` (:func:`sliced_work`). Averaged over where a
slice stands that is ``W``, the speed factor's model; the slices add the spread (at a quarter
of the core a request waits one round of turns or two, nothing between) and the woken
requests' advantage, which grows with the number of competitors.

With ``device.wake_wait`` a woken request does not run at once: it first waits for the
competitor in its slice to finish it — the rest of the slice cycle at its start, times a
fraction for the number of competitors (:func:`wake_waited`). Under one competitor the
scheduler places a woken thread behind the running one; under three it mostly runs it at once;
``simqos validate`` fits the fractions from its woken probes.

The share is read at the request's start (``device.speed`` alone, without the noise, which
slows the whole core), and the stretch is spread over the request's segments in proportion:
each level's work is multiplied by one factor (:func:`sliced_factors`), as the idle slowdown's.
A mixed route's levels each take their own level's factor. The drivers carry the slice left
from request to request (:func:`slice_left_after`); the policies are not told of any of it.
Plain arithmetic on purpose: both engines and the offline bound run these same functions.
"""

from __future__ import annotations

import math

import numpy as np

from simqos.jit import njit

__all__ = ["level_work", "route_work", "slice_left_after", "sliced_factors", "sliced_work", "waited_ms", "wake_wait_ms", "wake_waited"]

jit = njit()


@jit
def sliced_work(work_ms: float, share: float, first_ms: float, slice_ms: float, woke_ms: float = 0.0) -> float:
    """``work_ms`` at the whole core as work at the shared speed ``share`` (module doc), its
    first run ``first_ms`` long, then slices of ``slice_ms`` (> 0), after waiting ``woke_ms``
    of competitors' turns first (:func:`wake_waited`); unchanged at a share of 1 or more
    (nothing competes)."""
    if share >= 1.0:
        return work_ms
    waited = math.ceil((work_ms - first_ms) / slice_ms) * slice_ms if work_ms > first_ms else 0.0
    return share * work_ms + (1.0 - share) * (waited + woke_ms)


@jit
def wake_wait_ms(now_s: float, share: float, slice_ms: float, wake_wait: np.ndarray) -> float:
    """How long a request that wakes the server at ``now_s`` waits before its first slice
    (``device.wake_wait``): the rest of the slice the running competitor is in — where ``now_s``
    falls in the slice cycle — times the fraction for the number of competitors,
    ``round(1/share - 1)`` (``wake_wait[n - 1]``, the last for more); 0 at a share of 1."""
    if share >= 1.0 or share <= 0.0:
        return 0.0
    n = max(1, int(round(1.0 / share - 1.0)))
    fraction = wake_wait[min(n, len(wake_wait)) - 1]
    if fraction <= 0.0:
        return 0.0
    return fraction * (1.0 - (now_s * 1e3 / slice_ms) % 1.0) * slice_ms


@jit
def wake_waited(now_s: float, share: float, slice_ms: float, wake_wait: np.ndarray) -> float:
    """:func:`wake_wait_ms` in :func:`sliced_work`'s units, turns' slices: a wait ``w`` is
    ``w * share / (1 - share)`` of them (at the share the work runs at, ``share * W + (1 -
    share) * that`` adds ``w * share``, which the speed ``share`` makes ``w``)."""
    wait = wake_wait_ms(now_s, share, slice_ms, wake_wait)
    return wait * share / (1.0 - share) if wait > 0.0 else 0.0


@jit
def slice_left_after(first_ms: float, work_ms: float, slice_ms: float) -> float:
    """The work left in the server's current slice when a request that ran ``work_ms`` from a
    first run of ``first_ms`` ends: what the next queued request's first run is."""
    if work_ms <= first_ms:
        return first_ms - work_ms
    into = (work_ms - first_ms) % slice_ms
    return slice_ms - into if into > 0.0 else 0.0


@jit
def waited_ms(work_ms: np.ndarray, woken: np.ndarray, slice_ms: float, woke_ms: np.ndarray) -> np.ndarray:
    """The competitors' turns (as slices of work: :func:`sliced_work` at a share of 0) that each
    of a sequence of requests waits out, in the order the server ran them: a woken one's first
    run is a whole slice, after ``woke_ms`` (:func:`wake_waited`; 0 for the queued ones), a
    queued one's the slice its predecessor left."""
    out = np.empty(len(work_ms))
    left = 0.0
    for i in range(len(work_ms)):
        first = slice_ms if woken[i] else left
        out[i] = sliced_work(work_ms[i], 0.0, first, slice_ms, woke_ms[i])
        left = slice_left_after(first, work_ms[i], slice_ms)
    return out


@jit
def level_work(work: np.ndarray, level: int) -> float:
    """A request's whole work at ``level``: ``work[level]`` (per segment) summed."""
    total = 0.0
    for s in range(work.shape[1]):
        total += work[level, s]
    return total


@jit
def sliced_factors(factors: np.ndarray, work: np.ndarray, share: float, first_ms: float, slice_ms: float,
                   woke_ms: float = 0.0) -> None:  # fmt: skip
    """Each level's work multiplier (``factors``, in place) so that the request's whole work
    at the level, ``work[level]`` summed times the factor, becomes its :func:`sliced_work`."""
    if share >= 1.0:
        return
    for k in range(len(factors)):
        raw = level_work(work, k)
        if raw > 0.0:
            factors[k] = sliced_work(raw * factors[k], share, first_ms, slice_ms, woke_ms) / raw


@jit
def route_work(code: int, work: np.ndarray, factors: np.ndarray) -> float:
    """The work (profiled ms at the whole core) of the route with code ``code`` (base
    ``n_levels`` digits, the last segment's last): each segment's ``work[level, segment]``
    times its level's factor."""
    n_levels, n_segments = work.shape
    total = 0.0
    for seg in range(n_segments - 1, -1, -1):
        level = code % n_levels
        code //= n_levels
        total += work[level, seg] * factors[level]
    return total
