"""The profile bundle: the simulator's only view of a model (no torch here).

A bundle is a folder of one JSON file and a few CSV tables, documented field by field in
``profiles/README.md``:

``profile.json``
    :class:`ProfileMeta`: schema version, model, levels, layers in execution order, reroute
    points, accuracy availability, provenance.
``layers.csv``
    one row per layer x level: chosen kernel, non-zeros, FLOPs, bytes, latency summary.
``latency_samples.csv``
    raw latency samples (ms) per layer x level: one call each of the chosen kernel, timed
    inside whole-model passes.
``kernels.csv``
    every candidate kernel per layer x level: median alone and inside the model (ms), and
    whether it was exact / chosen.
``end_to_end.csv``
    raw latency samples (ms) of the whole model per level (all layers at that level, chosen
    kernels), and of the dense baseline (level ``DENSE_BASELINE_LEVEL`` = -1: every layer's
    dense kernel with all its weights).
``routes.csv``
    accuracy per route on each held-out split (only when accuracy is available): the
    ``validation`` rows are what policies decide on, the ``test`` rows what reports show.
``route_outcomes.npz`` (optional, with ``routes.csv``)
    every route's outcome on each test sample (:class:`RouteOutcomes`): routes are scored on the
    same samples, so the verdict's difference of two policies' accuracy gets its *paired*
    test-set sampling error from it. Without it, the verdict's interval leaves that error out
    and says so.
``idle.csv`` (optional)
    raw whole-model latency samples (ms) per level after the device idled ``idle_ms`` since the
    previous inference (0: back to back, as every other table is timed). An idle core loses
    warm caches (and, on many devices, clock speed), so a request that finds the device idle
    runs slower; the simulator scales its work at each level by that level's measured ratio
    (see :meth:`Profile.idle_factors`).

:func:`load_profile` validates everything — schema, completeness, units, and nesting (non-zeros
and resident bytes never grow from a level to a sparser one) — and raises SimqosError naming
the file, the field, the value and the fix.
"""

from simqos.bundle.loading import SPLITS, check_routes, load_profile
from simqos.bundle.meta import (
    DENSE_BASELINE_LEVEL,
    SCHEMA_VERSION,
    AccuracyInfo,
    Deployment,
    LayerInfo,
    LevelInfo,
    NetworkRecipe,
    ProfileMeta,
    ProfileSettings,
    Provenance,
    Quietness,
    SplitAccuracy,
    TrainingSettings,
)
from simqos.bundle.profile import OUTCOMES_FILE, TABLE_COLUMNS, Profile, RouteOutcomes, save_profile

__all__ = [
    "DENSE_BASELINE_LEVEL",
    "OUTCOMES_FILE",
    "SCHEMA_VERSION",
    "SPLITS",
    "TABLE_COLUMNS",
    "AccuracyInfo",
    "Deployment",
    "LayerInfo",
    "LevelInfo",
    "NetworkRecipe",
    "Profile",
    "ProfileMeta",
    "ProfileSettings",
    "Provenance",
    "Quietness",
    "RouteOutcomes",
    "SplitAccuracy",
    "TrainingSettings",
    "check_routes",
    "load_profile",
    "save_profile",
]
