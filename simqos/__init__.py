"""simqos: how many nines of QoS a multi-level sparse network keeps on a fluctuating device.

The simulator side (profile bundles, scenarios, the SimPy engine, metrics) imports neither torch
nor matplotlib; the torch side lives in :mod:`simqos.nested`, :mod:`simqos.kernels`,
:mod:`simqos.profiler` and :mod:`simqos.models`.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("simqos")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
