"""simqos: how many nines of QoS a multi-level sparse network keeps on a fluctuating device.

The supported Python API is the names in ``__all__`` (README, "Python API"): run a scenario
as the command does (``run_scenario``; ``validate_scenario`` for ``simqos validate``), or step by step — load it, build its plan, run it,
summarise, bound and judge it, vary one field — and write your own policy. They are imported
on first use, so ``import simqos`` stays light. The simulator (:mod:`simqos.sim`, with the
policies, specs and bundles) imports neither torch nor matplotlib; the torch side
lives in :mod:`simqos.nested`, :mod:`simqos.kernels`, :mod:`simqos.profiler` and
:mod:`simqos.models`; figures in :mod:`simqos.plots`.
"""

import importlib
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("simqos")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

_API = {
    "SimqosError": "simqos.errors",
    "load_scenario": "simqos.scenario",
    "parse_scenario": "simqos.scenario",
    "run_scenario": "simqos.api",
    "validate_scenario": "simqos.api",
    "trust_validations": "simqos.validate.trust",
    "build_plan": "simqos.sim.plan",
    "sample_inputs": "simqos.sim.inputs",
    "run_plan": "simqos.sim.execution",
    "simulate": "simqos.sim.execution",
    "run_policy": "simqos.sim.replication",
    "summarize_plan": "simqos.sim.replication",
    "decisions": "simqos.sim.simpy_model",
    "plan_bound": "simqos.bound",
    "plan_verdict": "simqos.verdict",
    "override": "simqos.scenario",
    "vary": "simqos.overrides",
    "load_profile": "simqos.bundle",
    "Policy": "simqos.policies",
    "register_policy": "simqos.policies",
    "Decision": "simqos.sim.serving",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str):
    """The API's names, imported from their modules on first use."""
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'simqos' has no attribute {name!r}")
