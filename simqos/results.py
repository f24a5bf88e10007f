"""A results folder per run: written complete or not at all.

Files: ``scenario.yaml`` (the resolved scenario: under a stopping rule, with the replications
that ran), ``records.csv.gz`` (one row per request and policy; columns below), ``summary.csv``
and ``summary.json`` (one row per policy, pooled over replications, see
:func:`simqos.tally.summarize`, plus provenance, what the stopping rule did, the offline
optimum of the same runs (:mod:`simqos.bound`) and the verdict (:mod:`simqos.verdict`)), and
``replications.csv`` (the same columns for each replication alone, beside the pooled ones), and
the figures and ``report.md`` of :mod:`simqos.report`. Everything is written into
``OUT.partial/`` and swapped in for ``OUT`` only when complete, report included
(:mod:`simqos.outputs`): a folder named ``OUT`` is always a whole run, and an earlier run there
is replaced only if simqos wrote it.

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
    """``value`` with every non-finite float (at any depth) as None: JSON has no NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def write_results(
    work: Path,
    scenario: Scenario,
    records: pd.DataFrame,
    summary: pd.DataFrame,
    by_replication: pd.DataFrame,
    stopping: dict | None = None,
    bound: dict | None = None,
    verdict: dict | None = None,
    warnings: tuple[str, ...] = (),
) -> None:
    """Write the results files into ``work``, the folder being built (see :func:`simqos.outputs.staged`);
    ``bound`` (:func:`simqos.bound.plan_bound`), ``verdict`` (:func:`simqos.verdict.verdict`)
    and the scenario's ``warnings`` (:mod:`simqos.plausible`) go into summary.json."""
    (work / "scenario.yaml").write_text(yaml.safe_dump(scenario.model_dump(mode="json"), sort_keys=False))
    if scenario.outputs.records:
        records.to_csv(work / "records.csv.gz", index=False)  # full precision: met/missed follows from the columns
    summary.to_csv(work / "summary.csv", index=False, float_format="%.6g")
    by_replication.to_csv(work / "replications.csv", index=False, float_format="%.6g")
    rows = [{k: _json_safe(v) for k, v in row.items()} for row in summary.to_dict(orient="records")]
    document = {
        "provenance": provenance(scenario),
        "stopping": stopping,
        "policies": rows,
        "bound": _json_safe(bound),
        "verdict": _json_safe(verdict),
        "warnings": list(warnings),
    }
    (work / "summary.json").write_text(json.dumps(document, indent=2) + "\n")


def read_results(out: Path) -> tuple[dict, pd.DataFrame, pd.DataFrame | None]:
    """(summary.json, summary table, records or None) of a results folder; raises SimqosError
    when ``out`` is not a whole, readable results folder of simqos's."""
    if not out.is_dir():
        raise SimqosError(f"{out}: no such results folder; give a folder written by simqos run")
    try:
        summary_json = json.loads((out / "summary.json").read_text())
        summary = pd.read_csv(out / "summary.csv")
        records_path = out / "records.csv.gz"
        records = (
            pd.read_csv(records_path, dtype={"route": str}, keep_default_na=False, na_values=[""])
            if records_path.exists()
            else None
        )
    except FileNotFoundError as exc:
        raise SimqosError(f"{out}: not a whole results folder (no {Path(exc.filename).name}); run simqos run again") from None
    except (ValueError, EOFError, OSError) as exc:  # bad JSON, CSV or gzip; ValueError covers decoding
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SimqosError(f"{out}: a results file is damaged ({first}); run simqos run again") from None
    if not isinstance(summary_json, dict) or "policies" not in summary_json or "policy" not in summary:
        raise SimqosError(f"{out}: summary.json or summary.csv is not simqos's; run simqos run again")
    return summary_json, summary, records
