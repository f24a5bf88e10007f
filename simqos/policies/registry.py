"""The policies by name: ``kind:`` in a scenario, and the families the accuracy frontier draws."""

from __future__ import annotations

from collections.abc import Callable

from simqos.policies.base import Policy, Setting

__all__ = ["POLICIES", "frontier_settings", "register_policy"]

POLICIES: dict[str, type[Policy]] = {}
"""Registered policies by ``kind``."""


def register_policy(kind: str) -> Callable[[type[Policy]], type[Policy]]:
    """Class decorator: make a Policy subclass usable as ``kind:`` in scenarios."""

    def register(cls: type[Policy]) -> type[Policy]:
        cls.kind = kind
        POLICIES[kind] = cls
        return cls

    return register


def frontier_settings(scenario, n_levels: int) -> list[Setting]:
    """Every registered family's frontier settings (:meth:`Policy.frontier`), in registration
    order."""
    return [setting for cls in POLICIES.values() for setting in cls.frontier(scenario, n_levels)]
