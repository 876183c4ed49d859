"""Batch normalisation as ops of their own.

Written with stock elementwise and reduction ops, a batch-norm layer and its
gradient add some twenty nodes to a graph; deep residual nets have hundreds
of them and PyTensor's rewriting time grows much faster than the graph. These
ops keep each layer at one node forward and one node backward.

Numerics follow Lasagne's ``BatchNormLayer`` exactly: over the ``axes``,

    mean    = x.mean(axes)
    inv_std = 1 / sqrt(x.var(axes) + epsilon)        (biased variance)
    y       = (x - mean) * (gamma * inv_std) + beta

The statistics are accumulated in float64 and the result cast back to the
input's dtype.

Kernels: the C backend runs the C code of ``c/bn.c`` for float32 and
float64 inputs normalised over the channel axes ``(0, 2, ...)``, and for
float32 channel-blocked inputs (oneDNN's nChw16c / nChw8c: 5-d ``(N, CB, H, W, B)``,
channel ``cb * B + b``, normalised over axes ``(0, 2, 3)``, parameters and
statistics ``(CB, B)``) with the same values but for the order of the
float64 sums (no Python call per node; the layout rewrite builds blocked
nodes in float32 graphs only, and compiling float64 versions would only
lengthen a cold start); every other case, and the Python and
Numba backends, run ``perform`` (a numba kernel for the channel axes, NumPy
otherwise).

Fusion with the rectifier: in the C backend's mode, a batch norm whose
output feeds only lasres's ``relu`` (and, in training, its gradient) is
replaced by :class:`BatchNormTrainRelu` / :class:`BatchNormReluTrainGrad` /
:class:`BatchNormInferRelu` (rewrites :data:`local_bn_train_relu`,
:data:`local_bn_infer_relu`): one pass less over the activations each way,
the same values bit for bit (the backward pass recomputes the normalised
output from the forward pass's exact per-channel scale instead of storing it).
And a residual block's input gradient, that sum plus the shortcut's, is
written by the batch-norm gradient itself (:data:`local_bn_grad_addend`,
after the layout rewrite): one pass less again, the same bits.
"""

import os

import numpy as np
import pytensor.tensor as pt
from pytensor.gradient import DisconnectedType
from pytensor.graph.basic import Apply
from pytensor.graph.rewriting.basic import node_rewriter

from .elemwise import relu, relu_grad
from .fused import Attach
from .shape import broadcast_pattern, broadcast_to_axes
from .ccop import SourcedCOp

#: ``LASRES_BN_ADDEND=0`` leaves the residual gradients' sums as separate nodes
ADDEND_ENV = "LASRES_BN_ADDEND"

__all__ = ["BatchNormTrain", "BatchNormTrainGrad", "BatchNormInfer", "BatchNormTrainRelu",
           "BatchNormReluTrainGrad", "BatchNormInferRelu", "batch_norm_train", "batch_norm_infer",
           "local_bn_train_relu", "local_bn_infer_relu", "local_bn_grad_addend"]


try:  # numba comes with PyTensor 3; the NumPy formulation is the fallback
    from . import _bn_kernels
except ImportError:  # pragma: no cover
    _bn_kernels = None


def _is_channel_axes(ndim, axes):
    """True for the usual layout: statistics over all axes but axis 1."""
    return ndim >= 2 and tuple(axes) == (0,) + tuple(range(2, ndim))


def _is_blocked(ndim, axes):
    """True for the channel-blocked layout (oneDNN's nChw16c): a 5-d
    ``(N, CB, H, W, B)`` input normalised over axes ``(0, 2, 3)``, channel
    ``cb * B + b``, parameters and statistics ``(CB, B)``."""
    return ndim == 5 and tuple(axes) == (0, 2, 3)


def _channel_sum(a):
    """Sum of an (N, C, M) array over axes 0 and 2: pairwise in float32 along
    the contiguous axis, then float64 across the batch."""
    return a.sum(axis=2, dtype=np.float64).sum(axis=0)


def _moments(x, axes):
    mean = x.mean(axis=axes, dtype=np.float64, keepdims=True)
    centred = x - mean.astype(x.dtype)
    var = np.square(centred, dtype=np.float64).mean(axis=axes, keepdims=True)
    return mean, centred, var


_SOURCES = ("channel.h", "bn.c")


class _ChannelCOp(SourcedCOp):
    """C code (``c/bn.c``) for float32/float64 inputs normalised over the
    channel axes or channel-blocked; ``perform`` for everything else."""

    __props__ = ("axes",)
    _sources = _SOURCES
    _version = 4
    _parallel = "lr_bn_parallel"
    _compile_args = ("-g0", "-ffp-contract=off")   # no FMA contraction

    def __init__(self, axes=(0, 2, 3)):
        self.axes = tuple(int(a) for a in axes)

    def _numba_channels(self, *arrays):
        """The arrays viewed as ``(N, C, M)`` (contiguous) when the numba
        kernels apply (normalised over the channel axes), else None."""
        if not (_is_channel_axes(arrays[0].ndim, self.axes) and _bn_kernels is not None):
            return None
        n, c = arrays[0].shape[:2]
        return [np.ascontiguousarray(a).reshape(n, c, -1) for a in arrays]

    @staticmethod
    def _inputs(x, *rest):
        """x as a tensor, and the other inputs as tensors of x's dtype."""
        x = pt.as_tensor_variable(x)
        return x, [pt.as_tensor_variable(v).astype(x.dtype) for v in rest]

    def _use_c(self, node):
        # blocked graphs are float32 (lasres.ops.layout): C code for those only
        x = node.inputs[0]
        return ((_is_channel_axes(x.ndim, self.axes) and x.dtype in ("float32", "float64"))
                or (_is_blocked(x.ndim, self.axes) and x.dtype == "float32"))

    def _bn_call(self, inputs, outputs, blocked):
        raise NotImplementedError

    def _c_call(self, node, inputs, outputs):
        return self._bn_call(inputs, outputs, int(_is_blocked(node.inputs[0].ndim, self.axes)))

    def c_headers(self, **kwargs):
        return ["<math.h>"]


class BatchNormTrain(_ChannelCOp):
    """Training-mode batch normalisation with the batch's own statistics.

    Inputs ``x, gamma, beta``; outputs ``y, mean, inv_std`` (the statistics
    have the shape of ``gamma``: ``x``'s shape with ``axes`` removed).
    """

    __props__ = ("axes", "epsilon")

    def __init__(self, axes=(0, 2, 3), epsilon=1e-4):
        super().__init__(axes)
        self.epsilon = float(epsilon)

    def make_node(self, x, gamma, beta):
        x, (gamma, beta) = self._inputs(x, gamma, beta)
        pdim = x.ndim - len(self.axes)
        if gamma.ndim != pdim or beta.ndim != pdim:
            raise TypeError(f"gamma and beta must have {pdim} dimensions for a {x.ndim}-d "
                            f"input normalised over axes {self.axes}")
        stat = pt.tensor(dtype=x.dtype, shape=(None,) * pdim)
        return Apply(self, [x, gamma, beta], [x.type(), stat, stat.type()])

    def perform(self, node, inputs, output_storage):
        x, gamma, beta = inputs
        if _is_channel_axes(x.ndim, self.axes):
            return self._perform_channels(x, gamma, beta, output_storage)
        mean, centred, var = _moments(x, self.axes)
        inv_std = 1.0 / np.sqrt(var + self.epsilon)
        scale = (broadcast_to_axes(gamma, x.ndim, self.axes) * inv_std.astype(x.dtype))
        y = centred * scale
        y += broadcast_to_axes(beta, x.ndim, self.axes)
        output_storage[0][0] = y.astype(x.dtype, copy=False)
        output_storage[1][0] = np.squeeze(mean, axis=self.axes).astype(x.dtype)
        output_storage[2][0] = np.squeeze(inv_std, axis=self.axes).astype(x.dtype)

    def _perform_channels(self, x, gamma, beta, output_storage):
        n, c = x.shape[:2]
        x3 = np.ascontiguousarray(x).reshape(n, c, -1)
        if _bn_kernels is not None:
            y3 = np.empty_like(x3)
            mean, inv_std = np.empty(c), np.empty(c)
            _bn_kernels.bn_train_forward(x3, gamma, beta, self.epsilon, y3, mean, inv_std)
            output_storage[0][0] = y3.reshape(x.shape)
            output_storage[1][0] = mean.astype(x.dtype)
            output_storage[2][0] = inv_std.astype(x.dtype)
            return
        count = n * x3.shape[2]
        mean = _channel_sum(x3) / count
        y = x3 - mean.astype(x.dtype)[None, :, None]  # centred, then normalised in place
        var = _channel_sum(np.square(y)) / count
        inv_std = 1.0 / np.sqrt(var + self.epsilon)
        y *= (gamma * inv_std.astype(x.dtype))[None, :, None]
        y += beta[None, :, None]
        output_storage[0][0] = y.reshape(x.shape)
        output_storage[1][0] = mean.astype(x.dtype)
        output_storage[2][0] = inv_std.astype(x.dtype)

    def infer_shape(self, fgraph, node, shapes):
        xs, gs, _ = shapes
        return [xs, gs, gs]

    def _bn_call(self, inputs, outputs, blocked):
        x, gamma, beta = inputs
        y, mean, inv_std = outputs
        return (f"lr_bn_train({x}, {gamma}, {beta}, {self.epsilon!r}, &{y}, &{mean}, &{inv_std}, "
                f"NULL, {blocked})")

    def pullback(self, inputs, outputs, cotangents):
        x, gamma, beta = inputs
        _, mean, inv_std = outputs
        gy, gmean, ginv = cotangents
        disconnected = [isinstance(g.type, DisconnectedType) for g in cotangents]
        if disconnected[0]:
            gx = pt.zeros_like(x)
            ggamma = gbeta = DisconnectedType()()
        else:
            gx, ggamma, gbeta = BatchNormTrainGrad(self.axes)(x, gy, gamma, mean, inv_std)
        pattern = broadcast_pattern(x.ndim, self.axes)
        n = pt.prod([x.shape[a] for a in self.axes]).astype(x.dtype)
        if not disconnected[1]:
            gx = gx + gmean.dimshuffle(pattern) / n
        if not disconnected[2]:
            # d inv_std / d x = -inv_std**3 * (x - mean) / n
            gx = gx - (ginv * inv_std ** 3).dimshuffle(pattern) * (x - mean.dimshuffle(pattern)) / n
        return [gx, ggamma, gbeta]

    def connection_pattern(self, node):
        return [[True, True, True], [True, False, False], [True, False, False]]


class BatchNormTrainGrad(_ChannelCOp):
    """Gradient of :class:`BatchNormTrain` w.r.t. ``x, gamma, beta`` given the
    gradient ``gy`` of its normalised output.

    With ``xhat = (x - mean) * inv_std`` and ``n`` the number of values per
    statistic: ``gbeta = Σ gy``, ``ggamma = Σ gy·xhat``,
    ``gx = gamma·inv_std·(gy - gbeta/n - xhat·ggamma/n)``.
    """

    def make_node(self, x, gy, gamma, mean, inv_std):
        x, args = self._inputs(x, gy, gamma, mean, inv_std)
        return Apply(self, [x] + args, [x.type(), args[1].type(), args[1].type()])

    def perform(self, node, inputs, output_storage):
        x, gy, gamma, mean, inv_std = inputs
        nd, axes = x.ndim, self.axes
        views = self._numba_channels(x, gy)
        if views is not None:
            (x3, gy3), c = views, x.shape[1]
            gx3 = np.empty_like(x3)
            ggamma, gbeta = np.empty(c), np.empty(c)
            _bn_kernels.bn_train_backward(x3, gy3, gamma, mean.astype(np.float64),
                                          inv_std.astype(np.float64), gx3, ggamma, gbeta)
            output_storage[0][0] = gx3.reshape(x.shape)
            output_storage[1][0] = ggamma.astype(x.dtype)
            output_storage[2][0] = gbeta.astype(x.dtype)
            return
        if _is_channel_axes(nd, axes):
            n, c = x.shape[:2]
            x3, gy3 = x.reshape(n, c, -1), gy.reshape(n, c, -1)
            count = n * x3.shape[2]
            xhat = x3 - mean[None, :, None]
            xhat *= inv_std[None, :, None]
            gbeta = _channel_sum(gy3)
            ggamma = _channel_sum(gy3 * xhat)
            gx = gy3 - (gbeta / count).astype(x.dtype)[None, :, None]
            xhat *= (ggamma / count).astype(x.dtype)[None, :, None]
            gx -= xhat
            gx *= (gamma * inv_std)[None, :, None]
            output_storage[0][0] = gx.reshape(x.shape)
            output_storage[1][0] = ggamma.astype(x.dtype)
            output_storage[2][0] = gbeta.astype(x.dtype)
            return
        n = np.prod([x.shape[a] for a in axes])
        inv_b = broadcast_to_axes(inv_std, nd, axes)
        xhat = (x - broadcast_to_axes(mean, nd, axes)) * inv_b
        gbeta = gy.sum(axis=axes, dtype=np.float64)
        ggamma = (gy * xhat).sum(axis=axes, dtype=np.float64)
        gx = gy - broadcast_to_axes((gbeta / n).astype(x.dtype), nd, axes)
        gx -= xhat * broadcast_to_axes((ggamma / n).astype(x.dtype), nd, axes)
        gx *= broadcast_to_axes(gamma, nd, axes) * inv_b
        output_storage[0][0] = gx.astype(x.dtype, copy=False)
        output_storage[1][0] = ggamma.astype(x.dtype)
        output_storage[2][0] = gbeta.astype(x.dtype)

    def infer_shape(self, fgraph, node, shapes):
        return [shapes[0], shapes[2], shapes[2]]

    def _bn_call(self, inputs, outputs, blocked):
        gx, ggamma, gbeta = outputs
        return (f"lr_bn_train_grad({', '.join(inputs)}, &{gx}, &{ggamma}, &{gbeta}, NULL, NULL, "
                f"NULL, {blocked})")


class BatchNormInfer(_ChannelCOp):
    """Inference-mode batch normalisation with stored statistics:
    ``y = (x - mean) * (gamma * inv_std) + beta``."""

    def make_node(self, x, gamma, beta, mean, inv_std):
        x, args = self._inputs(x, gamma, beta, mean, inv_std)
        return Apply(self, [x] + args, [x.type()])

    def perform(self, node, inputs, output_storage):
        x, gamma, beta, mean, inv_std = inputs
        nd, axes = x.ndim, self.axes
        views = self._numba_channels(x)
        if views is not None:
            (x3,) = views
            y3 = np.empty_like(x3)
            _bn_kernels.bn_infer(x3, gamma, beta, mean, inv_std, y3)
            output_storage[0][0] = y3.reshape(x.shape)
            return
        y = x - broadcast_to_axes(mean, nd, axes)
        y *= broadcast_to_axes(gamma * inv_std, nd, axes)
        y += broadcast_to_axes(beta, nd, axes)
        output_storage[0][0] = y

    def infer_shape(self, fgraph, node, shapes):
        return [shapes[0]]

    def _bn_call(self, inputs, outputs, blocked):
        return f"lr_bn_infer({', '.join(inputs)}, &{outputs[0]}, 0, {blocked})"

    def pullback(self, inputs, outputs, cotangents):
        x, gamma, beta, mean, inv_std = inputs
        (gy,) = cotangents
        pattern = broadcast_pattern(x.ndim, self.axes)
        b = lambda v: v.dimshuffle(pattern)  # noqa: E731
        centred = x - b(mean)
        gbeta = gy.sum(axis=self.axes)
        gxc = (gy * centred).sum(axis=self.axes)
        return [gy * b(gamma * inv_std),
                gxc * inv_std,
                gbeta,
                -gbeta * gamma * inv_std,
                gxc * gamma]


class BatchNormInferRelu(BatchNormInfer):
    """:class:`BatchNormInfer` followed by lasres's rectifier
    (:data:`lasres.ops.elemwise.relu`, ``0.5 * (y + |y|)``) in one pass, with
    the same values bit for bit. The C mode puts it in place of a
    ``relu(batch_norm_infer(...))`` whose normalised output has no other use
    (:data:`local_bn_infer_relu`)."""

    def perform(self, node, inputs, output_storage):
        super().perform(node, inputs, output_storage)
        y = output_storage[0][0]
        output_storage[0][0] = relu.scalar_op.impl(y)

    def _bn_call(self, inputs, outputs, blocked):
        return f"lr_bn_infer({', '.join(inputs)}, &{outputs[0]}, 1, {blocked})"

    def pullback(self, inputs, outputs, cotangents):
        y = BatchNormInfer(self.axes)(*inputs)
        return BatchNormInfer.pullback(self, inputs, [y], [relu_grad(y, cotangents[0])])


@node_rewriter([relu])
def local_bn_infer_relu(fgraph, node):
    """``relu(BatchNormInfer(...))`` -> :class:`BatchNormInferRelu` when the
    normalised output feeds only the rectifier."""
    (y,) = node.inputs
    bn = y.owner
    if bn is None or type(bn.op) is not BatchNormInfer or len(fgraph.clients[y]) != 1:
        return None
    if y in fgraph.outputs:
        return None
    return [BatchNormInferRelu(bn.op.axes)(*bn.inputs)]


class BatchNormTrainRelu(BatchNormTrain):
    """:class:`BatchNormTrain` followed by lasres's rectifier
    (:data:`lasres.ops.elemwise.relu`) in one pass: outputs
    ``relu(y), mean, inv_std, scale`` with ``scale`` the per-channel factor
    ``gamma * inv_std`` exactly as the forward pass rounded it (so that
    :class:`BatchNormReluTrainGrad` recomputes ``y`` bit for bit instead of
    storing it). The C mode puts it in place of a BatchNormTrain whose
    normalised output feeds only a rectifier and its gradient
    (:data:`local_bn_train_relu`)."""

    def make_node(self, x, gamma, beta):
        node = super().make_node(x, gamma, beta)
        return Apply(self, node.inputs, [o.type() for o in node.outputs] + [node.outputs[1].type()])

    def perform(self, node, inputs, output_storage):
        x, gamma, beta = inputs
        super().perform(node, inputs, output_storage[:3])
        y, mean, inv_std = (o[0] for o in output_storage[:3])
        scale = _train_scale(x, gamma, inv_std, self.axes, self.epsilon)
        output_storage[0][0] = relu.scalar_op.impl(y)
        output_storage[3][0] = scale

    def infer_shape(self, fgraph, node, shapes):
        xs, gs, _ = shapes
        return [xs, gs, gs, gs]

    def _bn_call(self, inputs, outputs, blocked):
        x, gamma, beta = inputs
        r, mean, inv_std, scale = outputs
        return (f"lr_bn_train({x}, {gamma}, {beta}, {self.epsilon!r}, &{r}, &{mean}, &{inv_std}, "
                f"&{scale}, {blocked})")

    def pullback(self, inputs, outputs, cotangents):
        y, mean, inv_std = BatchNormTrain(self.axes, self.epsilon)(*inputs)
        gr, gmean, ginv = cotangents[:3]
        if not isinstance(gr.type, DisconnectedType):
            gr = relu_grad(y, gr)
        return BatchNormTrain.pullback(self, inputs, [y, mean, inv_std], [gr, gmean, ginv])

    def connection_pattern(self, node):
        return [[True, True, True, False], [True, False, False, False],
                [True, False, False, False]]


def _train_scale(x, gamma, inv_std, axes, epsilon):
    """NumPy: the per-channel scale ``gamma * inv_std`` exactly as
    :meth:`BatchNormTrain.perform` used it: rounded once from the float64
    inverse deviation by the numba kernel, else ``gamma * inv_std`` in the
    data type."""
    if _is_channel_axes(x.ndim, axes) and _bn_kernels is not None:
        n, c = x.shape[:2]
        x3 = np.ascontiguousarray(x).reshape(n, c, -1)
        mu64, inv64 = np.empty(c), np.empty(c)
        _bn_kernels.bn_train_forward(x3, gamma, np.zeros_like(gamma), epsilon,
                                     np.empty_like(x3), mu64, inv64)
        return (gamma.astype(np.float64) * inv64).astype(x.dtype)
    return (gamma * inv_std).astype(x.dtype)


class BatchNormReluTrainGrad(BatchNormTrainGrad):
    """Gradient of :class:`BatchNormTrainRelu` w.r.t. ``x, gamma, beta``
    given the gradient ``gr`` of its rectified output: inputs
    ``x, gr, gamma, beta, mean, scale, inv_std``. The rectifier's gradient
    (:data:`lasres.ops.elemwise.relu_grad`) is applied to ``gr`` with ``y``
    recomputed from ``x, mean, scale, beta``, then :class:`BatchNormTrainGrad`'s
    formulas: the same values as the two nodes, bit for bit.

    An eighth input ``addend`` (of ``x``'s shape; :func:`local_bn_grad_addend`)
    is added to the input gradient as it is written: ``gx + addend``, the
    values of the sum node it replaces, without a pass of its own."""

    def make_node(self, x, gr, gamma, beta, mean, scale, inv_std, addend=None):
        x = pt.as_tensor_variable(x)
        args = [pt.as_tensor_variable(v).astype(x.dtype)
                for v in (gr, gamma, beta, mean, scale, inv_std)]
        if addend is not None:
            addend = pt.as_tensor_variable(addend)
            if addend.type != x.type:
                raise TypeError(f"the addend ({addend.type}) must have x's type ({x.type})")
            args.append(addend)
        return Apply(self, [x] + args, [x.type(), args[1].type(), args[1].type()])

    def perform(self, node, inputs, output_storage):
        x, gr, gamma, beta, mean, scale, inv_std = inputs[:7]
        nd, axes = x.ndim, self.axes
        y = x - broadcast_to_axes(mean, nd, axes)
        y *= broadcast_to_axes(scale, nd, axes)
        y += broadcast_to_axes(beta, nd, axes)
        gy = relu_grad.scalar_op.impl(y, gr)
        super().perform(node, [x, gy, gamma, mean, inv_std], output_storage)
        if len(inputs) > 7:
            output_storage[0][0] = output_storage[0][0] + inputs[7]

    def infer_shape(self, fgraph, node, shapes):
        return [shapes[0], shapes[2], shapes[2]]

    def _bn_call(self, inputs, outputs, blocked):
        x, gr, gamma, beta, mean, scale, inv_std = inputs[:7]
        add = inputs[7] if len(inputs) > 7 else "NULL"
        gx, ggamma, gbeta = outputs
        return (f"lr_bn_train_grad({x}, {gr}, {gamma}, {mean}, {inv_std}, &{gx}, &{ggamma}, "
                f"&{gbeta}, {beta}, {scale}, {add}, {blocked})")


@node_rewriter([BatchNormTrainGrad])
def local_bn_train_relu(fgraph, node):
    """``BatchNormTrain`` -> ``relu`` forward and ``relu_grad`` ->
    ``BatchNormTrainGrad`` backward become :class:`BatchNormTrainRelu` and
    :class:`BatchNormReluTrainGrad` when the normalised output ``y`` (or the
    view of it that :func:`lasres.ops.fused.attach` makes) is used by nothing
    else (it is then never stored)."""
    if type(node.op) is not BatchNormTrainGrad:
        return None
    x, gy, gamma, mean, inv_std = node.inputs
    bn = mean.owner
    if bn is None or type(bn.op) is not BatchNormTrain or bn.op.axes != node.op.axes:
        return None
    y = bn.outputs[0]
    if list(bn.inputs[:1]) != [x] or bn.inputs[1] is not gamma or inv_std is not bn.outputs[2] \
            or y in fgraph.outputs or gy in fgraph.outputs:
        return None
    # BatchNormLayer passes y through attach() (running-average updates): look through it
    users = fgraph.clients[y]
    if len(users) == 1 and isinstance(users[0][0].op, Attach) and users[0][1] == 0:
        y = users[0][0].outputs[0]
        if y in fgraph.outputs:
            return None
    grad_node = gy.owner
    if grad_node is None or grad_node.op != relu_grad or grad_node.inputs[0] is not y \
            or len(fgraph.clients[gy]) != 1:
        return None
    users = fgraph.clients[y]
    fwd = [c for c, i in users if c.op == relu and i == 0]
    if len(users) != 2 or len(fwd) != 1 or not any(c is grad_node for c, _ in users):
        return None
    beta, gr = bn.inputs[2], grad_node.inputs[1]
    if gr.type.broadcastable != x.type.broadcastable:  # e.g. the gradient of a mean pooling
        gr = pt.broadcast_to(gr, x.shape)
    r, mean2, inv2, scale = BatchNormTrainRelu(bn.op.axes, bn.op.epsilon)(*bn.inputs)
    gx, ggamma, gbeta = BatchNormReluTrainGrad(node.op.axes)(
        x, gr, gamma, beta, mean2, scale, inv2)
    return {fwd[0].outputs[0]: r, bn.outputs[1]: mean2, bn.outputs[2]: inv2,
            node.outputs[0]: gx, node.outputs[1]: ggamma, node.outputs[2]: gbeta}


def _reaches(fgraph, variables, target):
    """Whether node ``target`` reads, at any depth, one of ``variables``
    (a search forward through their clients: in a training graph the
    parameter gradients reach only their updates)."""
    seen, stack = set(), list(variables)
    while stack:
        for client, _ in fgraph.clients.get(stack.pop(), ()):
            if client is target:
                return True
            if isinstance(client, str) or client in seen:
                continue
            seen.add(client)
            stack.extend(client.outputs)
    return False


@node_rewriter([pt.add])
def local_bn_grad_addend(fgraph, node):
    """``gx + a``, where ``gx`` is the input gradient of a
    :class:`BatchNormReluTrainGrad` used by nothing else (a residual block's
    input: the gradient through its pre-activation batch norm plus the one
    through the shortcut), becomes that node with the addend ``a``: the same
    bits, one pass over the arrays instead of two (``LASRES_BN_ADDEND=0``:
    not folded)."""
    if os.environ.get(ADDEND_ENV, "").strip() == "0":
        return None
    if len(node.inputs) != 2 or node.outputs[0].type != node.inputs[0].type \
            or node.inputs[0].type != node.inputs[1].type:
        return None
    for i, gx in enumerate(node.inputs):
        grad = gx.owner
        if grad is None or type(grad.op) is not BatchNormReluTrainGrad \
                or len(grad.inputs) != 7 or grad.outputs[0] is not gx \
                or len(fgraph.clients[gx]) != 1 or gx in fgraph.outputs:
            continue
        addend = node.inputs[1 - i]
        if _reaches(fgraph, grad.outputs[1:], node):   # the addend reads ggamma or gbeta
            continue
        new = grad.op(*grad.inputs, addend)
        return {node.outputs[0]: new[0], grad.outputs[1]: new[1], grad.outputs[2]: new[2]}
    return None


def batch_norm_train(x, gamma, beta, axes=(0, 2, 3), epsilon=1e-4):
    """Normalise ``x`` with its own statistics; returns ``(y, mean, inv_std)``."""
    return BatchNormTrain(axes, epsilon)(x, gamma, beta)


def batch_norm_infer(x, gamma, beta, mean, inv_std, axes=(0, 2, 3)):
    """Normalise ``x`` with given statistics."""
    return BatchNormInfer(axes)(x, gamma, beta, mean, inv_std)
