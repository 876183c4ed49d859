"""The sum of two large arrays of one shape, in C on all cores.

PyTensor's elementwise ``Add`` runs a generic loop, one value at a time on
one core. Most of a training graph's activation sums are folded into the
kernels around them (:func:`lasres.ops.conv.local_conv_addend`,
:func:`lasres.ops.bn.local_bn_grad_addend`); those left — a projection
block's two input gradients, a gradient read by several ops — were 2.6% of a
ResNet-20 training step (one 4 MiB sum: 0.9 ms). :class:`ParallelAdd`
computes ``a + b`` (one IEEE addition per value: the same bits) in a
vectorised loop shared among OpenMP threads (``c/add.c``).

The C backend's mode replaces, late (after the folds, before PyTensor's
elementwise fusion), a binary ``Add`` of two same-type float32/float64
arrays of at least 4 dimensions, no broadcasting, that no elementwise op
writes or reads (there was nothing to fuse it with), by :class:`ParallelAdd`
(:data:`local_parallel_add`; ``LASRES_PARALLEL_ADD=0``: not replaced).
"""
import os

import numpy as np
import pytensor.tensor as pt
from pytensor.graph.basic import Apply
from pytensor.graph.rewriting.basic import node_rewriter
from pytensor.scalar.basic import Add
from pytensor.tensor.elemwise import Elemwise

from .ccop import SourcedCOp

__all__ = ["ParallelAdd", "parallel_add", "local_parallel_add", "PARALLEL_ADD_ENV"]

#: ``LASRES_PARALLEL_ADD=0`` leaves the sums to PyTensor's ``Add``.
PARALLEL_ADD_ENV = "LASRES_PARALLEL_ADD"


class ParallelAdd(SourcedCOp):
    """``a + b`` for two arrays of one shape and type (float32 or float64)."""

    __props__ = ()
    _sources = ("channel.h", "add.c")
    _version = 1
    _parallel = "lr_add_parallel"

    def make_node(self, a, b):
        a, b = pt.as_tensor_variable(a), pt.as_tensor_variable(b)
        if a.type.dtype != b.type.dtype or a.type.ndim != b.type.ndim:
            raise TypeError(f"ParallelAdd needs two tensors of one type, got {a.type} and {b.type}")
        shape = tuple(x if x is not None else y for x, y in zip(a.type.shape, b.type.shape))
        return Apply(self, [a, b], [pt.tensor(dtype=a.dtype, shape=shape)])

    def _c_call(self, node, inputs, outputs):
        return f"lr_parallel_add({inputs[0]}, {inputs[1]}, &{outputs[0]})"

    def perform(self, node, inputs, output_storage):
        a, b = inputs
        if a.shape != b.shape:
            raise ValueError(f"ParallelAdd: shapes {a.shape} and {b.shape} differ")
        output_storage[0][0] = np.add(a, b)

    def infer_shape(self, fgraph, node, shapes):
        return [shapes[0]]

    def pullback(self, inputs, outputs, cotangents):
        (gz,) = cotangents
        return [gz, gz]


parallel_add = ParallelAdd()


def _elemwise(node):
    return node is not None and not isinstance(node, str) and isinstance(node.op, Elemwise)


@node_rewriter([Elemwise])
def local_parallel_add(fgraph, node):
    """A binary ``Add`` of two float32/float64 arrays of one type, at least 4-d,
    not broadcast, with no elementwise op on either side -> :class:`ParallelAdd`."""
    if not isinstance(node.op.scalar_op, Add) or len(node.inputs) != 2:
        return None
    if os.environ.get(PARALLEL_ADD_ENV, "").strip() == "0":
        return None
    a, b = node.inputs
    out = node.outputs[0]
    if out.ndim < 4 or out.dtype not in ("float32", "float64") or a.type != out.type \
            or b.type != out.type or any(out.type.broadcastable):
        return None
    if _elemwise(a.owner) or _elemwise(b.owner) \
            or any(_elemwise(c) for c, _ in fgraph.clients[out]):
        return None
    return [parallel_add(a, b)]
