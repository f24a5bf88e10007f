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

__all__ = ["pool"]

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
