"""Hand-written profile bundles for simulator tests (no torch, no measuring)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from simqos.sim.metrics import wilson_interval
from simqos.bundle import (
    DENSE_BASELINE_LEVEL,
    SCHEMA_VERSION,
    AccuracyInfo,
    LayerInfo,
    LevelInfo,
    Profile,
    ProfileMeta,
    ProfileSettings,
    Provenance,
    save_profile,
)


def write_bundle(
    folder: Path,
    samples_ms: dict[tuple[str, int], list[float]],
    segments: dict[str, int],
    level_bytes: list[int] | None = None,
    accuracy: dict[str, float] | None = None,
    end_to_end_ms: list[float] | None = None,
    idle_factor: dict[float, float] | None = None,
    validation_accuracy: dict[str, float] | None = None,
) -> Path:
    """A valid bundle whose layer x level latencies are exactly ``samples_ms``.

    ``segments`` maps layer name -> segment, in execution order. End-to-end samples default to
    the sum of layer medians, so the gap (and the simulator's glue) is zero.
    ``level_bytes`` are the resident bytes per level of the first layer (others hold 0).
    ``idle_factor`` maps idle gaps (ms, with 0) to the slowdown after them: an ``idle.csv``
    whose level 0 has exactly those ratios, and each sparser level k the ratios' excess over 1
    times (1 + k / 2).
    """
    names = list(segments)
    levels = sorted({k for _, k in samples_ms})
    density = [0.5 / (2**k) for k in levels]
    level_bytes = level_bytes or [1000 // (k + 1) for k in levels]
    layer_rows, sample_rows, kernel_rows = [], [], []
    for name in names:
        for k in levels:
            s = samples_ms[(name, k)]
            layer_rows.append({
                "layer": name, "level": k, "kernel": "dense", "nnz": 100 // (k + 1), "density": density[k],
                "flops": 200 // (k + 1), "weight_bytes": level_bytes[k] if name == names[0] else 0,
                "kernel_weight_bytes": 400, "activation_bytes": 8,
                "latency_median_ms": float(pd.Series(s).median()), "latency_iqr_ms": 0.0,
                "isolated_median_ms": float(pd.Series(s).median()), "isolated_calls_per_sample": 1,
            })
            sample_rows += [{"layer": name, "level": k, "sample": i, "latency_ms": v} for i, v in enumerate(s)]
            kernel_rows.append(
                {"layer": name, "level": k, "kernel": "dense", "median_ms": s[0], "in_model_median_ms": s[0], "status": "chosen"}
            )
    e2e = end_to_end_ms or [sum(float(pd.Series(samples_ms[(n, k)]).median()) for n in names) for k in levels]
    e2e_rows = [{"level": DENSE_BASELINE_LEVEL, "sample": 0, "latency_ms": e2e[0] * 2}]
    e2e_rows += [{"level": k, "sample": 0, "latency_ms": e2e[k]} for k in levels]
    routes = None
    if accuracy is not None:
        splits = {"validation": validation_accuracy or accuracy, "test": accuracy}
        routes = pd.DataFrame([
            {"route": r, "split": split, "correct": round(a * 1000), "n": 1000, "accuracy": round(a * 1000) / 1000,
             **dict(zip(("ci_low", "ci_high"), wilson_interval(round(a * 1000), 1000)))}
            for split, table in splits.items() for r, a in table.items()
        ])
    meta = ProfileMeta(
        schema_version=SCHEMA_VERSION, model="hand", description="hand-written test bundle", input_shape=[1, 4],
        levels=[LevelInfo(index=k, name=f"L{k}", density=density[k], kept_fraction=density[k]) for k in levels],
        layers=[LayerInfo(name=n, kind="linear", segment=segments[n], n_weights=200, weight_shapes=[[10, 20]],
                          input_shapes=[[1, 20]], output_shapes=[[1, 10]]) for n in names],
        reroute_after=[a for a, b in zip(names, names[1:]) if segments[a] != segments[b]],
        accuracy=AccuracyInfo(available=accuracy is not None, source="measured" if accuracy else None,
                              dataset="hand" if accuracy else None, metric="top-1 accuracy" if accuracy else None,
                              unit="sample" if accuracy else None, routes_complete=True if accuracy else None),
        provenance=Provenance(cpu="hand", torch_version="none", simqos_version="test", python_version="3", dtype="float32",
                              created_utc="2026-01-01T00:00:00", command="hand",
                              settings=ProfileSettings(kernels=("dense",), n_samples=1, warmup_ms=0, in_model_passes=1, idle_samples=0)),
    )
    idle = None if idle_factor is None else pd.DataFrame([
        {"level": k, "idle_ms": gap, "sample": 0, "latency_ms": e2e[k] * (1 + (factor - 1) * (1 + k / 2))}
        for k in levels for gap, factor in idle_factor.items()
    ])
    save_profile(Profile(meta, pd.DataFrame(layer_rows), pd.DataFrame(sample_rows), pd.DataFrame(kernel_rows),
                         pd.DataFrame(e2e_rows), routes, idle), folder)
    return folder


def scenario_dict(profile: Path, **overrides) -> dict:
    """A minimal valid scenario around ``profile``; ``overrides`` replace top-level keys."""
    base = {
        "name": "test",
        "seed": 1,
        "profile": str(profile),
        "requests": 2000,
        "workload": {"arrival": {"kind": "poisson", "rate_hz": 100}, "deadline": {"kind": "constant", "ms": 20}},
        "policies": [{"kind": "static", "level": 0}],
    }
    base.update(overrides)
    return base
