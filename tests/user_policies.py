"""A user's own policies, registered by name and loaded through a scenario's ``plugins``: one in
Python (it runs on the SimPy engine), one compiled (it runs on the fast path)."""

import numba
import numpy as np
from pydantic import Field

from simqos.policies import Decision, Policy, register_policy


@register_policy("sparsest_after")
class SparsestAfter(Policy):
    """Least sparse resident level for the first ``segments`` segments, then the sparsest."""

    class Params(Policy.Params):
        segments: int = Field(default=1, ge=0)

    def choose(self, state: Decision) -> int:
        if state.segment < self.params.segments:
            return min(state.min_resident_level, self.model.n_levels - 1)
        return self.model.n_levels - 1


@numba.njit(cache=True)
def _sparsest_after(state, params, table):
    if state.segment < params[0]:
        return min(state.min_resident_level, state.n_levels - 1)
    return state.n_levels - 1


@register_policy("sparsest_after_compiled")
class SparsestAfterCompiled(SparsestAfter):
    """The same rule in the compiled form: ``decide`` and the arrays it reads."""

    decide = staticmethod(_sparsest_after)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return np.array([self.params.segments], dtype=float), np.zeros((0, 0))

    def choose(self, state: Decision) -> int:
        return Policy.choose(self, state)
