"""Activations in oneDNN's channel-blocked layout across a training graph.

The convolution ops (:mod:`lasres.ops.conv`) take and give NCHW arrays and
convert them, inside each op, to the layout oneDNN's kernels use
(``nChw16c`` with AVX-512, ``nChw8c`` with AVX2) and back: in a ResNet-20
training step these conversions were about a tenth of the step (two 4 MiB
copies per convolution on the first stage). The C mode's rewrite
:data:`blocked_layout` removes them from training graphs (graphs with a
convolution gradient): every convolution, its gradients and the training
batch norms (:mod:`lasres.ops.bn`) take and give channel-blocked 5-d arrays
``(N, C/B, H, W, B)`` (channel ``c`` at ``[:, c // B, :, :, c % B]``), the
elementwise nodes between them (residual sums, rectifiers, their gradients)
run on those arrays as they are, and :class:`ToBlocked` / :class:`FromBlocked`
nodes remain only where the graph meets an op that wants NCHW (the input
images, global pooling, reshapes, anything else). The values are the same,
bit for bit for the convolutions; the batch-norm sums are float64 in another
order (``tests/test_ops_layout.py``).

It works on ops, not layers, so any Lasagne network gets it. A tensor whose
channel count is not a multiple of ``B`` (the 3-channel input image) stays
NCHW; float64 graphs, ``LASRES_KERNELS=numpy`` and CPUs where oneDNN picks
another layout are left alone. ``LASRES_BLOCKED=0`` turns the rewrite off.
"""
from __future__ import annotations

import os
import sys

import numpy as np
import pytensor.tensor as pt
from pytensor.graph.basic import Apply
from pytensor.graph.rewriting.basic import GraphRewriter, in2out, node_rewriter
from pytensor.graph.utils import MethodNotDefined
from pytensor.link.c.op import COp
from pytensor.tensor.elemwise import Elemwise
from pytensor.tensor.shape import Shape, Shape_i

from ._csource import c_source, c_source_crc
from .bn import BatchNormReluTrainGrad, BatchNormTrain, BatchNormTrainGrad, BatchNormTrainRelu
from .conv import Conv2d, Conv2dGradInputs, Conv2dGradWeights
from .onednn import kernels
from .onednn_program import channel_block
from .reduce import ChannelSum, blocked_channel_sum
from .shape import from_blocked, to_blocked
from .threads import openmp_threads

__all__ = ["ToBlocked", "FromBlocked", "blocked_layout", "blocked_views", "BLOCKED_ENV",
           "block_size"]

BLOCKED_ENV = "LASRES_BLOCKED"
_SOURCES = ("layout.c",)
_C_DTYPES = ("float32", "float64")


class _LayoutOp(COp):
    """Shared C plumbing of the two conversions."""

    __props__ = ("block",)
    _to_blocked = 1

    def __init__(self, block):
        self.block = int(block)
        if self.block < 1:
            raise ValueError(f"block must be positive, got {block}")

    def make_thunk(self, node, storage_map, compute_map, no_recycling, impl=None):
        if node.inputs[0].dtype not in _C_DTYPES:
            impl = "py"
        return super().make_thunk(node, storage_map, compute_map, no_recycling, impl=impl)

    def c_code(self, node, name, inputs, outputs, sub):
        if node.inputs[0].dtype not in _C_DTYPES:
            raise MethodNotDefined("layout conversion C code: float32/float64 only")
        return (f"lr_lt_parallel = {int(openmp_threads())};\n"
                f"if (lr_layout_convert({inputs[0]}, {self.block}, {self._to_blocked}, "
                f"&{outputs[0]})) {{ {sub['fail']} }}")

    def c_code_cache_version(self):
        return (1, c_source_crc(*_SOURCES), int(openmp_threads()))

    def c_support_code(self, **kwargs):
        return c_source(*_SOURCES)

    def c_compile_args(self, **kwargs):
        return ["-fopenmp"] if sys.platform.startswith("linux") else []


class ToBlocked(_LayoutOp):
    """NCHW ``(N, C, H, W)`` -> channel-blocked ``(N, C/B, H, W, B)``."""

    def make_node(self, x):
        x = pt.as_tensor_variable(x)
        if x.ndim != 4:
            raise TypeError(f"ToBlocked needs a 4-d (N, C, H, W) tensor, got {x.type}")
        n, c, h, w = x.type.shape
        if c is not None and c % self.block:
            raise ValueError(f"{c} channels are not a whole number of blocks of {self.block}")
        out = pt.tensor(dtype=x.dtype,
                        shape=(n, None if c is None else c // self.block, h, w, self.block))
        return Apply(self, [x], [out])

    def perform(self, node, inputs, output_storage):
        output_storage[0][0] = to_blocked(inputs[0], self.block)

    def infer_shape(self, fgraph, node, shapes):
        n, c, h, w = shapes[0]
        return [(n, c // self.block, h, w, self.block)]

    def pullback(self, inputs, outputs, cotangents):
        return [FromBlocked(self.block)(cotangents[0])]


class FromBlocked(_LayoutOp):
    """Channel-blocked ``(N, C/B, H, W, B)`` -> NCHW ``(N, C, H, W)``."""

    _to_blocked = 0

    def make_node(self, x):
        x = pt.as_tensor_variable(x)
        if x.ndim != 5 or x.type.shape[4] not in (None, self.block):
            raise TypeError(f"FromBlocked needs a (N, C/{self.block}, H, W, {self.block}) "
                            f"tensor, got {x.type}")
        n, cb, h, w, _ = x.type.shape
        out = pt.tensor(dtype=x.dtype, shape=(n, None if cb is None else cb * self.block, h, w))
        return Apply(self, [x], [out])

    def perform(self, node, inputs, output_storage):
        output_storage[0][0] = from_blocked(inputs[0])

    def infer_shape(self, fgraph, node, shapes):
        n, cb, h, w, _ = shapes[0]
        return [(n, cb * self.block, h, w)]

    def pullback(self, inputs, outputs, cotangents):
        return [ToBlocked(self.block)(cotangents[0])]


_BLOCK = {}


def block_size():
    """The channel block of the layout oneDNN's convolutions pick on this CPU
    (16 with AVX-512, 8 with AVX2), or 0 where it picks another layout or
    oneDNN is not there (asked once)."""
    if "b" not in _BLOCK:
        _BLOCK["b"] = channel_block()
    return _BLOCK["b"]


# ---------------------------------------------------------------- the rewrite
def _static_channels(v):
    return v.type.shape[1] if v.ndim == 4 else None


def _blocked(v, block):
    """v (NCHW) as a blocked value: the blocked value it came from, else a conversion."""
    if v.owner is not None and isinstance(v.owner.op, FromBlocked) and v.owner.op.block == block:
        return v.owner.inputs[0]
    return ToBlocked(block)(v)


def _spatial_shape(shape):
    """A gradient op's shape input as a vector (a 4-d shape donor is read once)."""
    if shape.ndim == 4:
        return pt.stack([shape.shape[2], shape.shape[3]])
    return shape


def _block_of(c, block):
    return block if (c is not None and c % block == 0) else 0


def _conv_blocks(node, block):
    op = node.op
    if type(op) is Conv2d:
        c, f = node.inputs[1].type.shape[1], node.inputs[1].type.shape[0]
    elif type(op) is Conv2dGradInputs:
        c, f = node.inputs[1].type.shape[1], node.inputs[1].type.shape[0]
    else:
        c, f = _static_channels(node.inputs[0]), _static_channels(node.inputs[1])
    return _block_of(c, block), _block_of(f, block)


def _introduce(node, block):
    """Replacements of node's outputs by their blocked-layout computation, or None."""
    op = node.op
    if node.outputs[0].dtype != "float32":
        return None
    if type(op) in (Conv2d, Conv2dGradInputs, Conv2dGradWeights):
        if any(op.blocks):
            return None
        bx, bz = _conv_blocks(node, block)
        if not (bx or bz):
            return None
        new = type(op)(stride=op.stride, pad=op.pad, filter_flip=op.filter_flip, blocks=(bx, bz))

        def arg(v, b):
            return _blocked(v, b) if b else v

        if type(op) is Conv2d:
            out = new(arg(node.inputs[0], bx), *node.inputs[1:])
            return [FromBlocked(bz)(out) if bz else out]
        if type(op) is Conv2dGradInputs:
            gz, w, shape = node.inputs
            out = new(arg(gz, bz), w, _spatial_shape(shape))
            return [FromBlocked(bx)(out) if bx else out]
        x, gz, shape = node.inputs
        return [new(arg(x, bx), arg(gz, bz), _spatial_shape(shape))]
    if type(op) in (BatchNormTrain, BatchNormTrainRelu, BatchNormTrainGrad, BatchNormReluTrainGrad):
        x = node.inputs[0]
        c = _static_channels(x)
        if op.axes != (0, 2, 3) or not _block_of(c, block):
            return None
        cb = c // block

        def par(v):
            return v.reshape((cb, block))

        def flat(v):
            return v.reshape((c,))

        if type(op) in (BatchNormTrain, BatchNormTrainRelu):
            outs = op(_blocked(x, block), par(node.inputs[1]), par(node.inputs[2]))
            return [FromBlocked(block)(outs[0])] + [flat(v) for v in outs[1:]]
        acts = 2   # x and the output gradient
        args = [_blocked(v, block) for v in node.inputs[:acts]] + [par(v) for v in node.inputs[acts:]]
        outs = op(*args)
        return [FromBlocked(block)(outs[0])] + [flat(v) for v in outs[1:]]
    return None


@node_rewriter([ToBlocked])
def local_blocked_roundtrip(fgraph, node):
    """``ToBlocked(FromBlocked(z))`` -> ``z`` (same block)."""
    (v,) = node.inputs
    if v.owner is not None and isinstance(v.owner.op, FromBlocked) \
            and v.owner.op.block == node.op.block:
        return [v.owner.inputs[0]]
    return None


@node_rewriter([Elemwise])
def local_elemwise_blocked(fgraph, node):
    """An elementwise node on ``FromBlocked`` values (and scalars) runs on
    the blocked values: ``f(FromBlocked(a), FromBlocked(b), s)`` ->
    ``FromBlocked(f(a, b, s))``."""
    if getattr(node.op, "inplace_pattern", None) or node.outputs[0].ndim != 4:
        return None
    block, args = None, []
    for v in node.inputs:
        if v.owner is not None and isinstance(v.owner.op, FromBlocked):
            if block is not None and v.owner.op.block != block:
                return None
            block = v.owner.op.block
            z = v.owner.inputs[0]
            if v.type.broadcastable != (False,) * 4 and z.type.broadcastable[:4] != \
                    v.type.broadcastable:
                return None
            args.append(z)
        elif all(v.type.broadcastable):
            args.append(None)
        else:
            return None
    if block is None:
        return None
    args = [a if a is not None else v.dimshuffle(0, 1, 2, 3, "x")
            for a, v in zip(args, node.inputs)]
    outs = node.op.make_node(*args).outputs
    return [FromBlocked(block)(o) for o in outs]


@node_rewriter([ChannelSum])
def local_channel_sum_blocked(fgraph, node):
    """A per-channel sum (a convolution's bias gradient) of ``FromBlocked(z)``
    sums ``z`` as it is: :class:`~lasres.ops.reduce.BlockedChannelSum`."""
    (v,) = node.inputs
    if v.ndim != 4 or v.owner is None or not isinstance(v.owner.op, FromBlocked):
        return None
    return [blocked_channel_sum(v.owner.inputs[0]).flatten()]


@node_rewriter([Shape, Shape_i])
def local_shape_of_blocked(fgraph, node):
    """The shape of ``FromBlocked(z)`` read from ``z`` (so that a shape
    check does not keep the conversion alive)."""
    (v,) = node.inputs
    if v.owner is None or not isinstance(v.owner.op, FromBlocked):
        return None
    z, b = v.owner.inputs[0], v.owner.op.block
    dims = [z.shape[0], z.shape[1] * b, z.shape[2], z.shape[3]]
    if isinstance(node.op, Shape_i):
        return [pt.cast(dims[node.op.i], node.outputs[0].dtype)]
    return [pt.cast(pt.stack(dims), node.outputs[0].dtype)]


@node_rewriter([Elemwise])
def local_elemwise_blocked_views(fgraph, node):
    """An elementwise node on whole channel-blocked values runs on their
    ``(N, C/B, H * W * B)`` views: PyTensor's loops over a 5-d array whose
    innermost axis is one block (16 values) took 1.7x as long as over the
    NCHW array (a residual sum of ResNet-20's first stage: 0.22 vs 0.13 ms)."""
    out = node.outputs[0]
    if out.ndim != 5 or getattr(node.op, "inplace_pattern", None):
        return None
    ref, whole = None, out.type.broadcastable
    for v in node.inputs:
        if v.ndim != 5:
            return None
        if v.type.broadcastable == whole and not all(whole):
            ref = v if ref is None else ref
        elif not all(v.type.broadcastable):
            return None
    if ref is None or any(o.type.broadcastable != whole for o in node.outputs):
        return None
    flat = (ref.shape[0], ref.shape[1], -1)
    args = [v.reshape(flat) if v.type.broadcastable == whole else v.reshape((1, 1, 1))
            for v in node.inputs]
    outs = node.op.make_node(*args).outputs
    return [pt.specify_shape(r.reshape(ref.shape, ndim=5), o.type.shape)
            for o, r in zip(node.outputs, outs)]


def _has_gradient(fgraph):
    return any(type(n.op) in (Conv2dGradInputs, Conv2dGradWeights) for n in fgraph.apply_nodes)


class _BlockedLayout(GraphRewriter):
    """The C mode's rewrite (see the module's docstring)."""

    def add_requirements(self, fgraph):
        from pytensor.graph.features import ReplaceValidate
        fgraph.attach_feature(ReplaceValidate())

    def apply(self, fgraph):
        if os.environ.get(BLOCKED_ENV, "").strip() == "0" or kernels() != "onednn":
            return
        if not _has_gradient(fgraph):
            return
        block = block_size()
        if not block:
            return
        for node in list(fgraph.toposort()):
            if node not in fgraph.apply_nodes:
                continue
            new = _introduce(node, block)
            if new is None:
                continue
            pairs = [(o, n) for o, n in zip(node.outputs, new)
                     if fgraph.clients.get(o) or o in fgraph.outputs]
            if pairs:
                fgraph.replace_all_validate(pairs, reason="blocked_layout")
        cleanup = in2out(local_blocked_roundtrip, local_elemwise_blocked, local_shape_of_blocked,
                         local_channel_sum_blocked, name="blocked_cleanup")
        for _ in range(20):
            before = len(fgraph.apply_nodes)
            cleanup.rewrite(fgraph)
            if len(fgraph.apply_nodes) == before:
                break


class _BlockedViews(GraphRewriter):
    """After PyTensor's elementwise fusion: the elementwise nodes of a
    blocked graph on ``(N, C/B, H * W * B)`` views."""

    def apply(self, fgraph):
        if not any(isinstance(n.op, (Conv2d, Conv2dGradInputs, Conv2dGradWeights))
                   and any(n.op.blocks) for n in fgraph.apply_nodes):
            return
        in2out(local_elemwise_blocked_views, name="blocked_views").rewrite(fgraph)


#: Position it after lasres's kernel rewrites and the inference fusion
#: (lasres.config): it rewrites their batch-norm nodes.
blocked_layout = _BlockedLayout()
#: Position it after PyTensor's elementwise fusion.
blocked_views = _BlockedViews()
