"""The deployable optimum of one request: a Markov decision process over its reroute points,
solved by dynamic programming (backward induction) into a lookup table for the ``dp`` policy.

**State** at a reroute point (before segment ``k``): the route so far (the levels of segments
``0..k-1``, which fix which routes remain and their accuracies), the device's speed state
(:mod:`simqos.policies.planning.device_model`'s Markov chain, identified by the speed observed now), the time
left to the deadline on a grid of ``grid`` steps over the longest relative deadline (rounded
down: the table never counts on time the request may not have), the least sparse resident
level (memory: levels below it may not be chosen; the memory state is held for the rest of the
request, since it changes over seconds and a request lasts milliseconds), and the idle factors
the request was given (one table per measured idle gap; a decision uses the nearest).

**Action**: the level of segment ``k``. **Transition**: the segment's work at that level — its
distribution from the profile (``quantiles`` equally likely points of the segment's work, as
requests draw it), scaled by the idle factor — is done along ``samples`` paths of the speed
process from the current state (the same paths for every level, as common random numbers);
a path that has done the work by grid step ``g`` moves the request to step ``g`` later (rounded
up) and to the state the path is in then. Segments' works are independent (each layer draws its
own), so the process is Markov in this state. **Value**: at the end of the route, its accuracy
(validation split; 1 for the nines objective or a profile without accuracy) if the deadline
was met, 0 otherwise — so the table maximises the expected accuracy-at-deadline (or the chance
of meeting the deadline) of this request, exactly for the discretised model.

What it leaves out, on purpose: the requests queued behind (a policy may shorten the budget for
them, as ``deadline_aware``'s ``count_queue`` does), and the device's future beyond this
request. The table is computed once per policy, in Python with numba, and each decision is one
lookup.
"""

from __future__ import annotations

import numpy as np

from simqos.policies.planning.device_model import SpeedModel, speed_paths
from simqos.sim.service import ServiceModel
from simqos.sim.serving import jit, node_index, route_code

__all__ = ["MAX_NODES", "solve"]

MAX_NODES = 1 << 16
"""Route prefixes (levels ** 0 + ... + levels ** segments) a table may hold."""


@jit
def _transitions(work_points, factors, paths_work, paths_state, out) -> None:
    """``out[start, level, segment, steps, end]``: probability that the segment's work at
    ``level`` (``work_points[level, segment]``, equally likely, times ``factors[level]``)
    started in speed state ``start`` takes ``steps`` grid steps (rounded up) and ends in state
    ``end``; the mass of works not done within the grid is left out (a miss)."""
    n_states, n_paths, grid = paths_work.shape
    n_levels, n_segments, n_points = work_points.shape
    out[:] = 0.0
    weight = 1.0 / (n_paths * n_points)
    for start in range(n_states):
        for level in range(n_levels):
            for seg in range(n_segments):
                for q in range(n_points):
                    work = work_points[level, seg, q] * factors[level]
                    for m in range(n_paths):
                        g = np.searchsorted(paths_work[start, m], work)
                        if g < grid:
                            out[start, level, seg, g, paths_state[start, m, g]] += weight


@jit
def _backward(transition, leaf_value, n_levels, n_segments, floor, out, value) -> None:
    """Fill ``out[node, state, g]`` with the best level at every route prefix, speed state and
    time left (grid steps) by backward induction, choosing among levels ``>= floor``, and
    ``value`` alike with its expected value (``leaf_value[code]`` at a full route)."""
    n_states, grid = transition.shape[0], transition.shape[3]
    first_leaf = node_index(n_levels, n_segments, 0)
    for leaf in range(len(leaf_value)):
        value[first_leaf + leaf] = leaf_value[leaf]
    for depth in range(n_segments - 1, -1, -1):
        width = n_levels**depth
        for code in range(width):
            node = node_index(n_levels, depth, code)
            for s in range(n_states):
                for g in range(grid):
                    best, best_value = n_levels - 1, -1.0
                    for level in range(floor, n_levels):
                        child = node_index(n_levels, depth + 1, code * n_levels + level)
                        q = 0.0
                        for steps in range(g + 1):
                            for end in range(n_states):
                                p = transition[s, level, depth, steps, end]
                                if p > 0.0:
                                    q += p * value[child, end, g - steps]
                        if q >= best_value - 1e-12:  # ties go to the sparser level: it frees the device sooner
                            best, best_value = level, q
                    value[node, s, g] = best_value
                    out[node, s, g] = best


def solve(model: ServiceModel, speed: SpeedModel, route_value: dict[tuple[int, ...], float], horizon_s: float,
          grid: int, samples: int, quantiles: int, seed: int = 0) -> tuple[np.ndarray, float]:
    """``(table, step_s)``: the best levels (module doc) as bytes, packed eight to a float64
    so that the table stays small enough for the cache: ``table.view(np.uint8)[((gap * n_levels
    + floor) * nodes + node) * states + state, g]`` is the best level after the idle gap
    ``model.idle_ms[gap]``, with levels below ``floor`` not resident, at route prefix ``node``
    (:func:`simqos.sim.serving.node_index`), in speed state ``state``, with ``g`` grid steps of ``step_s`` left.
    ``route_value``: each full route's value (a route missing from it is worth 0)."""
    n_levels, n_segments = model.n_levels, model.n_segments
    n_nodes = node_index(n_levels, n_segments + 1, 0)
    if n_nodes > MAX_NODES:
        raise ValueError(f"{n_levels} levels over {n_segments} segments make {n_nodes} route prefixes, more than "
                         f"the dp policy's {MAX_NODES}; use lookahead for this model")
    paths_work, paths_state, step = speed_paths(speed, horizon_s, grid, samples, seed)
    work_points = model.segment_work_quantiles_ms((np.arange(quantiles) + 0.5) / quantiles, seed=seed)  # level, seg, q
    leaves = np.zeros(n_levels**n_segments)
    for route, v in route_value.items():
        leaves[route_code(route, n_levels)] = v
    n_states = len(speed.speeds)
    width = -(-grid // 8) * 8
    table = np.zeros((len(model.idle_ms), n_levels, n_nodes, n_states, width), dtype=np.uint8)
    choice = np.zeros((n_nodes, n_states, grid))  # the leaves (full routes) decide nothing
    transition = np.empty((n_states, n_levels, n_segments, grid, n_states))
    value = np.empty((n_nodes, n_states, grid))
    for gap in range(len(model.idle_ms)):
        factors = np.ascontiguousarray(model.idle_factors_at(float(model.idle_ms[gap])), dtype=float)
        _transitions(work_points, factors, paths_work, paths_state, transition)
        for floor in range(n_levels):
            _backward(transition, leaves, n_levels, n_segments, floor, choice, value)
            table[gap, floor, :, :, :grid] = choice
    return table.reshape(-1, width).view(np.float64), step

