"""Per-channel sum: the sum of an ``(N, C, ...)`` tensor over every axis but 1.

Every convolution with a bias contributes such a sum to a training graph
(the bias gradient ``gz.sum(axis=(0, 2, 3))``). PyTensor's ``Sum`` with a
float64 accumulator computes it in a generic strided loop; :class:`ChannelSum`
computes the same thing — float64 accumulation, the result in the input's
dtype — in C (``c/channel_sum.c``): channel by channel over contiguous rows,
in independent partial sums, the channels shared among OpenMP threads.

The C backend's mode (:mod:`lasres.config`) replaces such ``Sum`` nodes
with :class:`ChannelSum` through the rewrite :data:`local_channel_sum`, so
graphs keep being written with ``.sum(axis=...)``. A sum over the spatial
axes (``axis=(2, 3)``: global average pooling, Lasagne's ``GlobalPoolLayer``)
is a per-channel sum of the ``(1, N * C, H * W)`` view of the same values
(:data:`local_trailing_sum`): PyTensor's generic loop took 1.5 ms per call
on the last activation of ResNet-20 in a training step. On an activation
in oneDNN's channel-blocked layout, a 5-d ``(N, CB, H, W, B)`` array (channel
``cb * B + b``), the bias gradient is ``x5.sum(axis=(0, 2, 3))``, of shape
``(CB, B)``: :class:`BlockedChannelSum` (the same rewrite).
"""

import numpy as np
import pytensor.tensor as pt
from pytensor.graph.basic import Apply
from pytensor.graph.rewriting.basic import node_rewriter
from pytensor.tensor.math import Sum

from .ccop import SourcedCOp

__all__ = ["ChannelSum", "channel_sum", "BlockedChannelSum", "blocked_channel_sum",
           "local_channel_sum", "local_trailing_sum"]

_SOURCES = ("channel.h", "channel_sum.c")
_C_DTYPES = ("float32", "float64")


def _other_axes(ndim):
    return (0,) + tuple(range(2, ndim))


#: The axes of a per-channel sum of a channel-blocked (N, CB, H, W, B) array
_BLOCKED_AXES = (0, 2, 3)


class _SumCOp(SourcedCOp):
    """C plumbing shared by the per-channel sums (``c/channel_sum.c``)."""

    __props__ = ()
    _sources = _SOURCES
    _version = 3
    _parallel = "lr_cs_parallel"
    _compile_args = ("-g0", "-ffp-contract=off")   # no FMA contraction
    _entry = None  # the C entry point

    def _c_call(self, node, inputs, outputs):
        return f"{self._entry}({inputs[0]}, &{outputs[0]})"


class ChannelSum(_SumCOp):
    """Sum over every axis but axis 1, accumulated in float64, returned in
    the input's dtype: ``x.sum(axis=(0, 2, ...), acc_dtype='float64')``."""

    _entry = "lr_channel_sum"

    def make_node(self, x):
        x = pt.as_tensor_variable(x)
        if x.ndim < 2:
            raise TypeError(f"ChannelSum needs an input of at least 2 dimensions, got {x.ndim}")
        out = pt.tensor(dtype=x.dtype, shape=(x.type.shape[1],))
        return Apply(self, [x], [out])

    def perform(self, node, inputs, output_storage):
        (x,) = inputs
        total = x.sum(axis=_other_axes(x.ndim), dtype=np.float64)
        output_storage[0][0] = np.asarray(total, dtype=x.dtype)

    def infer_shape(self, fgraph, node, shapes):
        return [(shapes[0][1],)]

    def pullback(self, inputs, outputs, cotangents):
        (x,) = inputs
        (gz,) = cotangents
        pattern = ["x", 0] + ["x"] * (x.ndim - 2)
        return [pt.zeros_like(x) + gz.dimshuffle(pattern)]


channel_sum = ChannelSum()


class BlockedChannelSum(_SumCOp):
    """Per-channel sum of a channel-blocked ``(N, CB, H, W, B)`` array:
    ``x.sum(axis=(0, 2, 3), acc_dtype='float64')``, of shape ``(CB, B)``, in
    the input's dtype. The C code sums each channel in double, block by block
    (one per image and channel block, in parallel), then the blocks in image
    order: the result does not depend on the number of threads."""

    _entry = "lr_blocked_channel_sum"

    def make_node(self, x):
        x = pt.as_tensor_variable(x)
        if x.ndim != 5:
            raise TypeError(f"BlockedChannelSum needs a 5-d (N, CB, H, W, B) input, "
                            f"got {x.ndim} dimensions")
        out = pt.tensor(dtype=x.dtype, shape=(x.type.shape[1], x.type.shape[4]))
        return Apply(self, [x], [out])

    def perform(self, node, inputs, output_storage):
        (x,) = inputs
        total = x.sum(axis=_BLOCKED_AXES, dtype=np.float64)
        output_storage[0][0] = np.asarray(total, dtype=x.dtype)

    def infer_shape(self, fgraph, node, shapes):
        return [(shapes[0][1], shapes[0][4])]

    def pullback(self, inputs, outputs, cotangents):
        (x,) = inputs
        (gz,) = cotangents
        return [pt.zeros_like(x) + gz.dimshuffle("x", 0, "x", "x", 1)]


blocked_channel_sum = BlockedChannelSum()


@node_rewriter([Sum])
def local_channel_sum(fgraph, node):
    """``Sum`` over all axes but 1 with a float64 accumulator (float32 or
    float64 in and out) -> :class:`ChannelSum`; of a 5-d tensor over axes
    ``(0, 2, 3)`` (a channel-blocked array) -> :class:`BlockedChannelSum`."""
    (x,) = node.inputs
    op = node.op
    if x.ndim < 2 or op.axis is None:
        return None
    if x.dtype not in _C_DTYPES or node.outputs[0].dtype != x.dtype:
        return None
    if op.acc_dtype != "float64":
        return None
    axes = tuple(sorted(op.axis))
    if x.ndim == 5 and axes == _BLOCKED_AXES:
        return [blocked_channel_sum(x)]
    if axes != _other_axes(x.ndim):
        return None
    return [channel_sum(x)]


@node_rewriter([Sum])
def local_trailing_sum(fgraph, node):
    """``Sum`` over every axis after 1 (``(N, C, ...)`` -> ``(N, C)``) with a
    float64 accumulator (float32 or float64 in and out) -> :class:`ChannelSum`
    of the ``(1, N * C, -1)`` view, reshaped to ``(N, C)``: each ``(n, c)``
    sums its own values as a channel does."""
    (x,) = node.inputs
    op = node.op
    if x.ndim < 3 or op.axis is None or tuple(sorted(op.axis)) != tuple(range(2, x.ndim)):
        return None
    if x.dtype not in _C_DTYPES or node.outputs[0].dtype != x.dtype:
        return None
    if op.acc_dtype != "float64":
        return None
    n, c = x.shape[0], x.shape[1]
    return [channel_sum(x.reshape((1, n * c, -1))).reshape((n, c))]
