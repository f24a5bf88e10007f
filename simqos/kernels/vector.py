"""8-float vector code for the kernels' inner loops, written as LLVM IR (numba intrinsics).

numba's own loops leave a row of 5, 10 or 16 floats to scalar code; these helpers build the
AVX2 operations the kernels need — a vector of 8 floats, a fused multiply-add, a value
broadcast to every lane, unaligned loads and stores — so a kernel can say exactly which vector
operations it does. Callers are intrinsics (:mod:`simqos.kernels.nested`,
:mod:`simqos.kernels.runtime.program`).
"""

from __future__ import annotations

from llvmlite import ir
from numba.core import cgutils

__all__ = ["VEC8", "fma8", "load8", "splat8", "store8"]

VEC8 = ir.VectorType(ir.FloatType(), 8)
"""Eight float32 lanes: one AVX2 register."""


def fma8(builder: ir.IRBuilder) -> ir.Function:
    """LLVM's fused multiply-add on 8 floats: ``call(fma8(b), [x, y, z])`` is ``x * y + z``."""
    return cgutils.get_or_insert_function(builder.module, ir.FunctionType(VEC8, [VEC8] * 3), "llvm.fma.v8f32")


def splat8(builder: ir.IRBuilder, v: ir.Value) -> ir.Value:
    """The scalar ``v`` (a float, or an integer for a lane mask) in all 8 lanes."""
    vec = ir.VectorType(v.type, 8)
    one = builder.insert_element(ir.Constant(vec, ir.Undefined), v, ir.Constant(ir.IntType(32), 0))
    return builder.shuffle_vector(one, ir.Constant(vec, ir.Undefined), ir.Constant(ir.VectorType(ir.IntType(32), 8), [0] * 8))


def load8(builder: ir.IRBuilder, data: ir.Value, at: ir.Value) -> ir.Value:
    """The 8 floats at ``data[at:]`` (float pointer ``data``), unaligned."""
    return builder.load(builder.bitcast(builder.gep(data, [at]), VEC8.as_pointer()), align=4)


def store8(builder: ir.IRBuilder, v: ir.Value, data: ir.Value, at: ir.Value) -> None:
    """``data[at : at + 8] = v``, unaligned."""
    builder.store(v, builder.bitcast(builder.gep(data, [at]), VEC8.as_pointer()), align=4)
