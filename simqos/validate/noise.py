"""The machine's own noise, measured: wander and rare stalls, fitted as a ``device.noise`` process.

On an otherwise idle machine the speed a request gets is not one number. It wanders over tens
to hundreds of milliseconds (the host, the clock, the other core's caches), so slow requests
come in runs and build queues; and now and then the thread does not run at all for
milliseconds to a few hundred (a stall). The profile's latency samples, drawn independently per
request, carry neither. :func:`fit_noise` turns probes timed at the scenario's arrival gaps
(:func:`simqos.validate.real.calibrate`) into a Markov speed process with that structure:

1. Each probe's speed is its predicted time (the profile's, after its idle gap) over the time
   it took, relative to the whole run's (the calibrated factor, which the noise then leaves
   alone: the mean of 1 / speed over the time in each state is 1, so that requests arriving
   at random take as long on average as at the run's speed — the mean the simulation is
   given, work over time, is a harmonic one).
2. A probe that took more than :data:`STALL_FACTOR` times its prediction is a stall, of the
   excess over the prediction. Their count over the time the probes ran is the stall rate (a
   stall while the core idles slows nothing); their mean excess the stall's mean length. A stall is a state of speed :data:`STALL_SPEED`.
3. The other probes are grouped into windows of ``window_s``; each window's speed (sum of
   predictions over sum of times) is one observation of the wander. A window's speed also
   varies because its few probes vary independently — which the profile's draws already
   carry — so the windows' log speeds are shrunk towards the mean by the share of their
   variance that the independent variation (within-window variance over probes per window)
   does not explain.
4. The windows are split into terciles (slow, middle, fast), each a state at its mean speed,
   with jumps uniform to the other two and one mean dwell for all three, chosen so that the
   chain's correlation time (two thirds of the dwell, for three states with uniform jumps) is
   the windows': ``a exp(-lag / τ)`` fitted to their autocorrelation. (States read off runs
   of windows would last too short: chance alone moves a window across a tercile's edge.)
   Stalls enter from every state at the measured rate and leave to the three alike.

Pure numpy: the probes come in, a ``device.noise`` spec (a dict a scenario accepts) goes out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import yaml

__all__ = ["STALL_FACTOR", "STALL_SPEED", "NoiseFit", "fit_noise", "window_s"]

STALL_FACTOR = 4.0
"""A probe that took this many times its prediction (at the calibrated speed) is a stall."""

STALL_SPEED = 0.01
"""The speed during a stall: the thread all but stopped."""

MIN_PROBES = 3
"""Windows with fewer probes are left out of the wander (their speed is mostly chance)."""

NAMES = ("slow", "middle", "fast")


SHORTEST_WINDOW_S = 0.05
"""The shortest window the wander is measured over."""


def window_s(mean_gap_s: float) -> float:
    """The window for probes a mean ``mean_gap_s`` apart: :data:`SHORTEST_WINDOW_S`, or eight
    probes' worth when they are sparser."""
    return max(SHORTEST_WINDOW_S, 8 * mean_gap_s)


@dataclass(frozen=True)
class NoiseFit:
    """The fitted noise: ``spec`` (a ``device.noise`` process; ``states``: its states, one
    ``steady`` state when there is neither wander nor stall), and what it rests on: seconds
    measured, probes, windows, the wander's share of the windows' variance
    (``persistent_share``), stalls seen with their rate (per second of service) and mean length."""

    spec: dict
    states: list[dict]
    seconds: float
    probes: int
    windows: int
    window_s: float
    persistent_share: float
    stalls: int
    stall_rate_hz: float
    stall_mean_ms: float

    @property
    def stalls_text(self) -> str:
        """How many stalls, in words: "no stalls", "1 stall", "13 stalls"."""
        return "no stalls" if not self.stalls else f"{self.stalls} stall{'s' if self.stalls > 1 else ''}"

    def yaml(self) -> str:
        """The noise as a scenario's ``device.noise``, with what it rests on in comments."""
        head = (f"# This machine's own noise, measured by simqos validate: {self.probes} probes over {self.seconds:.1f} s with "
                f"no competing load, in windows of {self.window_s * 1e3:.0f} ms;\n# the wander explains "
                f"{self.persistent_share:.0%} of the windows' variance; {self.stalls_text} (a probe over {STALL_FACTOR:g}x "
                "its prediction).\n# Paste under a scenario's device: to simulate with it.\n")
        return head + yaml.safe_dump({"noise": self.spec}, sort_keys=False)


def fit_noise(begin_s: np.ndarray, took_ms: np.ndarray, predicted_ms: np.ndarray, window_s: float) -> NoiseFit:
    """The noise of probes begun at ``begin_s`` (seconds, increasing) that took ``took_ms``
    where the profile predicts ``predicted_ms`` (see the module doc)."""
    begin_s, took_ms, predicted_ms = (np.asarray(a, dtype=float) for a in (begin_s, took_ms, predicted_ms))
    seconds = float(begin_s[-1] - begin_s[0] + took_ms[-1] / 1e3)
    factor = predicted_ms.sum() / took_ms.sum()
    expected_ms = predicted_ms / factor  # what each probe takes at the run's mean speed
    stall = took_ms > STALL_FACTOR * expected_ms
    stall_rate = stall.sum() / (took_ms.sum() / 1e3)  # per second of service: a stall while idle slows nothing
    stall_ms = float((took_ms[stall] - expected_ms[stall]).mean()) if stall.any() else 0.0

    window = np.floor((begin_s[~stall] - begin_s[0]) / window_s).astype(np.int64)
    took, expected = took_ms[~stall], expected_ms[~stall]
    index, counts = np.unique(window, return_counts=True)
    kept = index[counts >= MIN_PROBES]
    n_states = len(NAMES)
    if len(kept) < n_states * 2:  # too few windows to split into states and count their runs
        return _fit(seconds, len(took_ms), len(kept), window_s, 0.0, [1.0], [math.inf], np.ones((1, 1)), stall.sum(), stall_rate, stall_ms)
    at = np.searchsorted(kept, window)
    inside = (at < len(kept)) & (kept[np.minimum(at, len(kept) - 1)] == window)
    w, t, e = at[inside], took[inside], expected[inside]
    log_speed = np.log(np.bincount(w, e) / np.bincount(w, t))
    per_probe = np.log(e / t)
    n = np.bincount(w)
    within = np.bincount(w, (per_probe - (np.bincount(w, per_probe) / n)[w]) ** 2) / np.maximum(n - 1, 1)
    chance = float(np.mean(within / n))  # a window's variance from independent probes alone
    between = float(np.var(log_speed, ddof=1))
    share = min(max(1.0 - chance / between, 0.0), 1.0) if between > 1e-12 else 0.0  # no spread: no wander
    if share == 0.0:
        return _fit(seconds, len(took_ms), len(kept), window_s, 0.0, [1.0], [math.inf], np.ones((1, 1)), stall.sum(), stall_rate, stall_ms)
    state = np.searchsorted(np.quantile(log_speed, np.arange(1, n_states) / n_states), log_speed, side="right")
    shrunk = np.exp(math.sqrt(share) * (log_speed - log_speed.mean()))
    occupancy = np.bincount(state, minlength=n_states) / len(state)
    speeds = np.array([shrunk[state == k].mean() for k in range(n_states)])
    speeds *= float(occupancy @ (1.0 / speeds))  # harmonic mean 1: requests take as long on average as at the run's speed
    dwell = np.full(n_states, n_states / (n_states - 1) * _correlation_time_s(log_speed, kept, window_s))
    jumps = np.where(np.eye(n_states) == 1, 0.0, 1.0 / (n_states - 1))
    return _fit(seconds, len(took_ms), len(kept), window_s, share, speeds.tolist(), dwell.tolist(), jumps, stall.sum(), stall_rate, stall_ms)


def _correlation_time_s(log_speed: np.ndarray, index: np.ndarray, window_s: float) -> float:
    """τ of the windows' autocorrelation ``a exp(-lag / τ)``, fitted by least squares to its
    logarithm over the lags where it stands clear of zero (windows ``index``, consecutive
    where the index steps by one); half a window when even lag 1 is not clear of it."""
    x = log_speed - log_speed.mean()
    var = float(x @ x) / len(x)
    lags, logs = [], []
    for lag in range(1, 21):
        pairs = np.flatnonzero(index[lag:] - index[:-lag] == lag)  # windows exactly ``lag`` apart
        if len(pairs) < 10:
            break
        r = float(np.mean(x[pairs] * x[pairs + lag])) / var
        if r <= 0.05:
            break
        lags.append(lag * window_s)
        logs.append(math.log(r))
    if not lags:
        return window_s / 2
    if len(lags) == 1:
        return -lags[0] / logs[0] if logs[0] < 0 else 20 * window_s
    slope = np.polyfit(lags, logs, 1)[0]
    return float(-1.0 / slope) if slope < 0 else 20 * window_s


def _fit(seconds, probes, windows, window_s, share, speeds, dwell, jumps, stalls, stall_rate, stall_ms) -> NoiseFit:
    """The spec of states ``speeds`` (mean dwell ``dwell``, jump matrix ``jumps``), with the stall
    state added when stalls were seen."""
    names = list(NAMES) if len(speeds) == len(NAMES) else ["steady"]
    n = len(speeds)
    if stalls:
        rate = stall_rate  # from every state, per second
        leave = 1.0 / np.asarray(dwell) if n > 1 else np.zeros(1)  # one state leaves only to stall
        dwell_with = 1.0 / (leave + rate)
        moves = np.zeros((n + 1, n + 1))
        moves[:n, :n] = jumps * (leave * dwell_with)[:, None] if n > 1 else 0.0
        moves[:n, n] = rate * dwell_with
        moves[n, :n] = np.full(n, 1.0 / n)  # the wander's states are equally occupied (terciles)
        speeds, dwell, names = [*speeds, STALL_SPEED], [*dwell_with.tolist(), stall_ms / 1e3], [*names, "stall"]
        jumps = moves
    states = [{"name": name, "speed": round(float(v), 6), "mean_dwell_s": round(float(d), 6)}
              for name, v, d in zip(names, speeds, dwell)]  # fmt: skip
    spec = {"kind": "constant", "speed": 1.0} if len(states) == 1 else {
        "kind": "markov", "states": states, "transitions": np.round(jumps, 6).tolist()}
    return NoiseFit(spec, states, seconds, probes, windows, window_s, share, int(stalls), float(stall_rate), stall_ms)
