"""Reading a user's files — YAML documents, numeric CSV traces — with errors that name the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from simqos.errors import SimqosError

__all__ = ["read_numeric_columns", "read_yaml"]


def read_yaml(path: Path, what: str, hint: str = "") -> object:
    """The YAML document in ``path`` (``yaml.safe_load``); ``what`` names its role in errors,
    and ``hint`` is added when the file does not exist."""
    try:
        return yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise SimqosError(f"{path}: no such {what} file" + (f"; {hint}" if hint else "")) from None
    except yaml.YAMLError as exc:
        raise SimqosError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None


def read_numeric_columns(path: Path, columns: tuple[str, ...], what: str) -> dict[str, np.ndarray]:
    """The named columns of CSV ``path`` as float arrays: present, non-empty, finite, >= 0.

    ``what`` names the file's role in messages (e.g. "arrivals", "trace").
    """
    try:
        table = pd.read_csv(path)
    except FileNotFoundError:
        raise SimqosError(f"{path}: no such {what} file") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise SimqosError(f"{path}: unreadable as CSV ({exc})") from None
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
