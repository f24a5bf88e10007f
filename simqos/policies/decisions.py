"""Compiled helpers the built-in decisions share: the level a request already runs, the least
sparse level whose predicted work fits, and which state of a device model the speed seen now is."""

from __future__ import annotations

import math

import numpy as np

from simqos.sim.serving import Decision, decide_jit

__all__ = ["held_level", "least_sparse_fitting", "speed_state"]


@decide_jit
def held_level(state: Decision) -> int:
    """The level a request already runs, or, if it is evicted, the least sparse resident one
    (when nothing is resident, the sparsest, waited for)."""
    return min(max(state.current_level, state.min_resident_level), state.n_levels - 1)


@decide_jit
def least_sparse_fitting(table: np.ndarray, segment: int, floor: int, budget_s: float, speed: float, n_levels: int) -> int:
    """Least sparse level >= ``floor`` whose predicted remaining work (``table[level,
    segment]``, profiled ms) fits ``budget_s`` at ``speed``; the sparsest if none does."""
    budget_ms = budget_s * speed * 1e3
    for level in range(floor, n_levels):
        if table[level, segment] <= budget_ms:
            return level
    return n_levels - 1


@decide_jit
def speed_state(params: np.ndarray, at: int, n_states: int, speed: float) -> int:
    """The state of a device model (speeds ``params[at:at + n_states]``) whose speed is nearest
    the one seen now (read in place: no slice, no allocation per decision)."""
    best, distance = 0, math.inf
    for k in range(n_states):
        if abs(params[at + k] - speed) < distance:
            best, distance = k, abs(params[at + k] - speed)
    return best
