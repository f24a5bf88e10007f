"""Request arrivals and deadlines, sampled up front from a ``numpy.random.Generator``.

Arrival processes: ``poisson`` (rate), ``periodic`` (frames per second plus a uniform jitter),
``bursty`` (a Markov-modulated Poisson process: a Poisson rate per state of a continuous-time
Markov chain), and ``trace`` (arrival times replayed from a CSV). Deadlines are relative to
arrival: ``constant``, ``uniform`` or ``lognormal``. Times in seconds, deadlines in ms.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from simqos.compiled import njit
from simqos.userfiles import read_numeric_columns
from simqos.device import embedded_stationary, jump_cdf, transition_matrix
from simqos.errors import SimqosError

__all__ = [
    "arrivals_from_spec",
    "bursty_arrivals",
    "deadlines_from_spec",
    "constant_deadlines",
    "lognormal_deadlines",
    "mean_rate_hz",
    "periodic_arrivals",
    "poisson_arrivals",
    "read_arrivals_csv",
    "uniform_deadlines",
]


def poisson_arrivals(rate_hz: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` arrival times (s) of a Poisson process of ``rate_hz``, the first after 0."""
    return np.cumsum(rng.exponential(1.0 / rate_hz, size=n))


def periodic_arrivals(fps: float, jitter_ms: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """Frame k arrives at ``k / fps`` plus a uniform delay in ``[0, jitter_ms)``; sorted."""
    base = np.arange(1, n + 1) / fps
    return np.sort(base + rng.uniform(0.0, jitter_ms / 1e3, size=n))


def bursty_arrivals(
    rates_hz: Sequence[float],
    mean_dwell_s: Sequence[float],
    transitions: np.ndarray,
    n: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """``n`` arrivals of a Markov-modulated Poisson process.

    State i lasts an exponential time of mean ``mean_dwell_s[i]`` and emits Poisson arrivals
    at ``rates_hz[i]``; the next state is drawn from row i of ``transitions``. Starts in
    state 0.
    """
    return _bursty_walk(rng, np.asarray(rates_hz, dtype=float), np.asarray(mean_dwell_s, dtype=float), jump_cdf(transitions), n)


@njit()
def _bursty_walk(rng: np.random.Generator, rates: np.ndarray, dwell: np.ndarray, cdf: np.ndarray, n: int) -> np.ndarray:
    """:func:`bursty_arrivals`, compiled: per state visit an exponential dwell, a Poisson count
    and that many sorted uniform times in it, then ``rng.random()`` searched in the row of
    ``cdf`` — the draws, in order, of the uncompiled loop with ``Generator.choice``, so the
    arrivals are the same for the same seed (numba's Generator runs NumPy's algorithms)."""
    chunks = []
    count, t, state = 0, 0.0, 0
    while count < n:
        end = t + rng.exponential(dwell[state])
        if rates[state] > 0:
            k = rng.poisson(rates[state] * (end - t))
            chunks.append(np.sort(rng.uniform(t, end, k)))
            count += k
        t = end
        if len(rates) > 1:
            state = np.searchsorted(cdf[state], rng.random(), side="right")
    out = np.empty(count)
    i = 0
    for chunk in chunks:
        out[i:i + len(chunk)] = chunk
        i += len(chunk)
    return out[:n]


def constant_deadlines(ms: float, n: int) -> np.ndarray:
    """Every request has ``ms`` milliseconds."""
    return np.full(n, float(ms))


def uniform_deadlines(low_ms: float, high_ms: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """Relative deadlines uniform in ``[low_ms, high_ms]``."""
    return rng.uniform(low_ms, high_ms, size=n)


def lognormal_deadlines(median_ms: float, sigma: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """Log-normal relative deadlines with the given median and log-space ``sigma``."""
    return median_ms * np.exp(sigma * rng.standard_normal(n))


def read_arrivals_csv(path: Path) -> np.ndarray:
    """Arrival times (s) from the ``arrival_s`` column of a CSV; sorted, non-negative."""
    times = read_numeric_columns(path, ("arrival_s",), "arrivals")["arrival_s"]
    if np.any(np.diff(times) < 0):
        raise SimqosError(f"{path}: arrival_s must be non-decreasing")
    return times


def mean_rate_hz(spec: Any) -> float:
    """The long-run mean arrival rate (requests/s) of a scenario's ``workload.arrival``."""
    if spec.kind == "poisson":
        return spec.rate_hz
    if spec.kind == "periodic":
        return spec.fps
    if spec.kind == "bursty":
        dwell = np.array([s.mean_dwell_s for s in spec.states])
        time_share = embedded_stationary(transition_matrix(spec.transitions, len(spec.states))) * dwell
        return float(np.dot(time_share / time_share.sum(), [s.rate_hz for s in spec.states]))
    times = read_arrivals_csv(spec.path)
    return len(times) / max(float(times[-1]), 1e-9)


def arrivals_from_spec(spec: Any, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` arrival times (s) of the process a scenario's ``workload.arrival`` describes
    (a replayed trace gives its own arrivals, repeated end to end if ``n`` exceeds them; a
    scenario allows that only with ``after_end: repeat``)."""
    if spec.kind == "poisson":
        return poisson_arrivals(spec.rate_hz, n, rng)
    if spec.kind == "periodic":
        return periodic_arrivals(spec.fps, spec.jitter_ms, n, rng)
    if spec.kind == "bursty":
        return bursty_arrivals(
            [s.rate_hz for s in spec.states],
            [s.mean_dwell_s for s in spec.states],
            transition_matrix(spec.transitions, len(spec.states)),
            n,
            rng,
        )
    times = read_arrivals_csv(spec.path)
    span = times[-1] + (times[-1] - times[0]) / max(len(times) - 1, 1)
    reps = -(-n // len(times))
    return (times[None, :] + span * np.arange(reps)[:, None]).reshape(-1)[:n]


def deadlines_from_spec(spec: Any, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` relative deadlines (ms) as a scenario's ``workload.deadline`` describes."""
    if spec.kind == "constant":
        return constant_deadlines(spec.ms, n)
    if spec.kind == "uniform":
        return uniform_deadlines(spec.low_ms, spec.high_ms, n, rng)
    return lognormal_deadlines(spec.median_ms, spec.sigma, n, rng)
