"""Compiling with numba, cached where it can be.

numba keeps compiled code in a cache folder (beside the module, else in the user's cache); with
none writable (an unwritable HOME, a read-only install) it refuses ``cache=True`` at import.
:func:`njit` then compiles without a cache instead, after one warning: each process compiles
afresh, a few seconds, and everything else is the same.

For contributors: numba renews a cached function when its own source file changes, not when a
function it calls from another module does (the fast path's driver in ``fastpath.py`` inlines
the serving core of ``serving.py``). After editing a module whose compiled functions others
call, delete the cache (``rm simqos/__pycache__/*.nb[ic]``) or the callers run the old code.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numba

__all__ = ["njit"]

_warned = False


def njit(*signature: object, **options: object) -> Callable[[Callable], Callable]:
    """``numba.njit(*signature, cache=True, **options)``, falling back to no cache (module
    docstring). A signature compiles eagerly, for those argument types only."""

    def compile_(fn: Callable) -> Callable:
        global _warned
        try:
            return numba.njit(*signature, cache=True, **options)(fn)
        except RuntimeError as exc:  # numba: "cannot cache function ...: no locator available"
            if not _warned:
                warnings.warn(f"simqos: numba cannot cache compiled code here ({str(exc).splitlines()[0]}); compiling "
                              "without a cache (set NUMBA_CACHE_DIR to a writable folder to keep it)", stacklevel=2)
                _warned = True
            return numba.njit(*signature, **options)(fn)

    return compile_
