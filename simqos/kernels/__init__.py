"""Layer kernels (torch): dense masked, torch CSR/BSR and scipy CSR, for Linear and Conv layers;
the nested layouts (:mod:`simqos.kernels.nested`); :mod:`simqos.kernels.runtime`, which runs a
whole route over the nested ones as compiled code; and the compiled weightless parts of two
families, the GAT's in-edge sum (:mod:`~simqos.kernels.graph`) and PointNet++'s sampling and
grouping (:mod:`~simqos.kernels.points`)."""

from simqos.kernels.formats import FORMATS, SparseFormat
from simqos.kernels.layers import KERNELS, BuiltKernel, LayerKernel, build_kernel, kernel_names

__all__ = ["FORMATS", "KERNELS", "BuiltKernel", "LayerKernel", "SparseFormat", "build_kernel", "kernel_names"]
