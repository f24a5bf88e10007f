"""``static``: one level for every segment of every request."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from pydantic import Field

from simqos.policies.base import NO_TABLE, Policy, Setting, offsets
from simqos.policies.registry import register_policy
from simqos.sim.serving import Decision, decide_jit

__all__ = ["Static", "static_decide"]


class Header(NamedTuple):
    """``params`` of :func:`static_decide`."""

    level: float


AT = offsets(Header)


@decide_jit
def static_decide(state: Decision, params: np.ndarray, table: np.ndarray) -> int:
    """The level (``params[AT.level]``), for every segment (waiting for it when evicted)."""
    return int(params[AT.level])


@register_policy("static")
class Static(Policy):
    """Every segment of every request at ``level``; waits for it to be resident if evicted."""

    class Params(Policy.Params):
        level: int = Field(ge=0)

    decide = staticmethod(static_decide)
    frontier_style = "levels"

    def label(self) -> str:
        return f"static L{self.params.level}"

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return np.array(Header(level=self.params.level), dtype=float), NO_TABLE

    @classmethod
    def frontier(cls, scenario, n_levels: int) -> list[Setting]:
        """Each level, a point."""
        return [Setting("static", k, {"kind": "static", "level": k}, cls.frontier_style) for k in range(n_levels)]
