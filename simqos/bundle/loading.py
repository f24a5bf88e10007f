"""Reading a bundle: :func:`load_profile` validates everything — schema, completeness, units,
and nesting (non-zeros and resident bytes never grow from a level to a sparser one) — and
raises SimqosError naming the file, the field, the value and the fix."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import ValidationError

from simqos.bundle.meta import DENSE_BASELINE_LEVEL, SCHEMA_VERSION, ProfileMeta
from simqos.bundle.profile import META_FILE, OUTCOMES_FILE, TABLE_COLUMNS, Profile, RouteOutcomes, _fail
from simqos.errors import SimqosError, validation_message

__all__ = ["SPLITS", "check_routes", "load_profile"]

def _read_meta(folder: Path) -> ProfileMeta:
    path = folder / META_FILE
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise _fail(path, "missing; a profile folder needs profile.json (make one with `simqos profile`)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _fail(path, f"not valid JSON ({exc}); re-create the profile with `simqos profile`") from None
    except OSError as exc:  # a folder of that name, no permission to read
        raise _fail(path, f"unreadable ({exc.strerror}); a profile's profile.json is a file (make one with `simqos profile`)") from None
    if isinstance(raw, dict) and raw.get("schema_version") != SCHEMA_VERSION:
        raise _fail(
            path, f"schema_version is {raw.get('schema_version')!r}, this simqos reads {SCHEMA_VERSION}; re-profile"
        )
    try:
        return ProfileMeta.model_validate(raw)
    except ValidationError as exc:
        raise _fail(path, validation_message(exc, ProfileMeta, "profile.json")) from None


def _read_table(folder: Path, name: str) -> pd.DataFrame:
    path = folder / name
    try:
        table = pd.read_csv(path, dtype={c: str for c in ("layer", "kernel", "status", "route", "split")})
    except FileNotFoundError:
        raise _fail(path, "missing; re-create the profile with `simqos profile`") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise _fail(path, f"unreadable as CSV ({exc}); re-create the profile with `simqos profile`") from None
    except OSError as exc:  # a folder of that name, no permission to read
        raise _fail(path, f"unreadable ({exc.strerror}); re-create the profile with `simqos profile`") from None
    expected = TABLE_COLUMNS[name]
    if tuple(table.columns) != expected:
        raise _fail(path, f"columns are {list(table.columns)}, expected {list(expected)}")
    return table


def _check_numeric(path: Path, table: pd.DataFrame, columns: tuple[str, ...], minimum: float, strict: bool) -> None:
    for col in columns:
        values = pd.to_numeric(table[col], errors="coerce")
        bad = values.isna() | ~np.isfinite(values) | (values <= minimum if strict else values < minimum)
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            rule = f"> {minimum}" if strict else f">= {minimum}"
            raise _fail(path, f"row {row + 2}: {col}={table[col].iloc[row]!r} must be a finite number {rule}")


def _validate(folder: Path, profile: Profile) -> None:
    """Every check of a bundle read into ``profile`` (the module doc), table by table."""
    _check_meta(folder / META_FILE, profile)
    expected = {(n, lv) for n in profile.layer_names for lv in range(profile.n_levels)}
    _check_layers(folder / "layers.csv", profile, expected)
    _check_samples(folder, profile, expected)
    k = profile.n_levels
    path = folder / "end_to_end.csv"
    e = profile.end_to_end
    _check_numeric(path, e, ("latency_ms",), 0, strict=True)
    if set(e["level"]) != {DENSE_BASELINE_LEVEL, *range(k)}:
        raise _fail(
            path, f"needs samples for levels {DENSE_BASELINE_LEVEL} (dense baseline) and 0..{k - 1}, has {sorted(set(e['level']))}"
        )
    if profile.meta.accuracy.available and profile.routes is None:
        raise _fail(folder / "routes.csv", "missing, but profile.json says accuracy is available")
    if not profile.meta.accuracy.available and profile.routes is not None:
        raise _fail(folder / "routes.csv", "present, but profile.json says accuracy is unavailable; remove one")
    if profile.routes is not None:
        check_routes(folder / "routes.csv", profile.routes, profile.n_segments, k)
    if profile.outcomes is not None:
        _check_outcomes(folder / OUTCOMES_FILE, profile.outcomes, profile.routes)
    if profile.idle is not None:
        _check_idle(folder / "idle.csv", profile.idle, k)


def _check_meta(path: Path, profile: Profile) -> None:
    """Levels in order with densities falling; layers in segments from 0; reroute points at
    every segment's end but the last."""
    meta = profile.meta
    densities = [lv.density for lv in meta.levels]
    if [lv.index for lv in meta.levels] != list(range(len(meta.levels))):
        raise _fail(path, "levels: indices must be 0, 1, ... in order")
    if any(b >= a for a, b in zip(densities, densities[1:])):
        raise _fail(path, f"levels: densities {densities} must strictly decrease (level 0 least sparse)")
    if not meta.layers:
        raise _fail(path, "layers: empty; a profile needs at least one layer")
    segments = [layer.segment for layer in meta.layers]
    if segments[0] != 0 or any(b - a not in (0, 1) for a, b in zip(segments, segments[1:])):
        raise _fail(path, f"layers: segments {segments} must start at 0 and grow by 0 or 1")
    boundaries = [a.name for a, b in zip(meta.layers, meta.layers[1:]) if b.segment != a.segment]
    if meta.reroute_after != boundaries:
        raise _fail(path, f"reroute_after {meta.reroute_after} must name the last layer of every segment but the last, {boundaries}")


def _check_layers(path: Path, profile: Profile, expected: set[tuple[str, int]]) -> None:
    """layers.csv: its units, one row per layer x level, and nesting (non-zeros and resident
    bytes never grow from a level to a sparser one)."""
    t = profile.layers
    _check_numeric(path, t, ("nnz", "flops", "weight_bytes", "kernel_weight_bytes", "activation_bytes"), 0, strict=False)
    _check_numeric(path, t, ("latency_median_ms", "isolated_median_ms", "isolated_calls_per_sample"), 0, strict=True)
    got = list(zip(t["layer"], t["level"]))
    if len(got) != len(set(got)) or set(got) != expected:
        missing = sorted(expected - set(got))[:3]
        raise _fail(path, f"needs exactly one row per layer x level; missing {missing}, {len(got)} rows for {len(expected)}")
    for name in profile.layer_names:
        rows = t[t["layer"] == name].sort_values("level")
        for col, what in (("nnz", "non-zeros"), ("weight_bytes", "resident weight bytes")):
            values = rows[col].to_numpy()
            if np.any(np.diff(values) > 0):
                raise _fail(path, f"layer {name!r}: {what} {values.tolist()} grow from a level to a sparser one; "
                                  "the levels are not nested — re-profile from a nested network")


def _check_samples(folder: Path, profile: Profile, expected: set[tuple[str, int]]) -> None:
    """latency_samples.csv: samples for every layer x level, whose medians are layers.csv's."""
    path = folder / "latency_samples.csv"
    s = profile.latency_samples
    _check_numeric(path, s, ("latency_ms",), 0, strict=True)
    have = set(zip(s["layer"], s["level"]))
    if have != expected:
        raise _fail(path, f"needs samples for every layer x level; missing {sorted(expected - have)[:3]}")
    medians = s.groupby(["layer", "level"])["latency_ms"].median()
    for row in profile.layers.itertuples(index=False):
        sampled = float(medians.loc[(row.layer, row.level)])
        if not 0.5 <= row.latency_median_ms / sampled <= 2.0:
            raise _fail(folder / "layers.csv",
                        f"layer {row.layer!r} level {row.level}: latency_median_ms {row.latency_median_ms:g} is not the median "
                        f"of its samples in latency_samples.csv ({sampled:g} ms); both are milliseconds")


def _check_idle(path: Path, d: pd.DataFrame, k: int) -> None:
    """idle.csv: every level at the same gaps, 0 (back to back) among them."""
    _check_numeric(path, d, ("idle_ms",), 0, strict=False)
    _check_numeric(path, d, ("latency_ms",), 0, strict=True)
    gaps = set(d["idle_ms"])
    if set(d["level"]) != set(range(k)) or 0.0 not in gaps:
        raise _fail(path, f"needs samples for levels 0..{k - 1}, each at idle_ms 0 (back to back) and after gaps")
    if any(set(g["idle_ms"]) != gaps for _, g in d.groupby("level")):
        raise _fail(path, f"every level needs samples at the same idle gaps {sorted(gaps)}")


def _check_outcomes(path: Path, outcomes: RouteOutcomes, routes: pd.DataFrame | None) -> None:
    """Raise SimqosError unless ``outcomes`` are routes.csv's test rows, sample by sample: the
    same routes, each one's hits summing to its ``correct`` and the units to its ``n``."""
    if routes is None:
        raise _fail(path, "present without routes.csv; remove it")
    test = routes[routes["split"] == "test"].set_index("route")
    texts = ["-".join(map(str, r)) for r in outcomes.routes]
    if sorted(texts) != sorted(test.index) or outcomes.hits.shape != (len(texts), len(outcomes.units)):
        raise _fail(path, f"needs one row of hits per test route of routes.csv ({len(test)}) and one column per sample; "
                          f"has {outcomes.hits.shape[0]} routes of {outcomes.hits.shape[1] if outcomes.hits.ndim == 2 else '?'} samples")
    n = int(outcomes.units.sum())
    for text, hits in zip(texts, outcomes.hits):
        row = test.loc[text]
        if int(hits.sum()) != int(row.correct) or n != int(row.n) or (hits > outcomes.units).any() or (hits < 0).any():
            raise _fail(path, f"route {text}: {int(hits.sum())} of {n} scored units right, but routes.csv's test row says "
                              f"{int(row.correct)} of {int(row.n)}; re-create the profile with `simqos profile`")


SPLITS = ("validation", "test")
"""Splits of routes.csv: policies decide on ``validation``, reports show ``test``."""


def check_routes(path: Path, routes: pd.DataFrame, n_segments: int, n_levels: int) -> None:
    """Raise SimqosError unless ``routes`` (routes.csv's columns) is a valid accuracy table:
    each route ``n_segments`` levels in ``[0, n_levels)``, splits among :data:`SPLITS` with a
    ``test`` one, counts whole, accuracy ``correct / n`` inside its interval, every route of a
    split once, the same routes in every split, and those routes every route or every
    monotone one (levels never decreasing)."""
    _check_numeric(path, routes, ("correct", "n", "accuracy", "ci_low", "ci_high"), 0, strict=False)
    for i, row in enumerate(routes.itertuples(index=False)):
        where = f"row {i + 2}"
        parts = str(row.route).split("-")
        if len(parts) != n_segments or not all(p.isdigit() and int(p) < n_levels for p in parts):
            raise _fail(path, f"{where}: route {row.route!r} needs {n_segments} levels in [0, {n_levels - 1}] joined by '-'")
        if row.split not in SPLITS:
            raise _fail(path, f"{where}: split {row.split!r} is not one of {list(SPLITS)}")
        if row.n < 1 or row.correct > row.n or row.correct != int(row.correct) or row.n != int(row.n):
            raise _fail(path, f"{where}: correct={row.correct!r} of n={row.n!r} must be whole numbers with 0 <= correct <= n, n >= 1")
        if not math.isclose(row.accuracy, row.correct / row.n, abs_tol=1e-5):
            raise _fail(path, f"{where}: accuracy {row.accuracy} is not correct/n = {row.correct}/{row.n}")
        if not (row.ci_low - 1e-6 <= row.accuracy <= row.ci_high + 1e-6 and row.ci_high <= 1):
            raise _fail(path, f"{where}: the interval [{row.ci_low}, {row.ci_high}] must hold accuracy {row.accuracy} inside [0, 1]")
    if "test" not in set(routes["split"]):
        raise _fail(path, "needs the test split (what reports show); validation is optional")
    for split, rows in routes.groupby("split"):
        repeated = rows["route"][rows["route"].duplicated()].tolist()
        if repeated:
            raise _fail(path, f"split {split!r}: routes {repeated[:3]} appear more than once")
    by_split = {split: set(rows["route"]) for split, rows in routes.groupby("split")}
    if len({frozenset(v) for v in by_split.values()}) > 1:
        raise _fail(path, "every split needs the same routes")
    given = by_split["test"]
    every = {"-".join(map(str, r)) for r in itertools.product(range(n_levels), repeat=n_segments)}
    monotone = {"-".join(map(str, r)) for r in itertools.combinations_with_replacement(range(n_levels), n_segments)}
    if given != every and given != monotone:
        missing = sorted((monotone if given <= monotone else every) - given)
        raise _fail(
            path,
            f"needs every route ({len(every)}) or every monotone one ({len(monotone)}, levels never decreasing); "
            f"has {len(given)}, missing e.g. {missing[:3]}",
        )


def load_profile(folder: str | Path) -> Profile:
    """Read and validate a profile bundle; raises SimqosError on any problem."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SimqosError(f"{folder}: no such profile folder; list the shipped ones with `ls profiles/`")
    meta = _read_meta(folder)
    routes = _read_table(folder, "routes.csv") if (folder / "routes.csv").exists() else None
    idle = _read_table(folder, "idle.csv") if (folder / "idle.csv").exists() else None
    outcomes = RouteOutcomes.load(folder / OUTCOMES_FILE) if (folder / OUTCOMES_FILE).exists() else None
    profile = Profile(
        meta=meta,
        layers=_read_table(folder, "layers.csv"),
        latency_samples=_read_table(folder, "latency_samples.csv"),
        kernels=_read_table(folder, "kernels.csv"),
        end_to_end=_read_table(folder, "end_to_end.csv"),
        routes=routes,
        idle=idle,
        outcomes=outcomes,
    )
    _validate(folder, profile)
    return profile
