"""The start-only ablation of a policy: its first decision holds for the whole request."""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

from simqos.policies.base import Policy
from simqos.policies.decisions import held_level
from simqos.sim.serving import Decision

__all__ = ["start_only"]


def start_only(policy: Policy, label: str | None = None) -> Policy:
    """The ablation of ``policy`` that decides only at a request's start: its first decision —
    the policy's own, made as if it could still reroute — holds for the rest of the request,
    except that a level evicted meanwhile gives way to the least sparse resident one, as
    ``greedy``'s does (waiting for the evicted level to be read back would measure the storage,
    not the decisions). What ``policy`` gains over it on the same requests is what its
    decisions after the start are worth. The ablation runs where ``policy`` runs: compiled
    when it is, on SimPy otherwise. Its label: ``label``, else the policy's with " (start
    only)"."""
    cls = type(policy)
    ablation = _start_only_class(cls)
    made = ablation(policy.params, policy.model, policy.scenario)
    made._label = label or f"{policy.label()} (start only)"
    made.decision_ms = policy.decision_ms
    return made


@functools.cache
def _start_only_class(cls: type[Policy]) -> type[Policy]:
    attributes = {"label": lambda self: self._label, "kind": cls.kind}
    if cls.decide is not None:
        attributes["decide"] = staticmethod(_held(cls.decide))
    else:
        inner_choose = cls.choose
        attributes["choose"] = lambda self, state: held_level(state) if state.current_level >= 0 else inner_choose(self, state)
    return type(f"{cls.__name__}StartOnly", (cls,), attributes)


@functools.cache
def _held(decide: Callable) -> Callable:
    """``decide`` at a request's start, its level after. Compiled without numba's disk cache
    (a closure over another compiled function cannot be cached): about a second, once per
    policy kind and process."""
    import numba

    @numba.njit(_nrt=False)
    def held(state: Decision, params: np.ndarray, table: np.ndarray) -> int:
        if state.current_level >= 0:
            return held_level(state)
        return decide(state, params, table)

    return held
