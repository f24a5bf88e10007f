"""One replication under every policy: served by the SimPy model or its compiled twin, whole or
streamed in chunks, into a tally per policy and the records a run keeps."""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from simqos.scenario import Scenario
from simqos.sim.compiled import FastServer, serve_fast
from simqos.sim.inputs import (
    CHUNK_REQUESTS,
    DEVICE_AHEAD_S,
    ReplicationInputs,
    RequestStream,
    arrival_span,
    check_trace_ends,
    device_window,
    until_covered,
)
from simqos.sim.plan import Plan, engines
from simqos.sim.serving import OUTCOMES
from simqos.sim.simpy_model import Served, serve_simpy
from simqos.sim.tally import Tally, TallyBuilder, per_replication, pooled, summarize, tallies_from_records

__all__ = ["NO_RECORDS", "KeptRecords", "Run", "plan_tallies", "records_table", "run_policy", "serve_replication", "serve",
           "streamed_replication", "summarize_plan"]


def serve(plan: Plan, inputs: ReplicationInputs, policy_index: int, engine: str | None = None) -> Served:
    """Serve ``inputs`` under policy ``policy_index``.

    ``engine`` (default: the scenario's) is ``simpy``, or ``auto``: the compiled fast path
    (:mod:`simqos.sim.compiled`, equal record for record) for built-in policies, SimPy otherwise.
    """
    policy = plan.policy_factories[policy_index]()
    if (engine or plan.scenario.engine) == "auto" and policy.compiled():
        return Served(*serve_fast(plan, inputs, policy))
    return serve_simpy(plan, inputs, policy)


def run_policy(
    plan: Plan, inputs: ReplicationInputs, policy_index: int, replication: int, engine: str | None = None
) -> pd.DataFrame:
    """Serve ``inputs`` under policy ``policy_index`` (:func:`serve`); one row per request (see results.py)."""
    served = serve(plan, inputs, policy_index, engine)
    return records_table(plan, policy_index, replication, inputs.arrivals_s, inputs.deadlines_s, *served)


def records_table(
    plan: Plan,
    policy_index: int,
    replication: int,
    arrivals_s: np.ndarray,
    deadlines_s: np.ndarray,
    start_s: np.ndarray,
    finish_s: np.ndarray,
    route_code: np.ndarray,
    reroutes: np.ndarray,
    outcome: np.ndarray,
    first_request: int = 0,
) -> pd.DataFrame:
    """The records of one replication under one policy (columns in results.py) from per-request
    arrays: times in seconds, ``route_code`` the route's levels as base-``n_levels`` digits
    (-1: not served), ``outcome`` an index into :data:`OUTCOMES`; the first row is request
    ``first_request``."""
    model = plan.model
    routes, accuracy = model.record_routes
    n = len(arrivals_s)
    request = first_request + np.arange(n)
    return pd.DataFrame(
        {
            "replication": np.full(n, replication, dtype=np.int64),
            "policy": pd.Categorical.from_codes(np.full(n, policy_index), categories=list(plan.labels)),
            "request": request,
            "warmup": request < plan.scenario.warmup_requests,
            "arrival_s": arrivals_s,
            "start_s": start_s,
            "finish_s": finish_s,
            "deadline_s": deadlines_s,
            "latency_ms": (finish_s - arrivals_s) * 1e3,
            "route": pd.Categorical.from_codes(route_code + 1, categories=routes),
            "reroutes": reroutes,
            "outcome": pd.Categorical.from_codes(outcome, categories=list(OUTCOMES)),
            "accuracy": accuracy[route_code + 1],
        }
    )


@dataclass(frozen=True)
class Run:
    """What a run of replications produced: per policy label, one :class:`~simqos.sim.tally.Tally`
    per replication in order (what summaries and the verdict are computed from), and the
    records table when they were kept (None otherwise)."""

    tallies: dict[str, list[Tally]]
    records: pd.DataFrame | None
    simulated: int  # requests served, summed over policies and replications (warm-up included)

    def pooled(self) -> dict[str, Tally]:
        """Each policy's tallies pooled over the replications."""
        return pooled(self.tallies)


@dataclass(frozen=True)
class KeptRecords:
    """Which records a run keeps — ``which``: ``all``, ``sample`` (requests before warm-up +
    ``sample_requests`` of each replication) or ``none``, as a scenario's ``outputs`` says — and
    where: written into ``folder`` as the run goes (:class:`simqos.results.RecordsWriter`, in
    ``format``), or, with no folder, returned in memory."""

    which: str = "all"
    sample_requests: int = 10_000
    folder: Path | None = None
    format: str = "parquet"

    @classmethod
    def of(cls, scenario: Scenario, folder: Path | None = None) -> KeptRecords:
        """What ``scenario``'s outputs ask for, written into ``folder``."""
        outputs = scenario.outputs
        return cls(outputs.records, outputs.sample_requests, folder, outputs.records_format)


NO_RECORDS = KeptRecords("none")


class _RecordSink:
    """One replication's records as :class:`KeptRecords` asks: cut to the kept requests, then
    kept in memory or written to the folder."""

    def __init__(self, plan: Plan, replication: int, kept: KeptRecords) -> None:
        self.plan, self.replication, self.kept = plan, replication, kept
        self.end = {"all": sys.maxsize, "none": 0}.get(kept.which, plan.scenario.warmup_requests + kept.sample_requests)
        self.frames: list[list[pd.DataFrame]] = [[] for _ in plan.labels]
        self.writer = None
        if kept.folder is not None and self.end:
            from simqos.results import RecordsWriter

            self.writer = RecordsWriter(kept.folder, kept.format)

    def add(self, policy: int, first: int, arrivals_s: np.ndarray, deadlines_s: np.ndarray, served: Served) -> None:
        """Requests ``first``, ``first`` + 1, ... under policy ``policy``."""
        n = min(len(arrivals_s), self.end - first)
        if n <= 0:
            return
        table = records_table(self.plan, policy, self.replication, arrivals_s[:n], deadlines_s[:n],
                              *(a[:n] for a in served), first_request=first)  # fmt: skip
        if self.writer is not None:
            self.writer.write(self.replication, policy, table)
        else:
            self.frames[policy].append(table)

    def finish(self) -> list[pd.DataFrame]:
        """The records in memory (policy by policy), or none once the files are complete."""
        if self.writer is not None:
            for policy in range(len(self.frames)):
                self.writer.close(self.replication, policy)
            return []
        return [pd.concat(f, ignore_index=True) for f in self.frames if f]

    def abandon(self) -> None:
        """Forget what was added: the replication runs again from its start."""
        if self.writer is not None:
            self.writer.abandon()
        self.frames = [[] for _ in self.plan.labels]


def serve_replication(plan: Plan, replication: int, kept: KeptRecords,
                 progress: Callable[[int], None] | None = None) -> tuple[list[Tally], list[pd.DataFrame], int]:  # fmt: skip
    """Replication ``replication`` under every policy: a tally per policy, the records kept in
    memory (if any), and how many requests were served (all policies). Streamed in chunks when
    every policy runs on the compiled path; else whole (SimPy serves a Python policy's
    replication at once). ``progress(requests)`` as requests are served."""
    if all(engine == "compiled" for engine in engines(plan)):
        return streamed_replication(plan, replication, kept, progress=progress)
    model, warmup = plan.model, plan.scenario.warmup_requests
    accuracy = model.accuracy_by_code()
    sink = _RecordSink(plan, replication, kept)

    def run(inputs: ReplicationInputs) -> tuple[tuple[list[Tally], int], float]:
        sink.abandon()
        tallies, latest = [], 0.0
        n_kept = max(len(inputs.arrivals_s) - warmup, 0)
        for p in range(len(plan.policy_factories)):
            served = serve(plan, inputs, p)
            latest = max(latest, served.latest_s())
            builder = TallyBuilder(replication, n_kept, model.n_levels, model.n_segments, accuracy)
            _tally_block(builder, warmup, 0, inputs.arrivals_s, served)
            tallies.append(builder.finish())
            sink.add(p, 0, inputs.arrivals_s, inputs.deadlines_s, served)
        return (tallies, len(inputs.arrivals_s) * len(tallies)), latest

    tallies, simulated = until_covered(plan, replication, run)
    if progress:
        progress(simulated // len(plan.labels))
    return tallies, sink.finish(), simulated


def _tally_block(builder: TallyBuilder, warmup: int, first: int, arrivals_s: np.ndarray, served: Served) -> None:
    """Add requests ``first`` .. (``arrivals_s`` and ``served`` are theirs) past the warm-up."""
    skip = min(max(warmup - first, 0), len(arrivals_s))
    latency_ms = (served.finish_s[skip:] - arrivals_s[skip:]) * 1e3
    if len(latency_ms):
        builder.add(served.outcome[skip:], latency_ms, served.route_code[skip:], served.reroutes[skip:])


def streamed_replication(plan: Plan, replication: int, kept: KeptRecords,
                          chunk: int | None = None, progress: Callable[[int], None] | None = None,
                          ) -> tuple[list[Tally], list[pd.DataFrame], int]:  # fmt: skip
    """:func:`serve_replication` on the compiled path, its inputs drawn and served ``chunk``
    requests at a time (default :data:`CHUNK_REQUESTS`; the next chunk drawn in a thread while
    this one is served) on a window of the device that moves with them: memory holds a chunk,
    the queue that carries over and the device since the servers' clocks, not the replication.
    ``progress(requests)`` after each chunk, with how many it served."""
    scenario = plan.scenario
    n, last = arrival_span(scenario, replication)
    device = device_window(plan, replication, last)
    servers = [FastServer(plan, factory()) for factory in plan.policy_factories]
    keeper = _Keeper(plan, replication, kept, len(servers), max(n - scenario.warmup_requests, 0))
    stream = RequestStream(plan, replication)
    window = stream.take(0)
    first, begins, latest = 0, [0] * len(servers), 0.0  # request index of window[0]; each server's next
    # A second thread draws the next chunk and tallies and writes the served ones while this
    # thread serves (the compiled parts release the GIL); one thread, so each policy's blocks
    # are kept in order.
    kept_blocks: deque[Future] = deque()
    with ThreadPoolExecutor(1) as helper:
        for new, final in _chunks(stream, helper, chunk or CHUNK_REQUESTS):
            window = tuple(np.concatenate((old, more)) for old, more in zip(window, new))
            arrivals, deadlines, work = window
            if len(arrivals):
                device.ensure(float(arrivals[-1]) + DEVICE_AHEAD_S)
            for p, server in enumerate(servers):
                for begin, stop, served in _served_blocks(server, window, first, begins[p], final, device):
                    latest = max(latest, served.latest_s())
                    kept_blocks.append(helper.submit(keeper.keep, p, first + begin, arrivals[begin:stop], deadlines[begin:stop], served))
                    begins[p] = stop
            device.forget(min(server.now_s for server in servers))
            while kept_blocks and kept_blocks[0].done():
                kept_blocks.popleft().result()  # raises what the helper raised
            lo = min(begins)
            if progress:
                progress(lo)
            window, first, begins = tuple(a[lo:] for a in window), first + lo, [b - lo for b in begins]
        for block in kept_blocks:
            block.result()
    check_trace_ends(scenario, latest, f"replication {replication} uses the device until")
    return *keeper.finish(), n * len(servers)


def _chunks(stream: RequestStream, helper: ThreadPoolExecutor, chunk: int) -> Iterator[tuple[tuple[np.ndarray, ...], bool]]:
    """The stream's chunks of ``chunk`` requests, each drawn in ``helper`` while the one before
    is served, and whether it is the last."""
    ahead = helper.submit(stream.take, chunk)
    while True:
        new = ahead.result()
        final = stream.exhausted
        if not final:
            ahead = helper.submit(stream.take, chunk)
        yield new, final
        if final:
            return


def _served_blocks(server: FastServer, window: tuple[np.ndarray, ...], first: int, begin: int, final: bool,
                   device) -> Iterator[tuple[int, int, Served]]:  # fmt: skip
    """One server's requests of the window from ``begin``, served as far as it can go, each
    block as ``(begin, stop, served)``; where it stops for the device, the device is sampled
    further (doubling while one request needs more) and it goes on."""
    while True:
        stop, short, arrays = server.serve(*window, first, begin, final, device.view())
        yield begin, stop, Served(*arrays)
        if not short:
            return
        begin = stop
        further = max(device.known_s - server.now_s, DEVICE_AHEAD_S)
        device.ensure(max(server.now_s, device.known_s) + further)


class _Keeper:
    """What a streamed replication keeps of each served block: each policy's tally and the
    records the scenario keeps."""

    def __init__(self, plan: Plan, replication: int, kept: KeptRecords, n_policies: int, n_counted: int) -> None:
        model = plan.model
        accuracy = model.accuracy_by_code()
        self.warmup = plan.scenario.warmup_requests
        self.sink = _RecordSink(plan, replication, kept)
        self.builders = [TallyBuilder(replication, n_counted, model.n_levels, model.n_segments, accuracy) for _ in range(n_policies)]

    def keep(self, policy: int, first: int, arrivals_s: np.ndarray, deadlines_s: np.ndarray, served: Served) -> None:
        _tally_block(self.builders[policy], self.warmup, first, arrivals_s, served)
        self.sink.add(policy, first, arrivals_s, deadlines_s, served)

    def finish(self) -> tuple[list[Tally], list[pd.DataFrame]]:
        return [b.finish() for b in self.builders], self.sink.finish()


def plan_tallies(plan: Plan, data: Run | pd.DataFrame) -> dict[str, list[Tally]]:
    """Per policy, a tally per replication: a run's, or made from a records table."""
    if isinstance(data, Run):
        return data.tallies
    model = plan.model
    return tallies_from_records(data, model.n_levels, model.n_segments, model.accuracy_by_code())


def summarize_plan(
    plan: Plan, data: Run | pd.DataFrame, by_replication: bool = False, percentile_intervals: bool = True
) -> pd.DataFrame:
    """:func:`simqos.sim.tally.summarize` of a run (or of a records table), with the routes'
    measured accuracy intervals (or, ``by_replication``, :func:`~simqos.sim.tally.per_replication`),
    an ``engine`` column: which engine served each policy (``compiled`` or ``simpy``), and
    ``decision_ms``: the device time charged for each of its decisions."""
    tallies = plan_tallies(plan, data)
    intervals = plan.model.route_accuracy_interval
    if by_replication:
        summary = per_replication(tallies, intervals)
    else:
        summary = summarize(tallies, intervals, percentile_intervals)
    summary["engine"] = summary["policy"].map(dict(zip(plan.labels, engines(plan))))
    summary["decision_ms"] = summary["policy"].map(dict(zip(plan.labels, (f().decision_ms for f in plan.policy_factories))))
    return summary
