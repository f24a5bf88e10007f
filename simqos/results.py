"""A results folder per run: written complete or not at all.

Files: ``scenario.yaml`` (the resolved scenario: under a stopping rule, with the replications
that ran), ``records.csv.gz`` (one row per request and policy; columns below), ``summary.csv``
and ``summary.json`` (one row per policy, pooled over replications, see
:func:`simqos.metrics.summarize`, plus provenance and what the stopping rule did), and
``replications.csv`` (the same columns for each replication alone, beside the pooled ones). Everything is written into ``OUT.partial/``
and renamed to ``OUT`` at the end, replacing an older run only then. Figures and ``report.md``
are added afterwards by :mod:`simqos.report`.

Record columns: replication, policy, request (index in the replication), warmup (excluded from
summaries), arrival_s, start_s, finish_s, deadline_s (absolute, simulated seconds), latency_ms
(finish - arrival; NaN if dropped), route (level per segment, e.g. ``0-0-1-1``; empty if
dropped), reroutes (level changes), outcome (met / missed / dropped), accuracy (measured
accuracy of the route; NaN if dropped or unavailable).
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
import shutil
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import simpy
import yaml

import simqos
from simqos.errors import SimqosError
from simqos.scenario import Scenario

__all__ = ["folder_hash", "provenance", "read_results", "write_results"]


def folder_hash(folder: Path) -> str:
    """SHA-256 of every file in ``folder`` (names and bytes, in sorted order)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def provenance(scenario: Scenario) -> dict:
    """What produced a run: versions, seed, and the profile's content hash."""
    return {
        "simqos_version": simqos.__version__,
        "python_version": platform.python_version(),
        "numpy_version": np.__version__,
        "simpy_version": simpy.__version__,
        "seed": scenario.seed,
        "profile": str(scenario.profile),
        "profile_sha256": folder_hash(scenario.profile),
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _json_safe(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_results(
    out: Path,
    scenario: Scenario,
    records: pd.DataFrame,
    summary: pd.DataFrame,
    by_replication: pd.DataFrame,
    stopping: dict | None = None,
) -> None:
    """Write a complete results folder at ``out`` (see the module doc)."""
    work = out.with_name(out.name + ".partial")
    try:
        if work.exists():
            shutil.rmtree(work)
        work.mkdir(parents=True)
    except OSError as exc:
        raise SimqosError(f"{out}: cannot write results there ({exc.strerror}); choose another --out") from None
    (work / "scenario.yaml").write_text(yaml.safe_dump(scenario.model_dump(mode="json"), sort_keys=False))
    if scenario.outputs.records:
        records.to_csv(work / "records.csv.gz", index=False, float_format="%.9g")
    summary.to_csv(work / "summary.csv", index=False, float_format="%.6g")
    by_replication.to_csv(work / "replications.csv", index=False, float_format="%.6g")
    rows = [{k: _json_safe(v) for k, v in row.items()} for row in summary.to_dict(orient="records")]
    document = {"provenance": provenance(scenario), "stopping": stopping, "policies": rows}
    (work / "summary.json").write_text(json.dumps(document, indent=2) + "\n")
    if out.exists():
        shutil.rmtree(out)
    work.replace(out)


def read_results(out: Path) -> tuple[dict, pd.DataFrame, pd.DataFrame | None]:
    """(summary.json, summary table, records or None) of a results folder."""
    try:
        summary_json = json.loads((out / "summary.json").read_text())
    except FileNotFoundError:
        raise SimqosError(f"{out}: not a results folder (no summary.json)") from None
    records_path = out / "records.csv.gz"
    records = pd.read_csv(records_path, dtype={"route": str}, keep_default_na=False, na_values=[""]) if records_path.exists() else None
    return summary_json, pd.read_csv(out / "summary.csv"), records
