"""Sweeps: a base scenario x a grid (or list) of overrides by dotted path x seeds, run as cells
on an executor — local processes, or a dask.distributed cluster — resumably.

A sweep file (YAML)::

    base: iot.yaml                  # relative to the sweep file
    grid:                           # every combination (or ``cells:``, a list of overrides)
      workload.deadline.ms: [4, 8, 16]
      workload.arrival.rate_hz: [50, 100]
    seeds: [1, 2]                   # each cell runs once per seed (default: the base's seed)
    requests: 20000                 # optional overrides of the base for every cell
    replications: 2

Each finished cell is written at once to ``OUT/cells/<id>-<key>.csv`` (its policies' summary
rows and its parameters); ``<id>`` names the cell's overrides, ``<key>`` what else its numbers
come from — the base scenario, its profile's files and simqos's sources (:func:`base_key`). A
cell that fails is written as ``<id>-<key>.error`` with its message and does not stop the
others. Running the same sweep again skips the cells finished with the same key (failed ones
are retried; the command line says how many it skips), so an interrupted sweep loses only the
cells in flight, and an edited base, a retrained profile or an updated simqos runs every cell
afresh instead of mixing old numbers into the table. ``OUT/results.csv`` is the tidy table
(one row per cell x policy) once every cell is done, and ``OUT/design.json`` lists the cells;
``simqos report OUT`` draws nines against each varied field from them.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import time
from collections.abc import Callable
from concurrent.futures import as_completed
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from simqos.errors import SimqosError, validation_message
from simqos.outputs import claim, mark
from simqos.sim.plan import build_plan, load_checked
from simqos.sim.workers import check_execution, dask_client, pool
from simqos.scenario import Scenario, warmup_within
from simqos.userfiles import read_yaml

__all__ = ["Cell", "SweepSpec", "base_key", "cell_id", "finished_cells", "load_sweep", "run_cell", "run_sweep"]


class SweepSpec(BaseModel):
    """A sweep file, validated; see the module docstring."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    base: Path
    grid: dict[str, list[Any]] | None = None
    cells: list[dict[str, Any]] | None = None
    seeds: list[int] | None = None
    requests: int | None = Field(default=None, gt=0)
    replications: int | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _one_design(self) -> SweepSpec:
        if (self.grid is None) == (self.cells is None):
            raise ValueError("give exactly one of grid or cells")
        if self.grid is not None and not self.grid:
            raise ValueError("grid needs at least one field to vary, e.g. workload.deadline.ms: [4, 8]")
        if self.cells is not None and not self.cells:
            raise ValueError("cells needs at least one cell")
        if self.grid is not None and any(len(v) == 0 for v in self.grid.values()):
            raise ValueError("every grid entry needs at least one value")
        return self


Cell = dict[str, Any]
"""A cell's overrides by dotted path, seed included."""


def load_sweep(path: str | Path) -> tuple[SweepSpec, Scenario, list[Cell]]:
    """Read a sweep file, its base scenario, and expand its cells (validated up front)."""
    path = Path(path)
    raw = read_yaml(path, "sweep")
    try:
        spec = SweepSpec.model_validate(raw)
    except ValidationError as exc:
        raise SimqosError(f"{path}: {validation_message(exc, SweepSpec, 'a sweep')}") from None
    base = load_checked(path.parent / spec.base)
    if spec.grid is not None:
        keys = list(spec.grid)
        designs = [dict(zip(keys, combo)) for combo in itertools.product(*spec.grid.values())]
    else:
        designs = [dict(c) for c in spec.cells]
    common: Cell = {}
    if spec.requests is not None:  # the warm-up first, so that it stays below the requests
        common["warmup_requests"] = warmup_within(base.warmup_requests, spec.requests)
        common["requests"] = spec.requests
    if spec.replications is not None:
        common["replications"] = spec.replications
    cells = [{**common, **d, "seed": seed} for d in designs for seed in (spec.seeds or [base.seed])]
    from simqos.scenario import override

    for cell in cells:  # describe, then run: every cell must validate before any runs
        _scenario(base, cell, override)
    # and the first must plan: a mistake in the base's policies would fail every cell (planning
    # them all would take a tenth of a second each, so a cell's own mistake fails that cell alone)
    build_plan(_scenario(base, cells[0], override), str(path.parent / spec.base))
    return spec, base, cells


def _scenario(base: Scenario, cell: Cell, override: Callable) -> Scenario:
    scenario = base
    for dotted, value in cell.items():
        scenario = override(scenario, dotted, value)
    return scenario


def cell_id(cell: Cell) -> str:
    """A stable name for a cell: a hash of its overrides."""
    return hashlib.sha256(json.dumps(cell, sort_keys=True, default=str).encode()).hexdigest()[:16]


def base_key(base: Scenario) -> str:
    """What a cell's numbers come from besides its overrides: a hash of the base scenario, its
    profile's files and simqos's code (comments and docstrings aside)."""
    from simqos.jit import code_digest
    from simqos.results import folder_hash

    digest = hashlib.sha256(json.dumps(base.model_dump(mode="json"), sort_keys=True, default=str).encode())
    digest.update(folder_hash(base.profile).encode())
    package = Path(__file__).parent
    digest.update(code_digest(sorted(package.rglob("*.py")), package).encode())
    return digest.hexdigest()[:12]


def finished_cells(out: Path, base: Scenario, cells: list[Cell]) -> tuple[int, int]:
    """(cells of this sweep already finished in ``out`` with the same :func:`base_key`, cells
    finished there from another base, profile or simqos: they will run again)."""
    folder, key = out / "cells", base_key(base)
    same = sum((folder / f"{_stem(c, key)}.csv").exists() for c in cells)
    other = sum(1 for c in cells for p in folder.glob(f"{cell_id(c)}-*.csv") if p.stem != _stem(c, key)) if folder.is_dir() else 0
    return same, other


def _stem(cell: Cell, key: str) -> str:
    """A finished cell's file name without suffix: its overrides' id and the base key."""
    return f"{cell_id(cell)}-{key}"


def run_cell(base: Scenario | dict, cell: Cell) -> pd.DataFrame:
    """Simulate one cell; its policies' summary rows with the cell's parameters as columns
    (``scenario.requests`` for the override of ``requests``, which is also a summary column).

    ``base`` may be the scenario's JSON form (what crosses to worker processes: scenarios hold
    classes made at import time, which do not pickle)."""
    from simqos.sim.execution import simulate
    from simqos.sim.replication import NO_RECORDS, summarize_plan
    from simqos.scenario import parse_scenario
    from simqos.scenario import override

    if isinstance(base, dict):
        base = parse_scenario(base, "sweep base")
    plan = build_plan(_scenario(base, cell, override))
    started = time.perf_counter()
    run = simulate(plan, records=NO_RECORDS)
    seconds = time.perf_counter() - started
    summary = summarize_plan(plan, run)
    summary.insert(0, "cell", cell_id(cell))
    for key, value in cell.items():  # an override named like a summary column (requests) keeps a prefix
        summary[f"scenario.{key}" if key in summary else key] = value
    summary["simulated_requests"] = run.simulated
    summary["seconds"] = seconds
    return summary


def _safe_run(base: dict, cell: Cell) -> tuple[Cell, pd.DataFrame | None, str | None]:
    try:
        return cell, run_cell(base, cell), None
    except Exception as exc:  # a failing cell is recorded, not fatal to the sweep
        return cell, None, f"{type(exc).__name__}: {exc}"


Progress = Callable[[int, int, int, str], None]
"""Called with (cells done, cells in all, requests simulated so far, last cell's id)."""


def run_sweep(
    base: Scenario,
    cells: list[Cell],
    out: Path,
    executor: Literal["local", "dask"] = "local",
    workers: int | None = None,
    scheduler: str | None = None,
    progress: Progress | None = None,
) -> pd.DataFrame:
    """Run every unfinished cell; return the tidy table (also written to ``out/results.csv``).
    The executor is reached before anything is written (an unreachable scheduler leaves no
    folder behind)."""
    check_execution(executor, workers, scheduler)
    claim(out, "sweep")  # a sweep adds to its own folder only: never into a user's
    with _executor(executor, workers, scheduler) as submit:
        cells_folder = _sweep_folder(out, base, cells)
        writer = _CellWriter(cells_folder, base_key(base), len(cells), progress)
        todo = [c for c in cells if not writer.path(c, ".csv").exists()]
        writer.done = len(cells) - len(todo)
        base_json = base.model_dump(mode="json")
        for result in submit([(base_json, c) for c in todo]):
            writer.record(*result)
    return _gather(out, writer, cells)


@contextlib.contextmanager
def _executor(executor: str, workers: int | None, scheduler: str | None):
    """A function that runs :func:`_safe_run` on each argument pair and yields the results as
    they finish: in local processes, or on a dask cluster (reached here, before any work)."""
    if executor == "local":
        with pool(workers) as local:
            yield lambda jobs: (f.result() for f in as_completed([local.submit(_safe_run, *job) for job in jobs]))
    else:
        from dask.distributed import as_completed as dask_completed

        with dask_client(scheduler, workers) as client:
            yield lambda jobs: (f.result() for f in dask_completed([client.submit(_safe_run, *job, pure=False) for job in jobs]))


def _sweep_folder(out: Path, base: Scenario, cells: list[Cell]) -> Path:
    """``out`` made and marked as a sweep's, with its design; returns its cells' folder."""
    folder = out / "cells"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        mark(out, "sweep")
        (out / "design.json").write_text(json.dumps({"base": base.name, "cells": cells}, indent=1, default=str) + "\n")
    except OSError as exc:
        raise SimqosError(f"{out}: cannot write there ({exc.strerror}); choose another --out") from None
    return folder


class _CellWriter:
    """Writes each finished cell into the cells' folder as it comes (whole or not at all) and
    tells ``progress``."""

    def __init__(self, folder: Path, key: str, n_cells: int, progress: Progress | None) -> None:
        self.folder, self.key, self.n_cells, self.progress = folder, key, n_cells, progress
        self.done, self.simulated = 0, 0

    def path(self, cell: Cell, suffix: str) -> Path:
        return self.folder / f"{_stem(cell, self.key)}{suffix}"

    def record(self, cell: Cell, table: pd.DataFrame | None, error: str | None) -> None:
        if table is None:
            self.path(cell, ".error").write_text(json.dumps({"cell": cell, "error": error}, default=str) + "\n")
        else:
            tmp = self.path(cell, ".csv.tmp")
            try:
                table.to_csv(tmp, index=False)
            except OSError as exc:
                tmp.unlink(missing_ok=True)
                raise SimqosError(f"{self.folder}: cannot write a finished cell ({exc.strerror}); free some space and run the "
                                  "sweep again: the cells already written are kept") from None
            tmp.replace(self.path(cell, ".csv"))  # a cell is on disk whole or not at all
            self.path(cell, ".error").unlink(missing_ok=True)
            self.simulated += int(table["simulated_requests"].iloc[0])
        self.done += 1
        if self.progress:
            self.progress(self.done, self.n_cells, self.simulated, _stem(cell, self.key))


def _gather(out: Path, writer: _CellWriter, cells: list[Cell]) -> pd.DataFrame:
    """The finished cells' rows as one table, written to ``out/results.csv``; raises naming the
    failed cells when there are any."""
    tables = [pd.read_csv(writer.path(c, ".csv")) for c in cells if writer.path(c, ".csv").exists()]
    errors = [c for c in cells if writer.path(c, ".error").exists()]
    results = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    results.to_csv(out / "results.csv", index=False)
    if errors:
        raise SimqosError(
            f"{out}: {len(errors)} of {len(cells)} cells failed (see {writer.folder}/*.error); "
            "the others are in results.csv, and running the sweep again retries the failed ones"
        )
    return results
