"""Profiler (torch): timing harness, per-layer x level measurement, bundle writer."""

from simqos.profiler.measure import LayerLevelResult, TimerOptions, profile_layer_level
from simqos.profiler.run import ProfileSettings, RouteReport, run_profile
from simqos.profiler.timer import Measurement, measure, torch_threads

__all__ = [
    "LayerLevelResult",
    "Measurement",
    "ProfileSettings",
    "RouteReport",
    "TimerOptions",
    "measure",
    "profile_layer_level",
    "run_profile",
    "torch_threads",
]
