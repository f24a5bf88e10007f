"""Replications run: in this process, in local worker processes or as tasks on a
dask.distributed cluster, with the same result in the same order; finished replications kept
as checkpoints, from which an interrupted run goes on."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from simqos.jit import interruptible
from simqos.outputs import adopt
from simqos.scenario import Scenario, parse_scenario
from simqos.sim.plan import Plan, build_plan
from simqos.sim.replication import KeptRecords, Run, serve_replication
from simqos.sim.tally import Tally
from simqos.sim.workers import check_execution, dask_client, pool

__all__ = ["run_key", "run_plan", "simulate"]


def run_key(scenario: Scenario) -> str:
    """What a replication's results depend on (the scenario but its replication count and
    stopping rule, and this simqos version), as a hash: a finished replication of an
    interrupted run is taken again only by a run with the same key."""
    import hashlib
    import json

    import simqos

    content = json.dumps(scenario.model_dump(mode="json", exclude={"replications", "precision", "output"}), sort_keys=True)
    return hashlib.sha256(f"{simqos.__version__}\n{content}".encode()).hexdigest()


class _Checkpoints:
    """Finished replications of a run, one file each in ``folder`` (``r0000.pickle``: its
    tallies, the records it kept in memory, and its count), valid for the plan's scenario and
    this simqos version only: a file from another is ignored (and replaced)."""

    def __init__(self, folder: Path, plan: Plan) -> None:
        self.folder = adopt(Path(folder), "checkpoints", "checkpoints")  # files are replaced only in a folder of simqos's
        self.key = run_key(plan.scenario)

    def _path(self, replication: int) -> Path:
        return self.folder / f"r{replication:04d}.pickle"

    def load(self, replication: int):
        import pickle

        try:
            key, result = pickle.loads(self._path(replication).read_bytes())
        except (OSError, pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError):
            return None
        return result if key == self.key else None

    def save(self, replication: int, result) -> None:
        import pickle

        tmp = self._path(replication).with_suffix(".partial")
        tmp.write_bytes(pickle.dumps((self.key, result)))
        tmp.replace(self._path(replication))  # on disk whole or not at all


def _replication_in_worker(scenario_json: dict, source: str, replication: int, kept: KeptRecords):
    return serve_replication(build_plan(parse_scenario(scenario_json, source), source), replication, kept)


def simulate(
    plan: Plan,
    progress: Callable[[int], None] | None = None,
    workers: int = 1,
    replications: range | None = None,
    records: KeptRecords = KeptRecords(),
    executor: str = "local",
    scheduler: str | None = None,
    checkpoints: Path | None = None,
) -> Run:
    """Every replication (default: the scenario's ``range(replications)``) under every policy;
    ``progress(requests)`` with how many more requests were served (chunk by chunk in this
    process, replication by replication in others). ``records``: which to keep, and whether in
    memory (``Run.records``) or written to a folder (the default: all, in memory).

    With ``workers > 1`` replications run in that many processes (each rebuilds the plan from
    the scenario), or with ``executor="dask"`` as tasks on a dask.distributed cluster (the
    scheduler at ``scheduler``, else a LocalCluster of ``workers`` processes, default 2); the
    result is the same as in one process, in the same order. ``checkpoints``: a folder where
    each finished replication's tallies are kept, and from which a run started again (the
    same plan) takes them instead of serving it again.
    """
    todo = range(plan.scenario.replications) if replications is None else replications
    results: dict[int, tuple[list[Tally], list[pd.DataFrame], int]] = {}
    check_execution(executor, workers, scheduler)
    saved = _Checkpoints(checkpoints, plan) if checkpoints is not None else None
    for r in todo:
        if saved is not None and (done := saved.load(r)) is not None:
            results[r] = done
            if progress:
                progress(done[2] // len(plan.labels))  # served before: counted as done
    left = [r for r in todo if r not in results]

    def finished(r: int, result: tuple[list[Tally], list[pd.DataFrame], int], report: bool) -> None:
        results[r] = result
        if saved is not None:
            saved.save(r, result)
        if progress and report:
            progress(result[2] // len(plan.labels))

    with interruptible():
        _serve_replications(plan, left, finished, workers, records, executor, scheduler, progress)
    tallies = {label: [results[r][0][p] for r in todo] for p, label in enumerate(plan.labels)}
    frames = [frame for r in todo for frame in results[r][1]]
    in_memory = records.folder is None and records.which != "none"
    return Run(tallies, pd.concat(frames, ignore_index=True) if in_memory and frames else None, sum(results[r][2] for r in todo))


def _serve_replications(plan: Plan, left: list[int], finished: Callable, workers: int, records: KeptRecords, executor: str,
                        scheduler: str | None, progress: Callable[[int], None] | None) -> None:  # fmt: skip
    """Serve replications ``left`` in this process, in local processes or on dask, calling
    ``finished(r, result, report)`` as each completes (``report``: count its requests now)."""
    scenario_json = plan.scenario.model_dump(mode="json")  # other processes rebuild the plan from it
    if executor == "dask" and left:
        from dask.distributed import as_completed as dask_completed

        with dask_client(scheduler, workers if workers > 1 else 2) as client:
            futures = {client.submit(_replication_in_worker, scenario_json, plan.scenario.name, r, records, pure=False): r
                       for r in left}  # fmt: skip
            for future in dask_completed(futures):
                finished(futures[future], future.result(), True)
    elif workers > 1 and len(left) > 1:
        from concurrent.futures import as_completed

        with pool(min(workers, len(left))) as processes:
            futures = {processes.submit(_replication_in_worker, scenario_json, plan.scenario.name, r, records): r for r in left}
            for future in as_completed(futures):
                finished(futures[future], future.result(), True)
    else:
        for r in left:
            finished(r, serve_replication(plan, r, records, progress), False)


def run_plan(
    plan: Plan,
    progress: Callable[[int], None] | None = None,
    workers: int = 1,
    replications: range | None = None,
) -> pd.DataFrame:
    """The records of :func:`simulate`."""
    return simulate(plan, progress, workers, replications).records
