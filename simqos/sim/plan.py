"""A scenario made runnable: :func:`build_plan` loads the profile, builds the policies and checks,
up front, everything a run needs (trace files, memory, sizes), into an inert :class:`Plan`.

A policy charged its ``measured`` decision time is timed here, on the SimPy model
(:func:`simqos.sim.simpy_model.measure_decision_ms`): building a plan may serve a few requests.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import importlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from simqos.bundle import load_profile
from simqos.errors import SimqosError, validation_message
from simqos.policies import POLICIES, Policy
from simqos.scenario import PolicySpec, Scenario, load_scenario
from simqos.sim.device import read_trace_csv
from simqos.sim.inputs import CHUNK_REQUESTS, DEVICE_AHEAD_S, arrival_span, check_trace_ends, ending_traces
from simqos.sim.plausible import implausible
from simqos.sim.service import ServiceModel
from simqos.sim.simpy_model import measure_decision_ms
from simqos.userfiles import read_arrivals_csv, read_yaml

__all__ = ["MAX_BREAKPOINTS", "MAX_REQUESTS", "Plan", "build_plan", "engines", "load_checked", "planned_requests"]


@dataclass(frozen=True)
class Plan:
    """A validated scenario, ready to run: the model, and per policy entry a factory that makes
    a fresh policy (policies may keep per-run state) and its label."""

    scenario: Scenario
    model: ServiceModel
    policy_factories: tuple[Callable[[], Policy], ...]
    labels: tuple[str, ...]
    warnings: tuple[str, ...] = ()  # values that are legal but most likely a slip of units (simqos.sim.plausible)


def build_plan(scenario: Scenario, source: str = "scenario") -> Plan:
    """Load the profile and build the policies; raises SimqosError naming the field."""
    _import_plugins(scenario, source)
    if not scenario.profile.is_dir():
        raise SimqosError(f"{source}: profile: {scenario.profile.resolve()} is not a profile folder; a relative path is "
                          "taken from the scenario file's folder (the shipped profiles are in profiles/)")
    model = ServiceModel.from_profile(load_profile(scenario.profile))
    _check_trace_files(scenario, source)
    _check_memory(scenario, model, source)
    _check_trace_lengths(scenario, source)
    factories, problems = [], []
    for i, spec in enumerate(scenario.policies):
        made = _policy_factory(spec, model, scenario, f"{source}: policies[{i}]")
        (factories if callable(made) else problems).append(made)
    if problems:  # every policy's, together: one run names them all
        raise SimqosError("; ".join(problems))
    labels = [spec.label or factory().label() for spec, factory in zip(scenario.policies, factories)]
    _check_size(scenario, model, source, whole=scenario.engine == "simpy" or not all(f().compiled() for f in factories))
    duplicated = {lab for lab in labels if labels.count(lab) > 1}
    if duplicated:
        raise SimqosError(f"{source}: policies: labels {sorted(duplicated)} repeat; give each a distinct 'label'")
    plan = Plan(scenario, model, tuple(factories), tuple(labels), tuple(implausible(scenario, model)))
    measured = [i for i, spec in enumerate(scenario.policies) if spec.decision_ms == "measured"]
    if measured:
        factories = list(plan.policy_factories)
        for i in measured:
            made = factories[i]
            factories[i] = functools.partial(_charged, *made.args[:4], measure_decision_ms(plan, i))
        plan = dataclasses.replace(plan, policy_factories=tuple(factories))
    return plan


def _policy_factory(spec, model: ServiceModel, scenario: Scenario, where: str) -> Callable[[], Policy] | str:
    """The policy's factory, or what is wrong with it: an unregistered kind, parameters its
    ``Params`` refuse, a level the profile lacks, or its own ``check()``'s refusal."""
    cls = POLICIES.get(spec.kind)
    if cls is None:
        return _unregistered(where, spec.kind)
    try:
        params = cls.Params.model_validate(spec.params)
    except ValidationError as exc:
        return f"{where}.{validation_message(exc, cls.Params, spec.kind)}"
    level = getattr(params, "level", None)
    if level is not None and level >= model.n_levels:
        return f"{where}.level: {level}, but the profile {scenario.profile} has levels 0..{model.n_levels - 1}"
    factory = functools.partial(_charged, cls, params, model, scenario, 0.0 if spec.decision_ms == "measured" else spec.decision_ms)
    try:
        factory().check()
    except SimqosError as refused:
        return f"{where}: {refused}"
    return factory


def _unregistered(where: str, kind: str) -> str:
    close = difflib.get_close_matches(kind, sorted(POLICIES), n=1)
    hint = f" — did you mean {close[0]!r}?" if close else ""
    return (f"{where}.kind: {kind!r} is not a registered policy{hint}; choose among {sorted(POLICIES)} "
            "or register your own (see simqos.policies.register_policy)")


def raw_policy_problems(raw: object, source: str) -> list[str]:
    """What the plan would say of the policies of a scenario document that did not parse, so
    that one run names its mistakes together: kinds not registered (unless it lists plugins,
    which may register them) and parameters their ``Params`` refuse."""
    if not isinstance(raw, dict) or not isinstance(raw.get("policies"), list):
        return []
    problems = []
    for i, entry in enumerate(raw["policies"]):
        if not isinstance(entry, dict) or not isinstance(entry.get("kind"), str):
            continue  # the parse names it
        where, cls = f"{source}: policies[{i}]", POLICIES.get(entry["kind"])
        if cls is None:
            problems += [] if raw.get("plugins") else [_unregistered(where, entry["kind"])]
            continue
        try:
            cls.Params.model_validate({k: v for k, v in entry.items() if k not in PolicySpec.model_fields})
        except ValidationError as exc:
            problems.append(f"{where}.{validation_message(exc, cls.Params, entry['kind'])}")
    return problems


def load_checked(path: Path) -> Scenario:
    """The scenario file, parsed; when it does not parse, its policies' mistakes are named with
    the others (:func:`raw_policy_problems`), so one run names them all."""
    try:
        return load_scenario(path)
    except SimqosError as error:
        try:
            problems = raw_policy_problems(read_yaml(path, "scenario"), str(path))
        except SimqosError:
            problems = []  # not even YAML: the error says so
        if not problems:
            raise
        raise SimqosError("; ".join([str(error), *problems])) from None


def _charged(cls: type[Policy], params, model: ServiceModel, scenario: Scenario, decision_ms: float) -> Policy:
    """A fresh policy charged ``decision_ms`` per decision."""
    policy = cls(params, model, scenario)
    policy.decision_ms = float(decision_ms)
    return policy


def _import_plugins(scenario: Scenario, source: str) -> None:
    """Import the scenario's plugins, from its ``plugin_path`` folders (default: the scenario
    file's own) before the Python path."""
    saved = list(sys.path)
    sys.path[:0] = [str(folder) for folder in scenario.plugin_path]
    try:
        for i, module in enumerate(scenario.plugins):
            if not module or module.startswith(".") or not all(part.isidentifier() for part in module.split(".")):
                raise SimqosError(f"{source}: plugins[{i}]: {module!r} is not a module name; give an importable one, e.g. my_policies")
            try:
                importlib.import_module(module)
            except Exception as exc:  # a user's module may fail in any way while importing
                first = str(exc).splitlines()[0] if str(exc) else ""
                where = ", ".join(map(str, scenario.plugin_path)) or "nowhere but the Python path"
                raise SimqosError(f"{source}: plugins[{i}]: importing {module!r} failed ({type(exc).__name__}: {first}); "
                                  f"looked in {where}, then the Python path") from None
    finally:
        sys.path[:] = saved


MAX_REQUESTS = 10**10
"""The most requests one replication may have (:func:`_check_size`)."""

MAX_BREAKPOINTS = 10**8
"""Changes of a sampled device process a run may hold at once (its whole run when SimPy serves
it whole, else a window: :func:`_check_size`); beyond it the run is refused up front."""


def _check_size(scenario: Scenario, model: ServiceModel, source: str, whole: bool) -> None:
    """Refuse, before anything is allocated, a replication served at once (``whole``: by SimPy)
    that would not fit in this machine's memory, or whose device traces would need more than
    MAX_BREAKPOINTS changes, saying how much. A streamed replication holds a chunk and a
    window of the device at a time."""
    rate = scenario.workload.arrival.mean_rate_hz()
    if scenario.workload.arrival.kind == "trace" and scenario.duration_s is not None:
        times = read_arrivals_csv(scenario.workload.arrival.path)
        if times[-1] <= times[0]:
            raise SimqosError(f"{source}: workload.arrival: {scenario.workload.arrival.path} spans no time, so it cannot be "
                              "repeated to fill duration_s; give requests instead, or arrivals spread over time")
    n = scenario.requests if scenario.requests is not None else scenario.duration_s * rate
    if n > MAX_REQUESTS:
        field = "requests" if scenario.requests is not None else "duration_s"
        raise SimqosError(
            f"{source}: {field}: {n:,.3g} requests in one replication, more than the {MAX_REQUESTS:,.0e} one replication "
            f"serves (a replication runs on one core, about 10^6 requests/s: {MAX_REQUESTS / 1e6 / 3600:.0f} hours); "
            "split them over replications (replications run in parallel: --workers, --executor dask)"
        )
    if whole:  # SimPy serves a replication at once: its inputs and outputs are in memory together
        per_request = model.n_levels * model.n_segments * 8 + len(model.sorted_samples_ms) * 8 + 130 * len(scenario.policies)
        need = n * per_request
        have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        if need > 0.8 * have:
            raise SimqosError(
                f"{source}: {n:,.0f} requests per replication, served by SimPy (a policy without a compiled decide, or "
                f"engine: simpy), would need about {need / 2**30:,.1f} GiB at once; this machine has {have / 2**30:,.1f} GiB. "
                "Lower requests (or duration_s), or use policies that run on the compiled path (streamed in chunks)"
            )
    # The device's traces held at once: over the whole run when it is served at once; else over
    # a window, about a chunk's span of arrivals plus what is sampled ahead of it.
    held = n if whole else min(n, CHUNK_REQUESTS)
    span_s = 2.0 * held / rate + DEVICE_AHEAD_S
    for field, spec, _ in scenario.device.processes():
        if spec.kind in ("constant", "trace"):
            continue
        shortest = min(s.mean_dwell_s for s in spec.states) if spec.kind == "markov" else spec.period_s / 2
        if span_s / shortest > MAX_BREAKPOINTS:
            what = "the run's" if whole else f"a window of {held:,.0f} requests,"
            raise SimqosError(
                f"{source}: {field}: over {what} {span_s:,.3g} s at {rate:g} requests/s, the process would change about "
                f"{span_s / shortest:,.3g} times, more than the {MAX_BREAKPOINTS:,} held at once; a faster arrival rate, a "
                "slower process, or fewer requests"
            )


def _named(read: Callable, where: str):
    """``read()``, its SimqosError (which names the file) prefixed with the scenario field that gave the file."""
    try:
        return read()
    except SimqosError as error:
        raise SimqosError(f"{where}: {error}") from None


def _check_trace_files(scenario: Scenario, source: str) -> None:
    """Read every replayed trace once, so a bad file fails before the run starts."""
    arrival = scenario.workload.arrival
    if arrival.kind == "trace":
        times = _named(lambda: read_arrivals_csv(arrival.path), f"{source}: workload.arrival.path")
        short = (f"asks for {scenario.requests} requests" if scenario.requests is not None and scenario.requests > len(times)
                 else f"lasts duration_s: {scenario.duration_s:g} s" if scenario.duration_s is not None and scenario.duration_s > times[-1]
                 else None)
        if short and arrival.after_end == "error":
            raise SimqosError(
                f"{source}: workload.arrival: {arrival.path} has {len(times)} arrivals until {times[-1]:g} s, but the run "
                f"{short}; ask for fewer, or set workload.arrival.after_end: repeat (replayed end to end)"
            )
    for field, spec, column in scenario.device.processes():
        if spec.kind == "trace":
            trace = _named(lambda: read_trace_csv(spec.path, column), f"{source}: {field}.path")
            if column == "speed" and (trace.values <= 0).any():
                raise SimqosError(f"{source}: {field}: {spec.path} has speed factors <= 0; they must be > 0")
            if (trace.values < 0).any():
                raise SimqosError(f"{source}: device.memory: {spec.path} has negative memory_mb")


def _check_memory(scenario: Scenario, model: ServiceModel, source: str) -> None:
    """Refuse a device whose memory never holds even the sparsest level: every request would be
    dropped, and a table of nothing but drops answers no question."""
    spec = scenario.device.memory
    if spec is None:
        return
    most_mb = {
        "constant": lambda: spec.memory_mb,
        "markov": lambda: max(state.memory_mb for state in spec.states),
        "periodic": lambda: max(spec.high, spec.low),
        "trace": lambda: float(read_trace_csv(spec.path, "memory_mb").values.max()),
    }[spec.kind]()
    need_mb = model.level_bytes[-1] / 1e6
    if most_mb < need_mb:
        raise SimqosError(
            f"{source}: device.memory: at most {most_mb:g} MB, but the sparsest level of {scenario.profile.name} "
            f"needs {need_mb:.3g} MB resident, so every request would be dropped; give memory_mb >= {need_mb:.3g}"
        )


def _check_trace_lengths(scenario: Scenario, source: str) -> None:
    """Before any work: every replication's arrivals end within each device trace file that
    must not end first (``after_end: error``); the arrivals are drawn as the run will draw them."""
    if not ending_traces(scenario):
        return
    for replication in range(scenario.replications):
        try:
            check_trace_ends(scenario, arrival_span(scenario, replication)[1], f"replication {replication}'s arrivals run to")
        except SimqosError as exc:
            raise SimqosError(f"{source}: {exc}") from None


def planned_requests(scenario: Scenario) -> int:
    """Requests per replication: the scenario's, or its duration at the mean arrival rate."""
    if scenario.requests is not None:
        return scenario.requests
    return max(1, round(scenario.duration_s * scenario.workload.arrival.mean_rate_hz()))


def engines(plan: Plan) -> list[str]:
    """Which engine serves each policy of ``plan``: ``compiled`` (a compiled ``decide`` under
    ``engine: auto``) or ``simpy``."""
    auto = plan.scenario.engine == "auto"
    return ["compiled" if auto and factory().compiled() else "simpy" for factory in plan.policy_factories]
