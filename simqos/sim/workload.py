"""Request arrivals and deadlines, sampled up front from a ``numpy.random.Generator``.

Arrival processes: ``poisson`` (rate), ``periodic`` (frames per second plus a uniform jitter),
``bursty`` (a Markov-modulated Poisson process: a Poisson rate per state of a continuous-time
Markov chain), and ``trace`` (arrival times replayed from a CSV). Deadlines are relative to
arrival: ``constant``, ``uniform`` or ``lognormal``. Times in seconds, deadlines in ms.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from simqos.jit import njit
from simqos.userfiles import read_arrivals_csv
from simqos.markov import transition_matrix
from simqos.sim.device import jump_cdf
from simqos.errors import SimqosError

__all__ = [
    "ArrivalStream",
    "arrivals_from_spec",
    "bursty_arrivals",
    "planning_rate_hz",
    "periodic_arrivals",
    "poisson_arrivals",
]


def poisson_arrivals(rate_hz: float, n: int, rng: np.random.Generator, after_s: float = 0.0) -> np.ndarray:
    """``n`` arrival times (s) of a Poisson process of ``rate_hz``, the first after ``after_s``
    (summed in order from it: drawn in parts, the times are those drawn at once)."""
    return np.cumsum(np.concatenate(([after_s], rng.exponential(1.0 / rate_hz, size=n))))[1:]


def periodic_arrivals(fps: float, jitter_ms: float, n: int, rng: np.random.Generator, first_frame: int = 1) -> np.ndarray:
    """Frame k (from ``first_frame``, ``n`` of them) arrives at ``k / fps`` plus a uniform delay
    in ``[0, jitter_ms)``; sorted."""
    base = np.arange(first_frame, first_frame + n) / fps
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
    rates, dwell = np.asarray(rates_hz, dtype=float), np.asarray(mean_dwell_s, dtype=float)
    return _bursty_walk(rng, rates, dwell, jump_cdf(transitions), n, 0.0, 0)[0][:n]


@njit()
def _bursty_walk(rng: np.random.Generator, rates: np.ndarray, dwell: np.ndarray, cdf: np.ndarray, n: int, t: float,
                 state: int) -> tuple[np.ndarray, float, int]:  # fmt: skip
    """Whole state visits from time ``t`` in ``state`` until at least ``n`` arrivals: (their
    times, the last visit's end, the next state). Per visit an exponential dwell, a Poisson
    count and that many sorted uniform times in it, then ``rng.random()`` searched in the row
    of ``cdf`` — the draws, in order, of the uncompiled loop with ``Generator.choice``, so the
    arrivals are the same for the same seed (numba's Generator runs NumPy's algorithms)."""
    chunks = []
    count = 0
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
    return out, t, state


class ArrivalStream:
    """The arrival times (s) of a scenario's ``workload.arrival``, handed out in chunks
    (:meth:`take`) that do not change them: each process draws from ``rng`` in the same order
    whatever the chunk sizes, and keeps what it drew beyond a chunk for the next. The stream
    ends after ``requests`` arrivals, or before the first at or after ``until_s``.

    A replayed trace gives its own arrivals, repeated end to end (a scenario allows more
    arrivals than the file holds only with ``after_end: repeat``)."""

    def __init__(self, spec: Any, rng: np.random.Generator, requests: int | None = None, until_s: float | None = None) -> None:
        if (requests is None) == (until_s is None):
            raise ValueError("an arrival stream ends after requests or at until_s: give one")
        self.spec, self.rng, self.requests, self.until_s = spec, rng, requests, until_s
        self.pending = np.empty(0)  # drawn, in order, final, not yet handed out
        self.handed = 0
        self.ended = False
        self.drawn = 0  # periodic and trace: frames (rows) drawn so far
        self.held = np.empty(0)  # periodic: drawn frames that a later frame's jitter may still precede
        self.t, self.state = 0.0, 0  # poisson: the last arrival; bursty: the last visit's end, the next state
        if spec.kind == "bursty":
            self.rates = np.array([s.rate_hz for s in spec.states], dtype=float)
            self.dwell = np.array([s.mean_dwell_s for s in spec.states], dtype=float)
            self.cdf = jump_cdf(transition_matrix(spec.transitions, len(spec.states)))
        elif spec.kind == "trace":
            self.times = read_arrivals_csv(spec.path)
            self.span = self.times[-1] + (self.times[-1] - self.times[0]) / max(len(self.times) - 1, 1)

    @property
    def exhausted(self) -> bool:
        """Whether every arrival has been handed out."""
        if self.requests is not None:
            return self.handed == self.requests
        return self.ended and not len(self.pending)

    def take(self, m: int) -> np.ndarray:
        """The next (up to) ``m`` arrival times; fewer, or none, where the stream ends."""
        if self.requests is not None:
            m = min(m, self.requests - self.handed)
        while len(self.pending) < m and not self.ended:
            self._draw(min(max(m - len(self.pending), 1024), 1 << 20))
        out, self.pending = self.pending[:m], self.pending[m:]
        if self.until_s is not None and len(out) and out[-1] >= self.until_s:
            out = out[out < self.until_s]
            self.pending, self.ended = np.empty(0), True
        self.handed += len(out)
        return out

    def _draw(self, k: int) -> None:
        """About ``k`` more arrivals, final and in order, onto ``pending``."""
        spec = self.spec
        if spec.kind == "bursty":
            new, self.t, self.state = _bursty_walk(self.rng, self.rates, self.dwell, self.cdf, k, self.t, self.state)
        else:
            if self.requests is not None:
                k = min(k, self.requests - self.drawn)
            if spec.kind == "poisson":
                new = poisson_arrivals(spec.rate_hz, k, self.rng, self.t)
                self.t = float(new[-1])
            elif spec.kind == "periodic":
                drawn = np.sort(np.concatenate((self.held, periodic_arrivals(spec.fps, spec.jitter_ms, k, self.rng, self.drawn + 1))))
                last = self.requests is not None and self.drawn + k == self.requests
                final = len(drawn) if last else int(np.searchsorted(drawn, (self.drawn + k + 1) / spec.fps))
                new, self.held = drawn[:final], drawn[final:]  # no later frame arrives before the next one's base
            else:
                rows = np.arange(self.drawn, self.drawn + k)
                new = self.times[rows % len(self.times)] + self.span * (rows // len(self.times))
            self.drawn += k
        if self.requests is not None and self.drawn >= self.requests and spec.kind != "bursty":
            self.ended = True
        self.pending = np.concatenate((self.pending, new))
        if self.until_s is not None and len(new) and new[-1] >= self.until_s:
            self.ended = True


def planning_rate_hz(spec: Any, policy: str) -> float:
    """The mean arrival rate (requests/s) a planning ``policy`` may assume: the arrival
    process's own, or for a replayed trace the ``rate_hz`` the scenario states (the trace's own
    average is taken over arrivals still to come, which a deployed system cannot know)."""
    if spec.kind != "trace":
        return spec.mean_rate_hz()
    if spec.rate_hz is None:
        raise SimqosError(f"workload.arrival.rate_hz: {policy} plans with a mean arrival rate, and the replayed trace "
                          f"{spec.path.name} states none (its own average would tell the policy of arrivals still to come); "
                          "add the rate it should expect, e.g. rate_hz: 30 (requests/s), or drop the policy")
    return float(spec.rate_hz)


def arrivals_from_spec(spec: Any, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` arrival times (s) of the process a scenario's ``workload.arrival`` describes
    (:class:`ArrivalStream`, drawn at once)."""
    return ArrivalStream(spec, rng, requests=n).take(n)
