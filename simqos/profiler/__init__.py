"""Profiler (torch): the network from its recipe, timing harness, per-layer x level
measurement, bundle writer."""

from simqos.profiler.measure import LayerLevelResult, TimerOptions, profile_layer_level
from simqos.profiler.recipe import RouteReport, build_network, route_report
from simqos.profiler.run import profile_model, run_profile
from simqos.profiler.timer import Measurement, measure, torch_threads

__all__ = [
    "LayerLevelResult",
    "Measurement",
    "RouteReport",
    "TimerOptions",
    "build_network",
    "measure",
    "profile_layer_level",
    "profile_model",
    "route_report",
    "run_profile",
    "torch_threads",
]
