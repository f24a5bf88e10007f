"""A user's own policy, registered by name and loaded through a scenario's ``plugins``."""

from pydantic import Field

from simqos.policies import DecisionState, Policy, register_policy


@register_policy("sparsest_after")
class SparsestAfter(Policy):
    """Least sparse resident level for the first ``segments`` segments, then the sparsest."""

    class Params(Policy.Params):
        segments: int = Field(default=1, ge=0)

    def choose(self, state: DecisionState) -> int:
        if state.segment < self.params.segments:
            return min(state.min_resident_level, self.model.n_levels - 1)
        return self.model.n_levels - 1
