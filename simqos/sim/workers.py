"""Worker processes that never outlive the command that started them.

A pool's workers (sweep cells, replications in parallel) are killed with their parent, even
when the parent is killed with SIGKILL and cannot clean up: on Linux each worker asks the
kernel for SIGKILL when its parent dies (``prctl(PR_SET_PDEATHSIG)``). Ctrl-C is the parent's
to handle: workers ignore SIGINT, and :func:`pool` cancels the queued tasks and terminates
the running ones at once, so an interrupted command stops within a second and keeps what
finished.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor

__all__ = ["check_execution", "dask_client", "pool"]

_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> None:
    """Pool initializer: SIGKILL when the parent dies; SIGINT left to the parent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the pool's own shutdown still applies
        return
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


@contextlib.contextmanager
def pool(workers: int | None) -> Iterator[ProcessPoolExecutor]:
    """A process pool whose workers die with this process, and which, on an exception (Ctrl-C
    included), drops its queued tasks and terminates its workers instead of finishing them."""
    executor = ProcessPoolExecutor(max_workers=workers, initializer=_die_with_parent, initargs=(os.getpid(),))
    try:
        yield executor
    except BaseException:
        processes = list(getattr(executor, "_processes", {}).values())  # the stdlib keeps no public handle
        executor.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.terminate()
        raise
    executor.shutdown(wait=True)


def check_execution(executor: str, workers: int | None, scheduler: str | None) -> None:
    """Refuse, naming the option, an executor other than local or dask, fewer than one worker,
    a --scheduler without dask, or a scheduler address without a port — before any work."""
    from simqos.errors import SimqosError

    if executor not in ("local", "dask"):
        raise SimqosError(f"--executor: {executor!r} is not local or dask")
    if workers is not None and workers < 1:
        raise SimqosError(f"--workers: {workers} must be >= 1")
    if scheduler is None:
        return
    if executor != "dask":
        raise SimqosError(f"--scheduler {scheduler}: a scheduler is used only with --executor dask; add it, or leave --scheduler out")
    from distributed.comm.addressing import parse_address, parse_host_port

    try:
        parse_host_port(parse_address(scheduler)[1])
    except ValueError as exc:
        raise SimqosError(f"--scheduler {scheduler}: {exc}; give the address as tcp://HOST:PORT (a dask scheduler's "
                          "default port is 8786)") from None


@contextlib.contextmanager
def dask_client(scheduler: str | None, workers: int | None):
    """A dask.distributed Client of the scheduler at ``scheduler`` (one line when it cannot be
    reached within 10 s), or of a LocalCluster of ``workers`` processes (one thread each),
    closed on the way out."""
    from dask.distributed import Client, LocalCluster

    from simqos.errors import SimqosError

    cluster = None if scheduler else LocalCluster(n_workers=workers or 2, threads_per_worker=1, processes=True)
    try:
        try:
            client = Client(scheduler or cluster, timeout="10s")
        except (OSError, TimeoutError) as exc:
            raise SimqosError(f"--scheduler {scheduler}: cannot reach it ({type(exc).__name__}); check the address, "
                              "or leave --scheduler out for a local cluster") from None
        with client:
            yield client
    finally:
        if cluster is not None:
            cluster.close()
