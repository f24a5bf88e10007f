"""How far to trust the simulator on this machine: every real run of every validation in a
folder against its out-of-sample prediction (``prediction.csv``, :mod:`simqos.validate.predict`),
pooled, summarised and drawn (``simqos trust FOLDER``).

The summary gives, per scenario and policy and over all: the real runs, the share whose p50 and
p99 both pass (inside the predictive interval or within the tolerance), the share whose real
miss rate lies inside its interval, the share that pass outright, and the median half-width of
the p99 interval over the predicted p99 — a pass earned by a wide interval is worth little.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from simqos.errors import SimqosError
from simqos.outputs import owned, staged

__all__ = ["PREDICTION_FILE", "Trust", "collect", "summarize_trust", "trust_validations"]

PREDICTION_FILE = "prediction.csv"
"""What a validation folder holds its out-of-sample prediction in."""


def collect(folder: Path) -> pd.DataFrame:
    """Every validation's prediction under ``folder`` (itself, or the validation folders below
    it at any depth), one row per real run, with a ``validation`` column (its folder, relative
    to ``folder``); raises SimqosError naming the folder when it holds none."""
    if not folder.is_dir():
        raise SimqosError(f"{folder}: not a folder; give the folder your simqos validate outputs are in")
    found = [p.parent for p in sorted(folder.rglob(PREDICTION_FILE)) if owned(p.parent) == "validate"]
    if not found:
        raise SimqosError(f"{folder}: holds no validation with an out-of-sample prediction ({PREDICTION_FILE}); run "
                          f"`simqos validate SCENARIO --out {folder}/NAME` first (validations made before the prediction "
                          "existed have none)")  # fmt: skip
    frames = []
    for where in found:
        table = pd.read_csv(where / PREDICTION_FILE)
        if "scenario" not in table:
            raise SimqosError(f"{where / PREDICTION_FILE}: has no scenario column: it was written by an older simqos; "
                              "validate again")  # fmt: skip
        frames.append(table.assign(validation=str(where.relative_to(folder)) if where != folder else "."))
    return pd.concat(frames, ignore_index=True)


def summarize_trust(table: pd.DataFrame) -> pd.DataFrame:
    """Per scenario and policy, then ``all``: real runs, the shares whose percentiles, miss rate
    and whole verdict pass, and the median p99 half-width (the module doc)."""

    def row(g: pd.DataFrame) -> dict[str, object]:
        return {"runs": len(g), "percentiles_pass": float((g["p50_pass"] & g["p99_pass"]).mean()),
                "miss_inside": float(g["miss_pass"].mean()), "passed": float((g["verdict"] == "pass").mean()),
                "median_p99_half_width": float(np.median(g["p99_half_width"]))}  # fmt: skip

    rows = [{"scenario": s, "policy": p, **row(g)} for (s, p), g in table.groupby(["scenario", "policy"], sort=False)]
    rows.append({"scenario": "all", "policy": "all", **row(table)})
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class Trust:
    """What ``simqos trust`` wrote into ``folder``: every real run (``runs.csv``) and the
    summary (``summary.csv``), with ``trust.png`` (:func:`simqos.plots.trust`)."""

    folder: Path
    runs: pd.DataFrame
    summary: pd.DataFrame


def trust_validations(folder: Path | str, out: Path | str | None = None) -> Trust:
    """Collect every validation under ``folder``, summarise and draw them into ``out`` (default
    ``FOLDER/trust``, a folder simqos owns and replaces whole)."""
    from simqos import plots

    folder = Path(folder)
    runs = collect(folder)
    summary = summarize_trust(runs)
    out = Path(out) if out is not None else folder / "trust"
    with staged(out, "trust") as work:
        runs.to_csv(work / "runs.csv", index=False, float_format="%.6g")
        summary.to_csv(work / "summary.csv", index=False, float_format="%.6g")
        plots.save(plots.trust(runs), work / "trust.png")
    return Trust(out, runs, summary)
