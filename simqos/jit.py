"""Compiling with numba, cached where it can be.

numba renews a cached function when its own source file changes, not when a function it calls
from another module does — and the compiled driver (``sim/compiled.py``) inlines the serving
core (``sim/serving.py``): after an update that touched only the core, a cache kept by file would
run the old rules, silently. So simqos keeps its compiled code in a folder named by a digest of
the code that compiles (:func:`compiled_code_digest`): the modules that define compiled
functions and the simqos modules they import (whose constants compiled code reads), as code —
comments and docstrings do not count. Changing any of that compiles everything afresh once,
and nothing stale is ever loaded; changing anything else (the report, the CLI, a comment)
keeps the cache. The folder lies in the package's ``__pycache__/numba`` (marked with
:mod:`simqos.outputs`'s marker; older versions' folders there that carry it are removed,
nothing else), or under ``NUMBA_CACHE_DIR`` when that is set (nothing is removed there), or in
``~/.cache/simqos/numba`` for a read-only install. With none writable, :func:`njit` compiles
without a cache, after one warning: each process compiles afresh, a few seconds, and
everything else is the same.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import hashlib
import os
import re
import sys
import time
import types as pytypes
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numba
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic, overload
from numba.np.arrayobj import make_array

from simqos.outputs import discard, mark, owned

__all__ = ["borrow", "cache_dir", "claim_cache", "clock_ns", "interpreted", "interruptible", "code_digest", "compiled_code_digest", "compiling_modules", "njit"]

_PACKAGE = Path(__file__).resolve().parent
_warned = False


_COMPILES = re.compile(r"^from simqos\.jit import .*\b(?:njit|intrinsic)\b|^\s*@(?:numba\.)?(?:\w*jit|intrinsic|overload)\b",
                       re.MULTILINE)
"""A module that compiles: it takes numba's decorators from here, or decorates with one (``@njit``,
``@numba.njit``, a name ending in ``jit`` such as the serving core's ``@decide_jit``, ``@intrinsic``,
``@overload``)."""
_IMPORTS = re.compile(r"^(?:from|import) (simqos(?:\.\w+)*)", re.MULTILINE)


def compiling_modules(package: Path) -> list[Path]:
    """The modules under ``package`` that define compiled functions, and the modules of the
    package those import at their top level (compiled code reads their constants), sorted."""
    texts = {path: path.read_text() for path in package.rglob("*.py")}
    found = {path for path, text in texts.items() if _COMPILES.search(text)}
    for path in list(found):
        for match in _IMPORTS.finditer(texts[path]):
            module = package.parent.joinpath(*match.group(1).split("."))
            found.update(p for p in (module.with_suffix(".py"), module / "__init__.py") if p in texts)
    return sorted(found)


def code_digest(paths: list[Path], root: Path) -> str:
    """A digest of what the files in ``paths`` compute: their names relative to ``root`` and
    their bytecode, compiled without docstrings, hashed without line numbers — so comments,
    docstrings and blank lines leave it unchanged."""
    digest = hashlib.blake2b(digest_size=8)

    def feed(code: pytypes.CodeType) -> None:
        digest.update(code.co_code)
        digest.update(repr((code.co_names, code.co_varnames, code.co_freevars, code.co_cellvars, code.co_argcount,
                            code.co_kwonlyargcount, code.co_flags)).encode())
        for const in code.co_consts:
            feed(const) if isinstance(const, pytypes.CodeType) else digest.update(_stable_repr(const).encode())

    for path in paths:
        tree = ast.parse(path.read_bytes())
        _drop_docstrings(tree.body)
        digest.update(str(path.relative_to(root)).encode())
        feed(compile(tree, str(path), "exec", dont_inherit=True))
    return digest.hexdigest()


def _stable_repr(const: object) -> str:
    """``repr(const)``, the same in every process: a frozenset's (``x in {"a", "b"}`` compiles to
    one) follows the string hashes, which each process seeds afresh, so its items are sorted."""
    if isinstance(const, frozenset):
        return "frozenset(" + repr(sorted(_stable_repr(item) for item in const)) + ")"
    if isinstance(const, tuple):
        return "(" + ", ".join(_stable_repr(item) for item in const) + ")"
    return repr(const)


def _drop_docstrings(body: list[ast.stmt]) -> None:
    """Removes the docstrings of a module's, class's or function's ``body``, and of the classes
    and functions defined in it, in place (``pass`` where one was the whole body)."""
    first = body[0] if body else None
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        body[0:1] = [] if len(body) > 1 else [ast.copy_location(ast.Pass(), first)]
    for node in body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            _drop_docstrings(node.body)


def compiled_code_digest(package: Path) -> str:
    """:func:`code_digest` of :func:`compiling_modules`: what names the compiled-code cache."""
    return code_digest(compiling_modules(package), package)


@functools.cache
def cache_dir() -> str:
    """Where this version of simqos keeps its compiled code (module doc)."""
    name = f"simqos-{compiled_code_digest(_PACKAGE)}"
    if numba.config.CACHE_DIR:
        return os.path.join(numba.config.CACHE_DIR, name)
    if os.access(_PACKAGE, os.W_OK):
        with contextlib.suppress(OSError):
            return str(claim_cache(_PACKAGE / "__pycache__" / "numba", name))
    return str(Path.home() / ".cache" / "simqos" / "numba" / name)


def claim_cache(parent: Path, name: str) -> Path:
    """``parent / name``, created and marked as simqos's compiled-code cache, after removing the
    folders in ``parent`` that carry that marker for another version (nothing unmarked, no link)."""
    for old in parent.iterdir() if parent.is_dir() else ():
        if old.name != name and not old.is_symlink() and owned(old) == "compiled":
            discard(old)
    folder = parent / name
    folder.mkdir(parents=True, exist_ok=True)
    mark(folder, "compiled")
    return folder


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """Ctrl-C as a KeyboardInterrupt, also when it lands in compiled code: numba then raises a
    SystemError ("returned a result with an exception set") whose causes hold the interrupt."""
    try:
        yield
    except SystemError as exc:
        cause: BaseException | None = exc
        while cause is not None and not isinstance(cause, KeyboardInterrupt):
            cause = cause.__cause__ or cause.__context__
        if cause is None:
            raise
        raise KeyboardInterrupt from None


def njit(*signature: object, **options: object) -> Callable[[Callable], Callable]:
    """``numba.njit(*signature, cache=True, **options)`` with the cache in :func:`cache_dir`,
    falling back to no cache (module docstring). A signature compiles eagerly, for those
    argument types only."""

    def compile_(fn: Callable) -> Callable:
        global _warned
        user_dir = numba.config.CACHE_DIR
        numba.config.CACHE_DIR = cache_dir()  # read when the cache is set up, at decoration
        try:
            return numba.njit(*signature, cache=True, **options)(fn)
        except RuntimeError as exc:  # numba: "cannot cache function ...: no locator available"
            if not _warned:
                warnings.warn(f"simqos: numba cannot cache compiled code here ({str(exc).splitlines()[0]}); compiling "
                              "without a cache (set NUMBA_CACHE_DIR to a writable folder to keep it)", stacklevel=2)
                _warned = True
            return numba.njit(*signature, **options)(fn)
        finally:
            numba.config.CACHE_DIR = user_dir

    return compile_


def interpreted(function: Callable, *callees: Callable) -> Callable:
    """The compiled ``function``'s source run by the interpreter, with the compiled ``callees``
    it names run by the interpreter too. numba's ``py_func`` alone still calls its callees
    compiled, and those cannot take a Python function as an argument (a Python policy's
    ``decide``). Reads the module's globals as they are now: make it after they are defined."""
    source = function.py_func
    names = dict(source.__globals__) | {callee.py_func.__name__: callee.py_func for callee in callees}
    return pytypes.FunctionType(source.__code__, names, source.__name__, source.__defaults__, source.__closure__)


def borrow(a):
    """``a`` itself; in compiled code, a view of ``a`` that numba does not reference-count, for
    passing to a function that only reads it while ``a`` lives (a policy's ``decide``). A named
    tuple comes back with each array in it borrowed (the serving step's tuples).

    numba counts references to every array it passes: a call through a function pointer (how
    the fast path calls ``decide``) increments and decrements each array argument's count, an
    atomic operation each, and those were a third of a request's cost. A borrowed view has no
    owner (a null meminfo), so the counting stops at a null check; it must not outlive ``a``,
    which holds for an argument of a call that returns a number."""
    return a


@intrinsic
def _borrowed(typingctx, a):
    def codegen(context, builder, signature, args):
        source = make_array(signature.args[0])(context, builder, value=args[0])
        view = make_array(signature.return_type)(context, builder)
        for field in ("nitems", "itemsize", "data", "shape", "strides"):
            setattr(view, field, getattr(source, field))
        view.meminfo = context.get_constant_null(types.MemInfoPointer(types.voidptr))
        view.parent = context.get_constant_null(types.pyobject)
        return view._getvalue()

    return a(a), codegen


@overload(borrow)
def _borrow(a):
    if isinstance(a, types.Array):
        return lambda a: _borrowed(a)
    if isinstance(a, types.BaseNamedTuple):  # the same tuple, each array in it borrowed
        fields = ", ".join(f"_borrowed(a[{k}])" if isinstance(t, types.Array) else f"a[{k}]" for k, t in enumerate(a.types))
        scope = {"_borrowed": _borrowed, "cls": a.instance_class}
        exec(f"def impl(a):\n    return cls({fields})", scope)  # noqa: S102 - code made here, per tuple type
        return scope["impl"]
    return None


def clock_ns() -> int:
    """The monotonic clock in nanoseconds (``time.monotonic_ns``), callable from compiled code,
    where it is one ``clock_gettime(CLOCK_MONOTONIC)`` call (about 70 ns here) and the function
    stays cacheable (a ctypes pointer would not)."""
    return time.monotonic_ns()


_CLOCK_MONOTONIC = 6 if sys.platform == "darwin" else 1  # CLOCK_MONOTONIC: Linux's value, macOS's


@intrinsic
def _clock_gettime_ns(typingctx):
    def codegen(context, builder, signature, args):
        i64 = ir.IntType(64)
        fnty = ir.FunctionType(ir.IntType(32), [ir.IntType(32), i64.as_pointer()])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "clock_gettime")
        ts = cgutils.alloca_once(builder, i64, size=2)  # struct timespec: seconds, nanoseconds
        builder.call(fn, [ir.Constant(ir.IntType(32), _CLOCK_MONOTONIC), ts])
        seconds = builder.load(ts)
        nanoseconds = builder.load(builder.gep(ts, [ir.Constant(ir.IntType(32), 1)]))
        return builder.add(builder.mul(seconds, ir.Constant(i64, 1_000_000_000)), nanoseconds)

    return types.int64(), codegen


@overload(clock_ns)
def _clock_ns():
    return lambda: _clock_gettime_ns()
