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

import numpy as np
import pytensor.tensor as pt
from pytensor.graph.basic import Apply
from pytensor.graph.rewriting.basic import GraphRewriter, node_rewriter
from pytensor.tensor.elemwise import Elemwise
from pytensor.tensor.shape import Reshape, Shape, Shape_i, SpecifyShape

from .ccop import SourcedCOp
from .bn import BatchNormReluTrainGrad, BatchNormTrain, BatchNormTrainGrad, BatchNormTrainRelu
from .conv import Conv2d, Conv2dGradInputs, Conv2dGradWeights
from .onednn import kernels
from .onednn_program import channel_block
from .reduce import ChannelSum, blocked_channel_sum
from .shape import from_blocked, to_blocked

__all__ = ["ToBlocked", "FromBlocked", "blocked_layout", "BLOCKED_ENV", "block_size"]

BLOCKED_ENV = "LASRES_BLOCKED"
_SOURCES = ("channel.h", "blocked.h", "layout.c")


class _LayoutOp(SourcedCOp):
    """Shared C plumbing of the two conversions."""

    __props__ = ("block",)
    _sources = _SOURCES
    _version = 2
    _parallel = "lr_lt_parallel"
    _to_blocked = 1

    def __init__(self, block):
        self.block = int(block)
        if self.block < 1:
            raise ValueError(f"block must be positive, got {block}")

    def _c_call(self, node, inputs, outputs):
        return f"lr_layout_convert({inputs[0]}, {self.block}, {self._to_blocked}, &{outputs[0]})"


class ToBlocked(_LayoutOp):
    """NCHW ``(N, C, H, W)`` -> channel-blocked ``(N, C/B, H, W, B)``."""

    def make_node(self, x):
        x = pt.as_tensor_variable(x)
        if x.ndim != 4:
            raise TypeError(f"ToBlocked needs a 4-d (N, C, H, W) tensor, got {x.type}")
        n, c, h, w = x.type.shape
        if c is not None and c % self.block:
            raise ValueError(f"{c} channels are not a whole number of blocks of {self.block}")
        # the number of blocks unknown, as the blocked convolutions give it
        out = pt.tensor(dtype=x.dtype, shape=(n, None, h, w, self.block))
        return Apply(self, [x], [out])

    def perform(self, node, inputs, output_storage):
        output_storage[0][0] = to_blocked(inputs[0], self.block)

    def infer_shape(self, fgraph, node, shapes):
        n, c, h, w = shapes[0]
        return [(n, c // self.block, h, w, self.block)]

    def pullback(self, inputs, outputs, cotangents):
        return [FromBlocked(self.block)(cotangents[0])]


class FromBlocked(_LayoutOp):
    """Channel-blocked ``(N, C/B, H, W, B)`` -> NCHW ``(N, C, H, W)``;
    ``channels``, when given, is ``C`` for the output's static shape (the
    blocked arrays' number of blocks stays unknown)."""

    __props__ = ("block", "channels")
    _to_blocked = 0

    def __init__(self, block, channels=None):
        super().__init__(block)
        self.channels = None if channels is None else int(channels)

    def make_node(self, x):
        x = pt.as_tensor_variable(x)
        if x.ndim != 5 or x.type.shape[4] not in (None, self.block):
            raise TypeError(f"FromBlocked needs a (N, C/{self.block}, H, W, {self.block}) "
                            f"tensor, got {x.type}")
        n, cb, h, w, _ = x.type.shape
        c = self.channels if cb is None else cb * self.block
        out = pt.tensor(dtype=x.dtype, shape=(n, c, h, w))
        return Apply(self, [x], [out])

    def perform(self, node, inputs, output_storage):
        output_storage[0][0] = from_blocked(inputs[0])

    def infer_shape(self, fgraph, node, shapes):
        n, cb, h, w, _ = shapes[0]
        return [(n, cb * self.block, h, w)]

    def pullback(self, inputs, outputs, cotangents):
        return [ToBlocked(self.block)(cotangents[0])]


def _blocked_source(v):
    """``(z, block)`` when ``v`` is ``FromBlocked(z)`` (possibly behind a
    ``SpecifyShape`` that a replacement added), else ``(None, 0)``."""
    while v.owner is not None and isinstance(v.owner.op, SpecifyShape):
        v = v.owner.inputs[0]
    if v.owner is not None and isinstance(v.owner.op, FromBlocked):
        return v.owner.inputs[0], v.owner.op.block
    return None, 0


def _from_blocked(z, block, like):
    """``FromBlocked(z)`` typed with the channels of ``like`` (the NCHW
    variable it replaces)."""
    return FromBlocked(block, like.type.shape[1])(z)


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
    z, b = _blocked_source(v)
    if z is not None and b == block:
        return z
    return ToBlocked(block)(v)


def _spatial_shape(shape):
    """A gradient op's shape input as a vector (a 4-d shape donor is read once)."""
    if shape.ndim == 4:
        return pt.stack([shape.shape[2], shape.shape[3]])
    return shape


def _blocks_of(v, block):
    """A per-channel vector as ``(C/B, B)``, typed with an unknown number of
    blocks: a static 1 (16 channels) would be another type, and another
    compiled module of each batch-norm op, than 2 or 4."""
    shape = pt.as_tensor_variable(np.asarray([-1, block], dtype="int64"))
    return Apply(Reshape(2), [v, shape], [pt.tensor(dtype=v.dtype, shape=(None, block))]).outputs[0]


def _typed_like(op, inputs, like):
    """``op``'s outputs on ``inputs``, typed as the variables ``like`` they
    replace (same values, with the static shapes the old graph knew)."""
    node = op.make_node(*inputs)
    return Apply(op, node.inputs, [v.type() for v in like]).outputs


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
            return [_from_blocked(out, bz, node.outputs[0]) if bz else out]
        if type(op) is Conv2dGradInputs:
            gz, w, shape = node.inputs
            out = new(arg(gz, bz), w, _spatial_shape(shape))
            return [_from_blocked(out, bx, node.outputs[0]) if bx else out]
        x, gz, shape = node.inputs
        # typed as the filters' gradient it replaces (its static shape: no
        # SpecifyShape, no compiled module for one)
        return [_typed_like(new, [arg(x, bx), arg(gz, bz), _spatial_shape(shape)], node.outputs)[0]]
    if type(op) in (BatchNormTrain, BatchNormTrainRelu, BatchNormTrainGrad, BatchNormReluTrainGrad):
        x = node.inputs[0]
        c = _static_channels(x)
        if op.axes != (0, 2, 3) or not _block_of(c, block):
            return None
        cb = c // block

        def par(v):
            return _blocks_of(v, block)

        def flat(v, like):
            return Apply(Reshape(1), [v, pt.as_tensor_variable(np.asarray([c], dtype="int64"))],
                         [like.type()]).outputs[0]

        if type(op) in (BatchNormTrain, BatchNormTrainRelu):
            outs = op(_blocked(x, block), par(node.inputs[1]), par(node.inputs[2]))
            return [_from_blocked(outs[0], block, node.outputs[0])] + \
                [flat(v, o) for v, o in zip(outs[1:], node.outputs[1:])]
        acts = 2   # x and the output gradient
        args = [_blocked(v, block) for v in node.inputs[:acts]] + [par(v) for v in node.inputs[acts:]]
        outs = op(*args)
        return [_from_blocked(outs[0], block, node.outputs[0])] + \
            [flat(v, o) for v, o in zip(outs[1:], node.outputs[1:])]
    return None


@node_rewriter([ToBlocked])
def local_blocked_roundtrip(fgraph, node):
    """``ToBlocked(FromBlocked(z))`` -> ``z`` (same block)."""
    z, b = _blocked_source(node.inputs[0])
    if z is not None and b == node.op.block:
        return [z]
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
        z, b = _blocked_source(v)
        if z is not None:
            if block is not None and b != block:
                return None
            block = b
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
    return [_from_blocked(o, block, old) for o, old in zip(outs, node.outputs)]


@node_rewriter([ChannelSum])
def local_channel_sum_blocked(fgraph, node):
    """A per-channel sum (a convolution's bias gradient) of ``FromBlocked(z)``
    sums ``z`` as it is: :class:`~lasres.ops.reduce.BlockedChannelSum`."""
    (v,) = node.inputs
    z, _ = _blocked_source(v) if v.ndim == 4 else (None, 0)
    if z is None:
        return None
    flat = pt.as_tensor_variable(np.asarray([-1], dtype="int64"))
    return Apply(Reshape(1), [blocked_channel_sum(z), flat], [node.outputs[0].type()]).outputs


@node_rewriter([Shape, Shape_i])
def local_shape_of_blocked(fgraph, node):
    """The shape of ``FromBlocked(z)`` read from ``z`` (so that a shape
    check does not keep the conversion alive)."""
    z, b = _blocked_source(node.inputs[0])
    if z is None:
        return None
    dims = [z.shape[0], z.shape[1] * np.int64(b), z.shape[2], z.shape[3]]
    if isinstance(node.op, Shape_i):
        return [pt.cast(dims[node.op.i], node.outputs[0].dtype)]
    return [pt.cast(pt.stack(dims), node.outputs[0].dtype)]


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
        # every node at once, then one validation: a validation per node is
        # quadratic in the graph (20 s of a ResNet-110 training step's compile)
        pairs = []
        for node in fgraph.toposort():
            new = _introduce(node, block)
            if new is not None:
                pairs += [(o, n) for o, n in zip(node.outputs, new)
                          if fgraph.clients.get(o) or o in fgraph.outputs]
        if not pairs:
            return
        # outputs first: a replacement imports its new nodes, which read the
        # old variables that the earlier nodes' replacements then redirect
        fgraph.replace_all(pairs[::-1], reason="blocked_layout")
        _rewrite_locally(fgraph, (local_blocked_roundtrip, local_elemwise_blocked,
                                  local_shape_of_blocked, local_channel_sum_blocked))
        fgraph.validate()   # (PyTensor's merge pass, next, merges the new shape nodes)


def _rewrite_locally(fgraph, rewriters):
    """Apply node rewriters until none applies, without a validation per
    replacement (the caller validates once)."""
    for _ in range(50):
        changed = False
        for node in fgraph.toposort():
            if node not in fgraph.apply_nodes:
                continue
            for rw in rewriters:
                if not any(isinstance(node.op, t) for t in rw.tracks()):
                    continue
                new = rw.transform(fgraph, node)
                if new:
                    fgraph.replace_all(list(zip(node.outputs, new)), reason=str(rw))
                    changed = True
                    break
        if not changed:
            return


#: Position it after lasres's kernel rewrites and the inference fusion
#: (lasres.config): it rewrites their batch-norm nodes.
blocked_layout = _BlockedLayout()
