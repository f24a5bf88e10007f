"""Reading a user's files — YAML documents, numeric CSV traces — with errors that name the file."""

from __future__ import annotations

import functools
import io
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from simqos.errors import SimqosError

__all__ = ["read_arrivals_csv", "read_numeric_columns", "read_yaml"]


MAX_NODES = 100_000
"""Values a user's YAML may hold once its aliases (``*name``) are expanded: far more than any
scenario needs, far fewer than a "billion laughs" document, whose aliases of aliases expand
exponentially."""
MAX_DEPTH = 64
"""How deeply a user's YAML may nest."""


class _Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses repeated keys and too deep nesting."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.depth = 0

    def compose_node(self, parent, index):  # type: ignore[no-untyped-def]
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise yaml.YAMLError(f"nested more than {MAX_DEPTH} levels deep")
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_mapping(self, node, deep=False):  # type: ignore[no-untyped-def]
        seen: set = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise yaml.YAMLError(f"key {key!r} appears twice in one mapping (line {key_node.start_mark.line + 1}); keep one")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _expanded_size(node: yaml.Node, memo: dict[int, int]) -> int:
    """How many values ``node`` holds with every alias expanded (a shared node counts each
    time it is used), computed once per distinct node."""
    if id(node) not in memo:
        if isinstance(node, yaml.ScalarNode):
            memo[id(node)] = 1
        else:
            children = node.value if isinstance(node, yaml.SequenceNode) else [n for pair in node.value for n in pair]
            memo[id(node)] = 1 + sum(min(_expanded_size(child, memo), MAX_NODES + 1) for child in children)
    return memo[id(node)]


def _read_text(path: Path, what: str, hint: str = "") -> str:
    """The text of a user's file, or one SimqosError saying why it cannot be read."""
    try:
        return path.read_text()
    except FileNotFoundError:
        raise SimqosError(f"{path}: no such {what} file" + (f"; {hint}" if hint else "")) from None
    except IsADirectoryError:
        raise SimqosError(f"{path}: is a folder; give the {what} file") from None
    except UnicodeDecodeError:
        raise SimqosError(f"{path}: not a text file (it is not UTF-8); give the {what} file") from None
    except OSError as exc:  # a symlink loop, a permission, a device error
        raise SimqosError(f"{path}: cannot read the {what} file ({exc.strerror or exc})") from None


def read_yaml(path: Path, what: str, hint: str = "") -> object:
    """The YAML document in ``path`` (safe: no Python objects, a bounded number of aliases and
    nesting, no repeated keys); ``what`` names its role in errors, and ``hint`` is added when
    the file does not exist."""
    text = _read_text(path, what, hint)
    try:
        loader = _Loader(text)  # reading checks the characters: a NUL, say, is refused here
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        raise SimqosError(f"{path}: not valid YAML (line {line}, column {column}: {str(exc).splitlines()[0]})") from None
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        size = _expanded_size(node, {})
        if size > MAX_NODES:
            raise yaml.YAMLError(f"its aliases expand to {size:,} values, more than {MAX_NODES:,}; write the values out")
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise SimqosError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    except RecursionError:
        raise SimqosError(f"{path}: not valid YAML (nested too deeply)") from None
    finally:
        loader.dispose()


def read_numeric_columns(path: Path, columns: tuple[str, ...], what: str) -> dict[str, np.ndarray]:
    """The named columns of CSV ``path`` as float arrays: present, non-empty, finite, >= 0.

    ``what`` names the file's role in messages (e.g. "arrivals", "trace"). A file is read once
    while it is unchanged (same size and modification time): a run's checks, its replications
    and its report share one reading; the arrays are read-only.
    """
    try:
        stat = Path(path).stat()
    except OSError:
        return _read_numeric_columns(path, columns, what)  # it says what is wrong with the path
    return dict(_cached_columns(str(path), columns, what, stat.st_size, stat.st_mtime_ns))


@functools.lru_cache(maxsize=32)
def _cached_columns(path: str, columns: tuple[str, ...], what: str, _size: int, _mtime_ns: int) -> dict[str, np.ndarray]:
    out = _read_numeric_columns(Path(path), columns, what)
    for values in out.values():
        values.setflags(write=False)
    return out


def _read_numeric_columns(path: Path, columns: tuple[str, ...], what: str) -> dict[str, np.ndarray]:
    try:
        table = pd.read_csv(io.StringIO(_read_text(path, what)))
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise SimqosError(f"{path}: unreadable as CSV ({str(exc).splitlines()[0]})") from None
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise SimqosError(f"{path}: needs columns {' and '.join(columns)}; missing {missing}")
    if table.empty:
        raise SimqosError(f"{path}: the {what} is empty; it needs at least one row")
    out = {c: pd.to_numeric(table[c], errors="coerce").to_numpy(dtype=float) for c in columns}
    for c, values in out.items():
        if not np.all(np.isfinite(values)) or np.any(values < 0):
            raise SimqosError(f"{path}: {c} must hold finite numbers >= 0")
    return out


def read_arrivals_csv(path: Path) -> np.ndarray:
    """Arrival times (s) from the ``arrival_s`` column of a CSV; sorted, non-negative."""
    times = read_numeric_columns(path, ("arrival_s",), "arrivals")["arrival_s"]
    if np.any(np.diff(times) < 0):
        raise SimqosError(f"{path}: arrival_s must be non-decreasing")
    return times
