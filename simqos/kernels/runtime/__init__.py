"""The nested runtime: a route of a nested network run as compiled code over its nested kernels
(:mod:`simqos.kernels.runtime.lowering` lowers a network; :mod:`simqos.kernels.runtime.program` runs it)."""

from simqos.kernels.runtime.lowering import RUNTIME, CompiledNetwork, Unsupported, compile_network

__all__ = ["RUNTIME", "CompiledNetwork", "Unsupported", "compile_network"]
