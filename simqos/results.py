"""A results folder per run: written complete or not at all.

Files: ``scenario.yaml`` (the resolved scenario: under a stopping rule, with the replications
that ran), ``records/`` (the records the scenario's ``outputs.records`` keeps — all, a sample
or none — one file per replication and policy, :data:`RECORDS`; columns below), ``summary.csv``
and ``summary.json`` (one row per policy, pooled over replications, see
:func:`simqos.sim.tally.summarize`, plus provenance, what the stopping rule did, the offline
optimum of the same runs (:mod:`simqos.bound`), the verdict (:mod:`simqos.verdict`) and
warnings), ``replications.csv`` (the same columns for each replication alone, beside the pooled
ones), ``latency_ccdf.csv`` (:func:`simqos.sim.tally.ccdf_table`: every request, whatever records
are kept), and the figures and ``report.md`` of :mod:`simqos.report`. Everything is written
into ``OUT.partial/`` and swapped in for ``OUT`` only when complete, report included
(:mod:`simqos.outputs`): a folder named ``OUT`` is always a whole run, and an earlier run there
is replaced only if simqos wrote it. An interrupted run leaves ``OUT.partial/`` with its
finished replications (``checkpoints/``) for the same command to go on from.

Record columns: replication, policy (categorical), request (index in the replication), warmup
(excluded from summaries), arrival_s, start_s, finish_s, deadline_s (absolute, simulated
seconds), latency_ms (finish - arrival; NaN if dropped), route (categorical: level per
segment, e.g. ``0-0-1-1``; empty if dropped; in Parquet its index is the route's code + 1),
reroutes (level changes), outcome (categorical: met / missed / dropped), accuracy (measured
accuracy of the route; NaN if dropped or unavailable). Parquet files are zstd-compressed with
the categorical columns dictionary-encoded; CSV files are gzip, at full precision.
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
from simqos.outputs import adopt
from simqos.scenario import Scenario
from simqos.sim.serving import OUTCOMES

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
    summary: pd.DataFrame,
    by_replication: pd.DataFrame,
    stopping: dict | None = None,
    bound: dict | None = None,
    verdict: dict | None = None,
    warnings: tuple[str, ...] = (),
    ccdf: pd.DataFrame | None = None,
) -> None:
    """Write the results files into ``work``, the folder being built (see :func:`simqos.outputs.staged`);
    ``bound`` (:func:`simqos.bound.plan_bound`), ``verdict`` (:func:`simqos.verdict.verdict`)
    and the scenario's ``warnings`` (:mod:`simqos.sim.plausible`) go into summary.json, ``ccdf``
    (:func:`simqos.sim.tally.ccdf_table`) into latency_ccdf.csv."""
    (work / "scenario.yaml").write_text(yaml.safe_dump(scenario.model_dump(mode="json"), sort_keys=False))
    summary.to_csv(work / "summary.csv", index=False, float_format="%.6g")
    by_replication.to_csv(work / "replications.csv", index=False, float_format="%.6g")
    if ccdf is not None:
        ccdf.to_csv(work / "latency_ccdf.csv", index=False, float_format="%.6g")
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


RECORDS = "records"
"""The folder of a run's records: one file per replication and policy, ``r{R:04d}-p{P:02d}``
plus ``.parquet`` or ``.csv.gz``, in run order; each written chunk by chunk as the run goes."""


class RecordsWriter:
    """Writes records tables (:func:`simqos.sim.replication.records_table`) into ``folder/records/``,
    appending each replication x policy's chunks to its own file: Parquet (zstd; policy, route
    and outcome dictionary-encoded, the route's index being its code + 1) or gzip CSV. A file is
    written under a temporary name and renamed when :meth:`close` completes it, so a part on
    disk is whole."""

    def __init__(self, folder: Path, fmt: str) -> None:
        adopt(Path(folder), "results", "records folder")  # parts are replaced only in a results folder of simqos's
        self.folder, self.format = Path(folder) / RECORDS, fmt
        self.folder.mkdir(exist_ok=True)
        self.open: dict[tuple[int, int], tuple[Path, object]] = {}

    def path(self, replication: int, policy: int) -> Path:
        suffix = ".parquet" if self.format == "parquet" else ".csv.gz"
        return self.folder / f"r{replication:04d}-p{policy:02d}{suffix}"

    def write(self, replication: int, policy: int, table: pd.DataFrame) -> None:
        key = (replication, policy)
        if key not in self.open:
            final = self.path(replication, policy)
            tmp = final.with_name(final.name + ".partial")
            if self.format == "parquet":
                import pyarrow as pa
                import pyarrow.parquet as pq

                schema = pa.Schema.from_pandas(table, preserve_index=False)
                self.open[key] = (tmp, pq.ParquetWriter(tmp, schema, compression="zstd"))
            else:
                import gzip

                self.open[key] = (tmp, gzip.open(tmp, "wt", compresslevel=6, newline=""))
                table.iloc[:0].to_csv(self.open[key][1], index=False)
        _, handle = self.open[key]
        if self.format == "parquet":
            import pyarrow as pa

            handle.write_table(pa.Table.from_pandas(table, preserve_index=False))
        else:
            table.to_csv(handle, index=False, header=False)  # full precision: met/missed follows from the columns

    def close(self, replication: int, policy: int) -> None:
        """Complete the part of ``replication`` x ``policy`` (an empty one if nothing was written)."""
        tmp, handle = self.open.pop((replication, policy), (None, None))
        if handle is not None:
            handle.close()
            tmp.rename(self.path(replication, policy))

    def abandon(self) -> None:
        """Close and remove the parts not completed (a replication run again from its start)."""
        for tmp, handle in self.open.values():
            handle.close()
            tmp.unlink(missing_ok=True)
        self.open.clear()


RECORD_BYTES = 50
"""About what a record takes on disk, in either format (measured: 35-50 B in Parquet)."""


def _size(n_bytes: float) -> str:
    return f"{n_bytes / 2**30:,.1f} GiB" if n_bytes >= 2**30 else f"{n_bytes / 2**20:,.1f} MiB"


def check_records_space(scenario: Scenario, out: Path, option: str = "--out") -> None:
    """Refuse, before the run, records that would not fit on the disk of ``out``, saying how
    much they need and how to keep fewer."""
    import shutil

    outputs = scenario.outputs
    if outputs.records == "none":
        return

    n = scenario.requests if scenario.requests is not None else scenario.duration_s * scenario.workload.arrival.mean_rate_hz()
    if outputs.records == "sample":
        n = min(n, scenario.warmup_requests + outputs.sample_requests)
    replications = scenario.precision.max_replications if scenario.precision else scenario.replications
    need = n * len(scenario.policies) * replications * RECORD_BYTES
    where = out.resolve()
    while not where.exists():
        where = where.parent
    free = shutil.disk_usage(where).free
    if need > 0.9 * free:
        raise SimqosError(
            f"{option} {out}: the records of every request ({n * len(scenario.policies) * replications:,.0f} rows) would take "
            f"about {_size(need)}, and {where} has {_size(free)} free; set outputs.records: sample "
            "(a stretch of each replication) or none (the summary still covers every request)"
        )


def read_records(out: Path, replication: int | None = None, rows: int | None = None) -> pd.DataFrame | None:
    """A results folder's records in run order — all of them, or one replication's; with
    ``rows``, only the first ``rows`` of each replication x policy — or None if it kept none."""
    folder = out / RECORDS
    if not folder.is_dir():
        return None
    first = "" if replication is None else f"r{replication:04d}-"
    parts = sorted(p for p in folder.iterdir() if p.name.startswith(first) and p.name.endswith((".parquet", ".csv.gz")))
    if not parts:
        return None
    if parts[0].name.endswith(".parquet"):
        frames = [pd.read_parquet(p) if rows is None else _first_rows(p, rows) for p in parts]
    else:
        frames = [pd.read_csv(p, dtype={"route": str, "policy": str, "outcome": str}, keep_default_na=False,
                              na_values={c: [""] for c in FLOAT_COLUMNS}, nrows=rows) for p in parts]  # fmt: skip
    records = pd.concat(frames, ignore_index=True)
    # The same categories from either format: policies in run order, outcomes in code order,
    # the routes that occur (sorted: code order).
    records["policy"] = pd.Categorical(records["policy"].astype(str), categories=pd.unique(records["policy"].astype(str)))
    records["outcome"] = pd.Categorical(records["outcome"].astype(str), categories=list(OUTCOMES))
    records["route"] = pd.Categorical(records["route"].astype(str))
    return records


def _first_rows(path: Path, rows: int) -> pd.DataFrame:
    """The first ``rows`` of a Parquet file, reading no more of it than they need."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    batches = []
    for batch in pq.ParquetFile(path).iter_batches(batch_size=min(rows, 65536)):
        batches.append(batch)
        rows -= batch.num_rows
        if rows <= 0:
            break
    return pa.Table.from_batches(batches).to_pandas().iloc[: sum(b.num_rows for b in batches) + min(rows, 0)]


FLOAT_COLUMNS = ("arrival_s", "start_s", "finish_s", "deadline_s", "latency_ms", "accuracy")


def read_results(out: Path, replication: int | None = None, rows: int | None = None,
                 ) -> tuple[dict, pd.DataFrame, pd.DataFrame | None]:  # fmt: skip
    """(summary.json, summary table, records or None: :func:`read_records`) of a results
    folder; raises SimqosError when ``out`` is not a whole, readable results folder of simqos's."""
    if not out.is_dir():
        raise SimqosError(f"{out}: no such results folder; give a folder written by simqos run")
    try:
        summary_json = json.loads((out / "summary.json").read_text())
        summary = pd.read_csv(out / "summary.csv")
        records = read_records(out, replication, rows)
    except FileNotFoundError as exc:
        raise SimqosError(f"{out}: not a whole results folder (no {Path(exc.filename).name}); run simqos run again") from None
    except (ValueError, EOFError, OSError) as exc:  # bad JSON, CSV or gzip; ValueError covers decoding
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SimqosError(f"{out}: a results file is damaged ({first}); run simqos run again") from None
    if not isinstance(summary_json, dict) or "policies" not in summary_json or "policy" not in summary:
        raise SimqosError(f"{out}: summary.json or summary.csv is not simqos's; run simqos run again")
    return summary_json, summary, records
