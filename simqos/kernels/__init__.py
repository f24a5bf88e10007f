"""Layer kernels (torch): dense masked, torch CSR/BSR and scipy CSR, for Linear and Conv layers."""

from simqos.kernels.formats import FORMATS, SparseFormat
from simqos.kernels.layers import KERNELS, BuiltKernel, LayerKernel, build_kernel, kernel_names

__all__ = ["FORMATS", "KERNELS", "BuiltKernel", "LayerKernel", "SparseFormat", "build_kernel", "kernel_names"]
