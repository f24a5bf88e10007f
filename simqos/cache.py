"""Where simqos keeps what it can always make again: trained checkpoints and generated data."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir"]


def cache_dir() -> Path:
    """``$SIMQOS_CACHE_DIR`` if set, else ``~/.cache/simqos``."""
    return Path(os.environ.get("SIMQOS_CACHE_DIR") or Path.home() / ".cache" / "simqos")
