"""What the commands do, as functions: :func:`run_scenario` is ``simqos run``, whole, and
:func:`validate_scenario` is ``simqos validate``.

A command parses its options, makes one call here, and prints what comes back; the Python API
makes the same call. What happens along the way (warnings, notes, progress, a resumed or an
interrupted run) is told to a :class:`Listener`, silent by default.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from simqos.bound import MAX_REQUESTS as BOUND_MAX_REQUESTS
from simqos.bound import plan_bound
from simqos.errors import SimqosError
from simqos.experiments import run_experiments
from simqos.jit import interruptible
from simqos.outputs import discard, partial, staged
from simqos.results import check_records_space, write_results
from simqos.scenario import Scenario, with_counts
from simqos.sim.execution import run_key
from simqos.sim.plan import Plan, build_plan, load_checked, planned_requests
from simqos.sim.replication import KeptRecords, summarize_plan
from simqos.sim.serving import UnmodelledRule
from simqos.sim.stopping import run_to_precision
from simqos.sim.tally import ccdf_table
from simqos.sim.workers import check_execution
from simqos.verdict import plan_verdict

if TYPE_CHECKING:
    from simqos.validate.run import ValidationSettings

__all__ = ["Listener", "RunResult", "ValidateResult", "run_scenario", "validate_scenario"]


class Listener:
    """What a run tells as it goes; each method does nothing unless overridden."""

    def warning(self, text: str) -> None:
        """A value that is legal but most likely a slip (of units, of scale)."""

    def note(self, text: str) -> None:
        """Something to know that changes no result (a folder replaced, a bound left out)."""

    def resumed(self, folder: Path, replications: int) -> None:
        """An interrupted run's ``replications`` finished replications in ``folder`` are kept."""

    def stage(self, description: str, total: float | None = None) -> None:
        """A new stage of the run; ``total``: the requests it serves (None: not counted)."""

    def advance(self, requests: int) -> None:
        """``requests`` more requests served."""

    def interrupted(self, folder: Path, replications: int) -> None:
        """Interrupted: ``replications`` finished replications are kept in ``folder``."""

    def progress(self, what: str, done: int, total: int | None) -> None:
        """A long step that is not simulation (profiling, training) has done ``done`` of ``total``."""


@dataclass(frozen=True)
class RunResult:
    """A finished run: its results folder, the scenario as it ran (its replications as the
    stopping rule left them), the per-policy summary, the verdict, the stopping rule's account
    and the warnings the results carry."""

    folder: Path
    scenario: Scenario
    summary: pd.DataFrame
    verdict: dict
    stopping: dict
    warnings: tuple[str, ...]


def _finished(work: Path) -> int:
    """How many replications a run's work folder holds finished (its checkpoints)."""
    return len(list((work / "checkpoints").glob("r*.pickle")))


def run_scenario(scenario: Path | str | Scenario, out: Path | str | None = None, requests: int | None = None,
                 replications: int | None = None, workers: int = 1, executor: str = "local", scheduler: str | None = None,
                 listener: Listener | None = None) -> RunResult:
    """Simulate ``scenario`` (a YAML file, or a parsed one) under every policy it lists until its
    stopping rule is met; compute the offline optimum (up to the bound's request limit), the
    verdict and, when the scenario asks for plots, the experiments its figures need
    (:mod:`simqos.experiments`) and the report; write them all into ``out``
    (default: the scenario's output, else runs/NAME). An interrupted run keeps its finished
    replications in OUT.partial, and the same call goes on from them. ``requests`` and
    ``replications`` replace the scenario's (:func:`simqos.scenario.with_counts`); ``workers``, ``executor``
    and ``scheduler``: where replications run (:func:`simqos.sim.execution.simulate`)."""
    listener = listener or Listener()
    out = None if out is None else Path(out)
    source = str(scenario) if not isinstance(scenario, Scenario) else scenario.name
    spec = scenario if isinstance(scenario, Scenario) else load_checked(Path(scenario))
    spec = with_counts(spec, requests, replications, source)
    plan = build_plan(spec, source)
    for warning in plan.warnings:
        listener.warning(f"{source}: {warning}")
    folder = out or spec.output or Path("runs") / spec.name
    option = "--out" if out else "output:"
    check_records_space(spec, folder, option)
    check_execution(executor, workers, scheduler)
    most = spec.precision.max_replications if spec.precision else spec.replications
    try:
        with staged(folder, "results", option, resume=run_key(spec), notice=listener.note) as work, interruptible():
            checkpoints = work / "checkpoints"
            if done := _finished(work):
                listener.resumed(work, done)
            listener.stage(f"simulate {spec.name}", planned_requests(spec) * most)
            outcome = run_to_precision(plan, progress=listener.advance, workers=workers, records=KeptRecords.of(spec, work),
                                       executor=executor, scheduler=scheduler, checkpoints=checkpoints)
            ran, summary = outcome.plan.scenario, outcome.summary
            bound, left_out = _offline_optimum(outcome.plan, listener)
            warnings = plan.warnings + left_out
            verdict = plan_verdict(outcome.plan, summary, outcome.run, bound)
            write_results(work, ran, summary, summarize_plan(outcome.plan, outcome.run, by_replication=True), outcome.stopping(),
                          bound, verdict, warnings, ccdf_table(outcome.run.pooled()))
            if ran.outputs.plots:
                from simqos.report import write_report  # matplotlib: only when the scenario asks for figures

                run_experiments(work, ran, progress=lambda what: listener.stage(f"experiments: {what}"))
                write_report(work, progress=lambda what: listener.stage(f"report: {what}"))
            discard(checkpoints)  # finished: the results hold everything (removed only if marked as simqos's)
    except KeyboardInterrupt:
        listener.interrupted(partial(folder), _finished(partial(folder)))
        raise
    return RunResult(folder, ran, summary, verdict, outcome.stopping(), warnings)


def _offline_optimum(plan: Plan, listener: Listener) -> tuple[dict | None, tuple[str, ...]]:
    """The run's bound (:func:`simqos.bound.plan_bound`), or None and why it is left out: too
    many requests to search, or a serving rule in force that it does not model."""
    requests = planned_requests(plan.scenario)
    if requests > BOUND_MAX_REQUESTS:
        why = (f"the offline optimum (the bound) is computed for up to {BOUND_MAX_REQUESTS:,} requests per replication, and "
               f"this run has {requests:,}: run it shorter for the bound")
    else:
        try:
            listener.stage("offline optimum (the bound)")
            return plan_bound(plan), ()
        except UnmodelledRule as refused:
            why = str(refused)
    listener.note(why)
    return None, (why,)


@dataclass(frozen=True)
class ValidateResult:
    """A finished comparison of the real device with the simulator: its folder, the scenario
    as played, the comparison table (one row per policy: the in-sample diagnostic and the
    out-of-sample verdict), the prediction of each real run out of sample (one row per policy
    and run, :mod:`simqos.validate.predict`), and notes on what was left out."""

    folder: Path
    scenario: Scenario
    comparison: pd.DataFrame
    prediction: pd.DataFrame
    notes: tuple[str, ...]


def validate_scenario(scenario: Path | str, out: Path | str | None = None, settings: ValidationSettings | None = None,
                      reprofile: bool = False, listener: Listener | None = None, command: str = "simqos validate") -> ValidateResult:
    """Run ``scenario`` for real on this CPU (its real model, real time, a real load generator)
    and compare it with the simulator's prediction (:mod:`simqos.validate`); write everything
    into ``out`` (default: runs/validate-NAME). The model is profiled here first when the
    profile was measured on another CPU, or with ``reprofile`` (``command`` is recorded in that
    profile). ``listener`` hears the notes, the stages and the profiling's progress."""
    from simqos.bundle import load_profile
    from simqos.outputs import claim, owned
    from simqos.profiler.recipe import build_network
    from simqos.profiler.run import cpu_name, profile_input
    from simqos.scenario import override
    from simqos.validate.run import ValidationSettings, run_validation, validation_plan

    listener, settings = listener or Listener(), settings or ValidationSettings()
    out = None if out is None else Path(out)
    source = str(scenario)
    spec = load_checked(Path(scenario))
    plan, notes = validation_plan(spec, settings.seconds, source)  # refuses what cannot be played, before any work
    made = _cpu_recipe(spec, source)
    folder = out or Path("runs") / f"validate-{spec.name}"
    claim(folder, "validate")  # before minutes of profiling
    measured_here = folder.with_name(folder.name + ".profile")
    profiled_here = reprofile or made.cpu != cpu_name()
    if profiled_here:
        why = "reprofile asked for" if reprofile else f"{spec.profile} was measured on {made.cpu}; this machine is {cpu_name()}"
        listener.note(f"{why}: profiling the model here first, into {folder}/profile")
        _profile_here(made, measured_here, command, listener)
        spec = override(spec, "profile", str(measured_here.resolve()))
        plan, notes = validation_plan(spec, settings.seconds, source)  # on the profile measured here
    built = build_network(made.recipe, on_epoch=_epochs(made.recipe, listener))
    x = profile_input(built.spec, made.settings.batch_size, "cpu")
    with staged(folder, "validate") as work:
        comparison, prediction = run_validation(plan, notes, load_profile(spec.profile), built.net, x, work, settings, source,
                                    progress=lambda what: listener.stage(what))
        if profiled_here and owned(measured_here) == "profile":  # the bundle this call made, never a folder it did not
            measured_here.rename(work / "profile")
    return ValidateResult(folder, spec, comparison, prediction, tuple(notes))


def _cpu_recipe(spec: Scenario, source: str):
    """The provenance of the scenario's profile, refused unless validate can rebuild its model
    and the profile is a CPU one."""
    from simqos.bundle import load_profile

    made = load_profile(spec.profile).meta.provenance
    if made.settings.device != "cpu":
        raise SimqosError(f"{source}: profile: {spec.profile} was measured on {made.settings.device}; validate runs on this CPU, "
                          "so give a CPU profile")
    if made.recipe is None:
        raise SimqosError(f"{source}: profile: {spec.profile} records no recipe of its network (made by {made.command!r}), "
                          "so validate cannot build the model to run; give a bundle made by `simqos profile`")
    return made


def _profile_here(made, folder: Path, command: str, listener: Listener) -> None:
    """Profile the recipe ``made`` records, with its settings, into ``folder`` (replaced)."""
    from simqos.profiler.run import profile_model

    profile_model(made.recipe, made.settings, folder, overwrite=True, command=command, on_epoch=_epochs(made.recipe, listener),
                  progress=listener.progress)


def _epochs(recipe, listener: Listener):
    """A training callback that tells ``listener`` each epoch done, of the recipe's total."""
    from simqos.profiler.recipe import total_epochs

    done = [0]

    def advance(_phase: str, _epoch: int, _loss: float) -> None:
        done[0] += 1
        listener.progress(f"train {recipe.model} ({recipe.training.growth})", done[0], total_epochs(recipe))

    return advance
