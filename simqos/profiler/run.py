"""Profile a nested network into a bundle, resumably.

Three passes of measurement on torch, then one on the nested runtime. First, per layer and level,
every candidate kernel is timed alone (:func:`simqos.profiler.measure.profile_layer_level`).
Then the contenders are compared inside the model and each layer keeps the fastest there
(:func:`_choose_in_model`). Then the whole model runs at every level with the chosen kernels
(and densely, the baseline), the levels taking turns in blocks, and every layer call inside is
timed (:func:`simqos.profiler.measure.time_in_model`). Last, where the model lowers to the
nested runtime (:mod:`simqos.kernels.runtime`: a route as one compiled call over the nested kernels),
the same passes run there (:func:`simqos.profiler.measure.time_compiled`). The runtime whose
levels are faster in all is the *deployed* one: its in-model samples, one call each, are the
latency distribution the bundle ships (a layer timed alone and repeated keeps its weights in
cache and looks faster than it is inside the model), and the provenance records it with both
runtimes' medians (:class:`simqos.bundle.Deployment`). The dense baseline is always torch's
dense kernels.

Work happens in ``OUT.partial/``: the settings, then one JSON file per finished layer (all its
levels) and one for the in-model timing of every level. An interrupted run keeps those files; running the same
command again skips them (other settings start afresh). Only when everything is measured is the
bundle written, read back through :func:`simqos.bundle.load_profile` (so a shipped bundle has
always passed validation) and moved to ``OUT`` in one rename: a folder named ``OUT`` is always
complete.
"""

from __future__ import annotations

import json
import platform
import shutil
import sys
from collections.abc import Callable
from dataclasses import asdict, replace
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import torch

import simqos
from simqos.errors import SimqosError
from simqos.models.spec import ModelSpec
from simqos.nested.network import NestedNetwork, format_route
from simqos.nested.scoring import Accuracy
from simqos.nested.training import EpochCallback
from simqos.outputs import check_writable, claim, mark, partial, swap_in
from simqos.bundle import (
    DENSE_BASELINE_LEVEL,
    SCHEMA_VERSION,
    AccuracyInfo,
    Deployment,
    LayerInfo,
    LevelInfo,
    NetworkRecipe,
    Profile,
    ProfileMeta,
    ProfileSettings,
    Provenance,
    Quietness,
    SplitAccuracy,
    load_profile,
    save_profile,
)
from simqos.profiler.measure import (
    InModelTiming,
    KernelTrial,
    LayerLevelResult,
    TimerOptions,
    capture_layer_calls,
    profile_layer_level,
    tensors_in,
    time_after_idle,
    time_compiled,
    time_compiled_alone,
    time_in_model,
    torch_pass,
)
from simqos.kernels.runtime import RUNTIME, CompiledNetwork, Unsupported, compile_network
from simqos.profiler.anchors import Anchor, anchors, time_alongside
from simqos.profiler.passes import Stall, load_average
from simqos.profiler.recipe import BuiltNetwork, RouteReport, build_network, route_report
from simqos.profiler.timer import Measurement

__all__ = ["check_device", "check_output", "cpu_name", "profile_input", "profile_model", "run_profile"]

Progress = Callable[[str, int, int], None]
"""Called with (what was just finished, units done, units in all)."""


def check_device(device: str) -> None:
    """Raise SimqosError unless ``device`` is ``cpu``, or ``cuda`` with a CUDA device present."""
    if device not in ("cpu", "cuda"):
        raise SimqosError(f"--device: {device!r} is not cpu or cuda")
    if device == "cuda" and not torch.cuda.is_available():
        raise SimqosError(
            "--device cuda: no CUDA device is available here (torch.cuda.is_available() is False); use --device cpu"
        )


def cpu_name() -> str:
    """The CPU model as the kernel reports it, else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def check_output(out: Path, overwrite: bool) -> None:
    """Refuse, before any work, an ``out`` that exists (without ``overwrite``), that is not
    simqos's own profile bundle, or that cannot be written; creates nothing."""
    if out.exists() and not out.is_symlink() and not overwrite:
        raise SimqosError(f"{out}: already exists; pass --overwrite to replace it, or choose another --out")
    claim(out, "profile")
    claim(partial(out), "profile")
    check_writable(out)


def prepare_output(out: Path, overwrite: bool) -> Path:
    """:func:`check_output`, then the marked work folder ``OUT.partial`` (kept from an
    interrupted run, so that the same command resumes; see :mod:`simqos.outputs`)."""
    check_output(out, overwrite)
    work = partial(out)
    try:
        work.mkdir(parents=True, exist_ok=True)
        mark(work, "profile")
    except OSError as exc:
        raise SimqosError(f"{out}: cannot write there ({exc.strerror}); choose a writable --out") from None
    return work


def _write_json(path: Path, data: object) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)


def _measurement_to_dict(m: Measurement) -> dict:
    return asdict(m) | {"samples_ms": list(m.samples_ms)}


def _measurement_from_dict(d: dict) -> Measurement:
    return Measurement(**{**d, "samples_ms": tuple(d["samples_ms"])})


def _timings_to_dict(timings: dict[int, InModelTiming]) -> dict:
    return {str(level): {"end_to_end": _measurement_to_dict(t.end_to_end),
                         "layers": {k: _measurement_to_dict(m) for k, m in t.layers.items()},
                         "stalls": [asdict(s) for s in t.stalls]}
            for level, t in timings.items()}


def _timings_from_dict(saved: dict) -> dict[int, InModelTiming]:
    return {int(level): InModelTiming(end_to_end=_measurement_from_dict(v["end_to_end"]),
                                      layers={k: _measurement_from_dict(m) for k, m in v["layers"].items()},
                                      stalls=tuple(Stall(**s) for s in v["stalls"]))
            for level, v in saved.items()}


def _result_to_dict(r: LayerLevelResult) -> dict:
    return asdict(r) | {"measurement": _measurement_to_dict(r.measurement)}


def _result_from_dict(d: dict) -> LayerLevelResult:
    return LayerLevelResult(
        **{
            **d,
            "measurement": _measurement_from_dict(d["measurement"]),
            "trials": [KernelTrial(**t) for t in d["trials"]],
        }
    )


def profile_input(spec: ModelSpec, batch_size: int, device: str) -> torch.Tensor:
    """The input the profile times: the first test samples, else copies of the example input."""
    if spec.batch_dim is None:
        if batch_size != 1:
            raise SimqosError(f"model {spec.name!r}: its input has no batch dimension; use --batch-size 1")
        return spec.example_input.to(device)
    if spec.dataset is not None:
        x = spec.dataset.x_test[:batch_size]
    else:
        x = spec.example_input[:1].expand(batch_size, *spec.example_input.shape[1:]).clone()
    return x.to(device)


def profile_model(
    recipe: NetworkRecipe,
    settings: ProfileSettings,
    out: Path,
    overwrite: bool = False,
    command: str = "",
    on_epoch: EpochCallback | None = None,
    progress: Progress | None = None,
    retrain: bool = False,
) -> tuple[Profile, list[str]]:
    """Build the recipe's network (training it if it is not cached, or with ``retrain``) and
    profile it into ``out`` (:func:`run_profile`); ``out`` is checked before any training."""
    check_device(settings.device)
    check_output(out, overwrite)
    built = build_network(recipe, retrain, on_epoch=on_epoch)
    routes = None if built.spec.dataset is None else route_report(built)
    profile, warnings = run_profile(built, routes, recipe, settings, out, overwrite, command, progress)
    if built.cached:
        warnings = [f"the network is the cached checkpoint {built.checkpoint}, trained earlier from the same model code, "
                    "data and settings; --retrain trains it again", *warnings]
    return profile, warnings


def _resumable(path: Path, measure: Callable[[], object], dump: Callable, load: Callable) -> object:
    """``load`` of what ``path`` holds from an interrupted run of the same settings, else
    ``measure()``, written there (as ``dump`` of it) before it is returned."""
    if path.exists():
        return load(json.loads(path.read_text()))
    value = measure()
    _write_json(path, dump(value))
    return value


def run_profile(
    built: BuiltNetwork,
    routes: RouteReport | None,
    recipe: NetworkRecipe,
    settings: ProfileSettings,
    out: Path,
    overwrite: bool = False,
    command: str = "",
    progress: Progress | None = None,
) -> tuple[Profile, list[str]]:
    """Measure every layer x level and every level end to end; write the bundle and return it
    with the warnings about noisy measurements.

    ``routes`` is ``None`` when no dataset exists for the model: the bundle then says accuracy
    is unavailable.
    """
    net, spec = built.net, built.spec
    work = prepare_output(out, overwrite)
    settings_file = work / "settings.json"
    wanted = json.loads(json.dumps({"recipe": recipe.model_dump(mode="json"), "settings": settings.model_dump(mode="json")}))
    if settings_file.exists() and json.loads(settings_file.read_text()) != wanted:
        shutil.rmtree(work)
        work = prepare_output(out, overwrite)
    _write_json(settings_file, wanted)

    timer = TimerOptions(
        n_samples=settings.n_samples,
        min_sample_s=settings.min_sample_ms / 1e3,
        warmup_s=settings.warmup_ms / 1e3,
        threads=settings.threads,
        device=settings.device,
    )
    net.module.to(settings.device)
    net.ranks = {k: v.to(settings.device) for k, v in net.ranks.items()}
    x = profile_input(spec, settings.batch_size, settings.device)
    calls = capture_layer_calls(net, x)
    total = len(net.layers) + 3 + (net.n_levels if settings.idle_samples else 0)
    done = 0

    now = ""

    def timing(what: str) -> None:  # said while the task is measured, not after: a finished line would repeat for minutes
        nonlocal now
        now = f"timing {what}"
        if progress:
            progress(now, done, total)

    def finished() -> None:
        nonlocal done
        done += 1
        if progress:
            progress(now if done < total else "timed every part; writing the bundle", done, total)

    load_before = load_average()
    results: list[LayerLevelResult] = []
    for i, layer in enumerate(net.layers):
        timing(f"{layer.name}, every level alone")
        results += _resumable(
            work / f"layer-{i:03d}.json",
            lambda: [profile_layer_level(net, layer, level, calls[layer.name], list(settings.kernels), timer) for level in range(net.n_levels)],
            lambda rs: [_result_to_dict(r) for r in rs],
            lambda saved: [_result_from_dict(d) for d in saved],
        )
        finished()
    timing("the layers' kernels in the model")
    results = _choose_in_model(net, results, x, timer, settings, work)
    kernel_by = {(r.layer, r.level): r.kernel for r in results}
    # The baseline runs level 0's weights with dense kernels: dense kernels cost the same
    # whatever the values, so this is the unpruned model's latency.
    setups = {
        level: (max(level, 0), {ly.name: "dense" if level == DENSE_BASELINE_LEVEL else kernel_by[(ly.name, level)] for ly in net.layers})
        for level in [DENSE_BASELINE_LEVEL, *range(net.n_levels)]
    }
    timing("in model, every level")
    in_model = _resumable(
        work / "in-model.json",
        lambda: time_in_model(net, setups, x, timer, settings.in_model_passes, "in model"),
        _timings_to_dict,
        _timings_from_dict,
    )
    finished()
    timing("lowering to the nested runtime")
    compiled, runtime_note = _lower(net, x, settings)
    medians = {EAGER: [in_model[k].end_to_end.median_ms for k in range(net.n_levels)]}
    if compiled is not None:
        levels = list(range(net.n_levels))
        timing("nested runtime, every level")
        timed = _resumable(
            work / "runtime.json",
            lambda: (time_compiled(compiled, levels, x, timer, settings.in_model_passes, RUNTIME),
                     {k: time_compiled_alone(compiled, k, x, timer) for k in levels}),
            lambda t: {"in_model": _timings_to_dict(t[0]),
                       "alone": {str(k): {n: _measurement_to_dict(m) for n, m in v.items()} for k, v in t[1].items()}},
            lambda saved: (_timings_from_dict(saved["in_model"]),
                           {int(k): {n: _measurement_from_dict(m) for n, m in v.items()} for k, v in saved["alone"].items()}),
        )
        finished()
        medians[RUNTIME] = [timed[0][k].end_to_end.median_ms for k in levels]
    runtime = min(medians, key=lambda name: sum(medians[name]))
    timing("anchors, every level")
    built_anchors, anchor_notes = anchors(net, x, settings.threads) if settings.device == "cpu" else ([], [])
    anchor_ms: dict[str, list[float]] = {}
    if built_anchors:
        if runtime == RUNTIME:
            xn = x.detach().cpu().numpy()
            deployed_runs = [lambda route=(k,) * net.n_segments: compiled.run(xn, route) for k in range(net.n_levels)]
        else:
            deployed_runs = [torch_pass(net, k, {ly.name: kernel_by[(ly.name, k)] for ly in net.layers}, x, timer) for k in range(net.n_levels)]
        anchor_ms = _resumable(work / "anchors.json",
                               lambda: time_alongside(built_anchors, Anchor(runtime, deployed_runs), settings.in_model_passes, timer.warmup_s),
                               lambda m: m, lambda m: m)
    finished()
    if runtime == RUNTIME:
        in_model = {DENSE_BASELINE_LEVEL: in_model[DENSE_BASELINE_LEVEL], **timed[0]}
        results = [_on_runtime(r, timed[0][r.level].layers[r.layer], timed[1][r.level][r.layer], compiled.layer_bytes[r.layer])
                   for r in results]
    idle: dict[int, dict[float, tuple[float, ...]]] = {}
    for level in range(net.n_levels) if settings.idle_samples else ():
        if runtime == RUNTIME:
            xn = x.detach().cpu().numpy()
            run = lambda route=(level,) * net.n_segments: compiled.run(xn, route)  # noqa: E731
        else:
            run = torch_pass(net, level, {ly.name: kernel_by[(ly.name, level)] for ly in net.layers}, x, timer)
        timing(f"after idle gaps, level {level}")
        idle[level] = _resumable(
            work / f"idle-{level}.json",
            lambda: time_after_idle(run, timer, settings.idle_gaps_ms, settings.idle_samples),
            lambda by_gap: {str(g): list(v) for g, v in by_gap.items()},
            lambda saved: {float(g): tuple(v) for g, v in saved.items()},
        )
        finished()
    # in-model samples are single calls: their spread is data, not noise; their stalls are not
    stalls = [st for t in in_model.values() for st in t.stalls]
    warnings = [w for r in results for w in r.measurement.warnings] + [st.text() for st in stalls]
    quietness = Quietness(load_average_before=load_before, load_average_after=load_average(),
                          passes=len(in_model) * settings.in_model_passes, stalled_passes=len({(st.setup, st.pass_index) for st in stalls if not st.kept}),
                          kept_stalls=sum(st.kept for st in stalls), stalls=[st.text() for st in stalls[:MAX_STALLS_LISTED]])

    deployment = Deployment(runtime=runtime, medians_ms=medians, note=runtime_note, anchors_ms=anchor_ms, anchor_note="; ".join(anchor_notes))
    profile = _assemble(built, routes, recipe, settings, results, in_model, idle, calls, x, command, deployment, quietness)
    staging = work / "bundle"
    if staging.exists():
        shutil.rmtree(staging)
    save_profile(profile, staging)
    mark(staging, "profile")
    profile = load_profile(staging)
    swap_in(staging, out)
    shutil.rmtree(work)
    return profile, warnings


MAX_STALLS_LISTED = 20
"""Stalls the provenance lists one by one (all are counted)."""

EAGER = "torch-eager"
"""The runtime name of torch's eager execution, each layer on its chosen kernel."""


def _lower(net: NestedNetwork, x: torch.Tensor, settings: ProfileSettings) -> tuple[CompiledNetwork | None, str]:
    """The network on the nested runtime, or None and why it cannot run there."""
    if settings.device != "cpu":
        return None, f"{RUNTIME} runs on the CPU, not {settings.device}"
    try:
        return compile_network(net, x), ""
    except Unsupported as exc:
        return None, f"{RUNTIME} cannot run this model: {exc}"


def _on_runtime(r: LayerLevelResult, inside: Measurement, alone: Measurement, nbytes: int) -> LayerLevelResult:
    """A layer x level's result with the nested runtime as its kernel: timed alone and inside
    the model there; the torch kernels stay in its trials, as candidates not deployed."""
    trials = [replace(t, status="exact" if t.status == "chosen" else t.status) for t in r.trials]
    trials.append(KernelTrial(RUNTIME, "chosen", alone.median_ms, nbytes, inside.median_ms))
    return replace(r, kernel=RUNTIME, kernel_weight_bytes=nbytes, measurement=alone, trials=trials)


CONTENDER_FACTOR = 3.0
"""A kernel is compared inside the model only if, alone, it was within this factor of the best."""


def _choose_in_model(
    net: NestedNetwork,
    results: list[LayerLevelResult],
    x: torch.Tensor,
    timer: TimerOptions,
    settings: ProfileSettings,
    work: Path,
) -> list[LayerLevelResult]:
    """Re-choose each layer's kernel by its time *inside* the model.

    Alone, a layer's weights stay in cache from one call to the next, which flatters kernels
    that read many bytes (dense above all). So, per level, every contending kernel (exact, and
    within CONTENDER_FACTOR of the best alone) gets ``settings.choice_passes`` whole-model
    passes in which every layer it can run uses it (the others their best alone) — the
    contenders taking turns pass by pass — and each layer keeps the kernel with the lowest
    median inside the model.
    """
    by_key = {(r.layer, r.level): r for r in results}
    chosen: list[LayerLevelResult] = []
    for level in range(net.n_levels):
        contenders: dict[str, list[str]] = {}
        for layer in net.layers:
            r = by_key[(layer.name, level)]
            timed = [t for t in r.trials if t.median_ms is not None]
            best = min(t.median_ms for t in timed)
            contenders[layer.name] = sorted(t.kernel for t in timed if t.median_ms <= CONTENDER_FACTOR * best)
        medians = _resumable(
            work / f"choice-{level}.json",
            lambda: _in_model_medians(net, level, contenders, by_key, x, timer, settings.choice_passes),
            lambda m: m,
            lambda m: m,
        )
        for layer in net.layers:
            r = by_key[(layer.name, level)]
            inside = medians[layer.name]
            final = min(inside, key=inside.get) if inside else r.kernel
            trials = [
                replace(
                    t,
                    status="chosen" if t.kernel == final else ("exact" if t.status == "chosen" else t.status),
                    in_model_median_ms=inside.get(t.kernel),
                )
                for t in r.trials
            ]
            final_trial = next(t for t in trials if t.kernel == final)
            chosen.append(replace(r, kernel=final, kernel_weight_bytes=final_trial.resident_bytes, trials=trials))
    order = {(layer.name, k): i for i, (layer, k) in enumerate((ly, k) for ly in net.layers for k in range(net.n_levels))}
    return sorted(chosen, key=lambda r: order[(r.layer, r.level)])


def _in_model_medians(
    net: NestedNetwork,
    level: int,
    contenders: dict[str, list[str]],
    by_key: dict[tuple[str, int], LayerLevelResult],
    x: torch.Tensor,
    timer: TimerOptions,
    passes: int,
) -> dict[str, dict[str, float]]:
    """Per layer, the median inside the model of each of its contending kernels at ``level``
    (none where a layer has a single contender anywhere: nothing to choose)."""
    medians: dict[str, dict[str, float]] = {layer: {} for layer in contenders}
    if not any(len(ks) > 1 for ks in contenders.values()):
        return medians
    names = sorted({k for ks in contenders.values() for k in ks})
    setups = {
        name: (level, {ly: name if name in ks else by_key[(ly, level)].kernel for ly, ks in contenders.items()})
        for name in names
    }
    timings = time_in_model(net, setups, x, timer, passes, f"choice@{level}")
    for name in names:
        for ly, ks in contenders.items():
            if name in ks:
                medians[ly][name] = timings[name].layers[ly].median_ms
    return medians


def split_accuracy(a: Accuracy) -> SplitAccuracy:
    """A measured :class:`~simqos.nested.scoring.Accuracy` as the bundle stores it."""
    low, high = a.interval
    return SplitAccuracy(split=a.split, correct=a.correct, n=a.n, accuracy=a.accuracy, ci_low=low, ci_high=high)


def _assemble(
    built: BuiltNetwork,
    routes: RouteReport | None,
    recipe: NetworkRecipe,
    settings: ProfileSettings,
    results: list[LayerLevelResult],
    in_model: dict[int, InModelTiming],
    idle: dict[int, dict[float, tuple[float, ...]]],
    calls: dict,
    x: torch.Tensor,
    command: str,
    deployment: Deployment,
    quietness: Quietness,
) -> Profile:
    """The bundle of the measurements: its ``profile.json`` and its tables."""
    net = built.net
    meta = ProfileMeta(
        schema_version=SCHEMA_VERSION,
        model=built.spec.name,
        description=built.spec.description,
        input_shape=list(x.shape),
        levels=[
            LevelInfo(index=k, name=f"L{k} ({d:.1%} kept)", density=d, kept_fraction=net.kept_fraction(k))
            for k, d in enumerate(net.densities)
        ],
        layers=_layers_info(net, calls),
        reroute_after=[a.name for a, b in zip(net.layers, net.layers[1:]) if b.segment != a.segment],
        accuracy=_accuracy_info(net, routes, recipe),
        provenance=_provenance(built, recipe, settings, command, deployment, quietness),
    )
    return Profile(
        meta=meta,
        layers=pd.DataFrame([
            {
                "layer": r.layer,
                "level": r.level,
                "kernel": r.kernel,
                "nnz": r.nnz,
                "density": r.nnz / r.n_weights,
                "flops": r.flops,
                "weight_bytes": r.weight_bytes,
                "kernel_weight_bytes": r.kernel_weight_bytes,
                "activation_bytes": r.activation_bytes,
                "latency_median_ms": in_model[r.level].layers[r.layer].median_ms,
                "latency_iqr_ms": in_model[r.level].layers[r.layer].iqr_ms,
                "isolated_median_ms": r.measurement.median_ms,
                "isolated_calls_per_sample": r.measurement.calls_per_sample,
            }
            for r in results
        ]),
        latency_samples=pd.DataFrame([
            {"layer": r.layer, "level": r.level, "sample": i, "latency_ms": s}
            for r in results
            for i, s in enumerate(in_model[r.level].layers[r.layer].samples_ms)
        ]),
        kernels=pd.DataFrame([
            {"layer": r.layer, "level": r.level, "kernel": t.kernel, "median_ms": t.median_ms,
             "in_model_median_ms": t.in_model_median_ms, "status": t.status}
            for r in results
            for t in r.trials
        ]),
        end_to_end=pd.DataFrame([
            {"level": level, "sample": i, "latency_ms": s}
            for level, t in in_model.items()
            for i, s in enumerate(t.end_to_end.samples_ms)
        ]),
        routes=None if routes is None else pd.DataFrame(
            [{"route": format_route(a.route), **split_accuracy(a).model_dump()} for a in routes.accuracies]
        ),
        idle=pd.DataFrame([
            {"level": level, "idle_ms": gap, "sample": i, "latency_ms": t}
            for level, by_gap in idle.items()
            for gap, times in by_gap.items()
            for i, t in enumerate(times)
        ]) if idle else None,
        outcomes=None if routes is None else routes.test_outcomes,
    )


def _layers_info(net: NestedNetwork, calls: dict) -> list[LayerInfo]:
    """Each layer's kind, segment, weight count and the shapes it was called with."""
    params = dict(net.module.named_parameters())
    return [
        LayerInfo(
            name=layer.name,
            kind=layer.kind,
            segment=layer.segment,
            n_weights=sum(params[w].numel() for w in layer.weights),
            weight_shapes=[list(params[w].shape) for w in layer.weights],
            input_shapes=[list(t.shape) for t in tensors_in((calls[layer.name].args, calls[layer.name].kwargs))],
            output_shapes=[list(t.shape) for t in tensors_in(calls[layer.name].output)],
        )
        for layer in net.layers
    ]


def _accuracy_info(net: NestedNetwork, routes: RouteReport | None, recipe: NetworkRecipe) -> AccuracyInfo:
    """Where the routes' accuracy comes from, or why there is none."""
    if routes is None:
        return AccuracyInfo(
            available=False,
            scope=net.pruning.scope,
            keep_dense=list(net.keep_dense),
            note="no dataset ships for this model; accuracy is unavailable, never invented",
        )
    return AccuracyInfo(
        available=True,
        source="measured",
        dataset=routes.dataset,
        metric=routes.metric,
        unit=routes.unit,
        growth=recipe.training.growth,
        scope=net.pruning.scope,
        keep_dense=list(net.keep_dense),
        routes_complete=routes.complete,
        dense=[split_accuracy(a) for a in routes.dense],
        note="per route and split; ci_low/ci_high: 95 % Wilson interval on the effective sample size"
        + ("" if routes.complete else "; only monotone routes (less sparse to sparser) are listed"),
    )


def _provenance(built: BuiltNetwork, recipe: NetworkRecipe, settings: ProfileSettings, command: str, deployment: Deployment,
                quietness: Quietness) -> Provenance:
    """This machine, the versions, what made the bundle, and how long training took."""
    net = built.net
    first_weight = dict(net.module.named_parameters())[net.layers[0].weights[0]]
    return Provenance(
        cpu=cpu_name(),
        gpu=torch.cuda.get_device_name() if settings.device == "cuda" else None,
        torch_version=torch.__version__,
        simqos_version=simqos.__version__,
        python_version=sys.version.split()[0],
        dtype=str(first_weight.dtype).removeprefix("torch."),
        created_utc=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        command=command,
        settings=settings,
        recipe=recipe,
        training_s=built.training_s,
        training_threads=built.training_threads,
        deployment=deployment,
        quietness=quietness,
    )
