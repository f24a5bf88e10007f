"""The policy interface: a pydantic ``Params`` model, ``decide`` with ``arrays`` (compiled) or
``choose`` (Python), and the settings the accuracy frontier draws it at (see :mod:`simqos.policies`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar, NamedTuple

import numpy as np
from pydantic import BaseModel, ConfigDict

from simqos.sim.serving import Decision
from simqos.sim.service import ServiceModel

__all__ = ["NO_PARAMS", "NO_TABLE", "Policy", "Setting", "offsets"]

NO_PARAMS, NO_TABLE = np.zeros(0), np.zeros((0, 0))
"""What a policy that reads no parameters or no table passes ``decide``."""


class Setting(NamedTuple):
    """One point of a family on the accuracy frontier: the family's name, its knob's value (a
    level, a quantile, a margin in ms; 0 where it has none), the policy as a scenario lists it
    (``kind`` and parameters) and how the family is drawn (:attr:`Policy.frontier_style`)."""

    family: str
    knob: float
    spec: dict
    style: str = "auto"


def offsets(header: type[NamedTuple]) -> NamedTuple:
    """The declared layout of a compiled decision's ``params``: ``header`` (a NamedTuple of its
    leading fields) with each field's index, for ``decide`` to read ``params[AT.field]`` while
    ``arrays`` packs ``header(field=...)`` by name — the two cannot drift."""
    return header(*range(len(header._fields)))


class Policy:
    """Base class: set ``Params``, and ``decide`` with ``arrays`` (compiled) or ``choose``
    (Python); see the module docstring."""

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    kind: ClassVar[str] = ""
    decide: ClassVar[Callable[[Decision, np.ndarray, np.ndarray], int] | None] = None
    """A ``numba.njit`` function ``(state, params, table) -> level``, or None (Python only)."""
    clairvoyant: ClassVar[bool] = False
    """True for a reference that sees the realised future: it cannot run on a real device."""
    frontier_style: ClassVar[str] = "auto"
    """How the accuracy frontier draws the family: ``"levels"`` (a point per level), ``"reference"``
    (a dashed line: not deployable), ``"auto"`` (a line through its settings, a marker if one)."""
    decision_ms: float = 0.0
    """Device time (profiled ms) charged for each decision: the scenario's ``decision_ms``
    (:class:`simqos.scenario.PolicySpec`), set on the policy by :func:`simqos.sim.plan.build_plan`."""

    def __init__(self, params: BaseModel, model: ServiceModel, scenario: object = None) -> None:
        self.params = params
        self.model = model
        self.scenario = scenario
        self._arrays: tuple[np.ndarray, np.ndarray] | None = None

    @classmethod
    def frontier(cls, scenario, n_levels: int) -> list[Setting]:
        """The settings the accuracy frontier (:mod:`simqos.report`) runs this family at, listed
        in the scenario or not. By default: each listing of it in the scenario, as listed, a
        family of its own by its label; unlisted, a built-in (a module of :mod:`simqos.policies`)
        at its default parameters, when every parameter has one and it is compiled (a Python
        policy runs on SimPy, too slow to add unasked). A user's policy is drawn when listed."""
        listed = [p for p in scenario.policies if p.kind == cls.kind]
        if listed:
            return [Setting(p.label or p.kind, 0.0, {"kind": cls.kind, **p.params}, cls.frontier_style) for p in listed]
        defaults = all(not field.is_required() for field in cls.Params.model_fields.values())
        if cls.__module__.startswith("simqos.policies.") and cls.compiled() and defaults:
            return [Setting(cls.kind, 0.0, {"kind": cls.kind}, cls.frontier_style)]
        return []

    @classmethod
    def compiled(cls) -> bool:
        """True if the policy has a compiled ``decide`` (it runs on the fast path)."""
        return cls.decide is not None

    def label(self) -> str:
        """Default name of this policy in tables and plots."""
        return self.kind

    def check(self) -> None:
        """Raise SimqosError if the policy cannot plan for its scenario (the plan calls it
        before anything runs); the message says why and what to use instead."""

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """``(params, table)``: what ``decide`` reads, as float64 arrays (1-D and 2-D)."""
        return NO_PARAMS, NO_TABLE

    def candidates(self) -> np.ndarray:
        """Routes (int64, one per row) whose exact finish a clairvoyant policy sees in
        ``state.route_finish_s``; none for a deployable policy."""
        return np.zeros((0, self.model.n_segments), dtype=np.int64)

    def prepared(self) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`arrays`, made once and kept."""
        if self._arrays is None:
            params, table = self.arrays()
            self._arrays = (np.ascontiguousarray(params, dtype=float), np.ascontiguousarray(table, dtype=float))
        return self._arrays

    def choose(self, state: Decision) -> int:
        """The level of the next segment (a compiled policy calls its ``decide``)."""
        decide = type(self).decide
        if decide is None:  # pragma: no cover - a subclass gives one of the two
            raise NotImplementedError(f"policy {self.kind!r} defines neither decide nor choose")
        return int(decide(state, *self.prepared()))
