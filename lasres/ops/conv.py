"""Two-dimensional convolution ops (NCHW).

The three ops mirror Theano's ``AbstractConv2d`` family:

* :class:`Conv2d` -- the forward convolution (optionally with a bias added per
  output channel in the same node),
* :class:`Conv2dGradInputs` -- the gradient with respect to the input
  (a "transposed convolution"),
* :class:`Conv2dGradWeights` -- the gradient with respect to the filters.

The three ops are closed under differentiation (the gradient of each is
expressed through the others), so second derivatives work.

Their ``perform`` runs the NumPy kernels of :mod:`lasres.ops.conv_numpy`; for
float32 on the C backend their ``c_code`` runs oneDNN
(:mod:`lasres.ops.onednn`).  The shape rules are in :mod:`lasres.ops.shape`;
the JAX implementations in :mod:`lasres.ops.jax.conv` (``jax.lax``), used by
``pytensor.function(..., mode="JAX")``.
"""
import os
from typing import Any, Optional

import pytensor.tensor as pt
from pytensor.gradient import DisconnectedType, disconnected_type
from pytensor.graph.basic import Apply
from pytensor.graph.rewriting.basic import node_rewriter
from pytensor.tensor.variable import TensorVariable

from ._args import cast, float_tensor, int_pair, normalize_pad, resolve_pad
from .conv_numpy import (CHUNK_BYTES, conv2d_forward_numpy, conv2d_grad_inputs_numpy,
                         conv2d_grad_weights_numpy)
from .onednn import OneDNNConvCOp, shape_pair_c
from .shape import (ConvLength, as_shape_input, check_topgrad, conv_output_length, conv_output_shape, shape_arg,
                    shape_input_static, shape_input_symbolic, shape_input_value, to_blocked,
                    from_blocked)

__all__ = ["conv2d", "Conv2d", "Conv2dSum", "Conv2dGradInputs", "Conv2dGradWeights",
           "ConvLength", "conv_output_length", "local_conv_addend"]

#: ``LASRES_CONV_ADDEND=0`` leaves the residual sums after the convolutions
ADDEND_ENV = "LASRES_CONV_ADDEND"


class _ConvOpBase(OneDNNConvCOp):
    """Shared parameters and helpers of the convolution ops.

    Parameters
    ----------
    stride : int or pair of int
        Subsampling factors ``(sh, sw)``.
    pad : 'valid', 'same', 'full', int or pair of int
        Zero padding on each side; ``'same'`` is ``(kh // 2, kw // 2)`` and
        ``'full'`` is ``(kh - 1, kw - 1)``, resolved with the filter shape at
        run time when stored as a string.
    filter_flip : bool
        True for a true convolution (kernel flipped), False for
        cross-correlation.
    blocks : pair of int
        The layouts of the activations on the convolution's input side
        (``input``, or the input gradient) and on its output side (the output,
        or the output gradient): 0 for NCHW, ``B`` (8 or 16) for oneDNN's
        channel-blocked ``(N, C/B, H, W, B)`` arrays, which the convolution
        then reads or writes as they are. Only the C mode's layout rewrite
        (:mod:`lasres.ops.layout`) builds blocked nodes, in graphs already
        differentiated: they have no gradient.
    """

    __props__ = ("stride", "pad", "filter_flip", "blocks")
    #: (for ops pickled before the attribute existed)
    blocks = (0, 0)

    def __init__(self, stride=(1, 1), pad=(0, 0), filter_flip=True, blocks=(0, 0)):
        self.stride = int_pair(stride, "stride", 1)
        self.pad = normalize_pad(pad)
        self.filter_flip = bool(filter_flip)
        self.blocks = tuple(int(b) for b in blocks)
        if len(self.blocks) != 2 or any(b not in (0, 8, 16) for b in self.blocks):
            raise ValueError(f"blocks must be a pair of 0, 8 or 16, got {blocks!r}")

    def _act(self, var, name, side):
        """An activation argument: 4-d, or 5-d when its side is blocked."""
        return float_tensor(var, name, 5 if self.blocks[side] else 4)

    def _act_type(self, dtype, n, c, hw, side):
        b = self.blocks[side]
        if not b:
            return pt.tensor(dtype=dtype, shape=(n, c) + tuple(hw))
        # the number of channel blocks stays unknown: a static 1 (16 channels)
        # would make another type, and another compiled module, than 2 or 4
        return pt.tensor(dtype=dtype, shape=(n, None) + tuple(hw) + (b,))

    def _channels(self, static_shape, side):
        """Channels of an activation's static shape (None if unknown)."""
        c = static_shape[1]
        b = self.blocks[side]
        return c * b if (b and c is not None) else c

    def _plain(self, value, side):
        return from_blocked(value) if self.blocks[side] else value

    def _layout(self, value, side):
        return to_blocked(value, self.blocks[side]) if self.blocks[side] else value

    def _chan_symbolic(self, shape, side):
        return shape[1] * self.blocks[side] if self.blocks[side] else shape[1]

    def _out_sym(self, n, c, h, w, side):
        b = self.blocks[side]
        return (n, c // b, h, w, b) if b else (n, c, h, w)

    def _differentiable(self):
        if any(self.blocks):
            raise NotImplementedError("blocked-layout convolutions are built after "
                                      "differentiation; differentiate the NCHW graph")

    def _kwargs(self):
        return dict(stride=self.stride, pad=self.pad, filter_flip=self.filter_flip)

    def _out_len_symbolic(self, length, k, axis):
        pad = self.pad if isinstance(self.pad, str) else self.pad[axis]
        return ConvLength(self.stride[axis], pad)(length, k)

    def _static_out(self, in_hw, k_hw):
        return conv_output_shape(in_hw, k_hw, self.stride, self.pad)


class Conv2d(_ConvOpBase):
    """Forward 2-d convolution ``out = conv(input, filters) + bias``.

    Inputs: ``input`` (N, C, H, W), ``filters`` (F, C, kh, kw) and optionally
    ``bias`` (F,), all of the same float dtype.  Output: (N, F, out_h, out_w)
    with ``out = (in + 2 * pad - k) // stride + 1``.  See :class:`_ConvOpBase`
    for the parameters.
    """

    def make_node(self, input, filters, bias=None):
        x = self._act(input, "input", 0)
        w = cast(float_tensor(filters, "filters", 4), x.dtype)
        inputs = [x, w]
        xs, ws = x.type.shape, w.type.shape
        if bias is not None:
            b = cast(float_tensor(bias, "bias", 1), x.dtype)
            if None not in (b.type.shape[0], ws[0]) and b.type.shape[0] != ws[0]:
                raise ValueError(f"bias has {b.type.shape[0]} entries for {ws[0]} filters")
            inputs.append(b)
        xc = self._channels(xs, 0)
        if xc is not None and ws[1] is not None and xc != ws[1]:
            raise ValueError(f"input has {xc} channels but the filters expect {ws[1]}")
        oh, ow = self._static_out(xs[2:4], ws[2:])
        out = self._act_type(x.dtype, xs[0], ws[0], (oh, ow), 1)
        return Apply(self, inputs, [out])

    def perform(self, node, inputs, outputs):
        x, w = inputs[:2]
        b = inputs[2] if len(inputs) > 2 else None
        outputs[0][0] = self._layout(
            conv2d_forward_numpy(self._plain(x, 0), w, b, **self._kwargs()), 1)

    def _onednn_call(self, node, cache, inputs, out, params):
        bias = inputs[2] if len(inputs) > 2 else "NULL"
        return f"lr_conv_fwd({cache}, {inputs[0]}, {inputs[1]}, {bias}, NULL, {out}, {params})"

    def infer_shape(self, fgraph, node, in_shapes):
        xs, ws = in_shapes[0], in_shapes[1]
        return [self._out_sym(xs[0], ws[0], self._out_len_symbolic(xs[2], ws[2], 0),
                              self._out_len_symbolic(xs[3], ws[3], 1), 1)]

    def pullback(self, inputs, outputs, output_grads):
        self._differentiable()
        x, w = inputs[:2]
        (gz,) = output_grads
        gx = Conv2dGradInputs(**self._kwargs())(gz, w, shape_arg(x))
        gw = Conv2dGradWeights(**self._kwargs())(x, gz, shape_arg(w))
        grads = [gx, gw]
        if len(inputs) > 2:
            grads.append(gz.sum(axis=(0, 2, 3)))
        return grads

    def pushforward(self, inputs, outputs, tangents):
        self._differentiable()
        x, w = inputs[:2]
        plain = Conv2d(**self._kwargs())
        total = None
        if not isinstance(tangents[0].type, DisconnectedType):
            total = plain(tangents[0], w)
        if not isinstance(tangents[1].type, DisconnectedType):
            term = plain(x, tangents[1])
            total = term if total is None else total + term
        if len(inputs) > 2 and not isinstance(tangents[2].type, DisconnectedType):
            db = tangents[2].dimshuffle("x", 0, "x", "x")
            total = (pt.broadcast_to(db, outputs[0].shape) if total is None
                     else total + db)
        return [disconnected_type() if total is None else total]


class Conv2dSum(Conv2d):
    """``conv(input, filters) + bias + addend`` in one pass: a residual
    block's last convolution and its sum with the shortcut, where the
    convolution's own output has no other use (:func:`local_conv_addend`).

    Inputs: those of :class:`Conv2d` (with or without the bias), then
    ``addend``, of the output's type.  oneDNN adds it as the result is
    written (a binary post-op, after the bias: the bits of the separate sum);
    ``perform`` adds it afterwards.  Built by the C mode in blocked training
    graphs after differentiation, like the blocked ops: no gradient.
    """

    def make_node(self, input, filters, *rest):
        if len(rest) not in (1, 2):
            raise TypeError("Conv2dSum takes input, filters, [bias,] addend")
        node = super().make_node(input, filters, *rest[:-1])
        addend = pt.as_tensor_variable(rest[-1])
        if addend.type.dtype != node.outputs[0].dtype or addend.ndim != node.outputs[0].ndim:
            raise TypeError(f"the addend ({addend.type}) must have the output's type "
                            f"({node.outputs[0].type})")
        return Apply(self, node.inputs + [addend], [addend.type()])

    def perform(self, node, inputs, outputs):
        super().perform(node, inputs[:-1], outputs)
        outputs[0][0] = outputs[0][0] + inputs[-1]

    def _onednn_call(self, node, cache, inputs, out, params):
        bias = inputs[2] if len(inputs) > 3 else "NULL"
        return (f"lr_conv_fwd({cache}, {inputs[0]}, {inputs[1]}, {bias}, {inputs[-1]}, {out}, "
                f"{params})")

    def pullback(self, inputs, outputs, output_grads):
        raise NotImplementedError("Conv2dSum is built after differentiation")

    def pushforward(self, inputs, outputs, tangents):
        raise NotImplementedError("Conv2dSum is built after differentiation")


@node_rewriter([pt.add])
def local_conv_addend(fgraph, node):
    """``conv(x, w) + a`` with a blocked (oneDNN-layout) :class:`Conv2d`
    whose output nothing else reads becomes :class:`Conv2dSum`: the
    convolution's output is never stored, and the sum makes no pass of its
    own (``LASRES_CONV_ADDEND=0``: not folded)."""
    if os.environ.get(ADDEND_ENV, "").strip() == "0" or len(node.inputs) != 2:
        return None
    out = node.outputs[0]
    for i, z in enumerate(node.inputs):
        conv = z.owner
        if conv is None or type(conv.op) is not Conv2d or not conv.op.blocks[1] \
                or z.type != out.type or node.inputs[1 - i].type != out.type \
                or len(fgraph.clients[z]) != 1 or z in fgraph.outputs:
            continue
        return [Conv2dSum(**conv.op._kwargs(), blocks=conv.op.blocks)(
            *conv.inputs, node.inputs[1 - i])]
    return None


class Conv2dGradInputs(_ConvOpBase):
    """Gradient of :class:`Conv2d` with respect to its input.

    Inputs: ``topgrad`` (N, F, out_h, out_w), ``filters`` (F, C, kh, kw) and
    ``shape``, the spatial shape ``(H, W)`` of the input to reconstruct
    (a strided convolution maps several input sizes to one output size).
    ``shape`` is an integer vector of two entries, or a 4-d tensor whose last
    two axes give it (typically the forward input itself; only its shape is
    read, which keeps the shape static for the JAX backend).
    Output: (N, C, H, W).
    """

    def make_node(self, topgrad, filters, shape):
        gz = self._act(topgrad, "topgrad", 1)
        w = cast(float_tensor(filters, "filters", 4), gz.dtype)
        shape = as_shape_input(shape, 2)
        if any(self.blocks) and shape.ndim != 1:
            raise TypeError("a blocked-layout convolution takes its shape as a vector")
        static_hw = shape_input_static(shape, 2)
        gs, ws = gz.type.shape, w.type.shape
        check_topgrad(gs[2:4], self._static_out(static_hw, ws[2:]),
                      f"an input of shape {static_hw}")
        out = self._act_type(gz.dtype, gs[0], ws[1], static_hw, 0)
        return Apply(self, [gz, w, shape], [out])

    def perform(self, node, inputs, outputs):
        gz, w, shape = inputs
        outputs[0][0] = self._layout(conv2d_grad_inputs_numpy(
            self._plain(gz, 1), w, shape_input_value(shape, 2), **self._kwargs()), 0)

    def _onednn_call(self, node, cache, inputs, out, params):
        h, w = shape_pair_c(node, 2, inputs[2])
        return (f"lr_conv_bwd_data({cache}, {inputs[0]}, {inputs[1]}, {h}, {w}, {out}, "
                f"{params})")

    def infer_shape(self, fgraph, node, in_shapes):
        h, w = shape_input_symbolic(node, 2, in_shapes, 2)
        return [self._out_sym(in_shapes[0][0], in_shapes[1][1], h, w, 0)]

    def connection_pattern(self, node):
        return [[True], [True], [False]]

    def pullback(self, inputs, outputs, output_grads):
        self._differentiable()
        gz, w, _ = inputs
        (g,) = output_grads
        d_gz = Conv2d(**self._kwargs())(g, w)
        d_w = Conv2dGradWeights(**self._kwargs())(g, gz, shape_arg(w))
        return [d_gz, d_w, disconnected_type()]


class Conv2dGradWeights(_ConvOpBase):
    """Gradient of :class:`Conv2d` with respect to its filters.

    Inputs: ``input`` (N, C, H, W), ``topgrad`` (N, F, out_h, out_w) and
    ``shape``, the filter spatial shape ``(kh, kw)``: an integer vector of two
    entries, or a 4-d tensor whose last two axes give it (typically the
    filters themselves).  Output: (F, C, kh, kw).
    """

    def make_node(self, input, topgrad, shape):
        x = self._act(input, "input", 0)
        gz = cast(self._act(topgrad, "topgrad", 1), x.dtype)
        shape = as_shape_input(shape, 2)
        if any(self.blocks) and shape.ndim != 1:
            raise TypeError("a blocked-layout convolution takes its shape as a vector")
        static_hw = shape_input_static(shape, 2)
        check_topgrad(gz.type.shape[2:4], self._static_out(x.type.shape[2:4], static_hw),
                      f"filters of shape {static_hw}")
        out = pt.tensor(dtype=x.dtype, shape=(self._channels(gz.type.shape, 1),
                                              self._channels(x.type.shape, 0)) + tuple(static_hw))
        return Apply(self, [x, gz, shape], [out])

    def perform(self, node, inputs, outputs):
        x, gz, shape = inputs
        outputs[0][0] = conv2d_grad_weights_numpy(self._plain(x, 0), self._plain(gz, 1),
                                                  shape_input_value(shape, 2), **self._kwargs())

    def _onednn_call(self, node, cache, inputs, out, params):
        kh, kw = shape_pair_c(node, 2, inputs[2])
        return (f"lr_conv_bwd_weights({cache}, {inputs[0]}, {inputs[1]}, {kh}, {kw}, {out}, "
                f"{params})")

    def infer_shape(self, fgraph, node, in_shapes):
        kh, kw = shape_input_symbolic(node, 2, in_shapes, 2)
        return [(self._chan_symbolic(in_shapes[1], 1), self._chan_symbolic(in_shapes[0], 0),
                 kh, kw)]

    def connection_pattern(self, node):
        return [[True], [True], [False]]

    def pullback(self, inputs, outputs, output_grads):
        self._differentiable()
        x, gz, _ = inputs
        (g,) = output_grads
        d_x = Conv2dGradInputs(**self._kwargs())(gz, g, shape_arg(x))
        d_gz = Conv2d(**self._kwargs())(x, g)
        return [d_x, d_gz, disconnected_type()]


def conv2d(input: Any, filters: Any, bias: Optional[Any] = None, stride: Any = (1, 1),
           pad: Any = (0, 0), filter_flip: bool = True) -> TensorVariable:
    """2-d convolution of a batch of NCHW images, with an optional bias.

    Parameters
    ----------
    input : TensorVariable, shape (N, C, H, W)
        Float input.
    filters : TensorVariable, shape (F, C, kh, kw)
        Filters; cast to the dtype of ``input`` if needed.
    bias : TensorVariable, shape (F,), optional
        Added to every output channel (in the same graph node).
    stride : int or pair of int
        Subsampling factors.
    pad : 'valid', 'same', 'full', int or pair of int
        Zero padding added on each side: ``'valid'`` is 0, ``'same'`` is
        ``(kh // 2, kw // 2)`` (the output keeps the input size for odd
        filters and stride 1; an even filter gives one more), ``'full'`` is
        ``(kh - 1, kw - 1)``.  Strings are resolved to ints when the static
        filter shape is known.
    filter_flip : bool
        True (default, Lasagne's ``Conv2DLayer``) computes a true convolution
        (flipped kernel); False a cross-correlation.

    Returns
    -------
    TensorVariable, shape (N, F, out_h, out_w)
        Same dtype as ``input``; ``out = (in + 2 * pad - k) // stride + 1``.
    """
    x = float_tensor(input, "input", 4)
    w = float_tensor(filters, "filters", 4)
    pad = normalize_pad(pad)
    k_hw = w.type.shape[2:]
    if isinstance(pad, str) and None not in k_hw:
        pad = resolve_pad(pad, k_hw)
    op = Conv2d(stride=stride, pad=pad, filter_flip=filter_flip)
    return op(x, w) if bias is None else op(x, w, bias)
