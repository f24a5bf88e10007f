"""``clairvoyant``: per request, the route it would pick knowing its own future (a reference, not
deployable)."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from pydantic import Field

from simqos.policies.base import Policy, Setting, offsets
from simqos.policies.planning.goals import typical_deadline_s
from simqos.policies.registry import register_policy
from simqos.sim.serving import Decision, decide_jit

__all__ = ["MARGIN_FRACTIONS", "Clairvoyant", "clairvoyant_decide"]

MARGIN_FRACTIONS = (0.0, 0.1, 0.25, 0.5)
"""The planning margins the accuracy frontier runs the reference at, as fractions of the median
deadline."""


class Header(NamedTuple):
    """``params`` of :func:`clairvoyant_decide`."""

    margin_ms: float


AT = offsets(Header)


@decide_jit
def clairvoyant_decide(state: Decision, params: np.ndarray, table: np.ndarray) -> int:
    """Clairvoyant per request: the first candidate route (``table``, most preferred first)
    whose exact finish (``state.route_finish_s``) is ``margin_ms`` before the deadline, else
    the one that finishes first; the same route at every segment of the request."""
    target = state.deadline_s - params[AT.margin_ms] / 1e3
    best, best_finish = 0, math.inf
    for r in range(len(state.route_finish_s)):
        if state.route_finish_s[r] <= target:
            best = r
            break
        if state.route_finish_s[r] < best_finish:
            best, best_finish = r, state.route_finish_s[r]
    return int(table[best, state.segment])


@register_policy("clairvoyant")
class Clairvoyant(Policy):
    """Clairvoyant per request: at its start it sees the exact finish of every route (every
    measured one, most accurate on the validation split first; or every monotone one, least
    sparse first, when accuracy is unavailable) with this request's own draws and the realised
    device, and follows the first that meets the deadline — or, if none does, the one that
    finishes first. Not deployable, and not an upper bound on the aggregate either: it ignores
    the requests queued behind (see the ``bound``). ``margin_ms`` plans to finish that much
    before the deadline: raising it trades accuracy for latency, and traces its frontier."""

    class Params(Policy.Params):
        margin_ms: float = Field(default=0.0, ge=0)

    decide = staticmethod(clairvoyant_decide)
    clairvoyant = True
    frontier_style = "reference"

    @classmethod
    def frontier(cls, scenario, n_levels: int) -> list[Setting]:
        """A dashed line through planning margins of :data:`MARGIN_FRACTIONS` of the median deadline."""
        base_ms = typical_deadline_s(scenario) * 1e3
        return [Setting("clairvoyant", float(f"{f * base_ms:.3g}"), {"kind": "clairvoyant", "margin_ms": f * base_ms},
                        cls.frontier_style) for f in MARGIN_FRACTIONS]

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return np.array(Header(margin_ms=self.params.margin_ms), dtype=float), self.candidates().astype(float)

    def candidates(self) -> np.ndarray:
        return np.array(self.model.routes_by_preference(), dtype=np.int64)
