"""Rerouting policies: one required method, one module per built-in policy, a name registry.

At every decision point of a request — its start and each reroute point — the driver builds a
:class:`~simqos.sim.serving.Decision` and asks the policy which level runs the next segment. A
policy sees time, deadline, the current level, the device's current speed and least sparse
resident level, the queue behind the request, and the profile (through :class:`ServiceModel`)
and the scenario it was built for. Decisions depend only on time and resources, never on the
input's content.

A policy is a subclass of :class:`Policy` with a pydantic ``Params`` model (its YAML
parameters), registered with :func:`register_policy` and named by ``kind:`` in a scenario (its
module listed under ``plugins:``). It writes its rule in one of two forms:

- **compiled**: ``decide = staticmethod(fn)`` where ``fn`` is a ``numba.njit`` function
  ``fn(state: Decision, params: float64[:], table: float64[:, :]) -> int``, and ``arrays()``
  returns the ``(params, table)`` it reads (prepared once, in Python, from the YAML
  parameters, the profile and the scenario). It then runs on the compiled fast path, about
  twenty times faster than SimPy; the built-in policies are written so.
- **Python**: ``choose(state: Decision) -> int``, any Python. It runs on the SimPy engine.

Built in: ``static`` (one level), ``greedy`` (decides once, at the start), ``deadline_aware``
(the paper's rerouting), ``lookahead`` (model-predictive: the expected accuracy-at-deadline of
this request and those queued behind it, over the device's speed process), ``dp`` (the
per-request optimum over the device's speed process, by dynamic programming: a table lookup per
decision), ``queue_dp`` (the stationary optimum over the request in service, the queue behind it
and the device's speed process, by value iteration), and ``clairvoyant`` (per request, it sees
the exact finish of every route with the realised future: not deployable, a reference).

**Layout.** A built-in policy is one module here holding its ``Params``, its class, its
compiled ``decide`` and the declared layout of the ``params`` array that ``arrays`` packs and
``decide`` reads (a NamedTuple ``Header``: packed by field name, read as ``params[AT.field]``,
so the two cannot drift), and its settings on the accuracy frontier (``frontier``:
:meth:`Policy.frontier`), which the report and figures read from the registry
(:mod:`.registry`). Adding one is a new module and its import line below. Shared compiled helpers
are in :mod:`.decisions`; the solvers and device model the planning policies use in
:mod:`.planning`; the start-only ablation in :mod:`.start_only`.
"""

from simqos.policies.base import Policy, Setting
from simqos.policies.registry import POLICIES, frontier_settings, register_policy
from simqos.sim.serving import Decision, decide_jit

# the built-in policies, registered on import, in the order the accuracy frontier draws them
from simqos.policies.static import Static  # noqa: I001 (registration order)
from simqos.policies.greedy import Greedy
from simqos.policies.deadline_aware import DeadlineAware
from simqos.policies.lookahead import Lookahead
from simqos.policies.dp import Dp
from simqos.policies.queue_dp import QueueDp
from simqos.policies.clairvoyant import Clairvoyant
from simqos.policies.start_only import start_only

__all__ = [
    "POLICIES",
    "Clairvoyant",
    "DeadlineAware",
    "Decision",
    "Dp",
    "Greedy",
    "Lookahead",
    "Policy",
    "QueueDp",
    "Setting",
    "Static",
    "frontier_settings",
    "decide_jit",
    "register_policy",
    "start_only",
]
