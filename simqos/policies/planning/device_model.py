"""What a deployed system may know of its device's future: the speed process as the scenario
describes it, never the realised trace.

A deployable policy that plans ahead needs, for the speed observed now, the distribution of the
work the device can do in the next τ seconds: ``C(τ) = ∫ speed``, in profiled milliseconds.
:func:`capacity_table` estimates it by Monte Carlo from the scenario's description of the
speed process, with its own seed (the run's randomness is not touched):

- ``markov``: a continuous-time Markov chain (the scenario's states, mean dwell times and jump
  probabilities), started in each state;
- ``periodic``: the duty cycle taken as a two-state Markov chain with the same mean dwell in
  each part (a deployed system need not know the phase);
- ``constant``: the one speed;
- ``trace``: a replayed file is not a model: the speed observed now is taken to persist.

The table has one block of rows per state and, per block, ``grid`` rows for τ = 0, Δ, 2Δ, …;
across each row, P(C(τ) ≥ w) on a grid of works w = 0, δ, 2δ, … that reaches past the largest
draw (so a lookup is a bilinear interpolation: constant time, no search). The state a request
sees is identified by its speed (:func:`simqos.policies.decisions.speed_state`). Memory is not modelled ahead: a policy
sees which levels are resident now.
"""

from __future__ import annotations

import numpy as np

from simqos.markov import transition_matrix
from simqos.sim.serving import decide_jit

__all__ = ["SpeedModel", "capacity_probability", "capacity_table", "speed_model", "speed_paths"]


class SpeedModel:
    """A CTMC of speed states: ``speeds``, ``mean_dwell_s`` and jump probabilities ``jumps``;
    ``persistent`` marks the trace case (the observed speed persists)."""

    def __init__(self, speeds, mean_dwell_s, jumps, persistent: bool = False) -> None:
        self.speeds = np.asarray(speeds, dtype=float)
        self.mean_dwell_s = np.asarray(mean_dwell_s, dtype=float)
        self.jumps = np.asarray(jumps, dtype=float)
        self.persistent = persistent


def speed_model(spec) -> SpeedModel:
    """The :class:`SpeedModel` of a scenario's ``device.speed`` (module doc)."""
    if spec.kind == "markov":
        return SpeedModel([s.speed for s in spec.states], [s.mean_dwell_s for s in spec.states],
                          transition_matrix(spec.transitions, len(spec.states)))
    if spec.kind == "periodic":
        return SpeedModel([spec.high, spec.low], [(1 - spec.duty) * spec.period_s, spec.duty * spec.period_s],
                          [[0.0, 1.0], [1.0, 0.0]])
    if spec.kind == "constant":
        return SpeedModel([spec.speed], [np.inf], [[1.0]])
    return SpeedModel([1.0], [np.inf], [[1.0]], persistent=True)


def speed_paths(model: SpeedModel, horizon_s: float, grid: int = 64, samples: int = 512,
                seed: int = 0) -> tuple[np.ndarray, np.ndarray, float]:
    """``(work, state, step_s)``: ``samples`` paths of the speed process from a start in each
    state, on the grid τ = 0, Δ, …, ``horizon_s`` (``step_s`` = Δ): ``work[start, path, g]``,
    the work (profiled ms) done by τ_g, and ``state[start, path, g]``, the state at τ_g."""
    rng = np.random.default_rng(seed)
    n = len(model.speeds)
    step = horizon_s / (grid - 1)
    taus = np.arange(grid) * step
    done = np.zeros((n, samples, grid))
    where = np.zeros((n, samples, grid), dtype=np.int64)
    for start in range(n):
        for m in range(samples):
            t, s, work = 0.0, start, 0.0
            g = 0
            while g < grid:
                dwell = rng.exponential(model.mean_dwell_s[s]) if np.isfinite(model.mean_dwell_s[s]) else np.inf
                end = t + dwell
                while g < grid and taus[g] <= end:
                    done[start, m, g] = work + (taus[g] - t) * model.speeds[s] * 1e3
                    where[start, m, g] = s
                    g += 1
                work += dwell * model.speeds[s] * 1e3 if np.isfinite(dwell) else 0.0
                t = end
                if n > 1:
                    s = int(rng.choice(n, p=model.jumps[s]))
    return done, where, step


def capacity_table(model: SpeedModel, horizon_s: float, grid: int = 64, samples: int = 512, works: int = 256,
                   seed: int = 0) -> tuple[np.ndarray, float, float]:
    """``(table, step_s, work_step_ms)``: ``table[state * grid + g, k]`` is the fraction of
    ``samples`` draws of the work C(g · step_s) (profiled ms) done from a start in ``state``
    that reach ``k · work_step_ms``, for ``k`` < ``works``; ``step_s = horizon_s / (grid - 1)``
    and the last column lies past every draw (probability 0). For a persistent model the one
    block is for speed 1 (scale by the observed speed)."""
    done, _, step = speed_paths(model, horizon_s, grid, samples, seed)
    n = len(model.speeds)
    draws = np.sort(done, axis=1).transpose(0, 2, 1).reshape(n * grid, samples)
    work_step = max(float(draws.max()), 1e-9) / (works - 2)
    levels = np.arange(works) * work_step
    reached = np.stack([samples - np.searchsorted(row, levels, side="left") for row in draws])
    reached[:, -1] = 0  # past every draw, rounding aside
    return reached / samples, step, work_step


@decide_jit
def capacity_probability(table: np.ndarray, block: int, grid: int, step_s: float, work_step_ms: float, tau_s: float,
                         work_ms: float) -> float:
    """P(the device does ``work_ms`` of profiled work within ``tau_s``), from the Monte Carlo
    table of :func:`capacity_table` for a start in state ``block``: bilinear
    between its grid points (τ rows, work columns), the last row beyond them."""
    if work_ms <= 0.0:
        return 1.0
    if tau_s <= 0.0:
        return 0.0
    x = tau_s / step_s
    g = int(min(x, grid - 2.0))  # clamped before the cast: a huge float does not fit an int64
    w = min(x - g, 1.0)
    y = work_ms / work_step_ms
    k = int(min(y, table.shape[1] - 2.0))
    v = min(y - k, 1.0)
    row = block * grid + g
    p0 = (1.0 - v) * table[row, k] + v * table[row, k + 1]
    p1 = (1.0 - v) * table[row + 1, k] + v * table[row + 1, k + 1]
    return (1.0 - w) * p0 + w * p1
