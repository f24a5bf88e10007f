"""Accuracy measured elsewhere, attached to a profile bundle (no torch).

A user who evaluated their full-size model on its real data (ImageNet on a GPU box, say) gives
simqos one CSV row per route::

    route,split,correct,n
    0-0-0,validation,38110,50000
    0-0-0,test,37968,50000
    0-0-1,test,37540,50000
    ...
    dense,test,38170,50000

``route`` is the level per segment joined by ``-`` (every route, or every monotone one), or
``dense`` for the unpruned model (optional). ``split`` is ``validation`` (what policies may
decide on) or ``test`` (what reports show; required); without the column every row is ``test``,
and policies then decide on the reported numbers — the bundle's note says so. Give ``correct``
and ``n``, or ``accuracy`` and ``n``; ``ci_low`` and ``ci_high`` when the intervals were made
otherwise (e.g. tokens clustered in sentences), else simqos computes 95 % Wilson intervals.

:func:`attach_accuracy` validates everything against the bundle first, then writes the new
bundle beside it and swaps it in (:mod:`simqos.outputs`): a bad file changes nothing.
"""

from __future__ import annotations

import math
import shutil
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from simqos.errors import SimqosError
from simqos.sim.metrics import wilson_interval
from simqos.outputs import owned, staged
from simqos.bundle import OUTCOMES_FILE, SPLITS, TABLE_COLUMNS, Profile, SplitAccuracy, check_routes, load_profile, save_profile

__all__ = ["attach_accuracy", "read_accuracy_csv"]

DENSE_ROUTE = "dense"


def _number(path: Path, table: pd.DataFrame, column: str, whole: bool) -> pd.Series:
    values = pd.to_numeric(table[column], errors="coerce")
    bad = values.isna() | ~values.map(math.isfinite) | (values < 0) | ((values != values.round()) if whole else False)
    if bad.any():
        row = int(bad.to_numpy().nonzero()[0][0])
        kind = "a whole number >= 0" if whole else "a number >= 0"
        raise SimqosError(f"{path}: row {row + 2}: {column}={table[column].iloc[row]!r} must be {kind}")
    return values


def read_accuracy_csv(path: Path) -> pd.DataFrame:
    """The rows of an accuracy file (module doc) as routes.csv's columns, intervals computed
    where not given; raises SimqosError naming the file, the row and the fix."""
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise SimqosError(f"{path}: no such accuracy file") from None
    except IsADirectoryError:
        raise SimqosError(f"{path}: is a folder; give the CSV file of route accuracies") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise SimqosError(f"{path}: unreadable as CSV ({str(exc).splitlines()[0]})") from None
    table.columns = [str(c).strip() for c in table.columns]
    known = {"route", "split", "correct", "n", "accuracy", "ci_low", "ci_high"}
    unknown = sorted(set(table.columns) - known)
    if unknown:
        raise SimqosError(f"{path}: unknown columns {unknown}; the columns are {sorted(known)}")
    if "route" not in table or "n" not in table or ("correct" not in table and "accuracy" not in table):
        raise SimqosError(f"{path}: needs columns route and n, and correct or accuracy (e.g. route,split,correct,n)")
    if table.empty:
        raise SimqosError(f"{path}: no rows; give one row per route")
    if ("ci_low" in table) != ("ci_high" in table):
        raise SimqosError(f"{path}: give both ci_low and ci_high, or neither")
    split = table["split"].str.strip() if "split" in table else pd.Series("test", index=table.index)
    n = _number(path, table, "n", whole=True)
    if (n < 1).any():
        raise SimqosError(f"{path}: row {int((n < 1).to_numpy().nonzero()[0][0]) + 2}: n must be >= 1")
    if "correct" in table:
        correct = _number(path, table, "correct", whole=True)
    else:
        accuracy = _number(path, table, "accuracy", whole=False)
        correct = (accuracy * n).round()
    for i, (c, m) in enumerate(zip(correct, n)):
        if c > m:
            raise SimqosError(f"{path}: row {i + 2}: correct ({c:g}) exceeds n ({m:g}); an accuracy must lie in [0, 1]")
    if "accuracy" in table and "correct" in table:
        given = _number(path, table, "accuracy", whole=False)
        off = (given - correct / n).abs() > 1e-4
        if off.any():
            row = int(off.to_numpy().nonzero()[0][0])
            raise SimqosError(f"{path}: row {row + 2}: accuracy {given.iloc[row]} is not correct/n; give one of them")
    out = pd.DataFrame({"route": table["route"].str.strip(), "split": split, "correct": correct.astype(int), "n": n.astype(int)})
    out["accuracy"] = out["correct"] / out["n"]
    if "ci_low" in table:
        out["ci_low"] = _number(path, table, "ci_low", whole=False)
        out["ci_high"] = _number(path, table, "ci_high", whole=False)
    else:
        bounds = [wilson_interval(int(c), int(m)) for c, m in zip(out["correct"], out["n"])]
        out["ci_low"], out["ci_high"] = [b[0] for b in bounds], [b[1] for b in bounds]
    return out


def attach_accuracy(bundle: Path, path: Path, dataset: str, metric: str, unit: str, replace: bool = False) -> Profile:
    """Attach the route accuracies of ``path`` to the profile bundle at ``bundle`` (module doc);
    returns the new bundle. Nothing is written unless everything validates."""
    profile = load_profile(bundle)
    if owned(bundle) != "profile":
        raise SimqosError(f"{bundle}: not a profile bundle written by simqos (no .simqos marker); it is left as it is")
    if profile.meta.accuracy.available and not replace:
        raise SimqosError(f"{bundle}: already has route accuracy ({profile.meta.accuracy.source}); pass --replace to replace it")
    if not dataset.strip():
        raise SimqosError("--dataset: name the data the accuracies were measured on, e.g. 'ImageNet val, 50,000 images'")
    table = read_accuracy_csv(path)
    dense = table[table["route"] == DENSE_ROUTE]
    routes = table[table["route"] != DENSE_ROUTE].reset_index(drop=True)
    if routes.empty:
        raise SimqosError(f"{path}: no route rows; give one row per route, e.g. 0-0-1")
    check_routes(path, routes, profile.n_segments, profile.n_levels)
    bad_dense = sorted(set(dense["split"]) - set(SPLITS))
    if bad_dense or dense["split"].duplicated().any():
        raise SimqosError(f"{path}: the dense rows need one split each among {list(SPLITS)}")
    complete = len(set(routes["route"])) == profile.n_levels**profile.n_segments
    decided_on = "validation" if "validation" in set(routes["split"]) else "test (no validation split was given)"
    info = profile.meta.accuracy.model_copy(
        update={
            "available": True,
            "source": "attached",
            "dataset": dataset,
            "metric": metric,
            "unit": unit,
            "growth": None,
            "routes_complete": complete,
            "dense": [SplitAccuracy(**row) for row in dense.drop(columns="route").to_dict(orient="records")],
            "note": f"attached from {path.name} on {datetime.now(timezone.utc).date()}; policies decide on {decided_on}",
        }
    )
    new = Profile(
        profile.meta.model_copy(update={"accuracy": info}), profile.layers, profile.latency_samples,
        profile.kernels, profile.end_to_end, routes.loc[:, list(TABLE_COLUMNS["routes.csv"])], profile.idle,
    )
    with staged(bundle, "profile", "BUNDLE") as work:  # the bundle is replaced whole, or not at all
        shutil.copytree(bundle, work, dirs_exist_ok=True)
        (work / OUTCOMES_FILE).unlink(missing_ok=True)  # the replaced accuracies' per-sample outcomes
        save_profile(new, work)
        result = load_profile(work)  # what is swapped in has passed validation
    return result
