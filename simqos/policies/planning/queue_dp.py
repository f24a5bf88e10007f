"""The queue-aware optimum for a Markov device: a stationary policy by value iteration over the
head request's reroute points, the queue behind it and the device's speed state, for the
``queue_dp`` policy.

**Decision epochs**: the start of each segment of the request in service (its start included).
**State**: the route so far (monotone prefixes: a request never returns to a less sparse level),
the speed state (:mod:`simqos.policies.planning.device_model`'s chain), the head's time left to its deadline on a
fine grid of ``grid`` steps over the longest relative deadline, the number of requests waiting
(up to ``max_queue``) and the time left of the first of them on a coarse grid (``queue_grid``
steps; none when the queue is empty), and whether the request in service found the device idle
(then every segment's work is scaled by each level's idle factor, averaged over the exponential
idle gaps: a cold start is slower). Solved once per resident floor (levels below it are not
resident: the memory state, held for the request, as the ``dp`` policy holds it).

**Action**: the level of the next segment. **Transition**: the segment's work at that level
(``quantiles`` equally likely points of the profile's distribution) done along
``samples`` paths of the speed process; the time it takes is split between the two grid steps
around it (so rounding does not bias the time, as always rounding up would over seven
segments). Meanwhile arrivals come as a Poisson process at the workload's mean rate (the queue
holds at most ``min(capacity, max_queue)``; the rest are turned away), and the first waiting
request's time left runs down with the clock. When the head finishes, its reward is its
route's accuracy (validation split; 1 for the nines objective) if it met its deadline; the
first waiting request then starts — or, with ``late: drop``, is dropped when the sparsest level's
median work at the current speed no longer fits, and the next comes. The requests behind the
first are not tracked one by one: their arrival times are taken as uniform between the first's
arrival and now (exact for Poisson arrivals given their number), and their deadlines as the
workload's median relative deadline. An empty queue idles until the next arrival (exponential),
the speed moving on meanwhile.

**Objective**: the expected sum of rewards over the arrivals to come, each resolved arrival
(finished, dropped late or turned away by a full queue) discounting what follows by
``discount`` — so the horizon is about ``1 / (1 - discount)`` requests (10 by default, many busy
periods at the shipped loads), and as ``discount`` nears 1 the policy nears the one that
maximises the long-run mean accuracy-at-deadline per request. Solved by Gauss-Seidel value
iteration (the deepest route prefixes first, so one sweep solves a request backwards), stopped
by MacQueen's bounds: once ``discount / (1 - discount)`` times the span of a sweep's change is
below ``tolerance``, no choice can be worth more than that.
(An undiscounted, relative value iteration on the semi-Markov process converged too slowly to
use: an idle gap is long against a segment, and the time-uniform transformation it needs moves
such states by a few per cent a sweep.)

What is approximated: arrivals are Poisson at the mean rate (exact for ``poisson``; a bursty or
periodic stream's variability is left out), relative deadlines are the median but the head's and
the first waiting request's are observed, a cold request's idle factors are their mean over the
idle gap rather than its own gap's, memory is held for the request, and times are on the grids
above. The table is computed once per policy, with numba; each decision is one lookup.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import poisson

from simqos.policies.planning.device_model import SpeedModel, speed_paths
from simqos.sim.service import ServiceModel
from simqos.sim.serving import jit, node_index, route_code

__all__ = ["QueueModel", "solve_queue"]


@dataclass(frozen=True)
class QueueModel:
    """What the solver takes of the scenario: arrival rate (Hz), median relative deadline (s),
    the longest (s, the grids' span), the queue's capacity (negative: unbounded) and whether
    late requests are dropped."""

    rate_hz: float
    deadline_s: float
    horizon_s: float
    capacity: int
    late_drop: bool


def _monotone_prefixes(n_levels: int, n_segments: int) -> list[tuple[int, ...]]:
    """Route prefixes of 0 to ``n_segments - 1`` segments whose levels never decrease."""
    prefixes, frontier = [()], [()]
    for _ in range(n_segments - 1):
        frontier = [p + (lv,) for p in frontier for lv in range(p[-1] if p else 0, n_levels)]
        prefixes += frontier
    return prefixes


@jit
def _split_transitions(work_points, factors, paths_work, paths_state, out) -> None:
    """``out[start, level, segment, g, end]``: probability that the segment's work at ``level``
    (times ``factors[level]``) started in speed state ``start`` ends near grid step ``g`` in
    state ``end``: each draw's
    time, interpolated between grid points, is split between the two steps around it; work not
    done within the grid goes to the last index (past the horizon)."""
    n_states, n_paths, n_points_grid = paths_work.shape
    n_levels, n_segments, n_q = work_points.shape
    out[:] = 0.0
    weight = 1.0 / (n_paths * n_q)
    past = out.shape[3] - 1
    for start in range(n_states):
        for level in range(n_levels):
            for seg in range(n_segments):
                for q in range(n_q):
                    work = work_points[level, seg, q] * factors[level]
                    for m in range(n_paths):
                        row = paths_work[start, m]
                        g = np.searchsorted(row, work)
                        if g >= n_points_grid:
                            out[start, level, seg, past, paths_state[start, m, n_points_grid - 1]] += weight
                        elif g == 0:
                            out[start, level, seg, 0, paths_state[start, m, 0]] += weight
                        else:
                            span = row[g] - row[g - 1]
                            frac = (work - row[g - 1]) / span if span > 0 else 1.0
                            out[start, level, seg, g - 1, paths_state[start, m, g - 1]] += weight * (1.0 - frac)
                            out[start, level, seg, g, paths_state[start, m, g]] += weight * frac


def _coarse_split(fine_steps: float, ratio: int, coarse: int) -> list[tuple[int, float]]:
    """A time left of ``fine_steps`` on the coarse grid (bucket ``c`` centred on ``(c + 0.5) *
    ratio``), split linearly between the two nearest buckets; ``coarse`` (lost) when negative."""
    if fine_steps < 0:
        return [(coarse, 1.0)]
    y = min(max(fine_steps / ratio - 0.5, 0.0), coarse - 1.0)
    low = int(math.floor(y))
    frac = y - low
    if frac <= 0 or low + 1 > coarse - 1:
        return [(low, 1.0)]
    return [(low, 1.0 - frac), (low + 1, frac)]


@jit
def _form_heads(V, U, full, ratio, coarse, n_max, late_drop, drop_below, idle_to, next_split, gamma) -> None:
    """``U[s, n, c]``: the value of the state right after a request finishes in speed state
    ``s`` with ``n`` waiting, the first with coarse time left ``c``: the first starts (or,
    dropped late, the next), or the device idles until an arrival; a request starts at the root
    (the empty route prefix, node 0)."""
    n_states = V.shape[2]
    lost_fine = V.shape[3] - 1
    for s in range(n_states):
        v = 0.0
        for s2 in range(n_states):
            v += idle_to[s, s2] * V[1, 0, s2, full, 0]  # it found the device idle: cold
        for c in range(coarse + 1):
            U[s, 0, c] = v
    for n in range(1, n_max + 1):
        for s in range(n_states):
            for c in range(coarse + 1):
                dropped = late_drop and (c == coarse or (c + 0.5) * ratio < drop_below[s])
                t0 = lost_fine if c == coarse else min(int((c + 0.5) * ratio), lost_fine - 1)
                v = 0.0
                if n == 1:
                    v = gamma * U[s, 0, 0] if dropped else V[0, 0, s, t0, 0]
                else:
                    for c2 in range(coarse + 1):
                        w = next_split[n - 1, c, c2]
                        if w > 0.0:
                            if dropped:
                                v += w * gamma * U[s, n - 1, c2]
                            else:
                                v += w * V[0, 0, s, t0, 1 + (n - 2) * (coarse + 1) + c2]
                U[s, n, c] = v


@jit
def _sweep(V, U, choice, P, pA, first_split, shift_to, shift_w, child, leaf_value, depth, last, floor, n_levels,
           coarse, n_max, gamma) -> None:
    """One relative-value-iteration sweep of the transformed process (module doc), in place
    (Gauss-Seidel), the deepest route prefixes first so that a request's segments are solved
    backwards within one sweep: ``V`` and the best level ``choice`` at every state, with the
    head-forming values ``U``."""
    n_cold, n_nodes, n_states, n_fine, n_queue = V.shape
    lost = n_fine - 1
    n_g = P.shape[4]
    for index in range(n_nodes * n_cold - 1, -1, -1):  # the deepest prefixes first
        node, cold = index // n_cold, index % n_cold
        d = depth[node]
        low = max(floor, last[node])
        for s in range(n_states):
            for t0 in range(n_fine):
                for qi in range(n_queue):
                    n = 0 if qi == 0 else 1 + (qi - 1) // (coarse + 1)
                    c = 0 if qi == 0 else (qi - 1) % (coarse + 1)
                    best, best_level = -1e300, n_levels - 1
                    for level in range(low, n_levels):
                        if t0 == lost and level != n_levels - 1:
                            continue  # the deadline is lost: free the device soonest
                        nxt = child[node, level]
                        reward, ev = 0.0, 0.0
                        for g in range(n_g):
                            for s2 in range(n_states):
                                p = P[cold, s, level, d, g, s2]
                                if p == 0.0:
                                    continue
                                t0n = lost if (t0 == lost or g > t0) else t0 - g
                                if nxt < 0 and t0n != lost:
                                    reward += p * leaf_value[node, level]
                                for a in range(n_max + 1):
                                    pa = pA[g, a]
                                    if pa == 0.0:
                                        continue
                                    nn = min(n + a, n_max)
                                    turned_away = gamma ** (n + a - nn)  # each resolved arrival is one event
                                    # where the first waiting request's time left goes: two coarse
                                    # steps around it, or (an empty queue) anywhere the first arrival's can be
                                    spread = n == 0 and a >= 1
                                    for j in range(coarse + 1 if spread else 2):
                                        if spread:
                                            c2, w = j, first_split[g, a, j]
                                        elif n >= 1:
                                            c2, w = shift_to[c, g, j], shift_w[c, g, j]
                                        else:
                                            c2, w = 0, 1.0 - j
                                        if w == 0.0:
                                            continue
                                        pw = p * pa * w * turned_away
                                        if nxt < 0:
                                            ev += pw * gamma * U[s2, nn, c2]
                                        else:
                                            ev += pw * V[cold, nxt, s2, t0n, 0 if nn == 0 else 1 + (nn - 1) * (coarse + 1) + c2]
                        q = reward + ev
                        if q >= best - 1e-12:  # ties go to the sparser level: it frees the device sooner
                            best, best_level = q, level
                    V[cold, node, s, t0, qi] = best
                    choice[cold, node, s, t0, qi] = best_level


def _mean_idle_factors(model: ServiceModel, rate_hz: float, points: int = 64) -> np.ndarray:
    """Each level's idle factor (:meth:`ServiceModel.idle_factors_at`) averaged over the idle
    gaps before an arrival that finds the device idle (exponential, mean ``1 / rate_hz``)."""
    gaps_ms = -np.log1p(-(np.arange(points) + 0.5) / points) / rate_hz * 1e3
    return np.mean([model.idle_factors_at(float(g)) for g in gaps_ms], axis=0)


def _idle_transition(speed: SpeedModel, rate_hz: float) -> np.ndarray:
    """P(speed state after an exponential idle gap of mean 1 / rate | state before)."""
    n = len(speed.speeds)
    finite = np.isfinite(speed.mean_dwell_s)
    out_rate = np.where(finite, 1.0 / np.where(finite, speed.mean_dwell_s, 1.0), 0.0)
    generator = speed.jumps * out_rate[:, None]
    np.fill_diagonal(generator, 0.0)
    generator -= np.diag(generator.sum(axis=1))
    return rate_hz * np.linalg.inv(rate_hz * np.eye(n) - generator)


def solve_queue(model: ServiceModel, speed: SpeedModel, queue: QueueModel, route_value: dict[tuple[int, ...], float],
                grid: int = 48, queue_grid: int = 12, max_queue: int = 6, samples: int = 256, quantiles: int = 8,
                discount: float = 0.9, tolerance: float = 1e-2, max_sweeps: int = 2000, seed: int = 0) -> dict:
    """Solve (module doc); returns the policy's arrays: ``table`` (best level by floor, cold
    (0/1), node, speed state, fine time left, queue column; uint8; at the last floor every choice is the
    last level), ``node_of`` (route prefix by :func:`simqos.sim.serving.node_index` -> node, -1
    where not monotone), the grids (fine step in s, fine steps per coarse step, coarse steps),
    the most requests waiting counted, and per floor solved the value per request of an idle
    device's next arrival (``(1 - discount)`` times its value) and the sweeps it took."""
    n_levels, n_segments = model.n_levels, model.n_segments
    ratio = max(1, grid // queue_grid)
    coarse = grid // ratio
    grid = coarse * ratio
    n_max = max_queue if queue.capacity < 0 else max(min(queue.capacity, max_queue), 0)
    paths_work, paths_state, dt = speed_paths(speed, queue.horizon_s, grid + 1, samples, seed)
    work_points = model.segment_work_quantiles_ms((np.arange(quantiles) + 0.5) / quantiles, seed=seed)  # level, seg, q
    n_states = len(speed.speeds)
    P = np.empty((2, n_states, n_levels, n_segments, grid + 2, n_states))
    for cold, factors in enumerate([np.ones(n_levels), _mean_idle_factors(model, queue.rate_hz)]):
        _split_transitions(work_points, factors, paths_work, paths_state, P[cold])

    prefixes = _monotone_prefixes(n_levels, n_segments)
    index = {p: i for i, p in enumerate(prefixes)}
    child = np.full((len(prefixes), n_levels), -2, dtype=np.int64)
    leaf_value = np.zeros((len(prefixes), n_levels))
    depth = np.array([len(p) for p in prefixes], dtype=np.int64)
    last = np.array([p[-1] if p else 0 for p in prefixes], dtype=np.int64)
    node_of = np.full(node_index(n_levels, n_segments, 0), -1, dtype=np.int64)
    for i, p in enumerate(prefixes):
        node_of[node_index(n_levels, len(p), route_code(p, n_levels))] = i
        for lv in range(last[i], n_levels):
            full = p + (lv,)
            if len(full) == n_segments:
                child[i, lv] = -1
                leaf_value[i, lv] = route_value.get(full, 0.0)
            else:
                child[i, lv] = index[full]

    # arrivals while a segment runs g steps: Poisson, the queue's last place taking the tail
    pA = poisson.pmf(np.arange(n_max + 1), queue.rate_hz * dt * np.arange(grid + 2)[:, None])
    pA[:, n_max] = poisson.sf(n_max - 1, queue.rate_hz * dt * np.arange(grid + 2))
    full_steps = queue.deadline_s / dt  # the median relative deadline, in fine steps
    first_split = np.zeros((grid + 2, n_max + 1, coarse + 1))  # an empty queue: the first arrival's time left
    for g in range(1, grid + 2):
        for a in range(1, n_max + 1):
            for j in range(g):
                w = ((j + 1) / g) ** a - (j / g) ** a
                for c2, x in _coarse_split(full_steps - (j + 0.5), ratio, coarse):
                    first_split[g, a, c2] += w * x
    shift_to = np.zeros((coarse + 1, grid + 2, 2), dtype=np.int64)  # the first waiting request's time left, g steps on
    shift_w = np.zeros((coarse + 1, grid + 2, 2))
    for c in range(coarse + 1):
        for g in range(grid + 2):
            split = [(coarse, 1.0)] if c == coarse else _coarse_split((c + 0.5) * ratio - g, ratio, coarse)
            for j, (c2, x) in enumerate(split):
                shift_to[c, g, j], shift_w[c, g, j] = c2, x
    bins = 8
    next_split = np.zeros((n_max + 1, coarse + 1, coarse + 1))  # [others behind the first, its c, the next's c]
    for m in range(1, n_max + 1):
        for c in range(coarse + 1):
            age = full_steps if c == coarse else max(full_steps - (c + 0.5) * ratio, 0.0)
            for j in range(bins):
                w = ((j + 1) / bins) ** m - (j / bins) ** m
                for c2, x in _coarse_split(full_steps - age * (j + 0.5) / bins, ratio, coarse):
                    next_split[m, c, c2] += w * x
    drop_below = np.array([model.sparsest_median_ms / (s * 1e3) / dt for s in speed.speeds])
    idle_to = _idle_transition(speed, queue.rate_hz)
    full = min(int(full_steps), grid - 1)

    n_queue = 1 + n_max * (coarse + 1)
    table = np.full((n_levels, 2, len(prefixes), n_states, grid + 1, n_queue), n_levels - 1, dtype=np.uint8)
    values, sweeps = [], []
    for floor in range(n_levels - 1):  # at the last floor one level is left: nothing to choose
        V = np.zeros((2, len(prefixes), n_states, grid + 1, n_queue))
        choice = np.empty(V.shape, dtype=np.uint8)
        U = np.zeros((n_states, n_max + 1, coarse + 1))
        for k in range(max_sweeps):
            before = V.copy()
            _form_heads(V, U, full, ratio, coarse, n_max, queue.late_drop, drop_below, idle_to, next_split, discount)
            _sweep(V, U, choice, P, pA, first_split, shift_to, shift_w, child, leaf_value, depth, last, floor, n_levels, coarse,
                   n_max, discount)
            diff = V - before
            # MacQueen's bounds: V* lies within V + discount / (1 - discount) * [min, max] of the
            # last change, so once the change is nearly uniform the choices are settled
            span = float(diff.max() - diff.min()) * discount / (1 - discount)
            if span < tolerance:
                break
        per_request = (float(V[1, 0, 0, full, 0]) + discount / (1 - discount) * float(diff.max() + diff.min()) / 2) * (1 - discount)
        values.append(per_request)
        sweeps.append(k + 1)
        table[floor] = choice
    return {"table": table, "node_of": node_of, "step_s": dt, "ratio": ratio, "coarse": coarse, "n_max": n_max,
            "value_per_request": values, "sweeps": sweeps}
