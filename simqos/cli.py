"""The command line: parse, call the library, print, set the exit code.

Exit codes: 0 success, 2 a user's mistake (the message says what and how to fix it, with no
traceback), anything else a bug. torch is imported only by the commands that need it.
"""

from __future__ import annotations

import functools
import math
import os
import shlex
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import click
import pandas as pd
import typer
import yaml
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from simqos.errors import SimqosError, validation_message

__all__ = ["app", "main"]

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Nines of QoS for multi-level sparse networks on fluctuating edge devices.",
)
# Wide enough for the result tables when the output is a file or a pipe (rich would use 80).
console = Console(highlight=False, emoji=False, markup=False, width=None if sys.stdout.isatty() else 140)
"""Plain text: ``:factory:`` in a model's name is not an emoji, nor ``[anchors]`` in a note a markup tag."""
F = TypeVar("F", bound=Callable[..., None])


def _user_errors(command: F) -> F:
    """Turn a SimqosError into one line on stderr and exit status 2."""

    @functools.wraps(command)
    def wrapper(*args: object, **kwargs: object) -> None:
        try:
            command(*args, **kwargs)
        except SimqosError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def _floats(option: str, text: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError:
        raise SimqosError(f"{option}: {text!r} is not a comma-separated list of numbers, e.g. 0.134,0.054") from None


def _ints(option: str, text: str, count: int | None = None) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise SimqosError(f"{option}: {text!r} is not a comma-separated list of integers") from None
    if count is not None and len(values) != count:
        raise SimqosError(f"{option}: {text!r} needs {count} integers")
    return values


def _model_kwargs(pairs: list[str]) -> dict:
    kwargs = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SimqosError(f"--model-arg: {pair!r} is not KEY=VALUE, e.g. hidden=1024")
        kwargs[key] = yaml.safe_load(value)
    return kwargs


def _checked(cls, options: dict[str, str], **values):
    """``cls(**values)`` (a pydantic settings model), each invalid field named by the
    command-line option that gave it (``options``: field to option)."""
    from pydantic import ValidationError

    try:
        return cls(**values)
    except ValidationError as exc:
        raise SimqosError(validation_message(exc, cls, "the command", options)) from None


_TRAINING_OPTIONS = {
    "epochs_dense": "--epochs (the dense phase's)", "epochs_sparsest": "--epochs (the sparsest phase's)",
    "epochs_grow": "--epochs (each growth phase's)", "batch_size": "--train-batch-size",
    "lr_dense": "--lr (the dense phase's rate)", "lr_sparse": "--lr (the sparse phases' rate)", "seed": "--seed", "growth": "--growth", "scope": "--scope", "keep_dense": "--keep-dense",
    "calibration_samples": "--calibration-samples", "lr_schedule": "--lr-schedule", "weight_decay": "--weight-decay",
    "clip_grad_norm": "--clip-grad-norm", "distill": "--distill",
}


def _recipe(model: str, levels: str, model_arg: list[str], training: dict, growth: str, input_shape: str | None = None):
    """The NetworkRecipe of a train or profile command's parsed options (``growth`` given
    apart: ``simqos train`` may run both methods)."""
    from simqos.bundle import NetworkRecipe, TrainingSettings

    dense, sparsest, grow = _ints("--epochs", training["epochs"], 3)
    rates = _floats("--lr", training["lr"])
    if len(rates) != 2:
        raise SimqosError(f"--lr {training['lr']!r} needs two rates (dense, sparse), e.g. 1e-3,5e-4")
    settings = _checked(
        TrainingSettings, _TRAINING_OPTIONS, epochs_dense=dense, epochs_sparsest=sparsest, epochs_grow=grow,
        batch_size=training["train_batch_size"], lr_dense=rates[0], lr_sparse=rates[1], seed=training["seed"], growth=growth,
        scope=training["scope"], keep_dense=tuple(n for n in training["keep_dense"].split(",") if n),
        calibration_samples=training["calibration_samples"], lr_schedule=training["lr_schedule"],
        weight_decay=training["weight_decay"], clip_grad_norm=training["clip_grad_norm"], distill=training["distill"],
    )
    return _checked(
        NetworkRecipe, {"densities": "--levels", "input_shape": "--input-shape"}, model=model, model_kwargs=_model_kwargs(model_arg),
        input_shape=_ints("--input-shape", input_shape) if input_shape else None, densities=_floats("--levels", levels),
        training=settings,
    )


def _command_line(command, params: dict) -> str:
    """``simqos NAME`` and every option of ``command`` whose value in ``params`` is not its
    default: the command line that reproduces a run, however it was invoked (a shell,
    ``python -m``, a test runner, or another command)."""
    words = ["simqos", command.name]
    for param in command.params:
        value = params.get(param.name)
        if getattr(param, "hidden", False) or value == param.default or value in (None, (), []):
            continue
        if param.param_type_name == "argument":
            words.append(str(value))
        elif getattr(param, "is_flag", False):
            words.append(param.opts[0] if value else param.secondary_opts[0])
        else:
            for item in value if isinstance(value, (list, tuple)) else [value]:
                words += [param.opts[0], str(item)]
    return shlex.join(words)


class _Rate(ProgressColumn):
    """How fast a task advances (its count per second), once there is a count to time."""

    def render(self, task) -> Text:
        return Text("" if not task.speed else f"{task.speed:,.0f}/s", style="progress.data.speed")


class _LineProgress:
    """Progress where the output is not a terminal (a file, a pipe, a CI log), where a live bar
    shows nothing until the end: plain lines, flushed — one at a task's first update and when it
    changes stage, and otherwise at most one every :attr:`EVERY_S` seconds; a thread that wakes every
    :attr:`HEARTBEAT_S` seconds repeats an unfinished task's line, so a long stage without
    updates (the bound) still shows it is alive. Every line gives the seconds since the progress
    began (one clock for all its tasks), and a slow task its seconds each rather than "0/s".
    Takes the calls the commands make on a rich ``Progress``."""

    EVERY_S = 10.0
    HEARTBEAT_S = 10.0
    ESTIMATE_AFTER = 0.05
    """The share of a task done before its time left is estimated."""

    def __init__(self) -> None:
        self.start = time.monotonic()
        self.tasks: dict[int, dict] = {}
        self._stop = threading.Event()
        self._beat = threading.Thread(target=self._heartbeat, daemon=True)

    def __enter__(self) -> _LineProgress:
        self._beat.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._beat.join()

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.HEARTBEAT_S):
            for task, t in list(self.tasks.items()):
                if not (t["total"] and t["count"] and t["completed"] >= t["total"]):  # a finished task has said so
                    self._say(task, force=False)

    def add_task(self, description: str, total: float | None = None, **fields: object) -> int:
        task = len(self.tasks)
        self.tasks[task] = {"description": description, "total": total, "completed": 0, "fields": fields,
                            "start": time.monotonic(), "said": -math.inf, "said_completed": None, "count": True}
        return task  # said at its first update or heartbeat: a mistake found at once is its one line, alone

    def update(self, task: int, *, completed: float | None = None, total: float | None = None,
               description: str | None = None, advance: float | None = None, **fields: object) -> None:
        t = self.tasks[task]
        stage = description is not None and description != t["description"]
        if stage and t["count"] and t["total"] and t["completed"] != t["said_completed"]:
            self._say(task, force=True)  # where the stage ended, before the next one starts
        t |= {k: v for k, v in (("completed", completed), ("total", total), ("description", description)) if v is not None}
        t["completed"] += advance or 0
        t["fields"] |= fields
        if stage or completed is not None:
            t["count"] = completed is not None  # a new stage: the old count is not its
        self._say(task, force=stage)

    def advance(self, task: int, advance: float = 1) -> None:
        self.update(task, advance=advance)

    def _say(self, task: int, force: bool) -> None:
        t, now = self.tasks[task], time.monotonic()
        if not force and now - t["said"] < self.EVERY_S:
            return
        t["said"], t["said_completed"] = now, t["completed"]
        done = ""
        if t["total"] and t["count"]:
            done = f": {t['completed']:,.0f}/{t['total']:,.0f}"
            rate = t["completed"] / max(now - t["start"], 1e-9)
            if 0 < t["completed"] < t["total"]:
                done += f", {rate:,.0f}/s" if rate >= 1 else f", {1 / rate:,.1f} s each"
                if t["completed"] >= self.ESTIMATE_AFTER * t["total"]:  # an estimate from the first few is wild
                    done += f", about {(t['total'] - t['completed']) / rate:,.0f} s left"
        extra = "".join(f", {v}" for v in t["fields"].values() if v)
        typer.echo(f"{t['description']}{done}{extra} ({now - self.start:.0f} s)")  # one clock for every task
        sys.stdout.flush()


def _progress(*columns: TextColumn) -> Progress | _LineProgress:
    """A live progress bar on a terminal (``columns`` added after the count), else plain lines
    (:class:`_LineProgress`), so progress shows when output goes to a file too."""
    if not console.is_terminal:
        return _LineProgress()
    return Progress(
        TextColumn("{task.description:<34}"),
        BarColumn(),
        MofNCompleteColumn(),
        *columns,
        TimeElapsedColumn(),
        TextColumn("left"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )


def _epoch_bar(bar, recipe):
    """A callback for the recipe's training that advances a task on ``bar`` epoch by epoch, the
    task made at the first epoch (a cached network trains none, and shows no bar)."""
    from simqos.profiler.recipe import total_epochs

    task = []

    def advance(_phase: str, _epoch: int, _loss: float) -> None:
        if not task:
            task.append(bar.add_task(f"train {recipe.model} ({recipe.training.growth})", total=total_epochs(recipe)))
        bar.advance(task[0])

    return advance


_MODEL_HELP = "A shipped model (mlp, mlp1d, cnn, cnn1d, resnet1d, pointnet2_shapes, gnmt_grammar, gat_sbm, and the paper's resnet50, pointnet2, gnmt, gat) or package.module:factory."
LevelsOpt = Annotated[str, typer.Option("--levels", help="Kept-weight fractions, least sparse first (1.0 adds the dense model).")]
EpochsOpt = Annotated[str, typer.Option(help="Epochs of the dense, sparsest and each growth phase.")]
LrOpt = Annotated[str, typer.Option(help="Adam learning rates of the dense phase and of the sparse phases.")]
TrainBatchOpt = Annotated[int, typer.Option(help="Training batch size.")]
ScopeOpt = Annotated[str, typer.Option(help="Pruning scope: layer (each tensor keeps the density) or global (all together, by magnitude).")]
KeepDenseOpt = Annotated[str, typer.Option(help="Layers kept whole at every level, comma-separated (e.g. conv1,fc).")]
ScheduleOpt = Annotated[str, typer.Option(help="Learning rate over each phase: constant, or cosine (annealed to zero).")]
WeightDecayOpt = Annotated[float, typer.Option(help="Adam's L2 weight decay in every phase (growth: on the re-opened weights only); 0 for none.")]
ClipOpt = Annotated[float, typer.Option(help="Clip each step's gradient to this norm (recurrent models: 1 to 5); 0 for none.")]
DistillOpt = Annotated[float, typer.Option(help="The dense model's share of the sparse phases' loss (distillation on the labelled outputs, temperature 2), 0 to 1; 0 for none.")]
CalibrationOpt = Annotated[int, typer.Option(help="Training inputs (no labels) that re-measure batch-norm statistics per route prefix after training; 0 keeps each level's from training.")]
ModelArgOpt = Annotated[list[str], typer.Option("--model-arg", help="KEY=VALUE passed to the model factory; repeatable.")]
RetrainOpt = Annotated[bool, typer.Option(help="Train even if a checkpoint of the same code, data and settings is cached.")]


@app.command()
@_user_errors
def train(
    model: Annotated[str, typer.Argument(help=_MODEL_HELP)],
    levels: LevelsOpt = "0.134,0.054",
    growth: Annotated[str, typer.Option(help="sparse-first (the paper's), route-aware, or both (compared side by side; twice the training).")] = "sparse-first",
    epochs: EpochsOpt = "20,15,10",
    lr: LrOpt = "1e-3,5e-4",
    train_batch_size: TrainBatchOpt = 64,
    scope: ScopeOpt = "layer",
    keep_dense: KeepDenseOpt = "",
    lr_schedule: ScheduleOpt = "cosine",
    calibration_samples: CalibrationOpt = 4000,
    weight_decay: WeightDecayOpt = 0.0,
    clip_grad_norm: ClipOpt = 0.0,
    distill: DistillOpt = 0.0,
    seed: int = 0,
    threads: Annotated[int | None, typer.Option(help="torch threads for training (default: every core).")] = None,
    model_arg: ModelArgOpt = [],
    retrain: RetrainOpt = False,
) -> None:
    """Train a nested multi-level sparse model sparse-first and report the accuracy of its routes."""
    from simqos.nested.training import GROWTH_METHODS
    from simqos.profiler.recipe import TRAINING_THREADS, build_network, route_report

    methods = list(GROWTH_METHODS) if growth == "both" else [growth]
    training = {"epochs": epochs, "lr": lr, "train_batch_size": train_batch_size, "scope": scope, "keep_dense": keep_dense, "seed": seed,
                "calibration_samples": calibration_samples, "lr_schedule": lr_schedule, "weight_decay": weight_decay,
                "clip_grad_norm": clip_grad_norm, "distill": distill}
    reports = {}
    for method in methods:
        recipe = _recipe(model, levels, model_arg, training, method)
        with _progress() as bar:
            built = build_network(recipe, retrain, on_epoch=_epoch_bar(bar, recipe), threads=threads or TRAINING_THREADS)
        if built.checkpoint is None:
            raise SimqosError(f"{model}: no dataset ships for it, so it cannot be trained; `simqos profile {model}` prunes it by magnitude")
        reports[method] = route_report(built)
        cached = " (from the cache: trained earlier from the same code, data and settings; --retrain trains again)"
        console.print(f"{method}: checkpoint {built.checkpoint}{cached if built.cached else ''}")
    _print_route_table(model, reports)


def _print_route_table(model: str, reports: dict) -> None:
    """Each route's test accuracy (with its interval) and validation accuracy, per growth method."""
    from simqos.nested.network import format_route

    first = next(iter(reports.values()))
    test = [a for a in first.accuracies if a.split == "test"]
    dense = {a.split: a for a in first.dense}
    table = Table(title=f"{model}: {first.metric} per route on {test[0].n} test {first.unit}s (95 % CI); "
                        f"dense model {_accuracy_cell(dense['test'])}")
    table.add_column("route (level per segment)")
    for method in reports:
        table.add_column(f"{method} (test)", justify="right")
        table.add_column("validation", justify="right")
    for i, acc in enumerate(test):
        cells = []
        for report in reports.values():
            by_split = {(a.route, a.split): a for a in report.accuracies}
            cells += [_accuracy_cell(by_split[(acc.route, "test")]), f"{by_split[(acc.route, 'validation')].accuracy:.2%}"]
        table.add_row(format_route(acc.route), *cells)
    console.print(table)
    if not first.complete:
        console.print("only monotone routes (less sparse to sparser) are listed: there are too many routes")


def _accuracy_cell(a) -> str:
    low, high = a.interval
    return f"{a.accuracy:.2%} [{low:.1%}, {high:.1%}]"


@app.command()
@_user_errors
def profile(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help=_MODEL_HELP)],
    out: Annotated[Path, typer.Option(help="Folder for the profile bundle, e.g. profiles/mlp-cpu.")],
    levels: LevelsOpt = "0.134,0.054",
    threads: Annotated[int, typer.Option(help="torch threads while timing.")] = 1,
    batch_size: int = 1,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    growth: Annotated[str, typer.Option(help="Growth method of the trained model: sparse-first or route-aware.")] = "sparse-first",
    samples: Annotated[int, typer.Option(help="Latency samples per layer x level.")] = 30,
    min_sample_ms: Annotated[float, typer.Option(help="Each sample lasts at least this long (ms).")] = 1.0,
    passes: Annotated[int, typer.Option(help="Whole-model passes per level; each gives one sample per layer.")] = 200,
    choice_passes: Annotated[int, typer.Option(help="Whole-model passes per contending kernel when choosing kernels inside the model.")] = 20,
    idle_samples: Annotated[int, typer.Option(help="Whole-model passes per level and idle gap for idle.csv; 0 leaves it out.")] = 30,
    kernels: Annotated[str | None, typer.Option(help="Candidate kernels, comma-separated (default: all that run on --device).")] = None,
    input_shape: Annotated[str | None, typer.Option(help="Input shape for a factory that returns a plain nn.Module.")] = None,
    epochs: EpochsOpt = "20,15,10",
    lr: LrOpt = "1e-3,5e-4",
    train_batch_size: TrainBatchOpt = 64,
    scope: ScopeOpt = "layer",
    keep_dense: KeepDenseOpt = "",
    lr_schedule: ScheduleOpt = "cosine",
    calibration_samples: CalibrationOpt = 4000,
    weight_decay: WeightDecayOpt = 0.0,
    clip_grad_norm: ClipOpt = 0.0,
    distill: DistillOpt = 0.0,
    seed: int = 0,
    model_arg: ModelArgOpt = [],
    overwrite: bool = False,
    retrain: RetrainOpt = False,
) -> None:
    """Measure per-layer, per-level latency, bytes, FLOPs and route accuracy into a profile bundle."""
    from simqos.kernels import kernel_names
    from simqos.bundle import ProfileSettings
    from simqos.profiler.run import profile_model

    training = {"epochs": epochs, "lr": lr, "train_batch_size": train_batch_size, "scope": scope, "keep_dense": keep_dense, "seed": seed,
                "calibration_samples": calibration_samples, "lr_schedule": lr_schedule, "weight_decay": weight_decay,
                "clip_grad_norm": clip_grad_norm, "distill": distill}
    recipe = _recipe(model, levels, model_arg, training, growth, input_shape)
    kernel_list = tuple(k for k in (kernels or ",".join(kernel_names(device))).split(",") if k)
    unknown = [k for k in kernel_list if k not in kernel_names()]
    if unknown:
        raise SimqosError(f"--kernels: {unknown} unknown; choose among {kernel_names()}")
    settings = _checked(
        ProfileSettings, _PROFILE_OPTIONS, device=device, kernels=kernel_list, batch_size=batch_size, threads=threads,
        n_samples=samples, min_sample_ms=min_sample_ms, in_model_passes=passes, choice_passes=choice_passes, idle_samples=idle_samples,
    )
    with _progress() as bar:
        task = bar.add_task("profile", total=None)
        result, warnings = profile_model(
            recipe, settings, out, overwrite, command=_command_line(ctx.command, ctx.params), on_epoch=_epoch_bar(bar, recipe),
            progress=lambda what, done, total: bar.update(task, description=what, completed=done, total=total), retrain=retrain,
        )
    for warning in warnings:
        console.print(Text.assemble(("warning", "yellow"), f": {warning}"))
    if result.meta.accuracy.available is False:
        console.print(f"{model}: no dataset ships for it; levels by magnitude, accuracy unavailable")
    _print_profile_summary(result, out)


_PROFILE_OPTIONS = {
    "device": "--device", "kernels": "--kernels", "batch_size": "--batch-size", "threads": "--threads", "n_samples": "--samples",
    "min_sample_ms": "--min-sample-ms", "in_model_passes": "--passes", "choice_passes": "--choice-passes", "idle_samples": "--idle-samples",
}


@app.command()
@_user_errors
def show(folder: Annotated[Path, typer.Argument(help="A profile bundle folder (profiles/resnet1d-cpu), or a folder of them (profiles).")]) -> None:
    """Validate a profile bundle and summarise it: accuracy and latency per level against the
    dense model, beside the paper's figures. Given a folder of bundles, list them."""
    from simqos.bundle import load_profile

    if folder.is_dir() and not (folder / "profile.json").exists():
        _list_bundles(folder)
        return
    bundle = load_profile(folder)
    prov = bundle.meta.provenance
    console.print(f"{bundle.meta.description}; {len(bundle.meta.layers)} layers, {bundle.n_segments} segments")
    console.print(f"measured on {prov.cpu} ({prov.settings.device}, {prov.settings.threads} thread(s), batch {prov.settings.batch_size}) on {prov.created_utc}")
    if prov.training_s is not None:
        console.print(f"trained in {prov.training_s / 60:.1f} min ({prov.training_threads} torch thread(s)), "
                      f"recipe: {_recipe_text(prov.recipe)}")
    console.print(_runtime_text(prov.deployment))
    _print_profile_summary(bundle, folder)
    console.print(_paper_table(bundle))
    info = bundle.meta.accuracy
    if info.available:
        console.print(f"accuracy: {info.metric} on {info.dataset} ({info.source}); pruning: {info.scope}-wise magnitude"
                      + (f", kept dense: {', '.join(info.keep_dense)}" if info.keep_dense else ""))
    else:
        console.print("accuracy: unavailable (latency only); attach accuracy measured elsewhere with simqos attach-accuracy")


def _runtime_text(deployment) -> str:
    """The runtime the latencies were measured on, each candidate's whole-model medians, and the
    anchor row: the levels on a runtime users deploy instead, against the deployed runtime."""
    def per_level(ms: list[float]) -> str:
        return " / ".join(f"{m:.3f}" for m in ms) + " ms"

    medians = "; ".join(f"{name} {per_level(ms)}" for name, ms in deployment.medians_ms.items())
    lines = [f"runtime: {deployment.runtime}" + (f" (whole-model median per level: {medians})" if medians else "")
             + (f"; {deployment.note}" if deployment.note else "")]
    # the deployed runtime's medians timed alongside the anchors (older bundles: its own timing)
    deployed = deployment.anchors_ms.get(deployment.runtime, deployment.medians_ms.get(deployment.runtime))
    for name, ms in deployment.anchors_ms.items():
        if name == deployment.runtime:
            continue
        against = "" if deployed is None else (f"; {deployment.runtime} level 0 " + f"{deployed[0] / ms[0]:.2f}x its level 0, timed "
                                               "alongside (its kernels are dense: every level runs at the dense model's speed there)")
        lines.append(f"anchor: {name} {per_level(ms)}{against}")
    if deployment.anchor_note:
        lines.append(deployment.anchor_note)
    return "\n".join(lines)


def _list_bundles(folder: Path) -> None:
    """One line per bundle under ``folder``: which carry measured or attached accuracy, and
    which are latency only."""
    from simqos.bundle import load_profile

    bundles = sorted(p.parent for p in folder.glob("*/profile.json"))
    if not bundles:
        raise SimqosError(f"{folder}: no profile bundle in it (a bundle is a folder with profile.json); see profiles/README.md")
    table = Table(title=f"profile bundles in {folder}")
    for col in ("bundle", "model", "levels (kept)", "accuracy", "L0 / L1 (test)", "latency vs dense (torch eager)", "runtime; L0 vs anchors"):
        table.add_column(col)
    for path in bundles:
        bundle = load_profile(path)
        info = bundle.meta.accuracy
        summary = bundle.level_summary()
        kept = ", ".join(f"{k:.1%}" for k in summary["weights_fraction"])
        accuracy = f"{info.source}: {info.metric}" if info.available else "latency only"
        levels = " / ".join(f"{a:.1%}" for a in summary["accuracy"]) if info.available else "—"
        latency = " / ".join(f"{r:.2f}x" for r in summary["latency_ratio"])
        deployment = bundle.meta.provenance.deployment
        deployed = deployment.anchors_ms.get(deployment.runtime, deployment.medians_ms.get(deployment.runtime))
        anchored = "" if deployed is None else "".join(f"; {deployed[0] / ms[0]:.2f}x {name.split()[0]}"
                                                       for name, ms in deployment.anchors_ms.items() if name != deployment.runtime)
        table.add_row(path.name, bundle.meta.model, kept, accuracy, levels, latency, deployment.runtime + anchored)
    console.print(table)


PAPER_LEVELS = {0.134: "13.38% / 14.97% / at dense", 0.054: "5.38% / 4.47% / 3.25%"}
"""Qin et al. (ICTAI 2022), ResNet-50 on ImageNet, by the density of the level they compare
with: weights, FLOPs and relative accuracy loss of the less sparse level and of the nested
sparser one."""


def _recipe_text(recipe) -> str:
    """A bundle's training recipe in a line."""
    t = recipe.training
    text = (f"epochs {t.epochs_dense}/{t.epochs_sparsest}/{t.epochs_grow} (dense/sparsest/growth), lr {t.lr_dense:g}/{t.lr_sparse:g} "
            f"{t.lr_schedule}, batch {t.batch_size}, {t.scope} magnitude, {t.growth}")
    text += f", weight decay {t.weight_decay:g}" if t.weight_decay else ""
    text += f", gradients clipped to norm {t.clip_grad_norm:g}" if t.clip_grad_norm else ""
    text += f", distilled from the dense model at {t.distill:g}" if t.distill else ""
    return text + (f", batch-norm statistics (if any) calibrated on {t.calibration_samples} inputs" if t.calibration_samples else "")


def _paper_table(bundle) -> Table:
    """Each level against the dense model, the paper's figures beside."""
    table = Table(title="each level against the dense model (last column: the paper's ResNet-50 on ImageNet, Qin et al. 2022, for reference)")
    for col in ("level", "weights", "FLOPs", "accuracy [95% CI]", "rel. loss", "latency", "storage", "paper weights / FLOPs / rel. loss"):
        table.add_column(col, justify="right")
    dense = bundle.dense_accuracy("test")
    if dense is not None:
        table.add_row("dense", "100%", "100%", f"{dense.accuracy:.2%} [{dense.ci_low:.1%}, {dense.ci_high:.1%}]", "0",
                      "1.00x", "100%", "100% / 100% / 0")
    for row in bundle.level_summary().itertuples(index=False):
        level = int(row.level)
        density = bundle.meta.levels[level].density
        paper = next((text for d, text in PAPER_LEVELS.items() if abs(d - density) < 0.005), "—")
        accuracy = "unavailable" if pd.isna(row.accuracy) else f"{row.accuracy:.2%} [{row.ci_low:.1%}, {row.ci_high:.1%}]"
        loss = "—" if pd.isna(row.relative_loss) else f"{row.relative_loss:.2%}"
        table.add_row(
            str(level), f"{row.weights_fraction:.2%}", f"{row.flops_fraction:.2%}", accuracy, loss,
            f"{row.latency_ratio:.2f}x", f"{row.storage_ratio:.2%}", paper,
        )
    return table


@app.command("attach-accuracy")
@_user_errors
def attach_accuracy(
    folder: Annotated[Path, typer.Argument(help="A profile bundle folder, e.g. profiles/resnet50-cpu.")],
    accuracy_csv: Annotated[Path, typer.Argument(help="CSV: route,split,correct,n (or accuracy,n) per route; see profiles/README.md.")],
    dataset: Annotated[str, typer.Option(help="What the accuracies were measured on, e.g. 'ImageNet val, 50,000 images'.")],
    metric: Annotated[str, typer.Option(help="What a correct unit means.")] = "top-1 accuracy",
    unit: Annotated[str, typer.Option(help="What one scored unit is (sample, token, node, ...).")] = "sample",
    replace: Annotated[bool, typer.Option(help="Replace route accuracy the bundle already has.")] = False,
) -> None:
    """Attach route accuracies measured elsewhere (e.g. the full-size model on its real data) to a bundle."""
    from simqos.accuracy import attach_accuracy as attach

    bundle = attach(folder, accuracy_csv, dataset, metric, unit, replace)
    console.print(_paper_table(bundle))
    console.print(f"{folder}: {bundle.meta.accuracy.note}")


def _print_profile_summary(result, out: Path) -> None:
    gap = result.end_to_end_gap()
    routes = None if result.routes is None else result.routes[result.routes["split"] == "test"].set_index("route")
    table = Table(title=f"{result.meta.model}: median of {result.meta.provenance.settings.in_model_passes} whole-model passes")
    for col in ("level", "kept", "accuracy", "Σ layers ms", "model ms", "gap", "vs dense"):
        table.add_column(col, justify="right")
    for row in gap.itertuples(index=False):
        level = int(row.level)
        uniform = "-".join([str(level)] * result.n_segments)
        accuracy = "unavailable" if routes is None else f"{routes.loc[uniform, 'accuracy']:.1%}"
        table.add_row(
            str(level),
            f"{result.meta.levels[level].kept_fraction:.1%}",
            accuracy,
            f"{row.sum_of_layers_ms:.3f}",
            f"{row.end_to_end_ms:.3f}",
            f"{row.gap_fraction:+.0%}",
            f"{row.ratio_to_dense:.2f}x",
        )
    console.print(table)
    console.print("Σ layers: sum of layer medians inside the model; model: whole-model median;")
    console.print(f"gap: what per-layer times miss. Dense baseline: {result.dense_end_to_end_ms:.3f} ms.")
    if routes is not None:
        worst, best = routes["accuracy"].idxmin(), routes["accuracy"].idxmax()
        console.print(
            f"{len(routes)} routes, test split of {int(routes['n'].iloc[0])} {result.meta.accuracy.unit}s: "
            f"worst {worst} {routes.loc[worst, 'accuracy']:.1%}, best {best} {routes.loc[best, 'accuracy']:.1%}"
        )
    console.print(f"Profile: {out}")


@app.command()
@_user_errors
def run(
    scenario: Annotated[Path, typer.Argument(help="A scenario YAML file, e.g. scenarios/iot.yaml.")],
    out: Annotated[Path | None, typer.Option(help="Results folder (default: the scenario's output, else runs/NAME).")] = None,
    requests: Annotated[int | None, typer.Option(help="Override the scenario's request count.")] = None,
    replications: Annotated[int | None, typer.Option(help="Override the scenario's replications.")] = None,
    workers: Annotated[int, typer.Option(help="Processes running replications in parallel (with dask: the LocalCluster's).")] = 1,
    executor: Annotated[str, typer.Option(help="local (this process, or --workers processes) or dask.")] = "local",
    scheduler: Annotated[str | None, typer.Option(help="dask scheduler address, e.g. tcp://HOST:8786 (default: a LocalCluster).")] = None,
) -> None:
    """Simulate a scenario under every policy it lists; write records, summary and figures.

    An interrupted run (Ctrl-C, a killed process) leaves its finished replications in
    OUT.partial; the same command goes on from them."""
    from simqos.api import run_scenario
    from simqos.scenario import Counts

    _checked(Counts, {"requests": "--requests", "replications": "--replications"}, requests=requests, replications=replications)
    with _progress(_Rate()) as bar:
        result = run_scenario(scenario, out, requests, replications, workers, executor, scheduler, _RunListener(bar))
    _print_run_result(result)


class _RunListener:
    """What ``simqos run`` shows of a run (:class:`simqos.api.Listener`): warnings and notes on
    standard error, the stages on the progress bar, a resumed or an interrupted run in a line."""

    def __init__(self, bar) -> None:
        self.bar, self.task = bar, None

    def warning(self, text: str) -> None:
        typer.echo(f"warning: {text}", err=True)

    def note(self, text: str) -> None:
        typer.echo(f"note: {text}", err=True)

    def resumed(self, folder: Path, replications: int) -> None:
        console.print(f"Resuming the interrupted run in {folder}: {replications} replication(s) finished before are kept.")

    def stage(self, description: str, total: float | None = None) -> None:
        if self.task is None:
            self.task = self.bar.add_task(description, total=total)
        else:
            self.bar.update(self.task, description=description, total=total)

    def advance(self, requests: int) -> None:
        self.bar.advance(self.task, requests)

    def interrupted(self, folder: Path, replications: int) -> None:
        typer.echo(f"interrupted: {replications} finished replication(s) are kept in {folder}; "
                   "the same command goes on from them", err=True)


def _print_run_result(result) -> None:
    """The summary table, the verdict, the stopping rule's account and where the results are."""
    from simqos.verdict import verdict_lines

    spec = result.scenario
    _print_run_summary(spec, result.summary)
    for line in verdict_lines(result.verdict):  # one line each, as a log keeps it (a terminal wraps it itself)
        console.print(line.replace("**", "").replace("`", ""), soft_wrap=True)
    if spec.precision is not None:
        console.print(_stopping_line(result.stopping, spec.precision))
    records = {"all": ", records/", "sample": ", records/ (a sample)", "none": ""}[spec.outputs.records]
    extra = ", report.md, plots/, experiments/" if spec.outputs.plots else ""
    console.print(f"Results: {result.folder}/ (summary.json, summary.csv, replications.csv, latency_ccdf.csv{records}{extra})")


def _stopping_line(stopping: dict, rule) -> str:
    widest = stopping["widest_nines_half_width"]
    width = "unbounded (a policy with no miss)" if widest is None else f"±{widest:.3f}"
    if stopping["stopped"] == "precise":
        return f"Stopped after {stopping['replications']} replications: every nines interval within ±{rule.nines_half_width:g} (widest {width})."
    return (
        f"Budget spent: {stopping['replications']} replications (precision.max_replications) and the widest nines "
        f"interval is {width}, not yet ±{rule.nines_half_width:g}; raise max_replications or requests to narrow it."
    )


@app.command()
@_user_errors
def sweep(
    sweep_file: Annotated[Path, typer.Argument(help="A sweep YAML file, e.g. scenarios/iot.sweep.yaml.")],
    out: Annotated[Path | None, typer.Option(help="Sweep folder (default: runs/sweep-NAME).")] = None,
    executor: Annotated[str, typer.Option(help="local (processes) or dask.")] = "local",
    scheduler: Annotated[str | None, typer.Option(help="dask scheduler address, e.g. tcp://HOST:8786 (default: a LocalCluster).")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes (default: one per core).")] = None,
) -> None:
    """Run a base scenario over a grid of overrides and seeds, resumably; write a tidy table."""
    from simqos.sweep import finished_cells, load_sweep, run_sweep
    from simqos.sim.workers import check_execution

    check_execution(executor, workers, scheduler)
    _, base, cells = load_sweep(sweep_file)
    folder = out or Path("runs") / f"sweep-{sweep_file.stem}"
    _say_finished_cells(folder, base, cells)
    with _progress(TextColumn("{task.fields[rate]}")) as bar:
        try:
            results = run_sweep(base, cells, folder, executor=executor, workers=workers, scheduler=scheduler,
                                progress=_sweep_ticks(bar, f"sweep {sweep_file.stem}", len(cells)))
        except KeyboardInterrupt:
            done = finished_cells(folder, base, cells)[0] if folder.is_dir() else 0
            typer.echo(f"interrupted: {done} of {len(cells)} cells are finished and kept in {folder}/cells/; the same command "
                       "runs the rest", err=True)
            raise
    from simqos.report import write_sweep_report

    names = write_sweep_report(folder)
    console.print(f"{len(cells)} cells, {len(results)} rows: {folder}/results.csv (cells in {folder}/cells/)")
    console.print(f"Report: {folder}/report.md and plots/: {', '.join(names)}")


def _say_finished_cells(folder: Path, base, cells: list) -> None:
    """Before a sweep: how many of its cells an earlier run already finished, and how many it
    computed from another base, profile or simqos (they run again)."""
    from simqos.sweep import finished_cells

    same, other = finished_cells(folder, base, cells)
    if same:
        console.print(f"Resuming: {same} of {len(cells)} cells are already done in {folder}/cells/ (same base scenario, "
                      "profile and simqos); the rest run now")
    if other:
        console.print(f"{other} cells in {folder}/cells/ were computed from another base scenario, profile or simqos "
                      "version: they run again")


def _sweep_ticks(bar, description: str, n_cells: int):
    """A sweep's progress callback: cells done on ``bar``, with the requests simulated per second."""
    started = time.perf_counter()
    task = bar.add_task(description, total=n_cells, rate="")

    def tick(done: int, _total: int, simulated: int, _name: str) -> None:
        rate = simulated / max(time.perf_counter() - started, 1e-9)
        bar.update(task, completed=done, rate=f"{rate:,.0f} requests/s")

    return tick


@app.command()
@_user_errors
def validate(
    ctx: typer.Context,
    scenario: Annotated[Path, typer.Argument(help="A scenario YAML file, e.g. scenarios/validate-fluctuating.yaml.")],
    out: Annotated[Path | None, typer.Option(help="Folder for the comparison (default: runs/validate-NAME).")] = None,
    seconds: Annotated[float, typer.Option(help="Seconds of real arrivals per policy.")] = 20.0,
    sim_replications: Annotated[int, typer.Option(help="Latency draws of the simulation.")] = 20,
    probes: Annotated[int, typer.Option(help="Calibration inferences per load state.")] = 300,
    real_runs: Annotated[int, typer.Option(help="Real runs of each policy; how much they differ is the comparison's floor.")] = 2,
    noise_seconds: Annotated[float, typer.Option(help="Seconds of idle probes the machine's own noise (wander, stalls) is fitted from.")] = 30.0,
    anchor_seconds: Annotated[float, typer.Option(help="Seconds of quiet probes just before each real run, its prediction scaled by them (0: none).")] = 0.0,
    prediction_draws: Annotated[int, typer.Option(help="Simulated runs per real run in its out-of-sample prediction.")] = 40,
    reprofile: Annotated[bool, typer.Option(help="Profile the model on this machine first (automatic when the profile's CPU is another).")] = False,
) -> None:
    """Run a scenario for real on this CPU (real model, real time, a real load generator) and
    check each real run against the simulator's prediction of it, made without that run's data."""
    from simqos.api import validate_scenario
    from simqos.validate.run import ValidationSettings

    settings = _checked(ValidationSettings, _VALIDATE_OPTIONS, seconds=seconds, sim_replications=sim_replications, probes=probes,
                        real_runs=real_runs, noise_seconds=noise_seconds, anchor_seconds=anchor_seconds,
                        prediction_draws=prediction_draws)  # fmt: skip
    with _StepListener() as listener:
        result = validate_scenario(scenario, out, settings, reprofile, listener, _command_line(ctx.command, ctx.params))
    _print_validation(result, settings)


@app.command()
@_user_errors
def trust(
    folder: Annotated[Path, typer.Argument(help="A folder of simqos validate outputs (searched at any depth).")],
    out: Annotated[Path | None, typer.Option(help="Folder for the figure and tables (default: FOLDER/trust).")] = None,
) -> None:
    """How far the simulator held on this machine: every real run of every validation in a
    folder against its out-of-sample prediction, in one figure and a table."""
    from simqos.validate.trust import trust_validations

    result = trust_validations(folder, out)
    table = Table(title=f"{folder}: real runs against their out-of-sample predictions")
    for col in ("scenario", "policy", "runs", "p50 and p99 pass", "miss inside", "pass", "p99 half-width, median"):
        table.add_column(col, justify="left" if col in ("scenario", "policy") else "right")
    for row in result.summary.itertuples(index=False):
        table.add_row(row.scenario, row.policy, str(row.runs), f"{row.percentiles_pass:.0%}", f"{row.miss_inside:.0%}",
                      f"{row.passed:.0%}", f"{row.median_p99_half_width:.0%}")  # fmt: skip
    console.print(table)
    console.print(f"Results: {result.folder}/ (trust.png, runs.csv, summary.csv)")


_VALIDATE_OPTIONS = {"seconds": "--seconds", "sim_replications": "--sim-replications", "probes": "--probes",
                     "real_runs": "--real-runs", "noise_seconds": "--noise-seconds", "anchor_seconds": "--anchor-seconds",
                     "prediction_draws": "--prediction-draws"}


class _StepListener:
    """What ``simqos validate`` shows as it goes (the calls :func:`simqos.api.validate_scenario`
    makes of a :class:`simqos.api.Listener`): notes and stages as plain lines, and a progress bar only while profiling or training. A live bar's
    refresh thread would take the interpreter lock from the requests being timed, so it is
    closed before the next stage."""

    def __init__(self) -> None:
        self.bar, self.task = None, None

    def __enter__(self) -> _StepListener:
        return self

    def __exit__(self, *_exc) -> None:
        self._close()

    def _close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = self.task = None

    def warning(self, text: str) -> None:
        typer.echo(f"warning: {text}", err=True)

    def note(self, text: str) -> None:
        self._close()
        console.print(text)

    def stage(self, description: str, total: float | None = None) -> None:
        self._close()
        console.print(f"validate: {description}")

    def progress(self, what: str, done: int, total: int | None) -> None:
        if self.bar is None:
            self.bar = _progress().__enter__()
            self.task = self.bar.add_task(what, total=total)
        self.bar.update(self.task, description=what, completed=done, total=total)


def _print_validation(result, settings) -> None:
    """Each real run against its out-of-sample prediction, the in-sample verdicts, the notes,
    and where the files are."""
    table = Table(title=f"{result.scenario.name}: each real run vs its prediction out of sample "
                        f"({settings.seconds:g} s of arrivals per run; [95 % predictive interval])")
    for col in ("policy", "run", "p50 ms real / predicted", "p99 ms real / predicted", "miss % real / predicted", "verdict"):
        table.add_column(col, justify="left" if col == "policy" else "right")
    for row in result.prediction.itertuples(index=False):
        table.add_row(
            row.policy, str(row.run + 1),
            *[f"{getattr(row, f'real_{p}_ms'):.3f} / {getattr(row, f'pred_{p}_ms'):.3f} [{getattr(row, f'{p}_low'):.3f}, "
              f"{getattr(row, f'{p}_high'):.3f}]" for p in ("p50", "p99")],
            f"{100 * row.real_miss_rate:.2f} / {100 * row.pred_miss_rate:.2f} [{100 * row.miss_low:.2f}, {100 * row.miss_high:.2f}]",
            row.verdict,
        )
    console.print(table)
    passed = int((result.prediction["verdict"] == "pass").sum())
    console.print(f"Out of sample: {passed} of {len(result.prediction)} real runs pass; in sample (a diagnostic: each run simulated "
                  "at its own served speeds): " + ", ".join(f"{r.policy} {r.in_sample_verdict}" for r in result.comparison.itertuples()))
    for note in result.notes:
        console.print(f"note: {note}")
    console.print(f"Results: {result.folder}/ (report.md, prediction.csv, comparison.csv, calibration.csv, slicing.csv, noise.yaml, "
                  "calibrated-profile/, schedule.csv, plots/validation_ccdf.png)")


@app.command()
@_user_errors
def report(folder: Annotated[Path, typer.Argument(help="A results folder written by simqos run (or simqos sweep).")]) -> None:
    """Write the figures the results support and a markdown summary into the results folder."""
    from simqos.outputs import owned
    from simqos.report import write_report

    if owned(folder) not in ("results", "sweep"):
        raise SimqosError(f"{folder}: not a results or sweep folder written by simqos; give one made by simqos run or simqos sweep")
    with _progress() as bar:
        task = bar.add_task("report", total=None)
        names = write_report(folder, progress=lambda what: bar.update(task, description=f"report: {what}"))
    console.print(f"Wrote {folder}/report.md and plots/: {', '.join(names)}")


def _fmt_nines(row) -> str:
    """``2.33 [2.28, 2.39]``; with zero misses only a lower bound, ``>= 3.10``."""
    low = f"{row['nines_low']:.2f}"
    if pd.isna(row["nines"]):
        return f">= {low}"
    high = "inf" if pd.isna(row["nines_high"]) else f"{row['nines_high']:.2f}"
    return f"{row['nines']:.2f} [{low}, {high}]"


def _print_run_summary(spec, summary) -> None:
    n = int(summary["requests"].iloc[0])
    table = Table(title=f"{spec.name}: {n} requests per policy after warm-up ({spec.replications} replication{'s' if spec.replications != 1 else ''})")
    for col in ("policy", "nines [95% CI]", "miss %", "p50 ms", "p99 ms", "p99.9 ms", "accuracy", "at deadline", "switched", "reroutes"):
        table.add_column(col, justify="left" if col == "policy" else "right", no_wrap=col in ("policy", "nines [95% CI]"))
    for _, row in summary.iterrows():
        table.add_row(
            row["policy"],
            _fmt_nines(row),
            f"{100 * row['miss_rate']:.3f}",
            f"{row['p50_ms']:.2f}",
            f"{row['p99_ms']:.2f}",
            f"{row['p99.9_ms']:.2f}",
            "n/a" if pd.isna(row["mean_accuracy"]) else f"{row['mean_accuracy']:.2%}",
            "n/a" if pd.isna(row["accuracy_at_deadline"]) else f"{row['accuracy_at_deadline']:.2%}",
            "n/a" if pd.isna(row["rerouted_share"]) else f"{row['rerouted_share']:.1%}",
            f"{row['reroutes_per_request']:.3f}",
        )
    console.print(table)
    console.print("miss: finished late or dropped; accuracy: of served requests; at deadline: a miss counts as wrong; "
                  "switched: served requests whose level changes after the first segment; reroutes: level changes per request.")
    charged = summary[summary["decision_ms"] > 0] if "decision_ms" in summary else summary.iloc[:0]
    if len(charged):
        measured = {summary["policy"].iloc[i] for i, p in enumerate(spec.policies) if p.decision_ms == "measured"}
        console.print("decisions charged (device ms each, at a request's start and each reroute point): "
                      + ", ".join(f"{row.policy} {row.decision_ms:.4f}" + ("*" if row.policy in measured else "")
                                  for row in charged.itertuples())
                      + ("; * measured on this machine: the records depend on it" if measured else ""))
    if "engine" in summary:
        engines = summary.groupby("engine", sort=False)["policy"].apply(list)
        console.print("engine: " + ("; ".join(f"{e}: {', '.join(p)}" for e, p in engines.items()) if len(engines) > 1
                                    else f"{engines.index[0]}, every policy") + " (compiled: the numba fast path; simpy: the reference engine)")


def main() -> None:
    """Entry point of the ``simqos`` console script and ``python -m simqos``: a mistake on the
    command line (an unknown option, a value that is not a number) is one line and status 2,
    like every other user's mistake. The current folder is on the import path either way, so a
    model factory or a plugin there imports (``python -m`` puts it there; a console script does not)."""
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        status = app(standalone_mode=False)  # a command's typer.Exit comes back as its status
    except _USAGE_ERRORS as exc:
        command = f"{exc.ctx.info_name} " if exc.ctx is not None and exc.ctx.parent is not None else ""
        typer.echo(f"error: {exc.format_message()} (see simqos {command}--help)", err=True)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    sys.exit(status if isinstance(status, int) else 0)


def _usage_error_types() -> tuple[type[Exception], ...]:
    """Click's UsageError, and the copy of Click that recent Typer versions carry inside."""
    try:
        from typer._click.exceptions import UsageError as Vendored
    except ImportError:
        return (click.UsageError,)
    return (click.UsageError, Vendored)


_USAGE_ERRORS = _usage_error_types()
