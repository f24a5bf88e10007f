"""Markov chains as the scenario describes them: a jump matrix (given, or uniform to the other
states) and the stationary distribution of its jump chain. Plain numpy, shared by the specs
(a bursty workload's mean rate), the device's processes and the device model policies plan with."""

from __future__ import annotations

import numpy as np

__all__ = ["embedded_stationary", "transition_matrix"]


def transition_matrix(transitions: list[list[float]] | None, n_states: int) -> np.ndarray:
    """The given jump matrix, or by default a uniform jump to any other state."""
    if transitions is not None:
        return np.asarray(transitions, dtype=float)
    if n_states == 1:
        return np.ones((1, 1))
    m = np.full((n_states, n_states), 1.0 / (n_states - 1))
    np.fill_diagonal(m, 0.0)
    return m


def embedded_stationary(transitions: np.ndarray) -> np.ndarray:
    """Stationary distribution of the jump chain (left eigenvector for eigenvalue 1)."""
    n = transitions.shape[0]
    if n == 1:
        return np.ones(1)
    a = np.vstack([transitions.T - np.eye(n), np.ones(n)])
    b = np.concatenate([np.zeros(n), [1.0]])
    pi = np.linalg.lstsq(a, b, rcond=None)[0]
    return np.clip(pi, 0, None)
