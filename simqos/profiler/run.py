"""Profile a nested network into a bundle, resumably.

Three passes of measurement. First, per layer and level, every candidate kernel is timed alone
(:func:`simqos.profiler.measure.profile_layer_level`). Then the contenders are compared inside
the model and each layer keeps the fastest there (:func:`_choose_in_model`). Finally the whole
model runs at every level with the chosen kernels (and densely, the baseline), the levels
taking turns pass by pass, and every layer call inside is timed
(:func:`simqos.profiler.measure.time_in_model`): those in-model samples, one call each, are the
latency distribution the bundle ships, because a layer timed alone and repeated keeps its
weights in cache and looks faster than it is inside the model.

Work happens in ``OUT.partial/``: the settings, then one JSON file per finished layer (all its
levels) and one for the in-model timing of every level. An interrupted run keeps those files; running the same
command again skips them (other settings start afresh). Only when everything is measured is the
bundle written, read back through :func:`simqos.profile.load_profile` (so a shipped bundle has
always passed validation) and moved to ``OUT`` in one rename: a folder named ``OUT`` is always
complete.
"""

from __future__ import annotations

import json
import platform
import shutil
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import torch

import simqos
from simqos.errors import SimqosError
from simqos.models.spec import ModelSpec
from simqos.nested.network import NestedNetwork, format_route
from simqos.nested.routes import RouteAccuracy
from simqos.nested.scoring import Accuracy
from simqos.outputs import check_writable, claim, mark, partial, swap_in
from simqos.profile import (
    DENSE_BASELINE_LEVEL,
    SCHEMA_VERSION,
    AccuracyInfo,
    LayerInfo,
    LevelInfo,
    Profile,
    ProfileMeta,
    Provenance,
    SplitAccuracy,
    TimerSettings,
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
    time_in_model,
)
from simqos.profiler.timer import Measurement

__all__ = ["IDLE_GAPS_MS", "ProfileSettings", "RouteReport", "check_device", "check_output", "cpu_name", "profile_input", "run_profile"]

IDLE_GAPS_MS = (0.0, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0)
"""Idle gaps (ms) before a whole-model pass at which the bundle's ``idle.csv`` is timed."""

Progress = Callable[[str, int, int], None]
"""Called with (what was just finished, units done, units in all)."""


@dataclass(frozen=True)
class ProfileSettings:
    """What decides the measurements; a resumed run must have the same."""

    model: str
    model_kwargs: dict
    densities: tuple[float, ...]
    growth: str | None
    kernels: tuple[str, ...]
    batch_size: int = 1
    threads: int = 1
    device: str = "cpu"
    n_samples: int = 30
    min_sample_ms: float = 1.0
    warmup_ms: float = 50.0
    in_model_passes: int = 200
    choice_passes: int = 20
    idle_samples: int = 30
    idle_gaps_ms: tuple[float, ...] = IDLE_GAPS_MS


@dataclass(frozen=True)
class RouteReport:
    """Measured route accuracies on every held-out split, the dense model's, the dataset and
    metric they come from, and whether all routes are listed (else the monotone ones)."""

    accuracies: list[RouteAccuracy]
    dense: tuple[Accuracy, ...]
    dataset: str
    metric: str
    unit: str
    complete: bool


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


def run_profile(
    spec: ModelSpec,
    net: NestedNetwork,
    routes: RouteReport | None,
    settings: ProfileSettings,
    out: Path,
    overwrite: bool = False,
    command: str = "",
    progress: Progress | None = None,
    notes: list[str] | None = None,
) -> Profile:
    """Measure every layer x level and every level end to end; write and return the bundle.

    ``routes`` is ``None`` when no dataset exists for the model: the bundle then says accuracy
    is unavailable. Warnings about noisy measurements are appended to ``notes``.
    """
    work = prepare_output(out, overwrite)
    settings_file = work / "settings.json"
    wanted = json.loads(json.dumps(asdict(settings)))
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
    total = len(net.layers) * net.n_levels + (net.n_levels + 1) + (net.n_levels if settings.idle_samples else 0)
    done = 0
    results: list[LayerLevelResult] = []
    for i, layer in enumerate(net.layers):
        path = work / f"layer-{i:03d}.json"
        if path.exists():
            layer_results = [_result_from_dict(d) for d in json.loads(path.read_text())]
            done += len(layer_results)
        else:
            layer_results = []
            for level in range(net.n_levels):
                layer_results.append(
                    profile_layer_level(net, layer, level, calls[layer.name], list(settings.kernels), timer)
                )
                done += 1
                if progress:
                    progress(f"{layer.name} level {level}", done, total)
            _write_json(path, [_result_to_dict(r) for r in layer_results])
        results += layer_results
    results = _choose_in_model(net, results, x, timer, settings, work)
    kernel_by = {(r.layer, r.level): r.kernel for r in results}
    path = work / "in-model.json"
    if path.exists():
        saved = json.loads(path.read_text())
        in_model = {
            int(level): InModelTiming(
                end_to_end=_measurement_from_dict(v["end_to_end"]),
                layers={k: _measurement_from_dict(m) for k, m in v["layers"].items()},
            )
            for level, v in saved.items()
        }
    else:
        # The baseline runs level 0's weights with dense kernels: dense kernels cost the same
        # whatever the values, so this is the unpruned model's latency.
        setups = {
            level: (max(level, 0), {ly.name: "dense" if level == DENSE_BASELINE_LEVEL else kernel_by[(ly.name, level)] for ly in net.layers})
            for level in [DENSE_BASELINE_LEVEL, *range(net.n_levels)]
        }
        in_model = time_in_model(net, setups, x, timer, settings.in_model_passes, "in model")
        _write_json(path, {
            str(level): {"end_to_end": _measurement_to_dict(t.end_to_end), "layers": {k: _measurement_to_dict(m) for k, m in t.layers.items()}}
            for level, t in in_model.items()
        })
    done += net.n_levels + 1
    if progress:
        progress("in model, every level", done, total)
    idle: dict[int, dict[float, tuple[float, ...]]] = {}
    for level in range(net.n_levels) if settings.idle_samples else ():
        path = work / f"idle-{level}.json"
        if path.exists():
            idle[level] = {float(g): tuple(v) for g, v in json.loads(path.read_text()).items()}
        else:
            kernels = {ly.name: kernel_by[(ly.name, level)] for ly in net.layers}
            idle[level] = time_after_idle(net, level, kernels, x, timer, settings.idle_gaps_ms, settings.idle_samples)
            _write_json(path, {str(g): list(v) for g, v in idle[level].items()})
        done += 1
        if progress:
            progress(f"after idle gaps, level {level}", done, total)
    if notes is not None:  # in-model samples are single calls: their spread is data, not noise
        notes += [w for r in results for w in r.measurement.warnings]

    profile = _assemble(spec, net, routes, settings, results, in_model, idle, calls, x, command)
    staging = work / "bundle"
    if staging.exists():
        shutil.rmtree(staging)
    save_profile(profile, staging)
    mark(staging, "profile")
    profile = load_profile(staging)
    swap_in(staging, out)
    shutil.rmtree(work)
    return profile


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
        path = work / f"choice-{level}.json"
        if path.exists():
            medians = json.loads(path.read_text())
        else:
            medians = {layer: {} for layer in contenders}
            names = sorted({k for ks in contenders.values() for k in ks})
            if any(len(ks) > 1 for ks in contenders.values()):
                setups = {
                    name: (level, {ly: name if name in ks else by_key[(ly, level)].kernel for ly, ks in contenders.items()})
                    for name in names
                }
                timings = time_in_model(net, setups, x, timer, settings.choice_passes, f"choice@{level}")
                for name in names:
                    for ly, ks in contenders.items():
                        if name in ks:
                            medians[ly][name] = timings[name].layers[ly].median_ms
            _write_json(path, medians)
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


def split_accuracy(a: Accuracy) -> SplitAccuracy:
    """A measured :class:`~simqos.nested.scoring.Accuracy` as the bundle stores it."""
    low, high = a.interval
    return SplitAccuracy(split=a.split, correct=a.correct, n=a.n, accuracy=a.accuracy, ci_low=low, ci_high=high)


def _assemble(
    spec: ModelSpec,
    net: NestedNetwork,
    routes: RouteReport | None,
    settings: ProfileSettings,
    results: list[LayerLevelResult],
    in_model: dict[int, InModelTiming],
    idle: dict[int, dict[float, tuple[float, ...]]],
    calls: dict,
    x: torch.Tensor,
    command: str,
) -> Profile:
    params = dict(net.module.named_parameters())
    layers_meta = [
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
    boundaries = [a.name for a, b in zip(net.layers, net.layers[1:]) if b.segment != a.segment]
    if routes is None:
        accuracy = AccuracyInfo(
            available=False,
            scope=net.pruning.scope,
            keep_dense=list(net.keep_dense),
            note="no dataset ships for this model; accuracy is unavailable, never invented",
        )
    else:
        accuracy = AccuracyInfo(
            available=True,
            source="measured",
            dataset=routes.dataset,
            metric=routes.metric,
            unit=routes.unit,
            growth=settings.growth,
            scope=net.pruning.scope,
            keep_dense=list(net.keep_dense),
            routes_complete=routes.complete,
            dense=[split_accuracy(a) for a in routes.dense],
            note="per route and split; ci_low/ci_high: 95 % Wilson interval on the effective sample size"
            + ("" if routes.complete else "; only monotone routes (less sparse to sparser) are listed"),
        )
    gpu = torch.cuda.get_device_name() if settings.device == "cuda" else None
    meta = ProfileMeta(
        schema_version=SCHEMA_VERSION,
        model=spec.name,
        description=spec.description,
        input_shape=list(x.shape),
        levels=[
            LevelInfo(index=k, name=f"L{k} ({d:.1%} kept)", density=d, kept_fraction=net.kept_fraction(k))
            for k, d in enumerate(net.densities)
        ],
        layers=layers_meta,
        reroute_after=boundaries,
        accuracy=accuracy,
        provenance=Provenance(
            device=settings.device,
            cpu=cpu_name(),
            gpu=gpu,
            threads=settings.threads,
            torch_version=torch.__version__,
            simqos_version=simqos.__version__,
            python_version=sys.version.split()[0],
            dtype=str(params[net.layers[0].weights[0]].dtype).removeprefix("torch."),
            batch_size=settings.batch_size,
            created_utc=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            command=command,
            timer=TimerSettings(
                n_samples=settings.n_samples,
                min_sample_ms=settings.min_sample_ms,
                warmup_ms=settings.warmup_ms,
                in_model_passes=settings.in_model_passes,
            ),
        ),
    )
    layer_rows = [
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
    ]
    sample_rows = [
        {"layer": r.layer, "level": r.level, "sample": i, "latency_ms": s}
        for r in results
        for i, s in enumerate(in_model[r.level].layers[r.layer].samples_ms)
    ]
    kernel_rows = [
        {
            "layer": r.layer,
            "level": r.level,
            "kernel": t.kernel,
            "median_ms": t.median_ms,
            "in_model_median_ms": t.in_model_median_ms,
            "status": t.status,
        }
        for r in results
        for t in r.trials
    ]
    e2e_rows = [
        {"level": level, "sample": i, "latency_ms": s}
        for level, t in in_model.items()
        for i, s in enumerate(t.end_to_end.samples_ms)
    ]
    route_table = None
    if routes is not None:
        route_table = pd.DataFrame(
            [{"route": format_route(a.route), **split_accuracy(a).model_dump()} for a in routes.accuracies]
        )
    idle_rows = [
        {"level": level, "idle_ms": gap, "sample": i, "latency_ms": t}
        for level, by_gap in idle.items()
        for gap, times in by_gap.items()
        for i, t in enumerate(times)
    ]
    return Profile(
        meta=meta,
        layers=pd.DataFrame(layer_rows),
        latency_samples=pd.DataFrame(sample_rows),
        kernels=pd.DataFrame(kernel_rows),
        end_to_end=pd.DataFrame(e2e_rows),
        routes=route_table,
        idle=pd.DataFrame(idle_rows) if idle_rows else None,
    )
