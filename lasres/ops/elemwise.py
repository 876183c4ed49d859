"""Fused elementwise ops.

``rectify`` written as Theano wrote ``relu`` — ``0.5 * (x + |x|)`` — costs
three graph nodes forward and four or five backward per layer; deep nets
have hundreds of ReLUs and PyTensor's rewriting time grows much faster than
the graph. :data:`relu` is one elementwise node computing the same values
(``0.5 * (x + |x|)``, bit for bit) whose gradient is one node with the same
semantics: ``g`` where x > 0, ``0.5 * g`` where x == 0, 0 where x < 0.
Both have C code (so PyTensor's elementwise fusion folds them into its
fused loops) and JAX implementations.
"""
import numpy as np
from pytensor.scalar.basic import BinaryScalarOp, UnaryScalarOp, upgrade_to_float
from pytensor.tensor.elemwise import Elemwise

__all__ = ["ScalarRectify", "ScalarRectifyGrad", "relu", "relu_grad"]


class ScalarRectify(UnaryScalarOp):
    """``0.5 * (x + |x|)``: max(x, 0) in Theano's formulation."""

    def impl(self, x):
        return np.asarray(0.5, dtype=np.asarray(x).dtype) * (x + np.abs(x))

    def pullback(self, inputs, outputs, cotangents):
        (x,) = inputs
        (gz,) = cotangents
        return [scalar_rectify_grad(x, gz)]

    def c_code(self, node, name, inputs, outputs, sub):
        (x,) = inputs
        (z,) = outputs
        return f"{z} = 0.5 * ({x} + fabs({x}));"

    def c_code_cache_version(self):
        return (1,)


class ScalarRectifyGrad(BinaryScalarOp):
    """Gradient of :class:`ScalarRectify`: ``0.5 * (gz + gz * sign(x))``."""

    def impl(self, x, gz):
        return np.where(x > 0, gz, np.where(x == 0, 0.5 * gz, 0 * gz)).astype(np.asarray(gz).dtype)

    def pullback(self, inputs, outputs, cotangents):
        x, gz = inputs
        (g,) = cotangents
        return [x.zeros_like(), scalar_rectify_grad(x, g)]

    def c_code(self, node, name, inputs, outputs, sub):
        x, gz = inputs
        (z,) = outputs
        # selected with bit masks, not branches: compare-and-branch code (which
        # the compiler makes of any ?: here) mispredicts on random signs, ~4 ms
        # a call on a 64x16x32x32 tensor on an AVX2 CPU. Same values bit for bit.
        dtype = node.outputs[0].type.dtype
        if dtype not in ("float32", "float64"):
            return f"{z} = ({x} > 0) ? {gz} : (({x} == 0) ? 0.5 * {gz} : 0);"
        ctype, utype, size = (("npy_float32", "npy_uint32", 4) if dtype == "float32"
                              else ("npy_float64", "npy_uint64", 8))
        return (f"{{ const {utype} lr_mp = ({utype})0 - ({utype})({x} > 0), "
                f"lr_mz = ({utype})0 - ({utype})({x} == 0); "
                f"const {ctype} lr_g = {gz}, lr_h = ({ctype})(0.5 * lr_g); "
                f"{utype} lr_gb, lr_hb, lr_r; "
                f"memcpy(&lr_gb, &lr_g, {size}); memcpy(&lr_hb, &lr_h, {size}); "
                f"lr_r = (lr_gb & lr_mp) | (lr_hb & lr_mz); memcpy(&{z}, &lr_r, {size}); }}")

    def c_headers(self, **kwargs):
        return ["<string.h>"]

    def c_code_cache_version(self):
        return (3,)


def _second_type(*types):
    return upgrade_to_float(types[1])


scalar_rectify = ScalarRectify(upgrade_to_float, name="rectify")
scalar_rectify_grad = ScalarRectifyGrad(_second_type, name="rectify_grad")

#: Elementwise rectifier, one node (see the module docstring).
relu = Elemwise(scalar_rectify, name="Rectify")
#: Its gradient, ``relu_grad(x, gz)``.
relu_grad = Elemwise(scalar_rectify_grad, name="RectifyGrad")
